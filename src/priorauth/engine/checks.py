"""Named checks: the leaves of a policy's criteria tree.

A check is a pure function ``run(facts, params) -> CheckResult`` with a parameter model that the policy
loader validates (and converts to canonical units) once. Checks hold algorithms, never numbers: thresholds,
windows and classes come from the policy data. Each result says why in one line a reviewer can read, lists
the facts it used, and for an unknown result names the documentation that would settle it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from typing import Callable

from pydantic import BaseModel, Field, model_validator

from priorauth.case import DRUG_CLASS_KEYS, LAB_TESTS, Lab
from priorauth.clinical.dates import age_on
from priorauth.clinical.labs import at_least, flc_points
from priorauth.clinical.units import UnitError, clinical_number, display_unit, factor, format_quantity
from priorauth.engine.facts import Facts, ProgressionEvent
from priorauth.engine.params import Count, FlcRatioParams, LinesParams, Param, ProgressionParams, Qty
from priorauth.engine.results import MET, NOT_MET, UNKNOWN, CheckResult, Evidence

__all__ = ["Check", "CHECKS", "register"]


@dataclass(frozen=True)
class Check:
    name: str
    params: type[BaseModel]
    run: Callable[[Facts, BaseModel], CheckResult]
    summary: str


CHECKS: dict[str, Check] = {}


def register(name: str, params: type[BaseModel]):
    def wrap(fn):
        CHECKS[name] = Check(name, params, fn, (fn.__doc__ or "").strip().splitlines()[0])
        return fn
    return wrap


class NoParams(Param):
    pass


def _lab_evidence(lab: Lab, term) -> Evidence:
    return Evidence(term.lab_tests[lab.test]["label"], lab.value, lab.unit, lab.date, str(lab.source))


def _fmt(value: float, unit: str) -> str:
    return format_quantity(clinical_number(value), unit)


def _days(d1: date, d2: date) -> int:
    return (d2 - d1).days


# ---- treatment history, shared --------------------------------------------------------------------------
class HistoryCheckParams(Param):
    """The rules a check reads the treatment history with: regimen assembly and lines, and IMWG progression."""

    lines: LinesParams
    progression: ProgressionParams

    @cached_property
    def history_rules(self):
        return _interned(self.lines.rules())

    @cached_property
    def progression_rules(self):
        return _interned(self.progression.rules())

    @cached_property
    def treatment_key(self) -> tuple:
        """What ``Facts.treatment`` is asked with: the same objects for every check of the policy."""
        return (self.history_rules, self.progression_rules, _interned(self.progression.assessment_responses),
                _interned(self.progression.imaging_findings))


_INTERNED: dict = {}


def _interned(rules):
    """One object for equal rules, so that every check of a policy shares the treatment history computed once."""
    return _INTERNED.setdefault(rules, rules)


def _treatment(f: Facts, p: HistoryCheckParams):
    return f.treatment(*p.treatment_key)


def _names(items, limit: int = 3) -> str:
    names = [repr(u.name) for u in items]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _unrecognized_evidence(items) -> tuple[Evidence, ...]:
    return tuple(Evidence("not recognized", u.name, date=u.start, source=str(u.source)) for u in items)


# ---- I.A.1 ------------------------------------------------------------------------------------------------
class RelapsedParams(HistoryCheckParams):
    relapse_group: str


@register("relapsed_or_refractory", RelapsedParams)
def relapsed_or_refractory(f: Facts, p: RelapsedParams) -> CheckResult:
    """Relapsed or refractory disease: prior therapy, and a relapse code or documented progression."""
    t = _treatment(f, p)
    hist = t.history
    if hist.submitted and not hist.anti_myeloma and not hist.transplants and not hist.has_unrecognized:
        return CheckResult(NOT_MET, "The submitted treatment history holds no anti-myeloma therapy: newly diagnosed "
                                    "disease is neither relapsed nor refractory")
    req = f.case.request
    for i, code in enumerate(req.diagnoses):
        if f.term.in_group(code, p.relapse_group):
            return CheckResult(MET, f"Diagnosis {code} codes multiple myeloma in relapse",
                               (Evidence("diagnosis", code, source=str(req.source.at(f"diagnoses[{i}]"))),))
    last = t.last_regimen
    events = f.progression_events(p.progression_rules, last.start if last else None,
                                  p.progression.assessment_responses, p.progression.imaging_findings, t)
    confirmed = [e for e in events if e.confirmed]
    for m in t.marks:   # progression computed for an earlier regimen
        if not any(e.date == m.date for e in confirmed):
            confirmed.append(ProgressionEvent(m.date, "labs", m.description, m.source))
    confirmed.sort(key=lambda e: e.date)
    if confirmed:
        e = confirmed[-1]
        return CheckResult(MET, f"Progression documented on {e.date}: {e.description}",
                           tuple(Evidence("progression", e.description, date=e.date, source=e.source) for e in confirmed))
    codes = ", ".join(req.diagnoses) or "no diagnosis code"
    rises = [e for e in events if e.lab is not None and e.lab.status == "pending"]
    if rises:
        return CheckResult(UNKNOWN, f"{codes} does not say relapse; an unconfirmed rise: {rises[-1].description}",
                           tuple(Evidence("rise", e.description, date=e.date, source=e.source) for e in rises),
                           missing=tuple(_confirming_request(f, e) + ", or a disease assessment showing progression "
                                         "or relapse" for e in rises))
    return CheckResult(UNKNOWN, f"{codes} does not say relapse, and no progression or relapse is documented",
                       missing=("Any one of: a disease assessment showing progression or relapse; ICD-10-CM C90.02 "
                                "(multiple myeloma in relapse) with the note that documents it; or serial serum or "
                                "urine M-protein or free light chain results showing IMWG progression",))


def _confirming_request(f: Facts, e) -> str:
    lp = e.lab
    label, unit = f.analyte(lp.analyte)
    need = _fmt(lp.needed, display_unit(unit))
    verb = "more than" if lp.strictly else "at least"
    return (f"A {label} result dated after {lp.date} of {verb} {need}, to confirm the rise on {lp.date} (IMWG "
            "requires two consecutive assessments)")


# ---- I.A.2 ------------------------------------------------------------------------------------------------
def _specialty(f: Facts, taxonomy: str | None, words: str | None) -> tuple[bool | None, str]:
    if taxonomy:
        known = f.term.taxonomies.get(taxonomy.strip().upper())
        label = known["label"] if known else "a specialty other than hematology or oncology"
        return bool(known and known["hematology_oncology"]), f"taxonomy {taxonomy} ({label})"
    if words:
        return f.term.is_heme_onc_words(words), f"specialty {words!r}"
    return None, "no specialty given"


@register("prescriber_specialty", NoParams)
def prescriber_specialty(f: Facts, p: NoParams) -> CheckResult:
    """The prescriber, or a documented consultant, is a hematologist or oncologist."""
    pres = f.case.prescriber
    if pres is None:
        return CheckResult(UNKNOWN, "No prescriber information was submitted",
                           missing=("The prescriber's specialty (NUCC taxonomy) or a consultation with a hematologist "
                                    "or oncologist",))
    taxonomy, where = pres.taxonomy, str(pres.source)
    if not (taxonomy or pres.specialty) and pres.npi and pres.npi in f.context.get("provider_directory", {}):
        taxonomy, where = f.context["provider_directory"][pres.npi], f"provider directory (NPI {pres.npi})"
    ok, what = _specialty(f, taxonomy, pres.specialty)
    ev = [Evidence("prescriber", what, source=where)]
    if ok:
        return CheckResult(MET, f"Prescriber's {what} is hematology or oncology", tuple(ev))
    consult = pres.consultation
    if consult is not None:
        c_ok, c_what = _specialty(f, consult.taxonomy, consult.specialty)
        if consult.date is not None and consult.date > f.as_of:
            f.problems.append(f"{consult.source.path}: consultation dated {consult.date}, after the evaluation date; not used")
        else:
            ev.append(Evidence("consultation", c_what, date=consult.date, source=str(consult.source)))
            if c_ok:
                when = f" on {consult.date}" if consult.date else ""
                return CheckResult(MET, f"Prescribed in consultation with {c_what}{when}", tuple(ev))
    if ok is None:
        return CheckResult(UNKNOWN, "The prescriber's specialty is not given", tuple(ev),
                           missing=("The prescriber's specialty (NUCC taxonomy) or a consultation with a hematologist "
                                    "or oncologist",))
    return CheckResult(NOT_MET, f"Prescriber's {what} is not hematology or oncology, and no consultation with "
                                "one is documented", tuple(ev))


# ---- I.A.3 ------------------------------------------------------------------------------------------------
class AgeParams(Param):
    years: Count


@register("minimum_age", AgeParams)
def minimum_age(f: Facts, p: AgeParams) -> CheckResult:
    """The member's age in whole years on the evaluation date reaches a minimum."""
    m = f.case.member
    if m.birth_date is None:
        return CheckResult(UNKNOWN, "No birth date was submitted", missing=("The member's date of birth",))
    ev = (Evidence("birth date", m.birth_date.isoformat(), source=str(m.source.at("birth_date"))),)
    if m.birth_date > f.as_of:
        f.problems.append(f"member.birth_date: {m.birth_date} is after the evaluation date")
        return CheckResult(UNKNOWN, f"Birth date {m.birth_date} is after the evaluation date", ev,
                           missing=("The member's correct date of birth",))
    age = age_on(m.birth_date, f.as_of)
    status = MET if age >= p.years.value else NOT_MET
    verb = "is at least" if status == MET else "is under"
    return CheckResult(status, f"Age {age} on {f.as_of} (born {m.birth_date}) {verb} {p.years.value}", ev)


