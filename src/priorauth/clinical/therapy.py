"""Treatment history: exposures, regimens, the last regimen, and lines of therapy (IMWG).

Records come in two shapes and both give the same regimens: an entry naming several drugs (a regimen as the
clinic wrote it) and one entry per drug (a period, or one date per administration, as EHRs send it). The steps,
each a pure function of the record and the rules (docs/criteria.md, "Treatment history"):

1. :func:`assemble_history` resolves every name through the terminology, turns single-drug entries into
   **exposures** (administrations of one ingredient at most ``administration_gap_days`` apart are one exposure,
   across formulations, unless progression is documented between them), and assembles exposures into
   **regimens**: a regimen opens with the earliest exposure not yet placed and every drug starting within
   ``join_days`` of its start joins it; a drug added later to a regimen still going opens a new regimen of the
   added drug and the drugs that go on with it for more than ``join_days``; steroids join every regimen they
   overlap and never open, end, extend or split one. A regimen ends with the last dose of its non-steroid drugs.
2. :func:`count_lines` walks regimens and transplants in date order and draws line boundaries by the IMWG
   rules (Rajkumar 2011 and 2015), with the documented progression between regimens. Every boundary, and every
   entry that continues a line, carries its reason.

Unrecognized products are never read as absent: they are kept (with the name's hints) for the checks, which
make each criterion they could change ``unknown``. Every window is a policy parameter (:class:`HistoryRules`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from itertools import product
from typing import Iterable, Sequence

from priorauth.case import Procedure, Regimen, Source
from priorauth.terminology import Drug, Terminology

__all__ = ["HistoryRules", "ProgressionMark", "Exposure", "ResolvedRegimen", "Unrecognized", "Transplant",
           "TreatmentHistory", "Line", "LineCount", "assemble_history", "count_lines", "line_variants"]

#: the most alternative histories an ambiguous acronym may open before it counts as unrecognized for lines
MAX_VARIANTS = 16


@dataclass(frozen=True, slots=True)
class HistoryRules:
    join_days: int                     # a drug starting this soon after a regimen's start joins it
    administration_gap_days: int       # consecutive administrations of one drug this close: one exposure
    resume_gap_days: int               # same drugs resumed within this stop (no progression): same line
    hold_gap_days: int                 # ... within this stop when the stop was a hold (toxicity or hold)
    conditioning_days: int             # melphalan alone this close before a transplant: its conditioning
    post_transplant_days: int          # an unmarked regimen this soon after a transplant may continue the line
    tandem_days: int                   # a second transplant this soon after the first: a planned tandem
    single_agent_classes: frozenset[str]   # a single agent of these classes after a transplant is maintenance
    hold_reasons: frozenset[str] = frozenset({"toxicity", "hold"})


@dataclass(frozen=True, slots=True)
class ProgressionMark:
    """Documented or computed progression or relapse, as far as line boundaries and exposures need it."""

    date: date
    description: str
    source: str


@dataclass(frozen=True, slots=True)
class Exposure:
    """One anti-myeloma drug (or steroid, or other product) over a period: first to last dose."""

    drug: Drug
    start: date
    end: date | None                   # the last dose; None: ongoing (or unknown when ``end_unknown``)
    entries: tuple[int, ...]           # positions in the submitted history
    source: Source | None
    written: tuple[str, ...]           # the names as written (formulations included)
    stop_reason: str | None = None
    intent: str | None = None
    line: int | None = None
    trial: bool = False
    end_unknown: bool = False
    doses: int = 0                     # administrations merged into it (0 for a period entry)

    def active_on(self, day: date) -> bool:
        return self.start <= day and (self.end is None or self.end >= day)


@dataclass(frozen=True, slots=True)
class ResolvedRegimen:
    index: int                         # position of its first entry in the submitted history
    start: date
    end: date | None                   # last dose of a non-steroid drug; None: ongoing or unknown
    drugs: tuple[Drug, ...]            # recognized drugs, steroids included
    anti_myeloma: bool
    source: Source | None
    entries: tuple[int, ...] = ()
    written: str | None = None         # the acronym or drugs as one entry wrote them; None when assembled
    how: str = ""                      # how it was assembled, in words
    intent: str | None = None
    line: int | None = None            # the physician's line number, when its entries agree on one
    stop_reason: str | None = None
    trial: bool = False
    end_unknown: bool = False
    meanings: tuple[tuple[Drug, ...], ...] = ()   # an ambiguous acronym: each meaning's drugs
    core: frozenset[str] = frozenset()  # the anti-myeloma drugs (steroids, supportive drugs aside): what a line
                                        # change is judged on
    acronym: str | None = None         # the usual acronym of its drugs, when the terminology knows one

    @property
    def names(self) -> frozenset[str]:
        return frozenset(d.generic for d in self.drugs)

    @property
    def classes(self) -> frozenset[str]:
        return frozenset(c for d in self.drugs for c in d.classes)

    @property
    def ongoing(self) -> bool:
        return self.end is None and not self.end_unknown

    def label(self) -> str:
        drugs = ", ".join(d.generic for d in self.drugs)
        name = self.written if self.written is not None else self.acronym
        if name and drugs and name != drugs:
            return f"{name} ({drugs})"
        return name or drugs

    def span(self) -> str:
        if self.end_unknown:
            return f"from {self.start}, stopped on a date not given"
        if self.end is None:
            return f"from {self.start}, ongoing"
        return f"{self.start} to {self.end}" if self.end != self.start else f"on {self.start}"


@dataclass(frozen=True, slots=True)
class Unrecognized:
    """A product of the treatment history the terminology does not know (or an acronym with two meanings)."""

    index: int
    name: str
    start: date
    end: date | None
    source: Source | None
    hints: frozenset[str] = frozenset()
    reason: str = ""
    ambiguous: bool = False
    possible_classes: frozenset[str] = frozenset()   # ambiguous: classes some meaning has and another lacks
    end_unknown: bool = False

    def window_end(self, days: int) -> date | None:
        return None if self.end is None else self.end + timedelta(days=days)


@dataclass(frozen=True, slots=True)
class Transplant:
    index: int
    entry: Procedure

    @property
    def date(self) -> date:
        return self.entry.date

    @property
    def source(self) -> Source | None:
        return self.entry.source

    def label(self) -> str:
        return self.entry.procedure.replace("_", " ").replace("sct", "stem cell transplant")


@dataclass(slots=True)
class TreatmentHistory:
    submitted: bool
    regimens: list[ResolvedRegimen] = field(default_factory=list)    # every regimen, by start
    transplants: list[Transplant] = field(default_factory=list)
    others: list[Exposure] = field(default_factory=list)             # products that make no regimen (CD19 CAR-T, supportive)
    unrecognized: list[Unrecognized] = field(default_factory=list)
    stop_progressions: list[ProgressionMark] = field(default_factory=list)   # entries stopped for progression
    steps: list[str] = field(default_factory=list)                   # how entries became exposures and regimens
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

    def exposures(self, cls: str) -> list[tuple[ResolvedRegimen | Exposure, Drug]]:
        """Every recognized product of a class, in the regimen or exposure it was given in."""
        found: list[tuple[ResolvedRegimen | Exposure, Drug]] = []
        for r in self.regimens:
            for d in r.drugs:
                if d.has(cls) and (not r.meanings or all(any(m.has(cls) for m in meaning) for meaning in r.meanings)):
                    found.append((r, d))
        found += [(e, e.drug) for e in self.others if e.drug.has(cls)]
        return sorted(found, key=lambda x: x[0].start)

    def unsettled(self, cls: str | None = None) -> list[Unrecognized]:
        """Unrecognized entries that could hold a product of ``cls`` (any, when None)."""
        return [u for u in self.unrecognized if cls is None or not u.ambiguous or cls in u.possible_classes]

    @property
    def has_unrecognized(self) -> bool:
        return bool(self.unrecognized)


# ---- assembly --------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Item:
    """One recognized single-drug entry, before exposures are formed."""

    index: int
    entry: Regimen
    drug: Drug
    written: str


@dataclass(slots=True)
class _Written:
    """An entry naming several drugs (or an acronym): one regimen as written."""

    index: int
    entry: Regimen
    drugs: tuple[Drug, ...]
    text: str
    meanings: tuple[tuple[Drug, ...], ...] = ()


@dataclass(slots=True)
class _Open:
    """A regimen being assembled: its member exposures (non-steroid), and for a written one the entry."""

    start: date
    members: list[Exposure]
    index: int
    written: _Written | None = None
    carried: dict[int, date] = field(default_factory=dict)   # member position -> day it went on in a new regimen
    how: str = ""

    def going_on(self, day: date) -> list[int]:
        return [k for k, x in enumerate(self.members) if k not in self.carried and x.active_on(day)]


def _after(day: date | None, as_of: date) -> bool:
    return day is not None and day > as_of


def assemble_history(therapies: list | None, term: Terminology, as_of: date, rules: HistoryRules,
                     documented: Sequence[ProgressionMark] = ()) -> TreatmentHistory:
    """Resolve names, form exposures and assemble regimens. Entries dated after ``as_of`` are left out and
    reported; ``documented`` progression splits administrations of one drug into separate exposures."""
    if therapies is None:
        return TreatmentHistory(submitted=False)
    hist = TreatmentHistory(submitted=True)
    singles: list[_Item] = []
    written: list[_Written] = []
    for i, entry in enumerate(therapies):
        where = f"therapies[{i}]"
        if isinstance(entry, Procedure):
            if entry.date > as_of:
                hist.problems.append(f"{where}: {entry.procedure} dated {entry.date}, after the evaluation date; not used")
            else:
                hist.transplants.append(Transplant(i, entry))
            continue
        entry = _as_of(entry, as_of, where, hist)
        if entry is not None:
            _resolve_entry(i, entry, term, hist, singles, written)
    hist.transplants.sort(key=lambda t: (t.date, t.index))

    exposures = _exposures(singles, rules, documented, hist)
    steroids = [e for e in exposures if e.drug.has("steroid")]
    anti = [e for e in exposures if term.is_anti_myeloma(e.drug)]
    hist.others = [e for e in exposures if not e.drug.has("steroid") and not term.is_anti_myeloma(e.drug)]
    for e in hist.others:
        hist.steps.append(f"{_where(e.entries)} {e.drug.generic} {_span(e.start, e.end)}: not an anti-myeloma drug; "
                          "makes no regimen")
    anti_written = [w for w in written if _written_anti_myeloma(w, term)]
    opened = _assemble(anti, anti_written, rules, term)
    acronyms = _acronyms(term)
    regimens = [_finish(o, steroids, term, acronyms) for o in opened]
    regimens += [_finish(_Open(w.entry.start, [], w.index, w, how="one regimen as written"), steroids, term, acronyms)
                 for w in written if w not in anti_written]
    regimens.sort(key=lambda r: (r.start, r.index))
    hist.regimens = regimens
    for r in regimens:
        if r.written is None or r.how != "one regimen as written":
            hist.steps.append(f"{r.label()} {r.span()}: {r.how}")
    used = {id(s) for r in regimens if r.anti_myeloma for s in steroids if _overlaps(s, r)}
    for s in steroids:
        if id(s) not in used:
            hist.steps.append(f"{_where(s.entries)} {s.drug.generic} {_span(s.start, s.end)}: a steroid alone is not "
                              "an anti-myeloma regimen")
    for r in regimens:
        if r.stop_reason == "progression" and r.end is not None:
            hist.stop_progressions.append(ProgressionMark(r.end, f"{r.label()} stopped for progression", str(r.source)))
    for e in hist.others:
        if e.stop_reason == "progression" and e.end is not None:
            hist.stop_progressions.append(ProgressionMark(e.end, f"{e.drug.generic} stopped for progression", str(e.source)))
    hist.stop_progressions.sort(key=lambda m: m.date)
    return hist


def _where(entries: Sequence[int]) -> str:
    return "therapies[" + ", ".join(str(i) for i in entries) + "]"


def _as_of(entry: Regimen, as_of: date, where: str, hist: TreatmentHistory) -> Regimen | None:
    """The entry as known on ``as_of``: later doses dropped, a later end read as ongoing; None if it starts later."""
    if entry.start > as_of:
        hist.problems.append(f"{where}: {', '.join(entry.names)} started {entry.start}, after the evaluation date; "
                             "not used")
        return None
    if entry.doses is not None and _after(entry.end, as_of):
        kept = [d for d in entry.doses if d <= as_of]
        hist.problems.append(f"{where}.doses: {len(entry.doses) - len(kept)} dose(s) dated after the evaluation date; "
                             "not used")
        return entry.model_copy(update={"doses": kept, "start": kept[0], "end": kept[-1]})
    if _after(entry.end, as_of):
        hist.problems.append(f"{where}.end: {entry.end} is after the evaluation date; read as ongoing")
        return entry.model_copy(update={"end": None})
    return entry


def _resolve_entry(i: int, entry: Regimen, term: Terminology, hist: TreatmentHistory, singles: list[_Item],
                   written: list[_Written]) -> None:
    where = f"therapies[{i}]"
    names = entry.names
    field_name = "drugs" if entry.drugs is not None else ("regimen" if entry.regimen is not None else "drug")
    resolved = [term.resolve(n) for n in names]
    if len(names) == 1 and resolved[0].kind == "drug":
        singles.append(_Item(i, entry, resolved[0].drugs[0], names[0]))
        return
    drugs: list[Drug] = []
    meanings: tuple[tuple[Drug, ...], ...] = ()
    for k, (name, res) in enumerate(zip(names, resolved)):
        at = f"{where}.{field_name}" + (f"[{k}]" if entry.drugs is not None else "")
        if res.kind == "ambiguous":
            meanings = res.meanings
            hist.unrecognized.append(_ambiguous(i, name, entry, res))
            hist.problems.append(f"{at}: {res.reason or repr(name) + ' has more than one usual meaning'}; every "
                                 "criterion its meanings disagree on is left for the reviewer")
        elif not res.recognized:
            hist.unrecognized.append(Unrecognized(i, name, entry.start, entry.end, entry.source, res.hints,
                                                  res.reason or f"{name!r} is not a product priorauth recognizes",
                                                  end_unknown=entry.stopped_undated))
            hist.problems.append(f"{at}: {name!r} is not a product priorauth recognizes; every criterion it could "
                                 "change is left for the reviewer (`priorauth terminology lookup` shows why)")
        for d in res.drugs:
            if d not in drugs:
                drugs.append(d)
    if drugs or meanings:
        text = entry.regimen if entry.regimen is not None else ", ".join(names)
        written.append(_Written(i, entry, tuple(drugs), text, meanings))


def _ambiguous(i: int, name: str, entry: Regimen, res) -> Unrecognized:
    classes = [frozenset(c for d in m for c in d.classes) for m in res.meanings]
    possible = frozenset.union(*classes) - frozenset.intersection(*classes) if classes else frozenset()
    readings = "; ".join(" + ".join(d.generic for d in m) for m in res.meanings)
    return Unrecognized(i, name, entry.start, entry.end, entry.source, frozenset(),
                        res.reason or f"{name!r} has more than one usual meaning ({readings})", ambiguous=True,
                        possible_classes=possible, end_unknown=entry.stopped_undated)


def _written_anti_myeloma(w: _Written, term: Terminology) -> bool:
    if any(term.is_anti_myeloma(d) for d in w.drugs):
        return True
    return bool(w.meanings) and all(any(term.is_anti_myeloma(d) for d in m) for m in w.meanings)


def _exposures(items: list[_Item], rules: HistoryRules, documented: Sequence[ProgressionMark],
               hist: TreatmentHistory) -> list[Exposure]:
    """Period entries are one exposure each; administrations of one ingredient merge across entries and
    formulations while consecutive doses are close and no progression is documented between them."""
    out: list[Exposure] = []
    doses: dict[Drug, list[tuple[date, _Item]]] = {}
    for it in items:
        e = it.entry
        if e.doses is None:
            out.append(Exposure(it.drug, e.start, e.end, (it.index,), e.source, (it.written,), e.stop_reason, e.intent,
                                e.line, bool(e.trial), e.stopped_undated))
        else:
            doses.setdefault(it.drug, []).extend((d, it) for d in e.doses)
    marks = sorted(m.date for m in documented)
    for drug, given in doses.items():
        given.sort(key=lambda x: (x[0], x[1].index))
        run: list[tuple[date, _Item]] = [given[0]]
        for prev, nxt in zip(given, given[1:]):
            gap = (nxt[0] - prev[0]).days
            between = next((m for m in marks if prev[0] < m < nxt[0]), None)
            if gap > rules.administration_gap_days or between is not None:
                out.append(_dose_exposure(drug, run))
                why = (f"progression documented on {between}" if between is not None
                       else f"{gap} days after the previous dose, more than {rules.administration_gap_days}")
                hist.steps.append(f"{drug.generic} dose on {nxt[0]}: starts a new exposure ({why})")
                run = []
            run.append(nxt)
        out.append(_dose_exposure(drug, run))
    out.sort(key=lambda x: (x.start, x.entries[0]))
    for x in out:
        if x.doses > 1:
            forms = "" if len(x.written) == 1 else f" ({' then '.join(x.written)})"
            hist.steps.append(f"{x.drug.generic}: {x.doses} administrations {x.start} to {x.end}{forms} are one exposure")
    return out


def _dose_exposure(drug: Drug, run: list[tuple[date, _Item]]) -> Exposure:
    entries = tuple(dict.fromkeys(it.index for _, it in run))
    written = tuple(dict.fromkeys(it.written for _, it in run))
    intents = {it.entry.intent for _, it in run}
    lines = {it.entry.line for _, it in run}
    return Exposure(drug, run[0][0], run[-1][0], entries, run[0][1].entry.source, written, run[-1][1].entry.stop_reason,
                    intents.pop() if len(intents) == 1 else None, lines.pop() if len(lines) == 1 else None,
                    any(bool(it.entry.trial) for _, it in run), False, len(run))


def _written_members(w: _Written, term: Terminology) -> list[Exposure]:
    """A written regimen's anti-myeloma drugs as exposures over its dates (so an added drug can split it)."""
    e = w.entry
    return [Exposure(d, e.start, e.end, (w.index,), e.source, (w.text,), e.stop_reason, e.intent, e.line,
                     bool(e.trial), e.stopped_undated) for d in w.drugs if term.is_anti_myeloma(d)]


