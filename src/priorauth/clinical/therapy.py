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
from functools import lru_cache
from datetime import date, timedelta
from bisect import bisect_right
from itertools import product
from operator import itemgetter
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


@dataclass(slots=True, eq=False)
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


@dataclass(slots=True, eq=False)
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
    _label: str | None = field(default=None, repr=False)      # computed on first use
    _names: frozenset[str] | None = field(default=None, repr=False)
    _classes: frozenset[str] | None = field(default=None, repr=False)

    @property
    def names(self) -> frozenset[str]:
        if self._names is None:
            self._names = frozenset(d.generic for d in self.drugs)
        return self._names

    @property
    def classes(self) -> frozenset[str]:
        if self._classes is None:
            self._classes = frozenset().union(*(d.classes for d in self.drugs))
        return self._classes

    @property
    def ongoing(self) -> bool:
        return self.end is None and not self.end_unknown

    def label(self) -> str:
        if self._label is None:
            drugs = ", ".join(d.generic for d in self.drugs)
            name = self.written if self.written is not None else self.acronym
            self._label = f"{name} ({drugs})" if name and drugs and name != drugs else (name or drugs)
        return self._label

    def span(self) -> str:
        if self.end_unknown:
            return f"from {self.start}, stopped on a date not given"
        if self.end is None:
            return f"from {self.start}, ongoing"
        return f"{self.start} to {self.end}" if self.end != self.start else f"on {self.start}"


@dataclass(slots=True, eq=False)
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
        return _PROCEDURE_LABEL.get(self.entry.procedure) or self.entry.procedure.replace("_", " ")


_PROCEDURE_LABEL = {"autologous_sct": "autologous stem cell transplant", "allogeneic_sct": "allogeneic stem cell transplant"}


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
    _exposures: dict = field(default_factory=dict, repr=False)        # class -> exposures, found on first use

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
        cache = self._exposures
        if cls not in cache:
            cache[cls] = self._find(cls)
        return cache[cls]

    def _find(self, cls: str) -> list[tuple[ResolvedRegimen | Exposure, Drug]]:
        found: list[tuple[ResolvedRegimen | Exposure, Drug]] = []
        for r in self.regimens:
            if cls not in r.classes:
                continue
            for d in r.drugs:
                if d.has(cls) and (not r.meanings or all(any(m.has(cls) for m in meaning) for meaning in r.meanings)):
                    found.append((r, d))
        if self.others:
            found += [(e, e.drug) for e in self.others if e.drug.has(cls)]
            found.sort(key=lambda x: x[0].start)
        return found

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
    text: str
    reading: _Reading           # how its names read: its drugs, meanings, anti-myeloma core

    @property
    def drugs(self) -> tuple[Drug, ...]:
        return self.reading.drugs

    @property
    def meanings(self) -> tuple[tuple[Drug, ...], ...]:
        return self.reading.meanings

    @property
    def anti_myeloma(self) -> bool:
        return self.reading.anti_myeloma

    @property
    def core(self) -> frozenset[str]:
        return self.reading.core