# ---- I.A.4.a ----------------------------------------------------------------------------------------------
class LabThresholdParams(Param):
    test: str
    threshold: Qty
    window_days: Count

    @cached_property
    def canonical(self) -> tuple[str, float]:
        from priorauth.terminology import load_terminology

        unit = load_terminology().lab_tests[self.test]["unit"]
        return unit, self.threshold.to(unit)

    @model_validator(mode="after")
    def _known(self):
        if self.test not in LAB_TESTS:
            raise ValueError(f"test {self.test!r} is not one of {', '.join(LAB_TESTS)}")
        try:
            _ = self.canonical  # converts the threshold once, here, where a bad unit can be named
        except UnitError as exc:
            raise ValueError(f"threshold: {exc}") from None
        return self


@register("lab_threshold_in_window", LabThresholdParams)
def lab_threshold_in_window(f: Facts, p: LabThresholdParams) -> CheckResult:
    """A result of a test within the window reaches a threshold."""
    unit, threshold = p.canonical
    label = f.term.lab_tests[p.test]["label"]
    lo = f.as_of - timedelta(days=p.window_days.value)
    series = f.labs.get(p.test, [])
    in_window = [lab for lab in series if lab.date >= lo]
    if not in_window:
        older = f" (the latest, {series[-1].value:g} {series[-1].unit} on {series[-1].date}, is {_days(series[-1].date, f.as_of)} days old)" if series else ""
        return CheckResult(UNKNOWN, f"No {label} result between {lo} and {f.as_of}{older}",
                           tuple(_lab_evidence(x, f.term) for x in series[-1:]),
                           missing=(f"{label[0].upper() + label[1:]} result dated {lo} or later",))
    hits = [lab for lab in in_window if at_least(lab.canonical, threshold)]
    if hits:
        lab = max(hits, key=lambda x: (x.date, x.canonical))
        return CheckResult(MET, f"{label[0].upper() + label[1:]} {_fmt(lab.canonical, unit)} on {lab.date} reaches "
                                f"{_fmt(threshold, unit)}", tuple(_lab_evidence(x, f.term) for x in hits))
    lab = in_window[-1]
    return CheckResult(NOT_MET, f"{label[0].upper() + label[1:]} {_fmt(lab.canonical, unit)} on {lab.date} is below "
                                f"{_fmt(threshold, unit)}" + (f" (and {len(in_window) - 1} other result(s) in the window)"
                                                              if len(in_window) > 1 else ""),
                       tuple(_lab_evidence(x, f.term) for x in in_window))


