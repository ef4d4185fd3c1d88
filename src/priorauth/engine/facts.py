"""Facts derived from a case once per evaluation and shared by the checks (computed on first use)."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import date
from functools import cached_property

from priorauth.case import Case, Lab, Source
from priorauth.clinical.units import display_unit
from priorauth.clinical.labs import LabProgression, ProgressionRules, lab_progression, labs_by_test
from priorauth.clinical.therapy import (HistoryRules, LineCount, ProgressionMark, ResolvedRegimen, TreatmentHistory,
                                        assemble_history, count_lines, line_variants)
from priorauth.terminology import CnsMatch, Terminology

__all__ = ["Facts", "ProgressionEvent", "CnsMention", "NegativeWorkup", "CnsFindings", "Treatment"]


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
        self._last_treatment: tuple | None = None
        self.results: dict = {}         # check results by (check, parameters), for checks the policy repeats

    @cached_property
    def labs(self) -> dict[str, list[Lab]]:
        out = labs_by_test(self.case.labs, self.as_of)
        for lab in self.case.labs or ():
            if lab.date > self.as_of:
                self.problems.append(f"{lab.source.path}: {lab.test} dated {lab.date}, after the evaluation date; not used")
        return out

    @cached_property
    def lab_days(self) -> list[date]:
        """Every date with a usable lab result, in order."""
        return sorted({lab.date for series in self.labs.values() for lab in series})

    def treatment(self, rules: HistoryRules, progression: ProgressionRules, responses=(), findings=()) -> Treatment:
        """The treatment history assembled with ``rules``, the progression between its regimens (documented, and
        computed from each regimen's labs with ``progression``), and the lines it makes. Computed once per rules."""
        last = self._last_treatment      # the checks of one policy ask with the same (interned) objects
        if last is not None and last[0] is rules and last[1] is progression and last[2] is responses \
                and last[3] is findings:
            return last[4]
        key = (id(rules), id(progression), id(responses), id(findings))
        cache = self.__dict__.setdefault("_treatment", {})
        if key in cache:
            return cache[key]
        documented = self.documented_progression(responses, findings)   # events serve as marks (date, description)
        hist = assemble_history(self.case.therapies, self.term, self.as_of, rules, documented)
        for p in hist.problems:
            if p not in self.problems:
                self.problems.append(p)
        marks = documented + list(hist.stop_progressions)
        regs = hist.anti_myeloma
        if len(regs) > 1:
            lab_days = self.lab_days
            for r, nxt in zip(regs, regs[1:]):
                # progression computed for a regimen matters here only when dated before the next one began
                k = bisect_right(lab_days, r.start)
                if k == len(lab_days) or lab_days[k] > nxt.start:
                    continue
                for lp in self.lab_progression(r.start, progression):
                    if lp.confirmed and lp.date > r.start and lp.date <= nxt.start:
                        label, unit = self.analyte(lp.analyte)
                        marks.append(ProgressionMark(lp.date, lp.describe(label, display_unit(unit)),
                                                     str(lp.labs[0].source)))
        marks.sort(key=lambda m: (m.date, m.description))
        lines = count_lines(hist, rules, marks)
        variants = [count_lines(v, rules, marks) for v in line_variants(hist, self.term)] if any(
            r.meanings for r in hist.regimens) else [lines]
        found = cache[key] = Treatment(hist, marks, lines, variants)
        self._last_treatment = (rules, progression, responses, findings, found)
        return found

    def lab_progression(self, start: date, rules: ProgressionRules) -> list[LabProgression]:
        """Progression computed from the labs for a regimen begun on ``start`` (once per start and rules)."""
        key = (start, id(rules))
        cache = self.__dict__.setdefault("_lab_progression", {})
        found = cache.get(key)
        if found is None:
            found = cache[key] = lab_progression(self.labs, start, rules)
        return found

    def documented_progression(self, responses, findings) -> list["ProgressionEvent"]:
        """Progression documented by the clinician: disease assessments and imaging findings (once per kinds)."""
        key = (tuple(responses), tuple(findings))
        cache = self.__dict__.setdefault("_documented", {})
        if key in cache:
            return list(cache[key])
        events = cache[key] = []
        for a in self.assessments:
            if a.response in responses:
                events.append(ProgressionEvent(a.date, "assessment", f"disease assessment: {a.response.replace('_', ' ')}",
                                               str(a.source)))
            if a.finding in findings:
                events.append(ProgressionEvent(a.date, "imaging", f"imaging: {a.finding.replace('_', ' ')}", str(a.source)))
        return list(events)

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
        key = (id(rules), since, tuple(responses), tuple(findings), id(treatment))
        cache = self.__dict__.setdefault("_progression", {})
        if key in cache:
            return cache[key]
        events = self.documented_progression(responses, findings)
        if treatment is not None:
            events += [ProgressionEvent(m.date, "stopped", m.description, m.source) for m in treatment.history.stop_progressions]
        if since is not None:
            for lp in self.lab_progression(since, rules):
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
            if not entry_findings:   # what was not read stays open, whatever was read before it
                uncertain.extend(CnsMention(m, where, m.quote, *_located(source)) for m in mentions
                                 if m.assertion == "unread")
            for m in mentions:
                if not m.finding and m.assertion not in ("uncertain", "unread"):
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
