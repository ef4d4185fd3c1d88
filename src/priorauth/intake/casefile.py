"""Case files, format 1 (YAML or JSON): parse, validate, attach sources.

A malformed file raises :class:`IntakeError` listing every problem by field path (units are checked by the
case model where each is read, so they are reported with the rest). A file that reads but carries fields
priorauth does not know keeps them out of the evaluation and lists them in ``case.notes``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from priorauth.case import THERAPY_TAGS, Case, Source
from priorauth.documents import attachment_text
from priorauth.intake.errors import IntakeError, problems_from_validation

__all__ = ["load_case_file", "parse_case_text", "case_from_data", "MAX_FILE_BYTES", "json_pairs", "DUPLICATE_KEYS"]

MAX_FILE_BYTES = 5 * 1024 * 1024

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML was built with it


class _Loader(_Base):
    """YAML without implicit timestamps: dates stay text for the model to check and name."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _DuplicateKey(Exception):
    def __init__(self, path: str, line: int = 0):
        self.path, self.line = path, line


def _child(path: str, key: Any) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))


def _yaml_duplicates(node: yaml.Node, path: str = "") -> None:
    """Refuse a mapping that gives a key twice, naming its full path (PyYAML would keep the last silently)."""
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            if key in seen:
                raise _DuplicateKey(_child(path, key), key_node.start_mark.line + 1)
            seen.add(key)
            _yaml_duplicates(value_node, _child(path, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _yaml_duplicates(item, f"{path}[{i}]")


#: the key under which ``json_pairs`` lists the keys an object gave twice
DUPLICATE_KEYS = "\x00duplicate keys"
_DUP = DUPLICATE_KEYS


def json_pairs(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            out.setdefault(_DUP, []).append(key)
        out[key] = value
    return out


def _json_duplicates(data: Any, path: str = "") -> None:
    if isinstance(data, dict):
        if _DUP in data:
            raise _DuplicateKey(_child(path, data[_DUP][0]))
        for k, v in data.items():
            _json_duplicates(v, _child(path, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            _json_duplicates(v, f"{path}[{i}]")


def _parse(text: str, origin: str, fmt: str) -> Any:
    try:
        if fmt == "json":
            data = json.loads(text, object_pairs_hook=json_pairs)
            _json_duplicates(data)
            return data
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _yaml_duplicates(node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except _DuplicateKey as dup:
        where = f" (line {dup.line})" if dup.line else ""
        raise IntakeError(origin, [f"{dup.path}: the key appears twice{where}"]) from None
    except json.JSONDecodeError as exc:
        raise IntakeError(origin, [f"(file): not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise IntakeError(origin, [f"(file): not valid YAML{where}: {problem}"]) from None


def load_case_file(path: str | Path) -> Case:
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
    case = parse_case_text(text, origin, fmt, default_id=p.stem)
    _read_document_files(case, p.parent, origin)
    return case


_DOCUMENT_TYPES = {".txt": "text/plain", ".pdf": "application/pdf"}


def _read_document_files(case: Case, folder: Path, origin: str) -> None:
    """Read each ``documents[i].file`` (a ``.txt`` or ``.pdf`` path relative to the case file) into its text."""
    problems = []
    for i, doc in enumerate(case.documents):
        if doc.file is None:
            continue
        field = f"documents[{i}].file"
        rel = Path(doc.file)
        kind = _DOCUMENT_TYPES.get(rel.suffix.lower())
        if rel.is_absolute():
            problems.append(f"{field}: must be a path relative to the case file")
            continue
        if kind is None:
            problems.append(f"{field}: a document file is .txt or .pdf, not {rel.suffix or 'a file without a suffix'}")
            continue
        try:
            target = folder / rel
            size = target.stat().st_size
            if size > MAX_FILE_BYTES:
                problems.append(f"{field}: {size} bytes is larger than the {MAX_FILE_BYTES} bytes a document may be")
                continue
            data = target.read_bytes()
        except OSError as exc:
            problems.append(f"{field}: cannot be read: {exc.strerror or exc}")
            continue
        read = attachment_text(kind, data)
        doc.content_type = kind
        doc.size = len(data)
        doc.text, doc.text_note = read.text, read.note
    if problems:
        raise IntakeError(origin, problems)


def parse_case_text(text: str, origin: str, fmt: str = "yaml", default_id: str | None = None) -> Case:
    return case_from_data(_parse(text, origin, fmt), origin, default_id=default_id)


def case_from_data(data: Any, origin: str, default_id: str | None = None) -> Case:
    """Validate parsed case data into a Case whose facts carry their sources."""
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
    _attach_sources(case, Source(file=origin, path=""))
    _drop_unread_labs(case)
    case.notes.extend(_unknown_fields(case, ""))
    return case


def _fields(model: BaseModel):
    for name in type(model).model_fields:
        if name not in ("source", "expect", "notes"):
            yield name, getattr(model, name)


def _attach_sources(model: BaseModel, src: Source) -> None:
    model.source = src
    for name, value in _fields(model):
        if isinstance(value, BaseModel):
            _attach_sources(value, src.at(name))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    _attach_sources(item, src.at(f"{name}[{i}]"))


def _unknown_fields(model: BaseModel, path: str) -> list[str]:
    notes = [f"{path + '.' if path else ''}{k}: unknown field, ignored" for k in (model.model_extra or {})]
    for name, value in _fields(model):
        sub = f"{path}.{name}" if path else name
        if isinstance(value, BaseModel):
            notes += _unknown_fields(value, sub)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    notes += _unknown_fields(item, f"{sub}[{i}]")
    return notes


def _drop_unread_labs(case: Case) -> None:
    """Labs named only by a LOINC code this policy does not read are kept out and noted."""
    if not case.labs:
        return
    kept = []
    for i, lab in enumerate(case.labs):
        if lab.test is None:
            case.notes.append(f"labs[{i}].loinc: {lab.loinc!r} is not a test this policy reads; the result is not used")
        else:
            kept.append(lab)
    case.labs[:] = kept