class FlcThresholdParams(Param):
    threshold: Qty
    flc_ratio: FlcRatioParams
    window_days: Count

    @cached_property
    def rules(self):
        return self.flc_ratio.rules(self.threshold)


@register("involved_flc_in_window", FlcThresholdParams)
def involved_flc_in_window(f: Facts, p: FlcThresholdParams) -> CheckResult:
    """An involved free light chain within the window reaches a threshold with an abnormal kappa/lambda ratio."""
    rules = p.rules
    lo = f.as_of - timedelta(days=p.window_days.value)
    points = flc_points(f.labs, rules, egfr_window=(lo, f.as_of), since=lo, until=f.as_of)
    thr = _fmt(rules.measurable_involved, "mg/dL")
    if not points:
        lonely = [lab for t in ("kappa_flc", "lambda_flc") for lab in f.labs.get(t, []) if lab.date >= lo]
        why = " (a single chain without its pair or ratio)" if lonely else ""
        return CheckResult(UNKNOWN, f"No serum free light chain pair between {lo} and {f.as_of}{why}",
                           tuple(_lab_evidence(x, f.term) for x in lonely),
                           missing=(f"Serum free kappa and lambda light chains (same draw) dated {lo} or later",))
    unknown_reason = None
    last_reason = ""
    for pt in sorted(points, key=lambda x: x.date, reverse=True):
        ev = tuple(_lab_evidence(x, f.term) for x in pt.labs)
        if pt.measurable(rules):
            return CheckResult(MET, f"Involved {pt.involved} {_fmt(pt.involved_value, 'mg/dL')} on {pt.date} reaches {thr}; "
                                    f"ratio {pt.ratio:.3g} is {pt.basis}", ev)
        if not pt.abnormal:
            last_reason = last_reason or f"Kappa/lambda ratio {pt.ratio:.3g} on {pt.date} is normal ({pt.basis})"
        elif pt.involved_value is None:
            unknown_reason = unknown_reason or (f"Ratio {pt.ratio:.3g} on {pt.date} is abnormal but the involved "
                                                f"{pt.involved or 'chain'} level is not given")
        else:
            last_reason = last_reason or (f"Involved {pt.involved} {_fmt(pt.involved_value, 'mg/dL')} on {pt.date} is "
                                          f"below {thr}")
    all_ev = tuple(_lab_evidence(x, f.term) for pt in points for x in pt.labs)
    if unknown_reason:
        return CheckResult(UNKNOWN, unknown_reason, all_ev,
                           missing=(f"The involved free light chain level for the ratio dated {lo} or later",))
    return CheckResult(NOT_MET, last_reason, all_ev)


