"""Clinical policies as data: the file schema, ``$`` parameter references, and compilation to a criteria tree.

A policy file names its criteria with the policy's own numbering. A node is a check (a leaf), a combination
of children (``all`` / ``any``), or both (the node's own condition and its children must hold). ``params``
values may refer to the file's ``parameters`` (or a top-level key) as ``$group.name``; a node's params are
inherited by its descendants' checks where those declare them. ``mirror: I.B`` copies another section under
this node's numbering. Labels may name params in braces: ``{threshold}`` or ``{lines[minimum]}``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from priorauth.clinical.units import UnitError, factor, format_quantity
from priorauth.engine.checks import CHECKS, Check
from priorauth.engine.params import Qty
from priorauth.intake.errors import problems_from_validation

__all__ = ["PolicyError", "PolicyDocument", "Policy", "Node", "load_policy", "default_policy", "check_policy_file", "DEFAULT_POLICY"]

DEFAULT_POLICY = "cp_phar_769.yaml"


class PolicyError(ValueError):
    def __init__(self, origin: str, problems: list[str]):
        self.origin, self.problems = origin, problems
        super().__init__(f"{origin}: " + "; ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CriterionSpec(_Strict):
    id: str
    label: str
    reference: str | None = None
    check: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    all: list["CriterionSpec"] | None = None
    any: list["CriterionSpec"] | None = None
    refer_to: dict[str, str] | None = None
    mirror: str | None = None


class ProductSpec(_Strict):
    name: str


class SectionsSpec(_Strict):
    initial: str
    continuation: str
    initial_other: str
    continuation_other: str
    exclusions: str | None = None


class ReviewSpec(_Strict):
    body: str
    name: str
    process: str | None = None
    reference: str | None = None


class TocilizumabSpec(_Strict):
    reference: str | None = None
    max_doses: int = Field(ge=1)
    max_dose: Qty


class AuthorizationSpec(_Strict):
    reference: str | None = None
    product: str
    doses: int = Field(ge=1)
    max_cells: Qty
    duration_months: int = Field(ge=1)
    tocilizumab: TocilizumabSpec | None = None


class ClockSpec(_Strict):
    hours: int | None = Field(default=None, ge=1)
    days: int | None = Field(default=None, ge=1)

    def hours_total(self) -> int:
        if (self.hours is None) == (self.days is None):
            raise ValueError("a clock gives hours or days")
        return self.hours if self.hours is not None else self.days * 24


class ClocksSpec(_Strict):
    reference: str | None = None
    default: dict[Literal["standard", "expedited"], ClockSpec]
    by_line_of_business: dict[str, dict[Literal["standard", "expedited"], ClockSpec]] = Field(default_factory=dict)


class PolicyDocument(_Strict):
    id: str
    title: str
    version: str
    effective_date: date | None = None
    product: ProductSpec
    lines_of_business: list[str]
    diagnosis_group: str
    sections: SectionsSpec
    review: ReviewSpec
    authorization: AuthorizationSpec
    clocks: ClocksSpec
    parameters: dict[str, Any] = Field(default_factory=dict)
    criteria: list[CriterionSpec]


@dataclass(frozen=True)
class Node:
    id: str
    label: str
    reference: str
    check: Check | None
    params: BaseModel | None
    combine: str | None                 # "all" | "any" | None
    children: tuple["Node", ...]
    refer_to: dict[str, str] | None
    repeated: bool = False              # another node runs the same check with the same parameters

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()


@dataclass(frozen=True)
class Policy:
    doc: PolicyDocument
    roots: dict[str, Node]
    content_hash: str
    origin: str
    clock_hours: dict[str, dict[str, int]] = field(default_factory=dict)   # lob or "*" -> urgency -> hours

    @property
    def id(self) -> str:
        return self.doc.id

    @property
    def version(self) -> str:
        return self.doc.version

    def node(self, node_id: str) -> Node | None:
        for root in self.roots.values():
            for n in root.walk():
                if n.id == node_id:
                    return n
        return None

    @property
    def max_cells(self) -> float:
        return self.doc.authorization.max_cells.to("{cells}")


# ---- $ references -------------------------------------------------------------------------------------------
def _lookup(ref: str, raw: dict, path: str, problems: list[str], seen: tuple[str, ...]) -> Any:
    parts = ref[1:].split(".")
    for root in (raw.get("parameters") or {}, raw):
        cur: Any = root
        for part in parts:
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            else:
                cur = _MISSING
                break
        if cur is not _MISSING:
            if ref in seen:
                problems.append(f"{path}: {ref} refers to itself")
                return None
            return _resolve(copy.deepcopy(cur), raw, path, problems, seen + (ref,))
    problems.append(f"{path}: {ref} names no parameter")
    return None


_MISSING = object()


def _resolve(value: Any, raw: dict, path: str, problems: list[str], seen: tuple[str, ...] = ()) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        return _lookup(value, raw, path, problems, seen)
    if isinstance(value, dict):
        return {k: _resolve(v, raw, f"{path}.{k}", problems, seen) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, raw, f"{path}[{i}]", problems, seen) for i, v in enumerate(value)]
    return value


# ---- labels -------------------------------------------------------------------------------------------------
def _display(value: Any) -> Any:
    if isinstance(value, dict):
        if "value" in value and set(value) <= {"value", "unit", "reference"}:
            return format_quantity(value["value"], value.get("unit"))
        return {k: _display(v) for k, v in value.items()}
    return value


# ---- compile ------------------------------------------------------------------------------------------------
def _mirror(spec: CriterionSpec, source: CriterionSpec) -> CriterionSpec:
    old, new = source.id, spec.id

    def renumber(s: CriterionSpec) -> CriterionSpec:
        data = s.model_dump()
        data["id"] = new + s.id[len(old):]
        if s.reference is None or s.reference == s.id:
            data["reference"] = data["id"]
        for key in ("all", "any"):
            if getattr(s, key) is not None:
                data[key] = [renumber(c).model_dump() for c in getattr(s, key)]
        return CriterionSpec.model_validate(data)

    out = renumber(source)
    return out.model_copy(update={"label": spec.label, "reference": spec.reference or spec.id})


_SHARED: dict = {}


def _shared(params: BaseModel) -> BaseModel:
    """One object for equal parameters (I.A.6 and III.B run one check alike), so a result can be reused."""
    try:
        return _SHARED.setdefault((type(params), params), params)
    except TypeError:          # a parameter value that does not hash: not shared
        return params


def _compile(spec: CriterionSpec, path: str, raw: dict, inherited: dict, problems: list[str], ids: set[str],
             parent_id: str | None, lobs: set[str]) -> Node | None:
    if spec.id in ids:
        problems.append(f"{path}.id: {spec.id!r} is used twice")
    ids.add(spec.id)
    if parent_id is not None and not spec.id.startswith(parent_id + "."):
        problems.append(f"{path}.id: {spec.id!r} does not continue its parent's numbering {parent_id!r}")
    before = len(problems)
    own = _resolve(spec.params, raw, f"{path}.params", problems)
    unresolved = len(problems) > before
    scope = {**inherited, **own}
    check = params = None
    if spec.refer_to is not None and set(spec.refer_to) != lobs:
        problems.append(f"{path}.refer_to: covers {', '.join(sorted(spec.refer_to))}; the policy's lines of business "
                        f"are {', '.join(sorted(lobs))}")
    if spec.check is not None and unresolved:
        check = CHECKS.get(spec.check)  # its params are reported above; not validated with holes in them
    elif spec.check is not None:
        check = CHECKS.get(spec.check)
        if check is None:
            problems.append(f"{path}.check: {spec.check!r} is not a check priorauth knows ({', '.join(sorted(CHECKS))})")
        else:
            fields = check.params.model_fields
            names = {f.alias or k for k, f in fields.items()}
            data = {k: v for k, v in inherited.items() if k in names}
            data.update(own)
            try:
                params = _shared(check.params.model_validate(data))
            except ValidationError as err:
                problems.extend(f"{path}.params.{p}" for p in problems_from_validation(err))
    if spec.all is not None and spec.any is not None:
        problems.append(f"{path}: a node combines its children with `all` or `any`, not both")
    kids_spec = spec.all if spec.all is not None else spec.any
    combine = "all" if spec.all is not None else ("any" if spec.any is not None else None)
    if check is None and combine is None and spec.check is None:
        problems.append(f"{path}: a criterion needs a `check`, children (`all` / `any`), or `mirror`")
    key = "all" if spec.all is not None else "any"
    children = []
    for i, child in enumerate(kids_spec or ()):
        node = _compile(child, f"{path}.{key}[{i}]", raw, scope, problems, ids, spec.id, lobs)
        if node is not None:
            children.append(node)
    try:
        label = spec.label.format_map(_display(scope))
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        problems.append(f"{path}.label: names {exc} which is not among its params")
        label = spec.label
    return Node(spec.id, label, spec.reference or spec.id, check, params, combine, tuple(children), spec.refer_to)


def compile_policy(raw: Any, origin: str, content: bytes = b"") -> Policy:
    """Validate and compile a parsed policy document; every problem is reported, each with its path."""
    if not isinstance(raw, dict):
        raise PolicyError(origin, ["(top level): a policy file holds a mapping"])
    try:
        doc = PolicyDocument.model_validate(raw)
    except ValidationError as err:
        raise PolicyError(origin, problems_from_validation(err)) from None
    problems: list[str] = []
    by_id = {c.id: (i, c) for i, c in enumerate(doc.criteria)}
    roots: dict[str, Node] = {}
    ids: set[str] = set()
    lobs = set(doc.lines_of_business)
    for i, spec in enumerate(doc.criteria):
        path = f"criteria[{i}]"
        if spec.mirror is not None:
            if spec.mirror not in by_id or by_id[spec.mirror][1].mirror is not None:
                problems.append(f"{path}.mirror: {spec.mirror!r} is not a section of this policy")
                continue
            # a copy's problems are its source's, already reported at the source's paths
            node = _compile(_mirror(spec, by_id[spec.mirror][1]), path, raw, {}, [], ids, None, lobs)
        else:
            node = _compile(spec, path, raw, {}, problems, ids, None, lobs)
        if node is not None:
            roots[node.id] = node
    for key, section in doc.sections.model_dump().items():
        if section is not None and section not in roots:
            problems.append(f"sections.{key}: {section!r} is not a top-level criterion")
    try:
        doc.authorization.max_cells.to("{cells}")
    except UnitError as exc:
        problems.append(f"authorization.max_cells.unit: {exc}")
    if doc.authorization.tocilizumab is not None:
        try:
            factor(doc.authorization.tocilizumab.max_dose.unit or "mg", "mg")
        except UnitError as exc:
            problems.append(f"authorization.tocilizumab.max_dose.unit: {exc}")
    clock_hours: dict[str, dict[str, int]] = {}
    for lob, clocks in [("*", doc.clocks.default), *doc.clocks.by_line_of_business.items()]:
        for urgency, spec in clocks.items():
            try:
                clock_hours.setdefault(lob, {})[urgency] = spec.hours_total()
            except ValueError as exc:
                problems.append(f"clocks.{'default' if lob == '*' else 'by_line_of_business.' + lob}.{urgency}: {exc}")
    for urgency in ("standard", "expedited"):
        if urgency not in clock_hours.get("*", {}):
            problems.append(f"clocks.default.{urgency}: is required")
    if problems:
        raise PolicyError(origin, problems)
    roots = _mark_repeated(roots)
    digest = hashlib.sha256(content).hexdigest() if content else ""
    return Policy(doc, roots, digest, origin, clock_hours)


def _mark_repeated(roots: dict[str, Node]) -> dict[str, Node]:
    """Flag the nodes whose check and parameters another node shares, so evaluation runs that check once."""
    seen: dict[tuple, int] = {}
    for root in roots.values():
        for n in root.walk():
            if n.check is not None:
                key = (n.check.name, id(n.params))
                seen[key] = seen.get(key, 0) + 1

    def mark(n: Node) -> Node:
        kids = tuple(mark(c) for c in n.children)
        rep = n.check is not None and seen[(n.check.name, id(n.params))] > 1
        return dataclasses.replace(n, children=kids, repeated=rep)

    return {k: mark(v) for k, v in roots.items()}


def load_policy(path: str | Path) -> Policy:
    p = Path(path)
    try:
        content = p.read_bytes()
    except OSError as exc:
        raise PolicyError(str(path), [f"(file): cannot be read: {exc.strerror or exc}"]) from None
    return _load_bytes(content, str(path))


def _load_bytes(content: bytes, origin: str) -> Policy:
    try:
        raw = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        raise PolicyError(origin, [f"(file): not valid YAML: {exc}"]) from None
    return compile_policy(raw, origin, content)


_default: Policy | None = None


def default_policy() -> Policy:
    """The bundled CP.PHAR.769 policy, compiled once per process."""
    global _default
    if _default is None:
        content = resources.files("priorauth.policies").joinpath("data", DEFAULT_POLICY).read_bytes()
        _default = _load_bytes(content, f"priorauth/policies/data/{DEFAULT_POLICY}")
    return _default


def check_policy_file(path: str | Path) -> list[str]:
    """Every problem of a policy file, by path; an empty list when it compiles."""
    try:
        load_policy(path)
    except PolicyError as err:
        return err.problems
    return []