def _assemble(anti: list[Exposure], written: list[_Written], rules: HistoryRules, term: Terminology) -> list[_Open]:
    queue: list[tuple[date, int, Exposure | _Written]] = [(e.start, e.entries[0], e) for e in anti]
    queue += [(w.entry.start, w.index, w) for w in written]
    queue.sort(key=lambda q: (q[0], q[1], isinstance(q[2], Exposure)))
    opened: list[_Open] = []
    for start, index, item in queue:
        if isinstance(item, _Written):
            opened.append(_Open(start, _written_members(item, term), index, item, how="one regimen as written"))
            continue
        e = item
        cur = opened[-1] if opened else None
        if cur is not None and (e.start - cur.start).days <= rules.join_days:
            cur.members.append(e)
            if cur.written is not None and e.drug not in cur.written.drugs:
                cur.how += f", with {e.drug.generic} entered on its own from {e.start}"
            continue
        going = next((o for o in reversed(opened) if o.going_on(e.start)), None)
        if going is None:
            opened.append(_Open(e.start, [e], e.entries[0]))
            continue
        active = going.going_on(e.start)
        if any(going.members[k].drug == e.drug for k in active):
            going.members.append(e)          # the same drug goes on (another entry or formulation)
            continue
        carried = [k for k in active if going.members[k].end is None and not going.members[k].end_unknown
                   or going.members[k].end is not None and (going.members[k].end - e.start).days > rules.join_days]
        for k in carried:
            going.carried[k] = e.start
        on = ", ".join(dict.fromkeys(going.members[k].drug.generic for k in carried))
        how = f"{e.drug.generic} added on {e.start} to a regimen still going" + (f", with {on} going on" if on else "")
        opened.append(_Open(e.start, [e] + [going.members[k] for k in carried], e.entries[0], how=how))
    for o in opened:
        if not o.how:
            n = len({x.drug for x in o.members})
            o.how = (f"{n} drugs entered one by one, each starting within {rules.join_days} days of {o.start}"
                     if n > 1 else "a single drug")
    return opened


