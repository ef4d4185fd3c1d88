"""Units: UCUM and common spellings converted with pint.

``convert(value, unit, target)`` converts a value to a target unit. Unit strings are normalized to pint's
grammar first: UCUM powers of ten (``10*6``), annotations (``{cells}``), the UCUM product dot (``24.h``),
``/24h`` as one divisor, ``x10^6 cells``, ``%`` and the eGFR body-surface suffix ``/1.73m2``. A factor is
computed once per (unit, target) and cached, so evaluation never touches pint twice for the same spelling.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

import pint

__all__ = ["UnitError", "convert", "factor", "dimension_of", "normalize_unit", "display_unit", "format_quantity"]


class UnitError(ValueError):
    """A unit that cannot be read, or cannot be converted to the unit asked for."""


_registry: pint.UnitRegistry | None = None
# pint's registry and its parser caches are not thread-safe: one registry per process, made once, and every
# call into pint under this lock (the results are cached, so the lock is taken once per unit spelling)
_PINT_LOCK = threading.RLock()


def _ureg() -> pint.UnitRegistry:
    global _registry
    with _PINT_LOCK:
        if _registry is None:
            reg = pint.UnitRegistry(autoconvert_offset_to_baseunit=True)
            reg.define("cell = [cell_count] = cells")
            reg.define("million = 1e6")
            _registry = reg
        return _registry


_BSA = re.compile(r"/\s*\{?\s*1[.,]73\s*_?\s*m(?:2|\^2|²|\*\*2)\s*\}?", re.IGNORECASE)
_POW10 = re.compile(r"10\s*(?:\*|\^|\*\*)\s*([+-]?\d+)")
_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
# UCUM's customary units are written in brackets
_UCUM_BRACKETS = {"[lb_av]": "lb", "[oz_av]": "oz", "[in_i]": "inch", "[ft_i]": "foot", "[iu]": "IU"}
_UCUM_ATOMS = re.compile(r"\[[a-z_]+\]", re.IGNORECASE)
_SUPER_POWER = re.compile(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+")
_TIMES_LEAD = re.compile(r"^\s*[x×]\s*(?=1e)")
_TIMES_MID = re.compile(r"(?<=\d)\s*[x×]\s*(?=1e)")
_DIVISOR_COUNT = re.compile(r"/\s*(\d+(?:\.\d+)?)\s*\.?\s*\*?\s*([A-Za-z]+)")
_UNIT_POWER = re.compile(r"(?<![\d.])\b([A-Za-z]+)([23])\b")  # mm3, m2 (UCUM writes powers as digits)
_UCUM_DOT = re.compile(r"(?<=[A-Za-z)}\]])\.(?=[A-Za-z(])|(?<=\d)\.(?=[A-Za-z(])")
_NUMBER_THEN_UNIT = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?(?:e[+-]?\d+)?)(?![\d.]|e[+-]?\d)\s*(?=[A-Za-z(])")
_ANNOTATION = re.compile(r"\{([^}]*)\}")
# spellings senders use beside UCUM: its case-insensitive form (MG/DL, KG) and a capitalized word (Kg), "gm"
# and plural "kgs"/"gms", "x10E6" for 10^6, "K/uL" for thousands per microliter, the words of a CAR-T dose
# ("x 10^6 CAR+ viable T cells") and a lone "ratio"
_CAPITALIZED = re.compile(r"(?<![A-Za-z])[A-Z][a-z]+(?![A-Za-z])")
_CLINICAL_WORDS = frozenset({"mg", "kg", "gm", "gms", "kgs", "mcg", "ug", "dl", "ml", "min", "hr", "hrs", "day"})
_GRAM_WORDS = re.compile(r"\b(k?)gms?\b|\b(k)gs\b")
_TEN_E = re.compile(r"(?<![\d.])10\s*[eE]\s*([+-]?\d+)")
_THOUSANDS = re.compile(r"^\s*[kK]\s*(?=/)")
_CELL_WORDS = re.compile(r"\b(?:car\s*-?\s*(?:\+|positive\b|pos\b)?|viable\b|t\b)\s*", re.IGNORECASE)


def normalize_unit(unit: str) -> str:
    """A unit string rewritten in pint's grammar (UCUM and common spellings accepted)."""
    s = _SUPER_POWER.sub(lambda m: "^" + m.group(0).translate(_SUPERSCRIPT), unit.strip())
    if not s:
        raise UnitError("empty unit")
    if s == s.upper():           # UCUM's case-insensitive form: MG/DL is mg/dL
        s = s.lower()
    else:                        # a capitalized word is never a prefix here: Mg/dL is mg/dL, not megagrams
        s = _CAPITALIZED.sub(lambda m: m.group(0).lower() if m.group(0).lower() in _CLINICAL_WORDS else m.group(0), s)
    s = _GRAM_WORDS.sub(lambda m: (m.group(1) or m.group(2) or "") + "g", s)
    s = _TEN_E.sub(lambda m: f"10^{m.group(1)}", s)
    s = _THOUSANDS.sub("10^3", s)
    if "cell" in s.lower():
        s = _CELL_WORDS.sub("", s)
    if s.lower() == "ratio":
        return "dimensionless"
    s = _BSA.sub("", s)
    s = _UCUM_ATOMS.sub(lambda m: _UCUM_BRACKETS.get(m.group(0).lower(), m.group(0)), s)
    s = s.replace("µ", "u").replace("μ", "u").replace("mcL", "uL").replace("mcg", "ug")
    s = _ANNOTATION.sub(lambda m: " cell " if "cell" in m.group(1).lower() else " ", s)
    s = _POW10.sub(lambda m: f"1e{m.group(1)}", s)
    s = _TIMES_LEAD.sub("", s)
    s = _TIMES_MID.sub("*", s)
    s = s.replace("%", " percent ")
    s = _DIVISOR_COUNT.sub(r"/(\1*\2)", s)
    s = _UNIT_POWER.sub(r"\1**\2", s)
    s = _UCUM_DOT.sub("*", s)
    s = _NUMBER_THEN_UNIT.sub(r"\1*", s)
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"(?<=[\w)])\s+(?=[A-Za-z(])", "*", s)  # "1e6 cell" -> "1e6*cell"
    if s.startswith("/"):
        s = "1" + s
    if s in ("", "1"):
        return "dimensionless"
    return s