@dataclass(slots=True)
class _Open:
    """A regimen being assembled: its member exposures (non-steroid), and for a written one the entry."""

    start: date
    members: list[Exposure]
    index: int
    written: _Written | None = None
    carried: dict[int, date] = field(default_factory=dict)   # member position -> day it went on in a new regimen
    how: str = ""

    def going_on(self, day: date, term: Terminology) -> list[int]:
        if not self.members and self.written is not None:
            e = self.written.entry
            if not (e.start <= day and (e.end is None or e.end >= day)):
                return []
            self.members = _written_members(self.written, term)   # made only when a later drug may split it
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
        if isinstance(entry, Procedure):
            if entry.date > as_of:
                hist.problems.append(f"therapies[{i}]: {entry.procedure} dated {entry.date}, after the evaluation "
                                     "date; not used")
            else:
                hist.transplants.append(Transplant(i, entry))
            continue
        if entry.start > as_of or (entry.end is not None and entry.end > as_of):
            entry = _as_of(entry, as_of, f"therapies[{i}]", hist)
            if entry is None:
                continue
        _resolve_entry(i, entry, term, hist, singles, written)
    if len(hist.transplants) > 1:
        hist.transplants.sort(key=lambda t: (t.date, t.index))

    steroids: list[Exposure] = []
    anti: list[Exposure] = []
    if singles:
        for e in _exposures(singles, rules, documented, hist):
            if e.drug.has("steroid"):
                steroids.append(e)
            elif term.is_anti_myeloma(e.drug):
                anti.append(e)
            else:
                hist.others.append(e)
                hist.steps.append(f"{_where(e.entries)} {e.drug.generic} {_span(e.start, e.end)}: not an "
                                  "anti-myeloma drug; makes no regimen")
    anti_written = [w for w in written if w.anti_myeloma]
    if anti:
        opened = _assemble(anti, anti_written, rules, term)
    else:   # regimens written as such only: nothing to assemble or split
        opened = [_Open(w.entry.start, [], w.index, w, how=_AS_WRITTEN) for w in anti_written]
    acronyms = _acronyms(term)
    regimens = [_finish(o, steroids, term, acronyms) for o in opened]
    if len(anti_written) < len(written):
        regimens += [_finish(_Open(w.entry.start, [], w.index, w, how=_AS_WRITTEN), steroids, term, acronyms)
                     for w in written if not w.anti_myeloma]
    regimens.sort(key=lambda r: (r.start, r.index))
    hist.regimens = regimens
    for r in regimens:
        if r.how is not _AS_WRITTEN:
            hist.steps.append(f"{r.label()} {r.span()}: {r.how}")
        if r.stop_reason == "progression" and r.end is not None:
            hist.stop_progressions.append(ProgressionMark(r.end, f"{r.label()} stopped for progression", str(r.source)))
    if steroids:
        used = {id(x) for r in regimens if r.anti_myeloma for x in steroids if _overlap(x.start, x.end, r.start, r.end)}
        for x in steroids:
            if id(x) not in used:
                hist.steps.append(f"{_where(x.entries)} {x.drug.generic} {_span(x.start, x.end)}: a steroid alone is "
                                  "not an anti-myeloma regimen")
    for e in hist.others:
        if e.stop_reason == "progression" and e.end is not None:
            hist.stop_progressions.append(ProgressionMark(e.end, f"{e.drug.generic} stopped for progression", str(e.source)))
    if len(hist.stop_progressions) > 1:
        hist.stop_progressions.sort(key=lambda m: m.date)
    return hist


_AS_WRITTEN = "one regimen as written"


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


@dataclass(frozen=True, slots=True)
class _Reading:
    """How the names of one entry read in a terminology (the same names read the same in every entry)."""

    single: Drug | None                    # one name, one drug
    drugs: tuple[Drug, ...] = ()
    meanings: tuple[tuple[Drug, ...], ...] = ()
    core: frozenset[str] = frozenset()
    anti_myeloma: bool = False
    unread: tuple[tuple[int, object], ...] = ()     # (position, resolution) of each name not read as a product
    names: frozenset[str] = frozenset()
    classes: frozenset[str] = frozenset()


_READ_MEMO_CHARS = 512      # entries naming more than this are read every time, never kept (the memo stays < 3 MB)


def _read(term: Terminology, names: tuple[str, ...]) -> _Reading:
    """How an entry's names read (drugs, meanings, unread names); memoized for entries of ordinary length."""
    if sum(len(n) for n in names) > _READ_MEMO_CHARS:
        return _read_names(term, names)
    return _read_memo(term, names)


@lru_cache(maxsize=4096)
def _read_memo(term: Terminology, names: tuple[str, ...]) -> _Reading:
    return _read_names(term, names)