# ---- I.A.4.b ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Window:
    """Progression judged against one candidate last regimen (or unrecognized entry)."""

    status: str
    reason: str
    evidence: tuple[Evidence, ...] = ()
    missing: tuple[str, ...] = ()


def _progression_window(f: Facts, p: HistoryCheckParams, t, what: str, start: date, end: date | None,
                        end_unknown: bool, source: str) -> _Window:
    window = p.progression.days_after_last_dose.value
    events = f.progression_events(p.progression_rules, start, p.progression.assessment_responses,
                                  p.progression.imaging_findings, t)
    reg_ev = Evidence("last regimen", what, date=start, source=source)
    limit = end + timedelta(days=window) if end is not None else None
    qualifying, outside, pending, ignored = [], [], [], []
    for e in events:
        if e.date <= start:
            if e.lab is None:
                ignored.append((e, f"dated on or before the start of {what} on {start}: not progression on it"))
            continue
        if e.lab is not None and e.lab.status == "not_confirmed":
            ignored.append((e, "a rise the next result did not confirm"))
        elif limit is not None and e.date > limit:
            if e.confirmed:
                outside.append(e)
        elif e.confirmed:
            qualifying.append(e)
        else:
            pending.append(e)
    not_counted = tuple(Evidence("not counted", f"{e.description}: {why}", date=e.date, source=e.source)
                        for e, why in ignored)
    note = ("; not counted: " + "; ".join(f"{e.description} ({why})" for e, why in ignored)) if ignored else ""
    if qualifying:
        e = qualifying[0]
        if end_unknown:
            return _Window(UNKNOWN, f"Progression on {e.date} after {what} began on {start}, but the date of its last "
                                    "dose is not given, so the 60-day window cannot be placed",
                           (reg_ev,) + tuple(Evidence("progression", q.description, date=q.date, source=q.source)
                                             for q in qualifying),
                           (f"The date of the last dose of {what}",))
        when = "on therapy" if end is None or e.date <= end else f"{_days(end, e.date)} days after the last dose on {end}"
        return _Window(MET, f"Progression on {e.date}, {when} ({e.description})",
                       (reg_ev,) + tuple(Evidence("progression", q.description, date=q.date, source=q.source)
                                         for q in qualifying) + not_counted)
    span = f"after {start}" + (f" and no later than {limit}" if limit else "")
    if pending:
        return _Window(UNKNOWN, "Unconfirmed rise: " + "; ".join(e.description for e in pending) + note,
                       (reg_ev,) + tuple(Evidence("rise", e.description, date=e.date, source=e.source)
                                         for e in pending) + not_counted,
                       tuple(_confirming_request(f, e) for e in pending))
    if outside:
        e = outside[0]
        return _Window(NOT_MET, f"Progression on {e.date} is {_days(end, e.date)} days after the last dose on {end}, "
                                f"beyond {window} days (the window for {what} ran from {start} to {limit}){note}",
                       (reg_ev,) + tuple(Evidence("progression", o.description, date=o.date, source=o.source)
                                         for o in outside) + not_counted)
    return _Window(UNKNOWN, f"No progression documented or computed since the start of {what} on {start}"
                            f"{' (window to ' + str(limit) + ')' if limit else ''}{note}", (reg_ev,) + not_counted,
                   (f"Any one of, dated {span}: a disease assessment showing progressive disease (IMWG), imaging "
                    "with a new or growing lesion, or serial serum or urine M-protein or free light chain results "
                    "showing a confirmed rise",))


@register("progression_after_last_regimen", HistoryCheckParams)
def progression_after_last_regimen(f: Facts, p: HistoryCheckParams) -> CheckResult:
    """IMWG progression dated after the last regimen began and no later than a number of days after its last dose."""
    t = _treatment(f, p)
    hist = t.history
    last = hist.last_regimen
    if last is None:
        if hist.unrecognized:
            why = f"No recognized anti-myeloma regimen in the history ({_names(hist.unrecognized)} not recognized)"
        else:
            why = "No treatment history was submitted" if not hist.submitted else "No anti-myeloma regimen in the history"
        return CheckResult(UNKNOWN, f"{why}, so there is no last regimen to date progression against",
                           _unrecognized_evidence(hist.unrecognized),
                           missing=("The member's anti-myeloma treatment history with the last regimen's start and "
                                    "last dose",))
    main = _progression_window(f, p, t, last.label(), last.start, last.end, last.end_unknown, str(last.source))
    later = [u for u in hist.unrecognized if not u.ambiguous and u.start > last.start]
    if not later:
        return CheckResult(main.status, main.reason, main.evidence, main.missing)
    others = [(u, _progression_window(f, p, t, repr(u.name), u.start, u.end, u.end_unknown, str(u.source))) for u in later]
    if all(w.status == main.status for _, w in others):
        return CheckResult(main.status, main.reason, main.evidence + _unrecognized_evidence(later), main.missing)
    names = _names(later)
    return CheckResult(UNKNOWN, f"{names}, not recognized, began after {last.label()} and may be the last regimen: "
                                f"for {last.label()}: {main.reason}; for {others[0][0].name!r}: {others[0][1].reason}",
                       main.evidence + _unrecognized_evidence(later),
                       (f"What {names} is (its active ingredient), or progression documented within "
                        f"{p.progression.days_after_last_dose.value} days of its last dose",) + main.missing)


