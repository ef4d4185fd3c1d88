"""Treatment history: regimens resolved to drugs and classes, the last regimen, and lines of therapy (IMWG).

Lines of therapy follow the IMWG consensus (Rajkumar et al., Blood 2011 and 2015) as read in
docs/policy-interpretation: explicit line numbers decide when every anti-myeloma entry has one; otherwise a
planned sequence (induction, transplant with its conditioning, consolidation, maintenance) is one line, a
dose or schedule change or a stopped drug is not a new line, and a new or swapped drug or a retreatment after
a gap is. The windows (30, 14 and 180 days) are parameters from the policy data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from priorauth.case import Procedure, Regimen
from priorauth.terminology import Drug, Terminology

__all__ = ["ResolvedRegimen", "Transplant", "TreatmentHistory", "Line", "LineCount", "LineRules",
           "resolve_history", "count_lines"]


@dataclass(frozen=True, slots=True)
class ResolvedRegimen:
    index: int                      # position in the submitted history
    entry: Regimen
    drugs: tuple[Drug, ...]         # recognized drugs
    unrecognized: tuple[str, ...]
    names: frozenset[str]           # generic names of the recognized drugs
    classes: frozenset[str]
    anti_myeloma: bool
    core: frozenset[str]            # generic names without steroids

    @property
    def start(self) -> date:
        return self.entry.start

    @property
    def end(self) -> date | None:
        return self.entry.end

    def label(self) -> str:
        if self.entry.regimen is not None:
            return f"{self.entry.regimen} ({', '.join(d.generic for d in self.drugs)})" if self.drugs else self.entry.regimen
        # recognized drugs by their generic names (a code such as J9227 reads as isatuximab), then the rest as written
        return ", ".join([d.generic for d in self.drugs] + list(self.unrecognized))


@dataclass(frozen=True, slots=True)
class Transplant:
    index: int
    entry: Procedure

    @property
    def date(self) -> date:
        return self.entry.date


@dataclass(slots=True)
class TreatmentHistory:
    submitted: bool
    regimens: list[ResolvedRegimen] = field(default_factory=list)       # every resolved regimen, by start
    transplants: list[Transplant] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def anti_myeloma(self) -> list[ResolvedRegimen]:
        return [r for r in self.regimens if r.anti_myeloma]

    @property
    def last_regimen(self) -> ResolvedRegimen | None:
        """The anti-myeloma regimen with the latest start (the later entry on a tie)."""
        best = None
        for r in self.regimens:
            if r.anti_myeloma and (best is None or (r.start, r.index) >= (best.start, best.index)):
                best = r
        return best

    def exposures(self, cls: str) -> list[tuple[ResolvedRegimen, Drug]]:
        return [(r, d) for r in self.regimens for d in r.drugs if d.has(cls)]

    @property
    def has_unrecognized(self) -> bool:
        return any(not r.drugs for r in self.regimens)


def resolve_history(therapies: list | None, term: Terminology, as_of: date) -> TreatmentHistory:
    """Resolve drug names and acronyms; entries dated after ``as_of`` are left out and reported."""
    if therapies is None:
        return TreatmentHistory(submitted=False)
    hist = TreatmentHistory(submitted=True)
    for i, entry in enumerate(therapies):
        where = f"therapies[{i}]"
        if isinstance(entry, Procedure):
            if entry.date > as_of:
                hist.problems.append(f"{where}: {entry.procedure} dated {entry.date}, after the evaluation date; not used")
                continue
            hist.transplants.append(Transplant(i, entry))
            continue
        if entry.start > as_of:
            hist.problems.append(f"{where}: regimen started {entry.start}, after the evaluation date; not used")
            continue
        if entry.regimen is not None:
            names = term.regimen(entry.regimen)
            if names is None:
                hist.problems.append(f"{where}.regimen: {entry.regimen!r} is not a regimen acronym priorauth knows; "
                                     "the reviewer should look it up (not counted)")
                hist.regimens.append(ResolvedRegimen(i, entry, (), (entry.regimen,), frozenset(), frozenset(), False, frozenset()))
                continue
            raw = list(names)
        else:
            raw = [str(d) for d in entry.drugs or ()]
        drugs, unknown = [], []
        for name in raw:
            d = term.drug(name)
            if d is None:
                unknown.append(name)
            elif d not in drugs:
                drugs.append(d)
        for name in unknown:
            hist.problems.append(f"{where}.drugs: {name!r} is not a drug priorauth recognizes; the reviewer should look it up"
                                 + (" (entry not counted)" if not drugs else ""))
        classes = frozenset(c for d in drugs for c in d.classes)
        hist.regimens.append(ResolvedRegimen(
            index=i, entry=entry, drugs=tuple(drugs), unrecognized=tuple(unknown),
            names=frozenset(d.generic for d in drugs), classes=classes,
            anti_myeloma=any(term.is_anti_myeloma(d) for d in drugs),
            core=frozenset(d.generic for d in drugs if not d.has("steroid")),
        ))
    hist.regimens.sort(key=lambda r: (r.start, r.index))
    hist.transplants.sort(key=lambda t: (t.date, t.index))
    return hist


@dataclass(frozen=True, slots=True)
class LineRules:
    same_regimen_gap_days: int       # same drugs within this gap: one regimen
    conditioning_days: int           # melphalan alone this close before a transplant: its conditioning
    post_transplant_days: int        # an unmarked regimen this soon after a transplant may continue the line
    single_agent_classes: frozenset[str]   # a single agent of these classes after a transplant is maintenance


@dataclass(slots=True)
class Line:
    number: int
    regimens: list[ResolvedRegimen] = field(default_factory=list)
    transplants: list[Transplant] = field(default_factory=list)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(n for r in self.regimens for n in r.names)

    @property
    def core(self) -> frozenset[str]:
        return frozenset(n for r in self.regimens for n in r.core)

    @property
    def classes(self) -> frozenset[str]:
        return frozenset(c for r in self.regimens for c in r.classes)


@dataclass(slots=True)
class LineCount:
    count: int
    method: str                       # "line numbers" | "IMWG rules"
    lines: list[Line]
    steps: list[str]                  # how each entry was placed, for the reviewer
    classes: frozenset[str]


def count_lines(hist: TreatmentHistory, rules: LineRules) -> LineCount:
    regs = hist.anti_myeloma
    classes = frozenset(c for r in regs for c in r.classes)
    if regs and all(r.entry.line is not None for r in regs):
        by_number: dict[int, Line] = {}
        for r in regs:
            by_number.setdefault(r.entry.line, Line(r.entry.line)).regimens.append(r)
        steps = [f"therapies[{r.index}] {r.label()}: line {r.entry.line} as stated" for r in regs]
        return LineCount(len(by_number), "line numbers", [by_number[k] for k in sorted(by_number)], steps, classes)

    steps: list[str] = []
    partial = [r for r in regs if r.entry.line is not None]
    if partial:
        steps.append(f"line numbers given on {len(partial)} of {len(regs)} entries: reported, not used")
    # on the same day a transplant comes first: a regimen started on the transplant day follows it
    events: list[tuple[date, int, object]] = [(r.start, 1, r) for r in regs] + [(t.date, 0, t) for t in hist.transplants]
    events.sort(key=lambda e: (e[0], e[1], e[2].index))
    lines: list[Line] = []
    current: Line | None = None
    previous: ResolvedRegimen | None = None
    for _, _, ev in events:
        if isinstance(ev, Transplant):
            if current is None:
                current = Line(len(lines) + 1)
                lines.append(current)
                steps.append(f"therapies[{ev.index}] {ev.entry.procedure}: starts line {current.number} (no regimen before it)")
            else:
                steps.append(f"therapies[{ev.index}] {ev.entry.procedure} on {ev.date}: part of line {current.number}")
            current.transplants.append(ev)
            continue
        r = ev
        why = _joins(r, current, previous, hist, rules) if current is not None else None
        if why is None:
            current = Line(len(lines) + 1)
            lines.append(current)
            steps.append(f"therapies[{r.index}] {r.label()} from {r.start}: starts line {current.number}")
        else:
            steps.append(f"therapies[{r.index}] {r.label()} from {r.start}: continues line {current.number} ({why})")
        current.regimens.append(r)
        previous = r
    return LineCount(len(lines), "IMWG rules", lines, steps, classes)


def _joins(r: ResolvedRegimen, line: Line, prev: ResolvedRegimen | None, hist: TreatmentHistory,
           rules: LineRules) -> str | None:
    """Why regimen ``r`` continues ``line`` rather than starting a new one; None when it starts one."""
    if r.entry.intent in ("consolidation", "maintenance"):
        return r.entry.intent
    if r.core == frozenset({"melphalan"}):
        for t in hist.transplants:
            if 0 <= (t.date - r.start).days <= rules.conditioning_days:
                return f"conditioning for the transplant on {t.date}"
    if prev is not None:
        gap = (r.start - prev.end).days if prev.end is not None else 0
        if gap <= rules.same_regimen_gap_days:
            if r.names == prev.names:
                return f"same drugs {max(gap, 0)} days after the previous entry: a dose or schedule change"
            if r.names < prev.names:
                return f"drugs of the previous entry with {', '.join(sorted(prev.names - r.names))} stopped"
    if line.transplants:
        last_tx = line.transplants[-1].date
        since = (r.start - last_tx).days
        if 0 <= since <= rules.post_transplant_days:
            if r.core and r.core <= line.core:
                return f"{since} days after the transplant, with drugs of the same line"
            if len(r.core) == 1 and any(d.classes & rules.single_agent_classes for d in r.drugs if not d.has("steroid")):
                return f"{since} days after the transplant, a single agent (maintenance)"
    return None
