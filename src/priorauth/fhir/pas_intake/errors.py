"""The error a PAS request Bundle that cannot be read raises: every problem with its FHIRPath and issue type."""

from __future__ import annotations

import re
from typing import Any, Iterable, NamedTuple

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

    def __init__(self, origin: str, issues: list[tuple[str, str, str]], personal: Iterable[int] = ()):
        self.issues = [Issue(*i) for i in issues]
        #: the entries that hold the member's own data (Patient, RelatedPerson, Coverage): see operation_outcome
        self.personal = frozenset(personal)
        super().__init__(origin, [f"{i.expression}: {i.message}" for i in self.issues])

    def operation_outcome(self, redact: bool = False) -> dict:
        """The problems as an OperationOutcome: one issue each, severity error, diagnostics, expression.

        An issue about the file itself (expression ``(file)``, not a FHIRPath) has no ``expression``; its
        diagnostics say so. With ``redact`` (what the service answers), a value quoted in a problem of an entry
        holding the member's own data (a birth date, a name, an identifier) is not echoed: the element is named,
        the value is not.
        """
        out = []
        for expression, code, message in self.issues:
            issue: dict[str, Any] = {"severity": "error", "code": code}
            if redact and self.personal:
                m = _ENTRY.match(expression)
                if m is not None and int(m[1]) in self.personal:
                    message = _QUOTED.sub("the value given", message)
            if expression.startswith("("):
                issue["diagnostics"] = f"{self.origin}: {message}"
            else:
                issue["diagnostics"] = message
                issue["expression"] = [expression]
            out.append(issue)
        return {"resourceType": "OperationOutcome", "issue": out}


_ENTRY = re.compile(r"Bundle\.entry\[(\d+)\]")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
