"""The error a PAS request Bundle that cannot be read raises: every problem with its FHIRPath and issue type."""

from __future__ import annotations

from typing import Any, NamedTuple

from priorauth.intake.errors import IntakeError


#: FHIR issue-type codes (http://hl7.org/fhir/issue-type) a BundleError uses
STRUCTURE, REQUIRED, VALUE, INVALID, NOT_FOUND, NOT_SUPPORTED = (
    "structure", "required", "value", "invalid", "not-found", "not-supported")
ISSUE_CODES = (STRUCTURE, REQUIRED, VALUE, INVALID, NOT_FOUND, NOT_SUPPORTED)


class Issue(NamedTuple):
    """One problem of a Bundle: the element's FHIRPath, its issue-type code, and what is wrong in plain words."""

    expression: str
    code: str
    message: str


class BundleError(IntakeError):
    """A PAS request Bundle that cannot be read.

    ``problems`` (as every :class:`IntakeError`) are ``"<FHIRPath>: <message>"`` strings; ``issues`` keeps them
    structured as :class:`Issue` ``(expression, code, message)``. An expression in parentheses, ``(file)``,
    names the file rather than an element.
    """

    def __init__(self, origin: str, issues: list[tuple[str, str, str]]):
        self.issues = [Issue(*i) for i in issues]
        super().__init__(origin, [f"{i.expression}: {i.message}" for i in self.issues])

    def operation_outcome(self) -> dict:
        """The problems as an OperationOutcome: one issue each, severity error, diagnostics, expression.

        An issue about the file itself (expression ``(file)``, not a FHIRPath) has no ``expression``; its
        diagnostics say so.
        """
        out = []
        for expression, code, message in self.issues:
            issue: dict[str, Any] = {"severity": "error", "code": code}
            if expression.startswith("("):
                issue["diagnostics"] = f"{self.origin}: {message}"
            else:
                issue["diagnostics"] = message
                issue["expression"] = [expression]
            out.append(issue)
        return {"resourceType": "OperationOutcome", "issue": out}
