"""Facts derived from a case once per evaluation and shared by the checks (computed on first use)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cached_property

from priorauth.case import Case, Lab
from priorauth.clinical.units import display_unit
from priorauth.clinical.labs import LabProgression, ProgressionRules, lab_progression, labs_by_test
from priorauth.clinical.therapy import LineCount, LineRules, TreatmentHistory, count_lines, resolve_history
from priorauth.terminology import CnsMatch, Terminology

__all__ = ["Facts", "ProgressionEvent", "CnsFinding"]


@dataclass(frozen=True, slots=True)
class ProgressionEvent:
    """Documented or computed progression: an assessment, an imaging finding, or a lab series."""

    date: date
    kind: str              # "assessment" | "imaging" | "labs"
    description: str
    source: str
    confirmed: bool = True
    lab: LabProgression | None = None


@dataclass(frozen=True, slots=True)
class CnsFinding:
    match: CnsMatch
    where: str             # "diagnosis", "history", "assessment"
    quote: str
    source: str


class Facts:
    """The case, the evaluation date, the terminology and the derived facts the checks share."""

    def __init__(self, case: Case, as_of: date, term: Terminology, context: dict):
        self.case = case
        self.as_of = as_of
        self.term = term
        self.context = context          # resolved payer configuration (policy_effective, formulary, ...)
        self.problems: list[str] = []   # data problems found while deriving facts

    @cached_property
    def labs(self) -> dict[str, list[Lab]]:
        out = labs_by_test(self.case.labs, self.as_of)
        for lab in self.case.labs or ():
            if lab.date > self.as_of:
                self.problems.append(f"{lab.source.path}: {lab.test} dated {lab.date}, after the evaluation date; not used")
        return out

    @cached_property
    def history(self) -> TreatmentHistory:
        hist = resolve_history(self.case.therapies, self.term, self.as_of)
        self.problems.extend(hist.problems)
        return hist

    def lines(self, rules: LineRules) -> LineCount:
        cache = self.__dict__.setdefault("_lines", {})
        if rules not in cache:
            cache[rules] = count_lines(self.history, rules)
        return cache[rules]

    @cached_property
    def assessments(self):
        out = []
        for a in self.case.assessments or ():
            if a.date > self.as_of:
                self.problems.append(f"{a.source.path}: assessment dated {a.date}, after the evaluation date; not used")
            else:
                out.append(a)
        return out

    def progression_events(self, rules: ProgressionRules, since: date | None, responses, findings) -> list[ProgressionEvent]:
        """Documented progression (assessments, imaging) and lab progression computed from ``since``."""
        key = (rules, since, tuple(responses), tuple(findings))
        cache = self.__dict__.setdefault("_progression", {})
        if key in cache:
            return cache[key]
        events = []
        for a in self.assessments:
            if a.response in responses:
                events.append(ProgressionEvent(a.date, "assessment", f"disease assessment: {a.response.replace('_', ' ')}",
                                               str(a.source)))
            if a.finding in findings:
                events.append(ProgressionEvent(a.date, "imaging", f"imaging: {a.finding.replace('_', ' ')}", str(a.source)))
        if since is not None:
            for lp in lab_progression(self.labs, since, rules):
                label, unit = self.analyte(lp.analyte)
                events.append(ProgressionEvent(lp.date, "labs", lp.describe(label, display_unit(unit)),
                                               str(lp.labs[0].source), lp.confirmed, lp))
        events.sort(key=lambda e: (e.date, e.kind))
        cache[key] = events
        return events

    def analyte(self, name: str) -> tuple[str, str]:
        """A progression analyte's label and canonical unit (the FLC difference is in mg/dL)."""
        if name == "flc_difference":
            return "involved minus uninvolved free light chain", "mg/dL"
        spec = self.term.lab_tests[name]
        return spec["label"], spec["unit"]

    @cached_property
    def cns_findings(self) -> list[CnsFinding]:
        found: list[CnsFinding] = []
        req = self.case.request
        for i, code in enumerate(req.diagnoses):
            m = self.term.cns_code(code)
            if m is not None:
                found.append(CnsFinding(m, "diagnosis", code, str(req.source.at(f"diagnoses[{i}]"))))
        for h in self.case.history or ():
            quote = " ".join(x for x in (h.code, h.text) if x)
            if h.code:
                m = self.term.cns_code(h.code)
                if m is not None:
                    found.append(CnsFinding(m, "history", quote, str(h.source)))
                    continue
            if h.text:
                for m in self.term.cns_text(h.text):
                    found.append(CnsFinding(m, "history", quote, str(h.source)))
                    break
        for a in self.assessments:
            if a.finding in ("cns_involvement", "meningeal_involvement"):
                label = a.finding.replace("_", " ")
                found.append(CnsFinding(CnsMatch("cns_myeloma", label, a.finding), "assessment",
                                        f"{label} on {a.date}", str(a.source)))
            elif a.text:
                for m in self.term.cns_text(a.text):
                    found.append(CnsFinding(m, "assessment", a.text, str(a.source)))
                    break
        return found
