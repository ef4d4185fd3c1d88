"""Case files, format 1 (YAML or JSON): parse, validate, attach sources, convert units.

A malformed file raises :class:`IntakeError` listing every problem by field path. A file that reads but
carries fields priorauth does not know keeps them out of the evaluation and lists them in ``case.notes``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from priorauth.case import THERAPY_TAGS, Case, Lab, Quantity, Source
from priorauth.clinical.units import UnitError, factor
from priorauth.intake.errors import IntakeError, problems_from_validation
from priorauth.terminology import Terminology, load_terminology

__all__ = ["load_case_file", "parse_case_text", "case_from_data", "DOSE_UNITS"]

#: the units a CAR-T dose may be given in: a flat count of cells, or a count per kilogram of body weight
DOSE_UNITS = {"flat": "{cells}", "per_kg": "{cells}/kg"}
MAX_FILE_BYTES = 5 * 1024 * 1024


_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML was built with it


class _Loader(_Base):
    """YAML without implicit timestamps (dates stay text for the model to check) and with duplicate keys refused."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int):
        self.key, self.line = key, line


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    out: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in out:
            raise _DuplicateKey(key, key_node.start_mark.line + 1)
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key, 0)
        out[key] = value
    return out


def _parse(text: str, origin: str, fmt: str) -> Any:
    try:
        if fmt == "json":
            return json.loads(text, object_pairs_hook=_json_pairs)
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as dup:
        where = f" (line {dup.line})" if dup.line else ""
        raise IntakeError(origin, [f"{dup.key}: the key appears twice{where}"]) from None
    except json.JSONDecodeError as exc:
        raise IntakeError(origin, [f"(file): not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise IntakeError(origin, [f"(file): not valid YAML{where}: {problem}"]) from None


def load_case_file(path: str | Path, terminology: Terminology | None = None) -> Case:
    """Read and validate a case file (``.json`` is JSON, anything else YAML)."""
    p = Path(path)
    origin = str(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise IntakeError(origin, [f"(file): {size} bytes is larger than the {MAX_FILE_BYTES} bytes a case file may be"])
        raw = p.read_bytes()
    except OSError as exc:
        raise IntakeError(origin, [f"(file): cannot be read: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IntakeError(origin, [f"(file): not UTF-8 text (byte {exc.start})"]) from None
    fmt = "json" if p.suffix.lower() == ".json" else "yaml"
    return parse_case_text(text, origin, fmt, default_id=p.stem, terminology=terminology)


def parse_case_text(text: str, origin: str, fmt: str = "yaml", default_id: str | None = None,
                    terminology: Terminology | None = None) -> Case:
    data = _parse(text, origin, fmt)
    return case_from_data(data, origin, default_id=default_id, terminology=terminology)


def case_from_data(data: Any, origin: str, default_id: str | None = None,
                   terminology: Terminology | None = None) -> Case:
    """Validate parsed case data into a Case with sources and canonical lab values."""
    if data is None:
        raise IntakeError(origin, ["(file): is empty"])
    if not isinstance(data, dict):
        raise IntakeError(origin, [f"(top level): a case file holds a mapping, not {type(data).__name__}"])
    data = dict(data)
    if "id" not in data and default_id:
        data["id"] = default_id
    if isinstance(data.get("id"), (int, float)) and not isinstance(data.get("id"), bool):
        data["id"] = str(data["id"])
    try:
        case = Case.model_validate(data)
    except ValidationError as err:
        raise IntakeError(origin, problems_from_validation(err, skip=THERAPY_TAGS)) from None
    term = terminology or load_terminology()
    problems: list[str] = []
    _attach_sources(case, Source(file=origin, path=""))
    _normalize_labs(case, term, problems)
    _check_quantities(case, problems)
    if problems:
        raise IntakeError(origin, problems)
    case.notes.extend(_unknown_fields(case, ""))
    return case


def _attach_sources(model: BaseModel, src: Source) -> None:
    if "source" in type(model).model_fields:
        model.source = src
    for name in type(model).model_fields:
        if name in ("source", "expect", "notes"):
            continue
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            _attach_sources(value, src.at(name))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    _attach_sources(item, src.at(f"{name}[{i}]"))


def _unknown_fields(model: BaseModel, path: str) -> list[str]:
    notes = [f"{path + '.' if path else ''}{k}: unknown field, ignored" for k in (model.model_extra or {})]
    for name in type(model).model_fields:
        if name in ("source", "expect", "notes"):
            continue
        value = getattr(model, name)
        sub = f"{path}.{name}" if path else name
        if isinstance(value, BaseModel):
            notes += _unknown_fields(value, sub)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    notes += _unknown_fields(item, f"{sub}[{i}]")
    return notes


def _normalize_labs(case: Case, term: Terminology, problems: list[str]) -> None:
    if not case.labs:
        return
    kept: list[Lab] = []
    for i, lab in enumerate(case.labs):
        where = f"labs[{i}]"
        if lab.loinc is not None:
            by_code = term.lab_by_loinc(lab.loinc)
            if lab.test is None and by_code is None:
                case.notes.append(f"{where}.loinc: {lab.loinc!r} is not a test this policy reads; the result is not used")
                continue
            if lab.test is not None and by_code is not None and by_code != lab.test:
                problems.append(f"{where}.loinc: {lab.loinc!r} is {by_code}, but test says {lab.test}")
                continue
            lab.test = lab.test or by_code
        target = term.lab_tests[lab.test]["unit"]
        unit = lab.unit
        if unit is None:
            if target in ("1", "%"):
                unit = target
            else:
                problems.append(f"{where}.unit: is required for {lab.test} (for instance {target})")
                continue
        try:
            lab.canonical = lab.value * factor(unit, target)
        except UnitError as exc:
            problems.append(f"{where}.unit: {exc} (a {lab.test} result is in {target} or a unit convertible to it)")
            continue
        kept.append(lab)
    case.labs[:] = kept


def _check_quantity(q: Quantity | None, path: str, targets: tuple[str, ...], problems: list[str]) -> None:
    if q is None:
        return
    for target in targets:
        try:
            factor(q.unit, target)
            return
        except UnitError:
            continue
    problems.append(f"{path}.unit: {q.unit!r} cannot be converted to {' or '.join(repr(t) for t in targets)}")


def _check_quantities(case: Case, problems: list[str]) -> None:
    _check_quantity(case.request.dose, "request.dose", tuple(DOSE_UNITS.values()), problems)
    if case.request.tocilizumab is not None:
        _check_quantity(case.request.tocilizumab.dose, "request.tocilizumab.dose", ("mg", "mg/kg"), problems)
    _check_quantity(case.member.weight, "member.weight", ("kg",), problems)
