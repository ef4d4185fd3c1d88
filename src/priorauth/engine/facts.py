"""Facts derived from a case once per evaluation and shared by the checks (computed on first use)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cached_property

from priorauth.case import Case, Lab, Source
from priorauth.clinical.units import display_unit
from priorauth.clinical.labs import LabProgression, ProgressionRules, lab_progression, labs_by_test
from priorauth.clinical.therapy import LineCount, LineRules, TreatmentHistory, count_lines, resolve_history
from priorauth.terminology import CnsMatch, Terminology

__all__ = ["Facts", "ProgressionEvent", "CnsMention", "NegativeWorkup", "CnsFindings"]


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
class CnsMention:
    """A CNS mention on record, with its assertion (in ``match``) and where it was read."""

    match: CnsMatch
    where: str             # "diagnosis", "history", "assessment"
    quote: str             # the code and text of a coded entry, else the clause the mention was read in
    source: str
    path: str              # the entry within its file or bundle ("history[1]", "Condition/c-1")


@dataclass(frozen=True, slots=True)
class NegativeWorkup:
    """A documented negative neurologic work-up ("MRI brain negative"), which settles an uncertain mention."""

    phrase: str
    where: str
    source: str
    path: str


@dataclass(frozen=True, slots=True)
class CnsFindings:
    """What the record says about CNS pathology, sorted for I.A.6 (and III.B)."""

    findings: tuple[CnsMention, ...] = ()          # present or historical: one per entry
    uncertain: tuple[CnsMention, ...] = ()         # hedged, in entries without a finding: one per entry
    disregarded: tuple[CnsMention, ...] = ()       # negated, hypothetical, someone else's, or excluded
    negative_workups: tuple[NegativeWorkup, ...] = ()


def _located(source: Source | None, child: str = "") -> tuple[str, str]:
    """A fact's source as text and its path within the file or bundle ("history[1]")."""
    if source is None:
        return "", child
    src = source.at(child)
    return str(src), src.path


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
    def cns_findings(self) -> CnsFindings:
        """CNS mentions in the diagnoses (codes), the history (codes first, then text) and the assessments."""
        findings: list[CnsMention] = []
        uncertain: list[CnsMention] = []
        disregarded: list[CnsMention] = []
        workups: list[NegativeWorkup] = []

        def read_text(text: str, where: str, source) -> None:
            mentions = self.term.cns_text(text)
            entry_findings = [m for m in mentions if m.finding]
            entry_uncertain = [m for m in mentions if m.assertion == "uncertain"]
            for m in entry_findings[:1] or entry_uncertain[:1]:
                (findings if m.finding else uncertain).append(CnsMention(m, where, m.quote, *_located(source)))
            for m in mentions:
                if not m.finding and m.assertion != "uncertain":
                    disregarded.append(CnsMention(m, where, m.quote, *_located(source)))
            phrase = self.term.negative_workup(text)
            if phrase:
                workups.append(NegativeWorkup(phrase, where, *_located(source)))

        req = self.case.request
        for i, code in enumerate(req.diagnoses):
            m = self.term.cns_code(code)
            if m is not None:
                findings.append(CnsMention(m, "diagnosis", code, *_located(req.source, f"diagnoses[{i}]")))
        for h in self.case.history or ():
            m = self.term.cns_code(h.code) if h.code else None
            if m is not None:       # a coded entry is a finding whatever its text says
                findings.append(CnsMention(m, "history", " ".join(x for x in (h.code, h.text) if x), *_located(h.source)))
            elif h.text:
                read_text(h.text, "history", h.source)
        for a in self.assessments:
            if a.finding in ("cns_involvement", "meningeal_involvement"):
                label = a.finding.replace("_", " ")
                findings.append(CnsMention(CnsMatch("cns_myeloma", label, a.finding), "assessment",
                                           f"{label} on {a.date}", *_located(a.source)))
            elif a.text:
                read_text(a.text, "assessment", a.source)
        return CnsFindings(tuple(findings), tuple(uncertain), tuple(disregarded), tuple(workups))