def _finish(o: _Open, steroids: list[Exposure], term: Terminology,
            acronyms: dict[frozenset[str], str]) -> ResolvedRegimen:
    ends: list[date] = []
    ongoing = unknown = False
    members = o.members
    if o.written is not None and not members:     # a written regimen without anti-myeloma drugs
        members = [Exposure(d, o.start, o.written.entry.end, (o.index,), o.written.entry.source, (o.written.text,),
                            end_unknown=o.written.entry.stopped_undated) for d in o.written.drugs]
    for k, x in enumerate(members):
        if k in o.carried:
            ends.append(o.carried[k] if x.end is None else min(o.carried[k], x.end))
        elif x.end_unknown:
            unknown = True
        elif x.end is None:
            ongoing = True
        else:
            ends.append(x.end)
    end = None if ongoing or unknown or not ends else max(ends)
    end_unknown = unknown and not ongoing
    drugs = tuple(dict.fromkeys((o.written.drugs if o.written else ()) + tuple(x.drug for x in members)))
    r_end = end if end is not None else date.max
    with_steroids = [s for s in steroids if s.start <= r_end and o.start <= (s.end or date.max)]
    drugs = tuple(dict.fromkeys(drugs + tuple(s.drug for s in with_steroids)))
    entries = tuple(sorted({o.index} | {i for x in members for i in x.entries} | {i for s in with_steroids
                                                                                 for i in s.entries}))
    first = min(members, key=lambda x: (x.start, x.entries[0])) if members else None
    source = o.written.entry.source if o.written is not None else first.source
    last = max(members, key=lambda x: (x.end or date.max, x.entries[0])) if members else None
    w = o.written
    intents = {x.intent for x in members} if w is None else {w.entry.intent}
    lines = {x.line for x in members} if w is None else {w.entry.line}
    return ResolvedRegimen(
        index=o.index, start=o.start, end=end, drugs=drugs,
        anti_myeloma=any(term.is_anti_myeloma(d) for d in drugs) or (w is not None and _written_anti_myeloma(w, term)),
        source=source, entries=entries, written=w.text if w is not None else None, how=o.how,
        intent=intents.pop() if len(intents) == 1 else None, line=lines.pop() if len(lines) == 1 else None,
        stop_reason=w.entry.stop_reason if w is not None else (last.stop_reason if last else None),
        trial=any(x.trial for x in members), end_unknown=end_unknown,
        meanings=w.meanings if w is not None and len(w.meanings) > 1 else (),
        core=frozenset(d.generic for d in drugs if term.is_anti_myeloma(d)),
        acronym=acronyms.get(frozenset(d.generic for d in drugs)),
    )