# ---- I.A.5 ------------------------------------------------------------------------------------------------
_HISTORY_NEEDED = ("The member's anti-myeloma treatment history: each regimen's drugs with the start and last-dose "
                   "dates, and any stem cell transplant")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@register("prior_lines", HistoryCheckParams)
def prior_lines(f: Facts, p: HistoryCheckParams) -> CheckResult:
    """At least a number of prior lines of therapy, counted by the IMWG rules or by stated line numbers."""
    minimum = p.lines.minimum.value
    att = f.case.attestations
    stated = att.prior_lines if att is not None else None
    t = _treatment(f, p)
    hist = t.history
    if not hist.submitted:
        extra = f" (the prescriber states {stated} prior lines, which does not document them)" if stated is not None else ""
        return CheckResult(UNKNOWN, f"No treatment history was submitted{extra}", missing=(_HISTORY_NEEDED,))
    lc = t.lines
    described = [ln.describe() for ln in lc.lines]
    ev = tuple(Evidence(f"line {ln.number}", text, date=ln.start,
                        source=str((ln.regimens[0] if ln.regimens else ln.transplants[0]).source))
               for ln, text in zip(lc.lines, described)) + tuple(
        Evidence("how the history was read", step) for step in hist.steps)
    note = ""
    if stated is not None and stated != lc.count:
        note = f"; the prescriber states {stated}, which differs"
        f.problems.append(f"attestations.prior_lines: the prescriber states {stated} prior lines; the history shows {lc.count}")
    listing = (": " + "; ".join(described)) if described else ""
    counts = sorted({v.count for v in t.variants})
    ambiguous = [u for u in hist.unrecognized if u.ambiguous]
    if len(counts) > 1:
        fact = (f"{_names(ambiguous)} can be read more than one way, giving {' or '.join(str(c) for c in counts)} "
                "prior lines")
        return CheckResult(UNKNOWN, fact + listing, ev + _unrecognized_evidence(ambiguous),
                           missing=(f"The drugs given in {_names(ambiguous)}, by name",), fact=fact)
    count = counts[0] if lc.count != counts[0] and len(t.variants) > 1 else lc.count
    head = f"{_plural(count, 'prior line')} of therapy ({lc.method}){note}"
    if count >= minimum:
        fact = f"{head}, at least {minimum} required"
        return CheckResult(MET, fact + listing, ev, fact=fact)
    unsettled = [u for u in hist.unrecognized if not u.ambiguous]
    if unsettled:
        fact = (f"{head} from the recognized regimens, fewer than {minimum}; {_names(unsettled)}, not recognized, may "
                "be the missing line")
        return CheckResult(UNKNOWN, fact + listing, ev + _unrecognized_evidence(unsettled),
                           missing=(f"What {_names(unsettled)} is (its active ingredient and dates), so it can be "
                                    "placed in the lines of therapy",), fact=fact)
    fact = f"only {head}, fewer than the {minimum} required"
    return CheckResult(NOT_MET, fact[0].upper() + fact[1:] + listing, ev, fact=fact)


class ClassParams(Param):
    cls: str = Field(alias="class")  # `class` in the policy file

    @model_validator(mode="after")
    def _known(self):
        if self.cls not in DRUG_CLASS_KEYS:
            raise ValueError(f"class {self.cls!r} is not one of {', '.join(DRUG_CLASS_KEYS)}")
        return self


class HistoryClassParams(ClassParams, HistoryCheckParams):
    pass


@register("prior_class_exposure", HistoryClassParams)
def prior_class_exposure(f: Facts, p: HistoryClassParams) -> CheckResult:
    """A prior anti-myeloma regimen included a drug of a class."""
    t = _treatment(f, p)
    hist = t.history
    label = f.term.drug_classes[p.cls]["label"]
    if not hist.submitted:
        return CheckResult(UNKNOWN, "No treatment history was submitted", missing=(_HISTORY_NEEDED,))
    found = [(r, d) for r, d in hist.exposures(p.cls) if getattr(r, "anti_myeloma", False)]
    if found:
        r, d = found[0]
        return CheckResult(MET, f"{d.generic} ({label}) in {r.label()} from {r.start}",
                           tuple(Evidence(label, d.generic, date=r.start, source=str(r.source)) for r, d in found))
    where = f"the {_plural(t.lines.count, 'prior line')}"
    unsettled = hist.unsettled(p.cls)
    if unsettled:
        return CheckResult(UNKNOWN, f"No {label} among the recognized regimens of {where}; {_names(unsettled)}, not "
                                    "recognized, may be one", _unrecognized_evidence(unsettled),
                           missing=(f"What {_names(unsettled)} is (its active ingredient), or documentation of a "
                                    f"prior {label}",))
    return CheckResult(NOT_MET, f"No {label} in {where}")


