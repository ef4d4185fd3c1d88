"""Myeloma laboratory reasoning (IMWG): FLC ratio judgement, measurable disease, progression from lab series.

All values are in each test's canonical unit (set at intake): serum and urine M-protein in g/dL and
mg/24 h, free light chains in mg/dL, plasma cells in % (marrow) and cells/uL (blood), eGFR in
mL/min/1.73 m2. Thresholds come from the policy data as :class:`ProgressionRules` and :class:`FlcRules`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from priorauth.case import Lab

__all__ = ["EPS", "at_least", "above", "FlcRules", "FlcPoint", "flc_points", "renal_impairment",
           "ProgressionRules", "LabProgression", "lab_progression", "labs_by_test"]

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
               since: date | None = None, until: date | None = None) -> list[FlcPoint]:
    """Kappa, lambda and ratio results of the same date judged together, in date order.

    Abnormal: outside the ratio result's own reference range, else its flag, else outside the renal range
    when an eGFR below the threshold is on record (in ``egfr_window``, or near the date), else the normal range.
    """
    dates: dict[date, dict[str, Lab]] = {}
    for test in ("kappa_flc", "lambda_flc", "flc_ratio"):
        for lab in by_test.get(test, ()):
            if (since is None or lab.date >= since) and (until is None or lab.date <= until):
                dates.setdefault(lab.date, {})[test] = lab  # the last result of a day stands for it
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

    def met(self, value: float, nadir: float) -> bool:
        rise = value - nadir
        if rise <= 0:
            return False
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


@dataclass(frozen=True, slots=True)
class LabProgression:
    analyte: str                      # test name, or "flc_difference"
    date: date                        # the first of the two results
    value: float
    nadir: float
    nadir_date: date
    confirmed: bool
    confirm_value: float | None = None
    confirm_date: date | None = None
    labs: tuple[Lab, ...] = field(default_factory=tuple)

    def describe(self, label: str, unit: str) -> str:
        text = (f"{label} {self.value:g} {unit} on {self.date} against a nadir of "
                f"{self.nadir:g} {unit} ({self.nadir_date})")
        if self.confirmed:
            text += f", confirmed by {self.confirm_value:g} {unit} on {self.confirm_date}"
        else:
            text += ", not yet confirmed by a second result"
        return text


def _series_progression(analyte: str, series: list[tuple[date, float, tuple[Lab, ...]]], rule: IncreaseRule) -> list[LabProgression]:
    """Walk a series against its running nadir; a rise is confirmed by the next result against the same nadir."""
    events = []
    nadir_value = nadir_date = None
    i = 0
    while i < len(series):
        d, v, labs = series[i]
        if nadir_value is not None and rule.met(v, nadir_value):
            if i + 1 < len(series):
                d2, v2, labs2 = series[i + 1]
                if rule.met(v2, nadir_value):
                    events.append(LabProgression(analyte, d, v, nadir_value, nadir_date, True, v2, d2, labs + labs2))
                    return events  # the first confirmed progression dates the event
            else:
                events.append(LabProgression(analyte, d, v, nadir_value, nadir_date, False, labs=labs))
        if nadir_value is None or v < nadir_value:
            nadir_value, nadir_date = v, d
        i += 1
    return events


def lab_progression(by_test: dict[str, list[Lab]], since: date, rules: ProgressionRules) -> list[LabProgression]:
    """Progression events (confirmed, or an unconfirmed last rise) from results dated on or after ``since``.

    IMWG 2016 (policy Appendix D): serum and urine M-protein always; the FLC difference only when serum and
    urine M-protein stay below measurable levels; marrow plasma cells only when none of those is measurable;
    circulating plasma cells only when no other parameter is measurable.
    """
    def series(test: str):
        return [(lab.date, lab.canonical, (lab,)) for lab in by_test.get(test, ()) if lab.date >= since]

    serum, urine = series("serum_m_protein"), series("urine_m_protein")
    events = _series_progression("serum_m_protein", serum, rules.serum_m_protein)
    events += _series_progression("urine_m_protein", urine, rules.urine_m_protein)
    serum_measurable = any(at_least(v, rules.measurable_serum) for _, v, _ in serum)
    urine_measurable = any(at_least(v, rules.measurable_urine) for _, v, _ in urine)

    points = flc_points(by_test, rules.flc, since=since)
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
            events += _series_progression("flc_difference", dflc, rules.flc_difference)

    marrow = series("bone_marrow_plasma_cells")
    if not (serum_measurable or urine_measurable or flc_measurable):
        events += _series_progression("bone_marrow_plasma_cells", marrow, rules.bone_marrow_plasma_cells)
        if not marrow:
            events += _series_progression("circulating_plasma_cells", series("circulating_plasma_cells"),
                                          rules.circulating_plasma_cells)
    return events