def _overlaps(s: Exposure, r: ResolvedRegimen) -> bool:
    r_end = r.end if r.end is not None else date.max
    s_end = s.end if s.end is not None else date.max
    return s.start <= r_end and r.start <= s_end


def _acronyms(term: Terminology) -> dict[frozenset[str], str]:
    out: dict[frozenset[str], str] = {}
    for name in getattr(term, "regimen_names", ()):
        drugs = term.regimen(name)
        if drugs:
            key = frozenset(d.generic for d in (term.drug(n) for n in drugs) if d is not None)
            out.setdefault(key, name)
    return out


def _span(start: date, end: date | None) -> str:
    return f"from {start}" + (f" to {end}" if end is not None and end != start else (", ongoing" if end is None else ""))


# ---- lines of therapy ------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Line:
    number: int
    regimens: list[ResolvedRegimen] = field(default_factory=list)
    transplants: list[Transplant] = field(default_factory=list)
    why: str = ""                      # why the line began

    @property
    def names(self) -> frozenset[str]:
        return frozenset(n for r in self.regimens for n in r.names)

    @property
    def core(self) -> frozenset[str]:
        return frozenset(n for r in self.regimens for n in r.core)

    @property
    def classes(self) -> frozenset[str]:
        return frozenset(c for r in self.regimens for c in r.classes)

    @property
    def start(self) -> date:
        return min([r.start for r in self.regimens] + [t.date for t in self.transplants])

    def describe(self) -> str:
        parts = [f"{r.label()} from {r.start}" for r in self.regimens] + [f"{t.label()} on {t.date}" for t in self.transplants]
        order = sorted(zip([r.start for r in self.regimens] + [t.date for t in self.transplants], parts))
        return f"line {self.number}: " + ", then ".join(p for _, p in order) + (f" ({self.why})" if self.why else "")


