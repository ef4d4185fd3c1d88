"""Strict validation of FHIR resources with fhir.resources (R4B models; see docs/fhir-mapping.md).

fhir.resources checks structure, cardinality, types and primitive formats; it does not check code
bindings, so the required bindings of the elements priorauth reads and writes are checked here as well.
Problems come back as ``(expression, message)`` pairs, the expression a FHIRPath from the resource given.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import ValidationError

__all__ = ["validate_resource", "FhirInvalid", "require_valid"]

# element -> allowed codes (required bindings in FHIR R4)
_REQUIRED_CODES: dict[tuple[str, str], frozenset[str]] = {
    ("Bundle", "type"): frozenset({"document", "message", "transaction", "transaction-response", "batch",
                                   "batch-response", "history", "searchset", "collection"}),
    ("Claim", "status"): frozenset({"active", "cancelled", "draft", "entered-in-error"}),
    ("Claim", "use"): frozenset({"claim", "preauthorization", "predetermination"}),
    ("ClaimResponse", "status"): frozenset({"active", "cancelled", "draft", "entered-in-error"}),
    ("ClaimResponse", "use"): frozenset({"claim", "preauthorization", "predetermination"}),
    ("ClaimResponse", "outcome"): frozenset({"queued", "complete", "error", "partial"}),
    ("Questionnaire", "status"): frozenset({"draft", "active", "retired", "unknown"}),
    ("QuestionnaireResponse", "status"): frozenset({"in-progress", "completed", "amended", "entered-in-error", "stopped"}),
    ("Observation", "status"): frozenset({"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                                          "entered-in-error", "unknown"}),
    ("MedicationRequest", "status"): frozenset({"active", "on-hold", "cancelled", "completed", "entered-in-error",
                                                "stopped", "draft", "unknown"}),
}
_ISSUE_SEVERITY = frozenset({"fatal", "error", "warning", "information"})
_ITEM_TYPES = frozenset({"group", "display", "boolean", "decimal", "integer", "date", "dateTime", "time", "string",
                         "text", "url", "choice", "open-choice", "attachment", "reference", "quantity", "question"})


@lru_cache(maxsize=None)
def _model(resource_type: str):
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(resource_type)


def _loc(base: str, loc: tuple) -> str:
    out = base
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _bindings(resource: dict, base: str) -> list[tuple[str, str]]:
    rt = resource.get("resourceType")
    problems = []
    for (type_, element), allowed in _REQUIRED_CODES.items():
        if rt == type_ and element in resource and resource[element] not in allowed:
            problems.append((f"{base}.{element}", f"{resource[element]!r} is not one of {', '.join(sorted(allowed))}"))
    if rt == "OperationOutcome":
        for i, issue in enumerate(resource.get("issue", [])):
            if issue.get("severity") not in _ISSUE_SEVERITY:
                problems.append((f"{base}.issue[{i}].severity", f"{issue.get('severity')!r} is not an issue severity"))
    if rt == "Questionnaire":
        stack = [(f"{base}.item[{i}]", it) for i, it in enumerate(resource.get("item", []))]
        while stack:
            path, it = stack.pop()
            if it.get("type") not in _ITEM_TYPES:
                problems.append((f"{path}.type", f"{it.get('type')!r} is not a Questionnaire item type"))
            stack.extend((f"{path}.item[{i}]", c) for i, c in enumerate(it.get("item", [])))
    return problems


def validate_resource(resource: Any, base: str | None = None) -> list[tuple[str, str]]:
    """Every problem of a resource (a Bundle's entries included), as (FHIRPath, message)."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return [(base or "(resource)", "not a FHIR resource (no resourceType)")]
    rt = resource["resourceType"]
    base = base or rt
    try:
        model = _model(rt)
    except Exception:  # fhir.resources raises a plain error for unknown types
        return [(f"{base}.resourceType", f"{rt!r} is not a FHIR resource type")]
    problems: list[tuple[str, str]] = []
    if rt in ("Bundle", "Parameters"):
        # validate the contained resources one by one, for paths that name them
        shallow = dict(resource)
        key = "entry" if rt == "Bundle" else "parameter"
        items = resource.get(key) or []
        shallow[key] = [{k: v for k, v in it.items() if k != "resource"} for it in items if isinstance(it, dict)]
        for i, it in enumerate(items):
            if isinstance(it, dict) and "resource" in it:
                problems += validate_resource(it["resource"], f"{base}.{key}[{i}].resource")
        resource = shallow
    try:
        model.model_validate(resource)
    except ValidationError as err:
        for e in err.errors(include_url=False):
            problems.append((_loc(base, tuple(e["loc"])), e["msg"].removeprefix("Value error, ")))
    except (AttributeError, TypeError, ValueError, KeyError, IndexError, RecursionError) as exc:
        # some of the models' own validators fail on a value of the wrong JSON type instead of reporting it
        return problems + [(base, f"an element holds a value of the wrong type (a number or object where text "
                                  f"belongs): {type(exc).__name__}")]
    problems += _bindings(resource, base)
    return problems


class FhirInvalid(ValueError):
    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))


def require_valid(resource: dict) -> dict:
    """The resource itself when it validates; FhirInvalid listing every problem otherwise."""
    problems = validate_resource(resource)
    if problems:
        raise FhirInvalid(problems)
    return resource
