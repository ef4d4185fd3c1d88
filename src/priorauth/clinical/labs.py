"""Myeloma laboratory reasoning (IMWG): FLC ratio judgement, measurable disease, progression from lab series.

All values are in each test's canonical unit (set at intake): serum and urine M-protein in g/dL and
mg/24 h, free light chains in mg/dL, plasma cells in % (marrow) and cells/uL (blood), eGFR in
mL/min/1.73 m2. Thresholds come from the policy data as :class:`ProgressionRules` and :class:`FlcRules`.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import date

from priorauth.case import Lab

__all__ = ["EPS", "at_least", "above", "FlcRules", "FlcPoint", "flc_points", "renal_impairment", "IncreaseRule",
           "ProgressionRules", "LabProgression", "LAB_STATUSES", "lab_progression", "labs_by_test"]

EPS = 1e-9


def at_least(value: float, threshold: float) -> bool:
    """value >= threshold, tolerant of binary rounding (16 g/L is 1.6 g/dL, not 1.5999999)."""
    return value >= threshold - EPS * max(1.0, abs(threshold))


def above(value: float, threshold: float) -> bool:
    return value > threshold + EPS * max(1.0, abs(threshold))


def labs_by_test(labs: list[Lab] | None, as_of: date) -> dict[str, list[Lab]]:
    """Results per test, in date order, leaving out those dated after the evaluation date."""
    out: dict[str, list[Lab]] = {}
    for lab in labs or ():
        if lab.date <= as_of:
            out.setdefault(lab.test, []).append(lab)
    for series in out.values():
        series.sort(key=lambda lab: lab.date)
    return out


@dataclass(frozen=True, slots=True)
class FlcRules:
    normal_range: tuple[float, float]
    renal_range: tuple[float, float]
    renal_egfr_below: float
    egfr_within_days: int
    measurable_involved: float        # involved FLC level that makes disease measurable (mg/dL)


@dataclass(frozen=True, slots=True)
class FlcPoint:
    date: date
    kappa: Lab | None
    lambda_: Lab | None
    ratio_lab: Lab | None
    ratio: float | None
    abnormal: bool | None
    basis: str                        # how abnormality was judged, in words
    involved: str | None              # "kappa" | "lambda"
    involved_value: float | None
    uninvolved_value: float | None

    @property
    def labs(self) -> list[Lab]:
        return [x for x in (self.kappa, self.lambda_, self.ratio_lab) if x is not None]

    @property
    def difference(self) -> float | None:
        if self.involved_value is None or self.uninvolved_value is None:
            return None
        return self.involved_value - self.uninvolved_value

    def measurable(self, rules: FlcRules) -> bool:
        return bool(self.abnormal) and self.involved_value is not None and at_least(self.involved_value, rules.measurable_involved)

    def describe(self) -> str:
        parts = []
        if self.kappa is not None:
            parts.append(f"kappa {self.kappa.canonical:g} mg/dL")
        if self.lambda_ is not None:
            parts.append(f"lambda {self.lambda_.canonical:g} mg/dL")
        if self.ratio is not None:
            parts.append(f"ratio {self.ratio:.3g}{' (computed)' if self.ratio_lab is None else ''}")
        return ", ".join(parts)


def renal_impairment(egfr: list[Lab], around: date, rules: FlcRules, lo: date | None = None, hi: date | None = None) -> Lab | None:
    """An eGFR below the renal threshold on record between ``lo`` and ``hi`` (default: within the rule's days of ``around``)."""
    if lo is None:
        lo = date.fromordinal(around.toordinal() - rules.egfr_within_days)
    if hi is None:
        hi = date.fromordinal(around.toordinal() + rules.egfr_within_days)
    for lab in egfr:
        if lo <= lab.date <= hi and lab.canonical < rules.renal_egfr_below:
            return lab
    return None


def flc_points(by_test: dict[str, list[Lab]], rules: FlcRules, egfr_window: tuple[date, date] | None = None,
               since: date | None = None, until: date | None = None, lowest: bool = False) -> list[FlcPoint]:
    """Kappa, lambda and ratio results of the same date judged together, in date order.

    Abnormal: outside the ratio result's own reference range, else its flag, else outside the renal range
    when an eGFR below the threshold is on record (in ``egfr_window``, or near the date), else the normal range.
    Several results of one test on one date: the highest stands for the day (any qualifying result counts for
    measurable disease), or the lowest with ``lowest`` (one assessment a day for progression).
    """
    dates: dict[date, dict[str, Lab]] = {}
    for test in ("kappa_flc", "lambda_flc", "flc_ratio"):
        for lab in by_test.get(test, ()):
            if (since is None or lab.date >= since) and (until is None or lab.date <= until):
                day = dates.setdefault(lab.date, {})
                held = day.get(test)
                if held is None or (lab.canonical < held.canonical if lowest else lab.canonical > held.canonical):
                    day[test] = lab
    egfr = by_test.get("egfr", [])
    points = []
    for d in sorted(dates):
        group = dates[d]
        k, lam, r = group.get("kappa_flc"), group.get("lambda_flc"), group.get("flc_ratio")
        if r is not None:
            ratio = r.canonical
        elif k is not None and lam is not None:
            ratio = k.canonical / lam.canonical if lam.canonical > 0 else float("inf")
        else:
            continue  # one chain alone says nothing about clonality
        abnormal: bool | None
        high: bool | None = None
        if r is not None and r.reference_range is not None:
            lo, hi = r.reference_range
            abnormal, high = not (lo <= ratio <= hi), ratio > hi
            basis = f"outside the lab's range {lo:g}-{hi:g}" if abnormal else f"within the lab's range {lo:g}-{hi:g}"
        elif r is not None and r.flag is not None:
            abnormal = r.flag != "normal"
            high = {"high": True, "low": False}.get(r.flag, ratio > 1 if abnormal else None)
            basis = f"flagged {r.flag} by the lab"
        else:
            if egfr_window is not None:
                renal = renal_impairment(egfr, d, rules, *egfr_window)
            else:
                renal = renal_impairment(egfr, d, rules)
            lo, hi = rules.renal_range if renal is not None else rules.normal_range
            abnormal, high = not (lo <= ratio <= hi), ratio > hi
            which = f"the renal range (eGFR {renal.canonical:g} on {renal.date})" if renal is not None else "the standard range"
            basis = f"{'outside' if abnormal else 'within'} {which} {lo:g}-{hi:g}"
        involved = None
        inv_val = uninv_val = None
        if abnormal and high is not None:
            involved = "kappa" if high else "lambda"
            inv_lab, uninv_lab = (k, lam) if high else (lam, k)
            inv_val = inv_lab.canonical if inv_lab is not None else None
            uninv_val = uninv_lab.canonical if uninv_lab is not None else None
        points.append(FlcPoint(d, k, lam, r, ratio, abnormal, basis, involved, inv_val, uninv_val))
    return points


@dataclass(frozen=True, slots=True)
class IncreaseRule:
    relative: float | None            # fraction above the nadir (0.25 = 25 %)
    absolute: float | None            # increase above the nadir, in the canonical unit
    strictly: bool = False            # the absolute increase must exceed (not reach) the amount
    minimum: float | None = None      # the value must reach at least this much
    high_nadir: float | None = None   # from a nadir this high ...
    high_nadir_absolute: float | None = None   # ... an absolute increase this large is enough on its own

    def met(self, value: float, nadir: float) -> bool:
        rise = value - nadir
        if rise <= 0:
            return False
        if (self.high_nadir is not None and at_least(nadir, self.high_nadir)
                and at_least(rise, self.high_nadir_absolute)):
            return True
        if self.relative is not None and not at_least(rise, self.relative * nadir):
            return False
        if self.absolute is not None:
            if self.strictly and not above(rise, self.absolute):
                return False
            if not self.strictly and not at_least(rise, self.absolute):
                return False
        if self.minimum is not None and not at_least(value, self.minimum):
            return False
        return True

    def needed(self, nadir: float) -> tuple[float, bool]:
        """The value a result must reach against ``nadir`` (and whether it must exceed it rather than reach it)."""
        parts = [nadir * (1 + self.relative) if self.relative is not None else nadir]
        strict = False
        if self.absolute is not None:
            parts.append(nadir + self.absolute)
        if self.minimum is not None:
            parts.append(self.minimum)
        value = max(parts)
        if self.strictly and self.absolute is not None and value == nadir + self.absolute:
            strict = True
        if (self.high_nadir is not None and at_least(nadir, self.high_nadir)
                and nadir + self.high_nadir_absolute < value):
            value, strict = nadir + self.high_nadir_absolute, False
        return value, strict


@dataclass(frozen=True, slots=True)
class ProgressionRules:
    serum_m_protein: IncreaseRule
    urine_m_protein: IncreaseRule
    flc_difference: IncreaseRule
    bone_marrow_plasma_cells: IncreaseRule
    circulating_plasma_cells: IncreaseRule
    measurable_serum: float           # g/dL
    measurable_urine: float           # mg/24 h
    flc: FlcRules
    baseline_days: int = 60           # the baseline: the latest result this many days before a regimen's start
    unconfirmed: frozenset[str] = frozenset({"bone_marrow_plasma_cells"})   # analytes needing no confirmation


#: a progression from labs: "confirmed" (or needing no confirmation), "pending" (the last result, not yet
#: confirmed) or "not_confirmed" (the next result did not meet the rule)
LAB_STATUSES = ("confirmed", "pending", "not_confirmed")


@dataclass(frozen=True, slots=True)
class LabProgression:
    analyte: str                      # test name, or "flc_difference"
    date: date                        # the first of the two results
    value: float
    nadir: float
    nadir_date: date
    status: str
    confirm_value: float | None = None
    confirm_date: date | None = None
    labs: tuple[Lab, ...] = field(default_factory=tuple)
    needed: float | None = None       # the value a confirming result must reach (exceed when ``strictly``)
    strictly: bool = False
    baseline: bool = False            # the nadir is the pre-treatment baseline

    @property
    def confirmed(self) -> bool:
        return self.status == "confirmed"

    def describe(self, label: str, unit: str) -> str:
        from priorauth.clinical.units import clinical_number, format_quantity

        def q(v: float) -> str:
            return format_quantity(clinical_number(v), unit)

        nadir = "the pre-treatment baseline" if self.baseline else "a nadir"
        text = f"{label} {q(self.value)} on {self.date} against {nadir} of {q(self.nadir)} ({self.nadir_date})"
        if self.status == "confirmed":
            text += (f", confirmed by {q(self.confirm_value)} on {self.confirm_date}" if self.confirm_date
                     else " (a marrow result needs no confirmation)")
        elif self.status == "not_confirmed":
            text += f", not confirmed: the next result was {q(self.confirm_value)} on {self.confirm_date}"
        else:
            need = f"{'more than' if self.strictly else 'at least'} {q(self.needed)}" if self.needed is not None else ""
            text += ", not yet confirmed" + (f" (a later result must reach {need})" if need else "")
        return text


_Point = tuple[date, float, tuple[Lab, ...]]


def _series_progression(analyte: str, series: list[_Point], rule: IncreaseRule, has_baseline: bool,
                        needs_confirmation: bool) -> list[LabProgression]:
    """Walk a series (baseline first, when there is one) against its running nadir.

    Only results after the baseline are candidates. A rise is confirmed by the next assessment, on a later date,
    meeting the rule against the same nadir; the first confirmed rise dates the event. Rises that the next
    result did not confirm are returned as ``not_confirmed``; a rise with no later result as ``pending``.
    """
    events: list[LabProgression] = []
    if not series:
        return events
    nadir_date, nadir_value, _ = series[0]
    nadir_is_baseline = has_baseline
    for i in range(1, len(series)):
        d, v, labs = series[i]
        if rule.met(v, nadir_value):
            needed, strict = rule.needed(nadir_value)
            base = dict(analyte=analyte, date=d, value=v, nadir=nadir_value, nadir_date=nadir_date, labs=labs,
                        needed=needed, strictly=strict, baseline=nadir_is_baseline)
            if not needs_confirmation:
                events.append(LabProgression(status="confirmed", **base))
                return events
            if i + 1 < len(series):
                d2, v2, labs2 = series[i + 1]
                if rule.met(v2, nadir_value):
                    events.append(LabProgression(status="confirmed", **{**base, "labs": labs + labs2},
                                                 confirm_value=v2, confirm_date=d2))
                    return events
                events.append(LabProgression(status="not_confirmed", **{**base, "labs": labs + labs2},
                                             confirm_value=v2, confirm_date=d2))
            else:
                events.append(LabProgression(status="pending", **base))
        if v < nadir_value:
            nadir_value, nadir_date, nadir_is_baseline = v, d, False
    return events


def _daily_lowest(labs: list[Lab]) -> list[_Point]:
    """One assessment a date: the lowest result of the day stands for it (``labs`` are in date order)."""
    if all(a.date != b.date for a, b in zip(labs, labs[1:])):
        return [(lab.date, lab.canonical, (lab,)) for lab in labs]
    days: dict[date, Lab] = {}
    for lab in labs:
        held = days.get(lab.date)
        if held is None or lab.canonical < held.canonical:
            days[lab.date] = lab
    return [(d, days[d].canonical, (days[d],)) for d in sorted(days)]


def _from_baseline(points: list[_Point], start: date, days: int) -> tuple[list[_Point], bool]:
    """The baseline (latest point from ``days`` before ``start`` to ``start``) and the points after ``start``."""
    k = bisect_right(points, start, key=lambda p: p[0])       # points are in date order
    lo = date.fromordinal(start.toordinal() - days)
    if k and points[k - 1][0] >= lo:
        return points[k - 1:], True
    return points[k:], False


def lab_progression(by_test: dict[str, list[Lab]], start: date, rules: ProgressionRules) -> list[LabProgression]:
    """Progression computed from the labs of a regimen begun on ``start`` (IMWG 2016, policy Appendix D).

    Each analyte's series runs from its baseline (the latest result within ``baseline_days`` before the start,
    or on it) through the results after the start, one assessment a date. Serum and urine M-protein always; the
    FLC difference only when serum and urine M-protein stay below measurable levels throughout; marrow plasma
    cells only when none of those is measurable; circulating plasma cells only when no other parameter is
    (a marrow percentage on record counts as measurable).
    """
    def series(test: str) -> tuple[list[_Point], bool]:
        labs = by_test.get(test)
        if not labs:
            return [], False
        return _from_baseline(_daily_lowest(labs), start, rules.baseline_days)

    events: list[LabProgression] = []
    (serum, s_base), (urine, u_base) = series("serum_m_protein"), series("urine_m_protein")
    events += _series_progression("serum_m_protein", serum, rules.serum_m_protein, s_base, True)
    events += _series_progression("urine_m_protein", urine, rules.urine_m_protein, u_base, True)
    serum_measurable = any(at_least(v, rules.measurable_serum) for _, v, _ in serum)
    urine_measurable = any(at_least(v, rules.measurable_urine) for _, v, _ in urine)

    lo = date.fromordinal(start.toordinal() - rules.baseline_days)
    points = flc_points(by_test, rules.flc, since=lo, lowest=True)
    before = [p for p in points if p.date <= start]
    points = before[-1:] + [p for p in points if p.date > start]
    flc_measurable = any(p.measurable(rules.flc) for p in points)
    if not serum_measurable and not urine_measurable and points:
        first = next((p for p in points if p.abnormal and p.involved), None)
        if first is not None:
            chain = first.involved
            dflc = []
            for p in points:
                inv, uninv = (p.kappa, p.lambda_) if chain == "kappa" else (p.lambda_, p.kappa)
                if inv is not None and uninv is not None:
                    dflc.append((p.date, inv.canonical - uninv.canonical, tuple(p.labs)))
            events += _series_progression("flc_difference", dflc, rules.flc_difference,
                                          bool(before) and bool(dflc) and dflc[0][0] <= start, True)

    marrow, m_base = series("bone_marrow_plasma_cells")
    if not (serum_measurable or urine_measurable or flc_measurable):
        events += _series_progression("bone_marrow_plasma_cells", marrow, rules.bone_marrow_plasma_cells, m_base,
                                      "bone_marrow_plasma_cells" not in rules.unconfirmed)
        if not marrow:
            cpc, c_base = series("circulating_plasma_cells")
            events += _series_progression("circulating_plasma_cells", cpc, rules.circulating_plasma_cells, c_base,
                                          "circulating_plasma_cells" not in rules.unconfirmed)
    return events