def _read_names(term: Terminology, names: tuple[str, ...]) -> _Reading:
    resolve = term.resolve
    if len(names) == 1:
        res = resolve(names[0])
        if res.kind == "drug":
            return _Reading(res.drugs[0])
    drugs: list[Drug] = []
    meanings: tuple[tuple[Drug, ...], ...] = ()
    unread = []
    for k, name in enumerate(names):
        res = resolve(name)
        if res.kind == "ambiguous" and len(names) > 1:   # the drugs written beside an acronym may decide it
            res = resolve(name, [n for j, n in enumerate(names) if j != k])
        if res.kind != "drug" and res.kind != "regimen":
            unread.append((k, res))
            if res.kind == "ambiguous":
                meanings = res.meanings
        for d in res.drugs:
            if d not in drugs:
                drugs.append(d)
    core = frozenset(d.generic for d in drugs if term.is_anti_myeloma(d))
    anti = bool(core) or (len(meanings) > 1 and all(any(term.is_anti_myeloma(d) for d in m) for m in meanings))
    return _Reading(None, tuple(drugs), meanings, core, anti, tuple(unread), frozenset(d.generic for d in drugs),
                    frozenset().union(*(d.classes for d in drugs)))


def _resolve_entry(i: int, entry: Regimen, term: Terminology, hist: TreatmentHistory, singles: list[_Item],
                   written: list[_Written]) -> None:
    names = entry.name_key
    reading = _read(term, names)
    if reading.single is not None:
        singles.append(_Item(i, entry, reading.single, names[0]))
        return
    for k, res in reading.unread:
        _unrecognized_name(i, k, names[k], entry, res, hist)
    if reading.drugs or reading.meanings:
        text = entry.regimen if entry.regimen is not None else ", ".join(names)
        written.append(_Written(i, entry, text, reading))


def _unrecognized_name(i: int, k: int, name: str, entry: Regimen, res, hist: TreatmentHistory) -> None:
    field_name = "drugs" if entry.drugs is not None else ("regimen" if entry.regimen is not None else "drug")
    at = f"therapies[{i}].{field_name}" + (f"[{k}]" if entry.drugs is not None else "")
    if res.kind == "ambiguous":
        hist.unrecognized.append(_ambiguous(i, name, entry, res))
        hist.problems.append(f"{at}: {res.reason or repr(name) + ' has more than one usual meaning'}; every "
                             "criterion its meanings disagree on is left for the reviewer")
    else:
        hist.unrecognized.append(Unrecognized(i, name, entry.start, entry.end, entry.source, res.hints,
                                              res.reason or f"{name!r} is not a product priorauth recognizes",
                                              end_unknown=entry.stopped_undated))
        hist.problems.append(f"{at}: {name!r} is not a product priorauth recognizes; every criterion it could "
                             "change is left for the reviewer (`priorauth terminology lookup` shows why)")