# ---- I.A.6 / III.B ----------------------------------------------------------------------------------------
_CNS_PLACES = {"diagnosis": "the request's diagnoses", "history": "the history", "assessment": "the assessments"}


def _cns_place(x) -> str:
    place = _CNS_PLACES.get(x.where, x.where)
    return f"in {place} ({x.path})" if x.path else f"in {place}"


def _cns_not_counted(cns) -> str:
    """The mentions that were read and did not count, each with why, and the uncertain ones a work-up settled."""
    parts: list[str] = []
    for x in cns.disregarded:
        part = f"{x.quote!r}: {x.match.why or x.match.assertion}, not a finding"
        if part not in parts:
            parts.append(part)
    if cns.uncertain and cns.negative_workups:
        w = cns.negative_workups[0]
        for x in cns.uncertain:
            parts.append(f"{x.quote!r}: uncertain, settled by the negative work-up {w.phrase!r} {_cns_place(w)}")
    return "; not counted: " + "; ".join(parts) if parts else ""


def _cns_evidence(mentions) -> tuple[Evidence, ...]:
    return tuple(Evidence(f"{x.match.label} ({x.match.assertion})" if x.match.assertion != "present" else x.match.label,
                          x.quote, source=x.source) for x in mentions)


@register("no_cns_pathology", NoParams)
def no_cns_pathology(f: Facts, p: NoParams) -> CheckResult:
    """No CNS involvement by the malignancy and no clinically relevant CNS pathology, now or in the history."""
    cns = f.cns_findings
    att = f.case.attestations
    if cns.findings:
        quotes = "; ".join(
            f"{x.match.label}: {x.quote!r} {_cns_place(x)}"
            + (", a prior history, which the policy counts" if x.match.assertion == "historical" else "")
            for x in cns.findings)
        return CheckResult(NOT_MET, f"CNS pathology on record: {quotes}", _cns_evidence(cns.findings))
    if att is not None and att.no_cns_pathology is False:
        return CheckResult(NOT_MET, "The prescriber does not attest that the member is free of CNS pathology",
                           (Evidence("attestation", "no_cns_pathology: false", source=str(att.source.at("no_cns_pathology"))),))
    not_counted = _cns_not_counted(cns)
    looked_at = _cns_evidence(cns.disregarded + cns.uncertain)
    unread = [x for x in cns.uncertain if x.match.assertion == "unread"]
    if unread:      # a work-up cannot settle what was not read
        return CheckResult(UNKNOWN, "Not every CNS mention was read: " + "; ".join(
            f"{x.match.why} {_cns_place(x)}, so the rest is for the reviewer" for x in unread) + not_counted,
            _cns_evidence(cns.uncertain),
            missing=tuple(f"A reviewer's reading of the entry {_cns_place(x)} (it names CNS conditions more often "
                          "than priorauth reads), or the prescriber's summary of the neurologic history"
                          for x in unread))
    if cns.uncertain and not cns.negative_workups:
        quotes = "; ".join(f"{x.match.label}: {x.quote!r} {_cns_place(x)}, uncertain ({x.match.cue!r})" for x in cns.uncertain)
        return CheckResult(UNKNOWN, f"Uncertain CNS mention and no negative neurologic work-up on record: {quotes}"
                                    + not_counted, _cns_evidence(cns.uncertain) + _cns_evidence(cns.disregarded),
                           missing=tuple(f"The neurologic history or the result of the work-up for {x.quote!r} (for "
                                         "instance the brain MRI report)" for x in cns.uncertain))
    workups = tuple(Evidence("negative neurologic work-up", w.phrase, source=w.source) for w in cns.negative_workups
                    if cns.uncertain)
    if f.case.history is not None:
        n = len(f.case.history)
        return CheckResult(MET, f"No CNS involvement or CNS pathology in the submitted history ({n} entr{'y' if n == 1 else 'ies'})"
                                " or diagnoses" + not_counted, looked_at + workups)
    if att is not None and att.no_cns_pathology:
        return CheckResult(MET, "The prescriber attests no CNS involvement or CNS pathology" + not_counted,
                           (Evidence("attestation", "no_cns_pathology: true", source=str(att.source.at("no_cns_pathology"))),)
                           + looked_at + workups)
    return CheckResult(UNKNOWN, "No medical history was submitted and the prescriber does not attest" + not_counted,
                       looked_at + workups,
                       missing=("The member's medical history or problem list, or the prescriber's statement that the "
                                "member has no CNS involvement and no clinically relevant CNS pathology",))


