"""Small readers of FHIR JSON shared by the resource readers: lists, codings and their systems, dates,
quantities' units, and the statuses that say a resource did not happen."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from priorauth.fhir.codes import SYSTEM_ALIASES, UCUM


# ---- small readers of FHIR JSON -------------------------------------------------------------------------------
_DATE = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?")
_TIME = re.compile(r"T([01][0-9]|2[0-3]):[0-5][0-9](?::(?:[0-5][0-9]|60)(\.[0-9]+)?)?(Z|[+-](?:0[0-9]|1[0-4]):[0-5][0-9])?")
_PARTIAL = "partial"
_SKIP_STATUS = {
    "MedicationStatement": frozenset({"entered-in-error", "not-taken", "intended"}),
    "MedicationAdministration": frozenset({"entered-in-error", "not-done"}),
    "MedicationRequest": frozenset({"entered-in-error", "cancelled", "draft"}),
    "Procedure": frozenset({"entered-in-error", "not-done", "preparation"}),
    "Encounter": frozenset({"entered-in-error", "cancelled", "planned"}),
    "DocumentReference": frozenset({"entered-in-error"}),
    "QuestionnaireResponse": frozenset({"entered-in-error"}),
}


def _kind(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true/false"
    if isinstance(x, (int, float)):
        return "a number"
    if isinstance(x, str):
        return "text"
    if isinstance(x, list):
        return "a list"
    return "an object"


def _list(x: Any) -> list:
    """A FHIR array as a list (a lone object counts as one item; anything absent as none)."""
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


def _sys(c: dict) -> Any:
    """A coding's (or identifier's, or quantity's) system, under the URI priorauth reads it by."""
    system = c.get("system")
    return SYSTEM_ALIASES.get(system, system) if system.__class__ is str else system


def _codings(cc: Any) -> list:
    return _list(cc.get("coding")) if isinstance(cc, dict) else []


_DATE_MEMO: dict[str, tuple[date | None, str | None]] = {}
_DATE_MEMO_LIMIT = 65536
_DATE_MEMO_KEY = 40          # the longest FHIR dateTime is 35 characters: nothing longer is kept (at most 2.6 MB)


def _parse_date(text: Any) -> tuple[date | None, str | None]:
    """(date, None) for a full FHIR date or dateTime (the date as written); (None, _PARTIAL) for YYYY or
    YYYY-MM; (None, message) for anything else. Answers are memoized (bounded): Bundles repeat their dates."""
    try:
        return _DATE_MEMO[text]
    except (KeyError, TypeError):
        pass
    found = _read_date(text)
    if text.__class__ is str and len(text) <= _DATE_MEMO_KEY and len(_DATE_MEMO) < _DATE_MEMO_LIMIT:
        _DATE_MEMO[text] = found
    return found


def _read_date(text: Any) -> tuple[date | None, str | None]:
    if text.__class__ is str and len(text) >= 10 and text[4] == "-" == text[7] and (len(text) == 10 or text[10] == "T"):
        # the common case, YYYY-MM-DD or a dateTime: the C date parser, the time part checked by pattern
        try:
            d = date.fromisoformat(text[:10])
        except ValueError:
            return None, f"{text!r} is not a date"
        if len(text) == 10 or _TIME.fullmatch(text, 10):
            return d, None
        return None, f"{text!r} is not a date"
    if not isinstance(text, str):
        return None, f"{text!r} is not a date"
    m = _DATE.match(text)
    if m is None:
        return None, f"{text!r} is not a date"
    y, mo, d = m.groups()
    rest = text[m.end():]
    if rest and not (d and _TIME.fullmatch(rest)):
        return None, f"{text!r} is not a date"
    try:
        if d is None:
            date(int(y), int(mo or 1), 1)
            return None, _PARTIAL
        return date(int(y), int(mo), int(d)), None
    except ValueError:
        return None, f"{text!r} is not a date"


_LEFT_OUT = object()
# Where each field of a list item was read, relative to its resource (an item is indexed by its entry and one
# of these maps, so FHIRPaths are only built when the case model reports a problem)
_LAB_CODE = {"test": "code", "loinc": "code", "value": "valueQuantity.value", "unit": "valueQuantity.code",
             "date": "effective[x]", "reference_range": "referenceRange[0]", "flag": "interpretation"}
_LAB_UNIT = {**_LAB_CODE, "unit": "valueQuantity.unit"}


def _unit_of(q: dict) -> tuple[Any, dict]:
    """The unit of a FHIR Quantity (UCUM ``code``, else ``unit``) and the lab field map that names it."""
    code = q.get("code")
    if code is not None and _sys(q) in (None, UCUM):
        unit, fields = code, _LAB_CODE
    else:
        unit, fields = q.get("unit"), _LAB_UNIT
    return unit, fields