def _ambiguous(i: int, name: str, entry: Regimen, res) -> Unrecognized:
    classes = [frozenset(c for d in m for c in d.classes) for m in res.meanings]
    possible = frozenset.union(*classes) - frozenset.intersection(*classes) if classes else frozenset()
    readings = "; ".join(" + ".join(d.generic for d in m) for m in res.meanings)
    return Unrecognized(i, name, entry.start, entry.end, entry.source, frozenset(),
                        res.reason or f"{name!r} has more than one usual meaning ({readings})", ambiguous=True,
                        possible_classes=possible, end_unknown=entry.stopped_undated)


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
            opened.append(_Open(start, [], index, item, how=_AS_WRITTEN))
            continue
        e = item
        cur = opened[-1] if opened else None
        if cur is not None and (e.start - cur.start).days <= rules.join_days:
            cur.members.append(e)
            if cur.written is not None and e.drug not in cur.written.drugs:
                cur.how += f", with {e.drug.generic} entered on its own from {e.start}"
            continue
        going = next((o for o in reversed(opened) if o.going_on(e.start, term)), None)
        if going is None:
            opened.append(_Open(e.start, [e], e.entries[0]))
            continue
        active = going.going_on(e.start, term)
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
    w = o.written
    if w is not None and not o.members and not any(_overlap(x.start, x.end, w.entry.start, w.entry.end)
                                                   for x in steroids):
        return _as_written(o, w, term)
    members = o.members
    ends: list[date] = []
    ongoing = unknown = False
    if w is not None and not o.carried:   # a written regimen not split: its own dates, and drugs that joined it
        e = w.entry
        if e.stopped_undated:
            unknown = True
        elif e.end is None:
            ongoing = True
        else:
            ends.append(e.end)
        members = [x for x in members if x.entries[0] != o.index]
    entries = {o.index}
    drugs: dict[Drug, None] = dict.fromkeys(w.drugs) if w is not None else {}
    for k, x in enumerate(members):
        entries.update(x.entries)
        drugs[x.drug] = None
        cut = o.carried.get(k)
        if cut is not None:
            ends.append(cut if x.end is None or cut < x.end else x.end)
        elif x.end_unknown:
            unknown = True
        elif x.end is None:
            ongoing = True
        else:
            ends.append(x.end)
    end = None if ongoing or unknown or not ends else max(ends)
    for x in steroids:
        if _overlap(x.start, x.end, o.start, end):
            drugs[x.drug] = None
            entries.update(x.entries)
    if w is not None:
        source, stop, intent, line = w.entry.source, w.entry.stop_reason, w.entry.intent, w.entry.line
    else:
        first = min(members, key=lambda x: (x.start, x.entries[0]))
        last = max(members, key=lambda x: (x.end or date.max, x.entries[0]))
        source, stop = first.source, last.stop_reason
        intents = {x.intent for x in members}
        lines = {x.line for x in members}
        intent = intents.pop() if len(intents) == 1 else None
        line = lines.pop() if len(lines) == 1 else None
    anti = [d for d in drugs if term.is_anti_myeloma(d)]
    return ResolvedRegimen(
        index=o.index, start=o.start, end=end, drugs=tuple(drugs),
        anti_myeloma=bool(anti) or (w is not None and w.anti_myeloma),
        source=source, entries=tuple(sorted(entries)), written=w.text if w is not None else None, how=o.how,
        intent=intent, line=line, stop_reason=stop, trial=any(x.trial for x in members) or bool(w and w.entry.trial),
        end_unknown=unknown and not ongoing, meanings=w.meanings if w is not None and len(w.meanings) > 1 else (),
        core=frozenset(d.generic for d in anti),
        acronym=None if w is not None else acronyms.get(frozenset(d.generic for d in drugs)),
    )


def _as_written(o: _Open, w: _Written, term: Terminology) -> ResolvedRegimen:
    """A regimen written whole that nothing joined or split, and no separate steroid to add: as the entry says."""
    e = w.entry
    return ResolvedRegimen(
        index=o.index, start=o.start, end=e.end, drugs=w.drugs, anti_myeloma=w.anti_myeloma, source=e.source,
        entries=(o.index,), written=w.text, how=o.how, intent=e.intent, line=e.line, stop_reason=e.stop_reason,
        trial=bool(e.trial), end_unknown=e.stopped_undated, meanings=w.meanings if len(w.meanings) > 1 else (),
        core=w.core, _names=w.reading.names, _classes=w.reading.classes,
    )


def _overlap(start: date, end: date | None, other_start: date, other_end: date | None) -> bool:
    """Two periods share a day (an end of None: ongoing, or stopped on a date not given)."""
    return start <= (other_end or date.max) and other_start <= (end or date.max)


@lru_cache(maxsize=8)
def _acronyms(term: Terminology) -> dict[frozenset[str], str]:
    """The usual acronym of each drug combination the terminology knows (built once per terminology)."""
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
        if self.regimens and (not self.transplants or self.regimens[0].start <= self.transplants[0].date):
            return self.regimens[0].start      # both lists are filled in date order
        return self.transplants[0].date

    def describe(self) -> str:
        parts = [f"{r.label()} from {r.start}" for r in self.regimens]
        if self.transplants:   # both lists are in date order: merge them (a transplant first on the same day)
            dated = [(r.start, 1, p) for r, p in zip(self.regimens, parts)] + [
                (t.date, 0, f"{t.label()} on {t.date}") for t in self.transplants]
            parts = [p for _, _, p in sorted(dated, key=lambda x: x[:2])]
        return f"line {self.number}: " + ", then ".join(parts) + (f" ({self.why})" if self.why else "")