@dataclass(slots=True)
class LineCount:
    count: int
    method: str                       # "line numbers" | "IMWG rules"
    lines: list[Line]
    steps: list[str]                  # how each regimen and transplant was placed, for the reviewer
    classes: frozenset[str]

    def describe(self) -> str:
        return "; ".join(ln.describe() for ln in self.lines)


def _fmt_core(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def count_lines(hist: TreatmentHistory, rules: HistoryRules, marks: Sequence[ProgressionMark] = ()) -> LineCount:
    """Lines of therapy from the regimens and transplants, with ``marks``: documented or computed progression."""
    regs = hist.anti_myeloma
    classes = frozenset(c for r in regs for c in r.classes)
    if regs and all(r.line is not None for r in regs):
        by_number: dict[int, Line] = {}
        for r in regs:
            by_number.setdefault(r.line, Line(r.line, why="line number as recorded")).regimens.append(r)
        steps = [f"{r.label()} from {r.start}: line {r.line} as recorded" for r in regs]
        ordered = [by_number[k] for k in sorted(by_number)]
        return LineCount(len(by_number), "line numbers", ordered, steps, classes)

    steps: list[str] = []
    partial = [r for r in regs if r.line is not None]
    if partial:
        steps.append(f"line numbers given on {len(partial)} of {len(regs)} regimens: reported, not used")
    marks = sorted(marks, key=lambda m: m.date)
    # on the same day a transplant comes first: a regimen started on the transplant day follows it
    events: list[tuple[date, int, int, object]] = [(r.start, 1, r.index, r) for r in regs] + [
        (t.date, 0, t.index, t) for t in hist.transplants]
    events.sort(key=lambda e: e[:3])
    lines: list[Line] = []
    current: Line | None = None
    prev: ResolvedRegimen | None = None
    prev_tx: Transplant | None = None
    for day, _, _, ev in events:
        since = max([x for x in (prev.start if prev else None, prev_tx.date if prev_tx else None) if x is not None],
                    default=None)
        progression = next((m for m in marks if since is not None and since < m.date <= day), None)
        if isinstance(ev, Transplant):
            why = _transplant_joins(ev, current, prev, prev_tx, progression, rules)
            if why is None or current is None:
                reason = _transplant_starts(ev, current, progression, prev_tx, rules)
                current = Line(len(lines) + 1, why=reason)
                lines.append(current)
                steps.append(f"{ev.label()} on {ev.date}: starts line {current.number} ({reason})")
            else:
                steps.append(f"{ev.label()} on {ev.date}: part of line {current.number} ({why})")
            current.transplants.append(ev)
            prev_tx = ev
            continue
        r = ev
        if current is None:
            current = Line(1, why="first regimen")
            lines.append(current)
            steps.append(f"{r.label()} from {r.start}: starts line 1")
        else:
            why, boundary = _regimen_place(r, current, prev, progression, hist, rules)
            if boundary:
                current = Line(len(lines) + 1, why=why)
                lines.append(current)
                steps.append(f"{r.label()} from {r.start}: starts line {current.number} ({why})")
            else:
                steps.append(f"{r.label()} from {r.start}: continues line {current.number} ({why})")
        current.regimens.append(r)
        prev = r
    return LineCount(len(lines), "IMWG rules", lines, steps, classes)


def _transplant_joins(t: Transplant, line: Line | None, prev: ResolvedRegimen | None, prev_tx: Transplant | None,
                      progression: ProgressionMark | None, rules: HistoryRules) -> str | None:
    if line is None or progression is not None:
        return None
    if prev_tx is not None and prev_tx in line.transplants and (prev is None or prev.start <= prev_tx.date):
        gap = (t.date - prev_tx.date).days
        if gap <= rules.tandem_days:
            return f"a planned tandem, {gap} days after the transplant on {prev_tx.date}"
        return None
    return "the transplant joins the line of the regimen before it"


def _transplant_starts(t: Transplant, line: Line | None, progression: ProgressionMark | None,
                       prev_tx: Transplant | None, rules: HistoryRules) -> str:
    if line is None:
        return "no regimen before it"
    if progression is not None:
        return f"after progression on {progression.date} with no reinduction before it"
    gap = (t.date - prev_tx.date).days if prev_tx is not None else 0
    return f"{gap} days after the transplant on {prev_tx.date}: not a planned tandem (more than {rules.tandem_days} days)"


def _regimen_place(r: ResolvedRegimen, line: Line, prev: ResolvedRegimen | None, progression: ProgressionMark | None,
                   hist: TreatmentHistory, rules: HistoryRules) -> tuple[str, bool]:
    """(why, starts a new line) for regimen ``r`` after the current line."""
    if progression is not None:
        if prev is not None and r.core and r.core <= prev.core:
            what = "retreatment" if r.core == prev.core else "fewer of the same drugs"
        else:
            what = "new agents"
        return f"{what} after progression on {progression.date}", True
    if r.intent in ("consolidation", "maintenance"):
        return f"{r.intent} continuing the line", False
    if r.core == frozenset({"melphalan"}):
        for t in hist.transplants:
            if 0 <= (t.date - r.start).days <= rules.conditioning_days:
                return f"conditioning for the transplant on {t.date}", False
    if line.transplants:
        last_tx = line.transplants[-1].date
        since = (r.start - last_tx).days
        if 0 <= since <= rules.post_transplant_days:
            if r.core and r.core <= line.core:
                return f"{since} days after the transplant, with drugs of the same line", False
            single = [d for d in r.drugs if d.generic in r.core]
            if len(r.core) == 1 and any(d.classes & rules.single_agent_classes for d in single):
                return f"{since} days after the transplant, a single agent (maintenance)", False
    if prev is None:
        return "first regimen", True
    added = r.core - prev.core
    if added:
        without = prev.core - r.core
        return f"adds {_fmt_core(added)}" + (f", without {_fmt_core(without)}" if without else ""), True
    if prev.ongoing or prev.end_unknown:
        gap = 0
    else:
        gap = (r.start - prev.end).days
    allowed = rules.hold_gap_days if prev.stop_reason in rules.hold_reasons else rules.resume_gap_days
    kind = f"a {prev.stop_reason} hold" if prev.stop_reason in rules.hold_reasons else "a stop"
    if gap <= allowed:
        if r.core == prev.core:
            what = "same drugs" if gap <= 0 else f"same drugs resumed after {kind} of {gap} days"
            return f"{what}: a dose, schedule or formulation change", False
        return f"the drugs of the previous regimen with {_fmt_core(prev.core - r.core)} stopped", False
    return f"retreatment after {kind} of {gap} days (more than {allowed})", True


def line_variants(hist: TreatmentHistory, term: Terminology) -> list[TreatmentHistory]:
    """The histories an ambiguous acronym allows (one per combination of meanings, at most ``MAX_VARIANTS``);
    the history itself when nothing is ambiguous."""
    amb = [k for k, r in enumerate(hist.regimens) if r.meanings]
    if not amb:
        return [hist]
    combos = list(product(*(hist.regimens[k].meanings for k in amb)))
    if len(combos) > MAX_VARIANTS:
        return [hist]
    out = []
    for combo in combos:
        regs = list(hist.regimens)
        for k, meaning in zip(amb, combo):
            r = regs[k]
            drugs = tuple(dict.fromkeys(tuple(meaning) + r.drugs))
            regs[k] = replace(r, drugs=drugs, meanings=(),
                              core=frozenset(d.generic for d in drugs if term.is_anti_myeloma(d)))
        out.append(replace(hist, regimens=regs))
    return out
