"""Errors as FHIR OperationOutcomes: every 4xx names what is wrong (the element or field) and no response is a
bare 500. Messages never carry request content beyond the element names and the offending value's kind."""

from __future__ import annotations

from typing import Any, Iterable

FHIR_JSON = "application/fhir+json"

# HTTP status -> the OperationOutcome issue type that fits it best
_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
          406: "not-supported", 409: "conflict", 413: "too-costly", 415: "not-supported", 422: "processing",
          429: "throttled", 500: "exception", 503: "transient"}


def operation_outcome(issues: Iterable[tuple[str, str, str | None]]) -> dict[str, Any]:
    """An OperationOutcome of ``(code, diagnostics, expression or None)`` issues, all severity error."""
    out = []
    for code, diagnostics, expression in issues:
        issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": diagnostics}
        if expression:
            issue["expression"] = [expression]
        out.append(issue)
    return {"resourceType": "OperationOutcome", "issue": out}


class ApiError(Exception):
    """An error answered with ``status`` and an OperationOutcome."""

    def __init__(self, status: int, diagnostics: str, expression: str | None = None, *, code: str | None = None,
                 outcome: dict[str, Any] | None = None, headers: dict[str, str] | None = None):
        super().__init__(diagnostics)
        self.status = status
        self.outcome = outcome or operation_outcome([(code or _CODES.get(status, "invalid"), diagnostics,
                                                      expression)])
        self.headers = headers or {}


def issue_code(status: int) -> str:
    return _CODES.get(status, "invalid")