@dataclass(slots=True)
class LineCount:
    count: int
    method: str                       # "line numbers" | "IMWG rules"
    lines: list[Line]
    placements: list[tuple]           # (regimen or transplant, line number, how, why), rendered by ``steps``
    notes: list[str] = field(default_factory=list)

    @property
    def steps(self) -> list[str]:
        """How each regimen and transplant was placed, for the reviewer."""
        out = list(self.notes)
        for item, number, how, why in self.placements:
            when = f"on {item.date}" if isinstance(item, Transplant) else f"from {item.start}"
            tail = f" ({why})" if why else ""
            out.append(f"{item.label()} {when}: {how} line {number}{tail}" if how != "as recorded"
                       else f"{item.label()} {when}: line {number} as recorded")
        return out

    def describe(self) -> str:
        return "; ".join(ln.describe() for ln in self.lines)


def _fmt_core(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


_BY_DAY = itemgetter(0, 1, 2)


def count_lines(hist: TreatmentHistory, rules: HistoryRules, marks: Sequence[ProgressionMark] = ()) -> LineCount:
    """Lines of therapy from the regimens and transplants, with ``marks``: documented or computed progression."""
    regs = hist.anti_myeloma
    if regs and all(r.line is not None for r in regs):
        by_number: dict[int, Line] = {}
        for r in regs:
            by_number.setdefault(r.line, Line(r.line, why="line number as recorded")).regimens.append(r)
        ordered = [by_number[k] for k in sorted(by_number)]
        return LineCount(len(by_number), "line numbers", ordered, [(r, r.line, "as recorded", "") for r in regs])

    placed: list[tuple] = []
    notes: list[str] = []
    partial = sum(1 for r in regs if r.line is not None)
    if partial:
        notes.append(f"line numbers given on {partial} of {len(regs)} regimens: reported, not used")
    if len(marks) > 1:
        marks = sorted(marks, key=lambda m: m.date)
    mark_days = [m.date for m in marks]
    # on the same day a transplant comes first: a regimen started on the transplant day follows it
    if hist.transplants:
        events = [(r.start, 1, r.index, r) for r in regs] + [(t.date, 0, t.index, t) for t in hist.transplants]
        events.sort(key=_BY_DAY)
        order = [e[3] for e in events]
    else:
        order = regs                                   # already in order of start
    lines: list[Line] = []
    current: Line | None = None
    prev: ResolvedRegimen | None = None
    prev_tx: Transplant | None = None
    for ev in order:
        since = prev.start if prev is not None else None
        if prev_tx is not None and (since is None or prev_tx.date > since):
            since = prev_tx.date
        progression = None
        if since is not None and mark_days:   # the first progression after ``since``, if dated by this event
            k = bisect_right(mark_days, since)
            if k < len(marks) and marks[k].date <= (ev.date if isinstance(ev, Transplant) else ev.start):
                progression = marks[k]
        if isinstance(ev, Transplant):
            why = _transplant_joins(ev, current, prev, prev_tx, progression, rules)
            if why is None or current is None:
                reason = _transplant_starts(ev, current, progression, prev_tx, rules)
                current = Line(len(lines) + 1, why=reason)
                lines.append(current)
                placed.append((ev, current.number, "starts", reason))
            else:
                placed.append((ev, current.number, "part of", why))
            current.transplants.append(ev)
            prev_tx = ev
            continue
        if current is None:
            current = Line(1, why="first regimen")
            lines.append(current)
            placed.append((ev, 1, "starts", ""))
        else:
            why, boundary = _regimen_place(ev, current, prev, progression, hist, rules)
            if boundary:
                current = Line(len(lines) + 1, why=why)
                lines.append(current)
                placed.append((ev, current.number, "starts", why))
            else:
                placed.append((ev, current.number, "continues", why))
        current.regimens.append(ev)
        prev = ev
    return LineCount(len(lines), "IMWG rules", lines, placed, notes)


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
            regs[k] = replace(r, drugs=drugs, meanings=(), _label=None, _names=None, _classes=None,
                              core=frozenset(d.generic for d in drugs if term.is_anti_myeloma(d)))
        out.append(replace(hist, regimens=regs, _exposures={}))
    return out