@lru_cache(maxsize=4096)
def _parse(unit: str) -> pint.Quantity:
    with _PINT_LOCK:
        return _parse_locked(unit)


def _parse_locked(unit: str) -> pint.Quantity:
    try:
        q = _ureg().parse_expression(normalize_unit(unit))
    except UnitError:
        raise
    except Exception as exc:  # pint raises several error types for unreadable expressions
        raise UnitError(f"{unit!r} is not a unit") from exc
    if not isinstance(q, pint.Quantity):  # a bare number such as "1"
        q = _ureg().Quantity(q, "dimensionless")
    return q


MAX_UNIT_CHARS = 64         # no unit anyone writes is longer; a longer string is refused, never parsed or kept


def factor(unit: str, target: str) -> float:
    """The number that converts a value in ``unit`` to ``target``."""
    if isinstance(unit, str) and len(unit) > MAX_UNIT_CHARS:
        raise UnitError(f"{unit[:24]!r}... is {len(unit)} characters long: not a unit (at most {MAX_UNIT_CHARS})")
    return _factor(unit, target)


@lru_cache(maxsize=4096)
def _factor(unit: str, target: str) -> float:
    with _PINT_LOCK:
        try:
            ratio = (_parse(unit) / _parse(target)).to_base_units()
        except ZeroDivisionError:            # a unit of "0" or one that underflows to zero
            raise UnitError(f"{unit!r} cannot be converted to {target!r}") from None
    # A count of cells is an annotation in UCUM ("/uL" and "{cells}/uL" are the same unit).
    if set(ratio.dimensionality) - {"[cell_count]"}:
        raise UnitError(f"{unit!r} cannot be converted to {target!r}")
    return float(ratio.magnitude)


def convert(value: float, unit: str, target: str) -> float:
    return value * factor(unit, target)


def dimension_of(unit: str) -> str:
    """pint's dimensionality of a unit, as text (for messages and checks)."""
    return str(_parse(unit).dimensionality)


_DISPLAY = {"mg/(24.h)": "mg/24 h", "mg/24h": "mg/24 h", "{cells}/uL": "cells/uL", "10*6{cells}": "x 10^6",
            "mL/min/{1.73_m2}": "mL/min/1.73 m2", "1": ""}


def display_unit(unit: str | None) -> str:
    """A unit as a reviewer reads it (mg/(24.h) -> mg/24 h, 10*6{cells} -> x 10^6)."""
    return _DISPLAY.get(unit or "", unit or "")


def clinical_number(value: float) -> str:
    """A number as clinicians write it: 4 significant digits, one decimal below 10 (1.0 g/dL, 200 mg/24 h)."""
    text = f"{value:.4g}"
    if "e" not in text and "." not in text and abs(value) < 10:
        text += ".0"
    return text


def format_quantity(value, unit: str | None) -> str:
    """``1.6 g/dL``, ``115 x 10^6``, ``25%``."""
    shown = display_unit(unit)
    return f"{value}{'' if shown in ('', '%') else ' '}{shown}"
