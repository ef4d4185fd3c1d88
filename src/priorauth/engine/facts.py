"""Facts derived from a case once per evaluation and shared by the checks (computed on first use)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cached_property

from priorauth.case import Case, Lab
from priorauth.clinical.units import display_unit
from priorauth.clinical.labs import LabProgression, ProgressionRules, lab_progression, labs_by_test
from priorauth.clinical.therapy import (HistoryRules, LineCount, ProgressionMark, ResolvedRegimen, TreatmentHistory,
                                        assemble_history, count_lines, line_variants)
from priorauth.terminology import CnsMatch, Terminology

__all__ = ["Facts", "ProgressionEvent", "CnsFinding", "Treatment"]


@dataclass(frozen=True, slots=True)
class ProgressionEvent:
    """Documented or computed progression: an assessment, an imaging finding, or a lab series."""

    date: date
    kind: str              # "assessment" | "imaging" | "labs"
    description: str
    source: str
    confirmed: bool = True
    lab: LabProgression | None = None


@dataclass(slots=True)
class Treatment:
    """The treatment history read with one policy's rules: regimens, the progression between them, the lines."""

    history: TreatmentHistory
    marks: list[ProgressionMark]            # documented and computed progression, in date order
    lines: LineCount
    variants: list[LineCount]               # line counts under each meaning of an ambiguous acronym

    @property
    def last_regimen(self) -> ResolvedRegimen | None:
        return self.history.last_regimen


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

    def treatment(self, rules: HistoryRules, progression: ProgressionRules, responses=(), findings=()) -> Treatment:
        """The treatment history assembled with ``rules``, the progression between its regimens (documented, and
        computed from each regimen's labs with ``progression``), and the lines it makes. Computed once per rules."""
        key = (rules, progression, tuple(responses), tuple(findings))
        cache = self.__dict__.setdefault("_treatment", {})
        if key in cache:
            return cache[key]
        documented = [ProgressionMark(e.date, e.description, e.source)
                      for e in self.documented_progression(responses, findings)]
        hist = assemble_history(self.case.therapies, self.term, self.as_of, rules, documented)
        for p in hist.problems:
            if p not in self.problems:
                self.problems.append(p)
        marks = documented + list(hist.stop_progressions)
        regs = hist.anti_myeloma
        for r, nxt in zip(regs, regs[1:] + [None]):
            for lp in lab_progression(self.labs, r.start, progression):
                if lp.confirmed and lp.date > r.start and (nxt is None or lp.date <= nxt.start):
                    label, unit = self.analyte(lp.analyte)
                    marks.append(ProgressionMark(lp.date, lp.describe(label, display_unit(unit)), str(lp.labs[0].source)))
        marks.sort(key=lambda m: (m.date, m.description))
        lines = count_lines(hist, rules, marks)
        variants = [count_lines(v, rules, marks) for v in line_variants(hist, self.term)] if any(
            r.meanings for r in hist.regimens) else [lines]
        cache[key] = Treatment(hist, marks, lines, variants)
        return cache[key]

    def documented_progression(self, responses, findings) -> list["ProgressionEvent"]:
        """Progression documented by the clinician: disease assessments and imaging findings."""
        events = []
        for a in self.assessments:
            if a.response in responses:
                events.append(ProgressionEvent(a.date, "assessment", f"disease assessment: {a.response.replace('_', ' ')}",
                                               str(a.source)))
            if a.finding in findings:
                events.append(ProgressionEvent(a.date, "imaging", f"imaging: {a.finding.replace('_', ' ')}", str(a.source)))
        return events

    @cached_property
    def assessments(self):
        out = []
        for a in self.case.assessments or ():
            if a.date > self.as_of:
                self.problems.append(f"{a.source.path}: assessment dated {a.date}, after the evaluation date; not used")
            else:
                out.append(a)
        return out

    def progression_events(self, rules: ProgressionRules, since: date | None, responses, findings,
                           treatment: Treatment | None = None) -> list[ProgressionEvent]:
        """Documented progression (assessments, imaging, entries stopped for progression) and lab progression
        computed for a regimen begun on ``since`` (confirmed, pending and not-confirmed rises alike)."""
        key = (rules, since, tuple(responses), tuple(findings), id(treatment))
        cache = self.__dict__.setdefault("_progression", {})
        if key in cache:
            return cache[key]
        events = self.documented_progression(responses, findings)
        if treatment is not None:
            events += [ProgressionEvent(m.date, "stopped", m.description, m.source) for m in treatment.history.stop_progressions]
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