# ---- I.A.7, I.A.8 -----------------------------------------------------------------------------------------
class PriorClassParams(HistoryClassParams):
    attestation: str


_KIND = {"anti_bcma": "BCMA-directed", "car_t": "a CAR T-cell therapy"}


@register("no_prior_class", PriorClassParams)
def no_prior_class(f: Facts, p: PriorClassParams) -> CheckResult:
    """No prior therapy of a class, shown by the treatment history or by the prescriber's statement."""
    hist = _treatment(f, p).history
    label = f.term.drug_classes[p.cls]["label"]
    found = hist.exposures(p.cls)
    if found:
        names = ", ".join(f"{d.generic} from {r.start}" for r, d in found)
        return CheckResult(NOT_MET, f"Prior {label}: {names}",
                           tuple(Evidence(label, d.generic, date=r.start, source=str(r.source)) for r, d in found))
    att = f.case.attestations
    stated = getattr(att, p.attestation, None) if att is not None else None
    att_ev = (Evidence("attestation", f"{p.attestation}: {str(stated).lower()}", source=str(att.source.at(p.attestation))),) \
        if stated is not None else ()
    if stated is False:
        return CheckResult(NOT_MET, f"The prescriber does not attest the absence of prior {label}", att_ev)
    unsettled = hist.unsettled(p.cls)
    kind = _KIND.get(p.cls, label)
    hinted = [u for u in unsettled if p.cls in u.hints]
    if hinted:
        return CheckResult(UNKNOWN, f"{_names(hinted)} is not a product priorauth recognizes and its name suggests "
                                    f"{kind}" + ("; the record and the prescriber's statement disagree" if stated else ""),
                           _unrecognized_evidence(hinted) + att_ev,
                           missing=(f"What {_names(hinted)} is (its active ingredient and target), so the reviewer can "
                                    f"confirm it is not {kind}",))
    if unsettled and not stated:
        return CheckResult(UNKNOWN, f"{_names(unsettled)} is not a product priorauth recognizes; the reviewer must "
                                    f"confirm it is not {kind}", _unrecognized_evidence(unsettled),
                           missing=(f"Any one of: what {_names(unsettled)} is (its active ingredient and target); or "
                                    f"the prescriber's signed statement that the member has had no {label}",))
    if unsettled:
        return CheckResult(MET, f"The prescriber attests no prior {label}, which settles {_names(unsettled)} (not "
                                "recognized)", att_ev + _unrecognized_evidence(unsettled))
    if hist.submitted:
        n = len(hist.regimens) + len(hist.others)
        return CheckResult(MET, f"No {label} among the {_plural(n, 'treatment')} of the submitted history", att_ev)
    if stated:
        return CheckResult(MET, f"The prescriber attests no prior {label}", att_ev)
    return CheckResult(UNKNOWN, "No treatment history was submitted and the prescriber does not attest",
                       missing=(f"Any one of: the member's treatment history; or the prescriber's signed statement that "
                                f"the member has had no {label}",))


# ---- I.A.9 ------------------------------------------------------------------------------------------------
@register("no_concurrent_class", ClassParams)
def no_concurrent_class(f: Facts, p: ClassParams) -> CheckResult:
    """No product of a class requested or ordered alongside the requested product."""
    req = f.case.request
    label = f.term.drug_classes[p.cls]["label"]
    requested = f.term.drug(req.drug)
    hits, unknown = [], []
    for i, name in enumerate(req.concurrent):
        res = f.term.resolve(name)
        src = str(req.source.at(f"concurrent[{i}]"))
        if not res.recognized and not (res.kind == "ambiguous" and all(
                not any(d.has(p.cls) for d in m) for m in res.meanings)):
            f.problems.append(f"request.concurrent[{i}]: {name!r} is not a product priorauth recognizes; the reviewer "
                              "should look it up (`priorauth terminology lookup`)")
            unknown.append(Evidence("not recognized", name, source=src))
        elif any(d.has(p.cls) and d != requested for d in res.drugs):
            hits.append(Evidence(label, name, source=src))
    if hits:
        return CheckResult(NOT_MET, f"Another {label} is requested alongside: {', '.join(h.value for h in hits)}", tuple(hits))
    if unknown:
        names = ", ".join(repr(u.value) for u in unknown)
        return CheckResult(UNKNOWN, f"{names}, ordered alongside, is not a product priorauth recognizes; the reviewer "
                                    f"must confirm it is not a {label}", tuple(unknown),
                           missing=(f"What {names} ordered alongside is (its active ingredient)",))
    n = len(req.concurrent)
    return CheckResult(MET, f"No other {label} requested alongside" + (f" ({n} other product{'s' if n != 1 else ''} listed)" if n else ""))


# ---- I.A.10 -----------------------------------------------------------------------------------------------
class DoseParams(Param):
    maximum: Qty

    @model_validator(mode="after")
    def _cells(self):
        try:
            self.maximum.to("{cells}")
        except UnitError as exc:
            raise ValueError(f"maximum: {exc}") from None
        return self


def requested_cells(f: Facts) -> tuple[float | None, str, tuple[Evidence, ...]]:
    """The requested dose as a count of cells (a per-kg dose times the member's weight), with how it was read."""
    req, member = f.case.request, f.case.member
    dose = req.dose
    if dose is None:
        return None, "No dose was submitted (CAR-positive viable T cells)", ()
    ev = [Evidence("dose", dose.value, dose.unit, source=str(dose.source))]
    try:
        cells = dose.value * factor(dose.unit, "{cells}")
        return cells, f"{cells / 1e6:.4g} x 10^6 cells", tuple(ev)
    except UnitError:
        pass
    per_kg = dose.value * factor(dose.unit, "{cells}/kg")
    if member.weight is None:
        return None, f"The dose is per kilogram ({dose.value:g} {dose.unit}) and no weight was submitted", tuple(ev)
    kg = member.weight.value * factor(member.weight.unit, "kg")
    ev.append(Evidence("weight", member.weight.value, member.weight.unit, source=str(member.weight.source)))
    cells = per_kg * kg
    return cells, f"{per_kg / 1e6:.4g} x 10^6 cells/kg x {kg:.4g} kg = {cells / 1e6:.4g} x 10^6 cells", tuple(ev)


@register("dose_at_most", DoseParams)
def dose_at_most(f: Facts, p: DoseParams) -> CheckResult:
    """The requested dose (flat, or per kg times weight) does not exceed a maximum number of cells."""
    cells, how, ev = requested_cells(f)
    maximum = p.maximum.to("{cells}")
    if cells is None:
        need = ("The member's weight in kg (the dose is given per kg)" if ev else
                "The requested dose, in CAR-positive viable T cells (at most 115 x 10^6)")
        return CheckResult(UNKNOWN, how, ev, missing=(need,))
    status = MET if at_least(maximum, cells) else NOT_MET
    verb = "does not exceed" if status == MET else "exceeds"
    return CheckResult(status, f"Dose {how} {verb} {maximum / 1e6:.4g} x 10^6 (the maximum dose of CAR-positive "
                               "viable T cells)", ev)


# ---- II.A.1 -----------------------------------------------------------------------------------------------
@register("continuation_not_covered", NoParams)
def continuation_not_covered(f: Facts, p: NoParams) -> CheckResult:
    """A continuation request is not covered: the product is given once."""
    return CheckResult(NOT_MET, "The product is a single infusion; a continuation (second dose) is not authorized",
                       (Evidence("request kind", f.case.request.kind, source=str(f.case.request.source.at("kind"))),))


# ---- I.B / II.B -------------------------------------------------------------------------------------------
class FlagParams(Param):
    flagged: bool


@register("label_change_flagged", FlagParams)
def label_change_flagged(f: Facts, p: FlagParams) -> CheckResult:
    """The payer has (or has not) flagged a recent label change this policy does not yet reflect."""
    flag = bool(f.context["label_change_within_6_months"])
    said = "flagged" if flag else "not flagged"
    return CheckResult(MET if flag == p.flagged else NOT_MET, f"A recent label change not yet in the policy is {said}",
                       (Evidence("label change within 6 months", flag, source=f.context["_sources"]["label_change_within_6_months"]),))


class FormularyParams(Param):
    on_formulary: bool


@register("formulary_status", FormularyParams)
def formulary_status(f: Facts, p: FormularyParams) -> CheckResult:
    """The product is (or is not) on the line of business's formulary or PDL."""
    lob = f.context["line_of_business"]
    on = bool(f.context["formulary"].get(lob, True))
    return CheckResult(MET if on == p.on_formulary else NOT_MET,
                       f"The product is {'on' if on else 'not on'} the {lob} formulary / PDL",
                       (Evidence("formulary", on, source=f.context["_sources"]["formulary"]),))


# ---- III.A ------------------------------------------------------------------------------------------------
class GroupParams(Param):
    group: str


@register("diagnosis_in_group", GroupParams)
def diagnosis_in_group(f: Facts, p: GroupParams) -> CheckResult:
    """A requested diagnosis is in a code group (the indication the policy addresses)."""
    req = f.case.request
    label = f.term.group_labels[p.group]
    for i, code in enumerate(req.diagnoses):
        if f.term.in_group(code, p.group):
            return CheckResult(MET, f"Diagnosis {code} is {label}", (Evidence("diagnosis", code, source=str(req.source.at(f"diagnoses[{i}]"))),))
    return CheckResult(NOT_MET, f"No diagnosis of {label} ({', '.join(req.diagnoses) or 'none given'})")
