"""Myeloma laboratory reasoning (priorauth.clinical.labs): FLC ratio judgement and IMWG progression from labs.

docs/policy-interpretation.md, I.A.4.a.iii and "Progression from labs (Appendix D, IMWG 2016)". Values are given
in each test's canonical unit: serum g/dL, urine mg/(24.h), FLC mg/dL, marrow %, blood cells/uL, eGFR
mL/min/1.73 m2. The rules are the bundled policy's.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from priorauth.case import Lab
from priorauth.clinical.labs import above, at_least, flc_points, lab_progression, labs_by_test
from priorauth.clinical.units import convert
from priorauth.policies import default_policy

RULES = default_policy().node("I.A.4.b").params.progression_rules
FLC = RULES.flc
AS_OF = date(2027, 1, 11)
SINCE = date(2025, 12, 31)          # start of the last regimen in the progression tests
T0 = date(2026, 1, 1)               # first result of a series; later results every 30 days

UNITS = {
    "serum_m_protein": "g/dL", "urine_m_protein": "mg/(24.h)", "kappa_flc": "mg/dL", "lambda_flc": "mg/dL",
    "flc_ratio": "1", "bone_marrow_plasma_cells": "%", "circulating_plasma_cells": "{cells}/uL",
    "egfr": "mL/min/{1.73_m2}",
}


def lab(test: str, value: float, day: date, **kw) -> Lab:
    return Lab(test=test, value=value, unit=UNITS[test], date=day, canonical=value, **kw)


def day(i: int) -> date:
    return T0 + timedelta(days=30 * i)


def series(test: str, values) -> list[Lab]:
    return [lab(test, v, day(i)) for i, v in enumerate(values)]


def flc_series(kappa, lambda_) -> list[Lab]:
    return series("kappa_flc", kappa) + series("lambda_flc", lambda_)


def by_test(*groups) -> dict[str, list[Lab]]:
    return labs_by_test([x for g in groups for x in g], AS_OF)


def progression(*groups, since: date = SINCE):
    return lab_progression(by_test(*groups), since, RULES)


def only(events, analyte):
    return [e for e in events if e.analyte == analyte]


# ---- at_least / above ----------------------------------------------------------------------------------------------
def test_at_least_accepts_16_g_per_l_as_1_6_g_per_dl():
    assert at_least(convert(16, "g/L", "g/dL"), 1.6)
    assert at_least(16 * 0.1, 1.6)


def test_at_least_tolerates_binary_rounding_below_the_threshold():
    rise = 0.7 - 0.2                 # 0.49999999999999994
    assert rise < 0.5
    assert at_least(rise, 0.5)


def test_at_least_exact_and_clearly_below():
    assert at_least(1.0, 1.0)
    assert at_least(200.0, 200.0)
    assert not at_least(0.99, 1.0)
    assert not at_least(1.5999, 1.6)
    assert not at_least(199.999, 200.0)


def test_above_is_strict_and_tolerant():
    assert not above(10.0, 10.0)
    assert not above(10.0 + 1e-12, 10.0)   # rounding noise is not an increase
    assert above(10.01, 10.0)


def test_labs_by_test_sorts_and_drops_results_after_as_of():
    labs = [lab("serum_m_protein", 1.2, date(2026, 12, 1)), lab("serum_m_protein", 1.1, date(2026, 11, 1)),
            lab("serum_m_protein", 2.0, AS_OF + timedelta(days=1)), lab("serum_m_protein", 1.3, AS_OF)]
    out = labs_by_test(labs, AS_OF)
    assert [x.date for x in out["serum_m_protein"]] == [date(2026, 11, 1), date(2026, 12, 1), AS_OF]


# ---- flc_points ----------------------------------------------------------------------------------------------------
def points(*labs_, **kw):
    return flc_points(labs_by_test(list(labs_), AS_OF), FLC, **kw)


D = date(2026, 12, 20)


def test_ratio_computed_from_kappa_and_lambda():
    (p,) = points(lab("kappa_flc", 30, D), lab("lambda_flc", 1.5, D))
    assert p.ratio == pytest.approx(20.0)
    assert p.ratio_lab is None
    assert p.abnormal is True
    assert p.involved == "kappa" and p.involved_value == 30 and p.uninvolved_value == 1.5
    assert p.difference == pytest.approx(28.5)
    assert "outside the standard range 0.26-1.65" in p.basis
    assert "(computed)" in p.describe()


@pytest.mark.parametrize("kappa, abnormal", [(1.65, False), (1.66, True), (0.26, False), (0.25, True)])
def test_standard_range_boundaries(kappa, abnormal):
    (p,) = points(lab("kappa_flc", kappa, D), lab("lambda_flc", 1.0, D))
    assert p.abnormal is abnormal
    assert ("outside" if abnormal else "within") + " the standard range 0.26-1.65" in p.basis


def test_high_ratio_involves_kappa_low_ratio_involves_lambda():
    (hi,) = points(lab("kappa_flc", 40, D), lab("lambda_flc", 1.0, D))
    (lo,) = points(lab("kappa_flc", 0.5, D), lab("lambda_flc", 25, D))
    assert (hi.involved, hi.involved_value, hi.uninvolved_value) == ("kappa", 40, 1.0)
    assert (lo.involved, lo.involved_value, lo.uninvolved_value) == ("lambda", 25, 0.5)


def test_normal_ratio_has_no_involved_chain():
    (p,) = points(lab("kappa_flc", 12, D), lab("lambda_flc", 10, D))
    assert p.abnormal is False and p.involved is None and p.involved_value is None
    assert not p.measurable(FLC)


def test_measurable_needs_involved_at_least_10_mg_dl():
    (at10,) = points(lab("kappa_flc", 10, D), lab("lambda_flc", 1.0, D))
    (below,) = points(lab("kappa_flc", 9.99, D), lab("lambda_flc", 1.0, D))
    assert at10.measurable(FLC) is True
    assert below.abnormal is True and below.measurable(FLC) is False


def test_lab_reference_range_wins_over_the_standard_range():
    # ratio 2.0 is outside 0.26-1.65 but within the lab's own range
    (p,) = points(lab("kappa_flc", 20, D), lab("lambda_flc", 10, D),
                  lab("flc_ratio", 2.0, D, reference_range=(0.31, 2.5)))
    assert p.abnormal is False
    assert "within the lab's range 0.31-2.5" in p.basis


def test_lab_reference_range_can_make_a_standard_normal_ratio_abnormal():
    (p,) = points(lab("kappa_flc", 15, D), lab("lambda_flc", 10, D),
                  lab("flc_ratio", 1.5, D, reference_range=(0.3, 1.2)))
    assert p.abnormal is True and p.involved == "kappa" and p.involved_value == 15
    assert "outside the lab's range 0.3-1.2" in p.basis


def test_lab_reference_range_wins_over_the_renal_range():
    (p,) = points(lab("kappa_flc", 35, D), lab("lambda_flc", 10, D),
                  lab("flc_ratio", 3.5, D, reference_range=(0.2, 4.0)),
                  lab("egfr", 40, D))
    assert p.abnormal is False
    assert "lab's range 0.2-4" in p.basis


def test_given_ratio_is_used_over_the_computed_one():
    (p,) = points(lab("kappa_flc", 20, D), lab("lambda_flc", 10, D), lab("flc_ratio", 2.1, D))
    assert p.ratio == pytest.approx(2.1)
    assert p.ratio_lab is not None and "(computed)" not in p.describe()


@pytest.mark.parametrize("ratio, involved", [(5.0, "kappa"), (0.1, "lambda")])
def test_abnormal_flag_without_range(ratio, involved):
    (p,) = points(lab("kappa_flc", 20, D), lab("lambda_flc", 20 / ratio, D), lab("flc_ratio", ratio, D, flag="abnormal"))
    assert p.abnormal is True and p.involved == involved
    assert "flagged abnormal by the lab" in p.basis


def test_normal_flag_overrides_the_standard_range():
    (p,) = points(lab("kappa_flc", 20, D), lab("lambda_flc", 4, D), lab("flc_ratio", 5.0, D, flag="normal"))
    assert p.abnormal is False and p.involved is None
    assert "flagged normal by the lab" in p.basis


@pytest.mark.parametrize("ratio, renal_abnormal, standard_abnormal", [
    (2.5, False, True),       # high in the standard range, normal in the renal range
    (3.1, False, True),       # renal upper bound included
    (3.2, True, True),
    (0.3, True, False),       # low in the renal range, normal in the standard range
])
def test_renal_range_when_egfr_below_60_is_near(ratio, renal_abnormal, standard_abnormal):
    chains = (lab("kappa_flc", 10 * ratio, D), lab("lambda_flc", 10, D))
    (renal,) = points(*chains, lab("egfr", 45, D - timedelta(days=10)))
    (standard,) = points(*chains)
    assert renal.abnormal is renal_abnormal
    assert "renal range (eGFR 45" in renal.basis and "0.37-3.1" in renal.basis
    assert standard.abnormal is standard_abnormal
    assert "standard range" in standard.basis


def test_egfr_of_60_is_not_renal_impairment():
    (p,) = points(lab("kappa_flc", 25, D), lab("lambda_flc", 10, D), lab("egfr", 60, D))
    assert p.abnormal is True and "standard range" in p.basis


@pytest.mark.parametrize("days_away, renal", [(30, True), (-30, True), (31, False), (-31, False)])
def test_egfr_must_be_within_30_days_of_the_flc_result(days_away, renal):
    d = date(2026, 10, 1)
    (p,) = points(lab("kappa_flc", 25, d), lab("lambda_flc", 10, d), lab("egfr", 45, d + timedelta(days=days_away)))
    assert p.abnormal is (not renal)
    assert ("renal range" in p.basis) is renal


def test_egfr_window_restricts_the_egfr_used():
    chains = (lab("kappa_flc", 25, D), lab("lambda_flc", 10, D))
    egfr = lab("egfr", 45, D - timedelta(days=5))
    (inside,) = points(*chains, egfr, egfr_window=(D - timedelta(days=10), D))
    (outside,) = points(*chains, egfr, egfr_window=(D - timedelta(days=3), D))
    assert inside.abnormal is False and "renal range" in inside.basis
    assert outside.abnormal is True and "standard range" in outside.basis


@pytest.mark.parametrize("labs_", [
    [("kappa_flc", 50)],
    [("lambda_flc", 50)],
])
def test_a_single_chain_alone_gives_no_point(labs_):
    assert points(*(lab(t, v, D) for t, v in labs_)) == []


def test_chains_of_different_dates_give_no_point():
    assert points(lab("kappa_flc", 50, D), lab("lambda_flc", 1.0, D - timedelta(days=1))) == []


def test_since_and_until_limit_the_points():
    labs_ = flc_series([20, 21, 22], [1, 1, 1])
    pts = flc_points(labs_by_test(labs_, AS_OF), FLC, since=day(1), until=day(1))
    assert [p.date for p in pts] == [day(1)]


# ---- lab_progression: serum M-protein --------------------------------------------------------------------------------
def test_serum_rise_of_exactly_0_5_and_25_percent_confirmed():
    events = progression(series("serum_m_protein", [1.0, 1.5, 1.5]))
    (e,) = events
    assert e.analyte == "serum_m_protein" and e.confirmed is True
    assert (e.date, e.value, e.nadir, e.nadir_date) == (day(1), 1.5, 1.0, day(0))
    assert (e.confirm_date, e.confirm_value) == (day(2), 1.5)
    assert "confirmed by 1.5 g/dL" in e.describe("serum M-protein", "g/dL")


def test_serum_rise_of_0_5_with_binary_rounding_counts():
    (e,) = progression(series("serum_m_protein", [0.2, 0.7, 0.7]))
    assert e.confirmed is True and e.nadir == 0.2


def test_serum_rise_just_below_0_5_is_not_progression():
    assert progression(series("serum_m_protein", [1.0, 1.49, 1.49])) == []


def test_serum_rise_of_0_5_but_under_25_percent_is_not_progression():
    assert progression(series("serum_m_protein", [4.0, 4.6, 4.6])) == []


def test_serum_rise_of_exactly_25_percent_and_over_0_5_is_progression():
    (e,) = progression(series("serum_m_protein", [4.0, 5.0, 5.0]))
    assert e.confirmed is True and e.value == 5.0


def test_serum_compared_with_the_running_nadir():
    # 1.6 is no rise against the first result (2.0) but is one against the later nadir 1.0
    (e,) = progression(series("serum_m_protein", [2.0, 1.0, 1.6, 1.6]))
    assert (e.nadir, e.nadir_date, e.date) == (1.0, day(1), day(2))
    assert e.confirmed is True


def test_confirmation_is_judged_against_the_same_nadir():
    (e,) = progression(series("serum_m_protein", [1.0, 1.6, 1.55]))
    assert e.confirmed is True and e.nadir == 1.0
    assert (e.value, e.confirm_value) == (1.6, 1.55)


def test_unconfirmed_last_rise_names_the_value_a_confirming_result_must_reach():
    (e,) = progression(series("serum_m_protein", [1.0, 1.6]))
    assert e.status == "pending" and e.confirmed is False and e.confirm_value is None and e.date == day(1)
    assert e.needed == 1.5                                   # nadir 1.0: + 0.5 g/dL beats + 25 %
    assert "a later result must reach at least 1.5 g/dL" in e.describe("serum M-protein", "g/dL")


def test_rise_followed_by_a_non_qualifying_result_is_not_confirmed():
    (e,) = progression(series("serum_m_protein", [1.0, 1.6, 1.4]))
    assert e.status == "not_confirmed" and (e.confirm_value, e.confirm_date) == (1.4, day(2))
    assert "not confirmed: the next result was 1.4 g/dL" in e.describe("serum M-protein", "g/dL")


def test_failed_confirmation_then_a_later_confirmed_rise():
    first, second = progression(series("serum_m_protein", [1.0, 1.6, 1.3, 1.6, 1.7]))
    assert first.status == "not_confirmed" and first.date == day(1)
    assert second.confirmed is True and (second.date, second.confirm_date) == (day(3), day(4))


# ---- the pre-treatment baseline (IMWG 2016: the series starts at the baseline) ---------------------------------
@pytest.mark.parametrize("days_before, in_series", [(0, True), (1, True), (60, True), (61, False)])
def test_baseline_is_the_latest_result_within_60_days_before_the_start(days_before, in_series):
    # primary refractory: 1.8 before the start, then 2.4 and 2.7 on therapy
    labs_ = [lab("serum_m_protein", 1.8, SINCE - timedelta(days=days_before))] + [
        lab("serum_m_protein", 2.4, SINCE + timedelta(days=30)), lab("serum_m_protein", 2.7, SINCE + timedelta(days=60))]
    events = progression(labs_)
    if in_series:
        (e,) = events
        assert e.confirmed and e.baseline and (e.nadir, e.value, e.confirm_value) == (1.8, 2.4, 2.7)
        assert "against the pre-treatment baseline of 1.8 g/dL" in e.describe("serum M-protein", "g/dL")
    else:
        assert events == []                                  # nadir 2.4: 2.7 is + 0.3 g/dL only


def test_only_the_latest_pre_treatment_result_is_the_baseline():
    labs_ = [lab("serum_m_protein", 0.9, SINCE - timedelta(days=50)), lab("serum_m_protein", 1.8, SINCE - timedelta(days=14)),
             lab("serum_m_protein", 2.4, SINCE + timedelta(days=30)), lab("serum_m_protein", 2.7, SINCE + timedelta(days=60))]
    (e,) = progression(labs_)
    assert e.nadir == 1.8 and e.nadir_date == SINCE - timedelta(days=14)


def test_the_baseline_itself_is_never_the_rise():
    # a high value before the start then lower values: no progression on this regimen
    labs_ = [lab("serum_m_protein", 1.0, SINCE - timedelta(days=90)), lab("serum_m_protein", 2.0, SINCE - timedelta(days=5)),
             lab("serum_m_protein", 1.5, SINCE + timedelta(days=30))]
    assert progression(labs_) == []


# ---- one date, one assessment ------------------------------------------------------------------------------------
def test_same_day_results_are_one_assessment_the_lowest():
    labs_ = series("serum_m_protein", [2.2, 0.5]) + [lab("serum_m_protein", 1.2, day(2)), lab("serum_m_protein", 1.3, day(2))]
    (e,) = progression(labs_)
    assert e.status == "pending" and e.value == 1.2          # the second same-day result is no confirmation
    assert e.needed == 1.0


def test_confirmation_needs_a_later_date():
    labs_ = series("serum_m_protein", [0.5]) + [lab("serum_m_protein", 1.2, day(1)), lab("serum_m_protein", 1.3, day(1)),
                                                lab("serum_m_protein", 1.1, day(2))]
    (e,) = progression(labs_)
    assert e.confirmed and (e.value, e.confirm_value, e.confirm_date) == (1.2, 1.1, day(2))


# ---- IMWG 2016: from a nadir of 5 g/dL or more, a 1 g/dL rise is enough -------------------------------------------
@pytest.mark.parametrize("values, confirmed", [
    ([7.2, 5.4, 6.5, 6.6], True),      # + 1.1 and + 1.2 over 5.4 (20 %, 22 %)
    ([5.0, 6.0, 6.0], True),           # nadir exactly 5, rise exactly 1
    ([5.0, 5.99, 5.99], False),        # rise just under 1 g/dL, under 25 %
    ([4.9, 5.9, 5.9], False),          # nadir under 5: 25 % needed (20 %)
])
def test_high_nadir_rule(values, confirmed):
    events = [e for e in progression(series("serum_m_protein", values)) if e.confirmed]
    assert bool(events) is confirmed


def test_high_nadir_needed_value_is_nadir_plus_1():
    (e,) = progression(series("serum_m_protein", [5.4, 6.5]))
    assert e.status == "pending" and abs(e.needed - 6.4) < 1e-9


# ---- urine M-protein ---------------------------------------------------------------------------------------------
def test_urine_rise_of_exactly_200_and_25_percent_confirmed():
    (e,) = progression(series("urine_m_protein", [400, 600, 600]))
    assert e.analyte == "urine_m_protein" and e.confirmed is True and e.nadir == 400


def test_urine_rise_just_below_200_is_not_progression():
    assert progression(series("urine_m_protein", [400, 599, 599])) == []


def test_urine_rise_of_200_under_25_percent_is_not_progression():
    assert progression(series("urine_m_protein", [1000, 1200, 1200])) == []
    (e,) = progression(series("urine_m_protein", [1000, 1250, 1250]))
    assert e.confirmed is True


def test_urine_unconfirmed_last_rise():
    (e,) = progression(series("urine_m_protein", [400, 700]))
    assert e.analyte == "urine_m_protein" and e.confirmed is False


# ---- FLC difference ----------------------------------------------------------------------------------------------
def test_flc_difference_rise_of_exactly_10_is_not_enough():
    # dFLC 20 -> 30: the absolute rise must be strictly more than 10 mg/dL
    assert only(progression(flc_series([21, 31, 31], [1, 1, 1])), "flc_difference") == []


def test_flc_difference_rise_over_10_and_25_percent_confirmed():
    (e,) = progression(flc_series([21, 31.5, 31.5], [1, 1, 1]))
    assert e.analyte == "flc_difference" and e.confirmed is True
    assert e.nadir == pytest.approx(20) and e.value == pytest.approx(30.5)


def test_flc_difference_rise_over_10_under_25_percent_is_not_progression():
    assert progression(flc_series([61, 71.5, 71.5], [1, 1, 1])) == []


def test_flc_difference_with_lambda_involved():
    (e,) = progression(flc_series([1, 1, 1], [21, 31.5, 31.5]))
    assert e.analyte == "flc_difference" and e.confirmed is True
    assert e.nadir == pytest.approx(20) and e.value == pytest.approx(30.5)


def test_flc_difference_unconfirmed_last_rise():
    (e,) = progression(flc_series([21, 31.5], [1, 1]))
    assert e.analyte == "flc_difference" and e.confirmed is False


@pytest.mark.parametrize("serum", [[1.0, 1.0, 1.0], [1.0, 0.6, 0.6]])
def test_flc_difference_not_used_when_serum_reaches_1_in_any_result(serum):
    events = progression(flc_series([21, 31.5, 31.5], [1, 1, 1]), series("serum_m_protein", serum))
    assert events == []


def test_flc_difference_used_when_serum_stays_below_1():
    events = progression(flc_series([21, 31.5, 31.5], [1, 1, 1]), series("serum_m_protein", [0.99, 0.99, 0.99]))
    assert [e.analyte for e in events] == ["flc_difference"]


@pytest.mark.parametrize("urine, used", [([200, 150, 150], False), ([199, 199, 199], True)])
def test_flc_difference_and_urine_measurability(urine, used):
    events = progression(flc_series([21, 31.5, 31.5], [1, 1, 1]), series("urine_m_protein", urine))
    assert bool(only(events, "flc_difference")) is used


def test_flc_difference_needs_an_abnormal_ratio_in_the_series():
    # ratios 1.2 -> 1.6: never abnormal, no involved chain, no FLC progression
    assert progression(flc_series([12, 16, 16], [10, 10, 10])) == []


@pytest.mark.parametrize("days_before, flc_used", [(1, False), (61, True)])
def test_a_measurable_baseline_serum_blocks_the_flc_difference(days_before, flc_used):
    # serum 2.0 g/dL at the baseline is part of the series: the FLC difference is then not a parameter
    labs_ = flc_series([21, 31.5, 31.5], [1, 1, 1]) + [lab("serum_m_protein", 2.0, SINCE - timedelta(days=days_before))]
    assert ("flc_difference" in [e.analyte for e in progression(labs_)]) is flc_used


# ---- bone marrow plasma cells --------------------------------------------------------------------------------------
MARROW_RISE = [20, 30, 30]


def test_marrow_rise_of_10_points_when_nothing_else_is_measurable():
    (e,) = progression(series("bone_marrow_plasma_cells", MARROW_RISE), series("serum_m_protein", [0.5, 0.5, 0.5]))
    assert e.analyte == "bone_marrow_plasma_cells" and e.confirmed is True
    assert (e.nadir, e.value) == (20, 30)


def test_marrow_rise_just_below_10_points_is_not_progression():
    assert progression(series("bone_marrow_plasma_cells", [20, 29.9, 29.9])) == []


def test_a_marrow_rise_needs_no_confirmation():
    (e,) = progression(series("bone_marrow_plasma_cells", [12, 5, 24]))
    assert e.confirmed and e.confirm_date is None and (e.nadir, e.value, e.date) == (5, 24, day(2))
    assert "needs no confirmation" in e.describe("bone marrow plasma cells", "%")


def test_marrow_rise_is_absolute_points_not_relative():
    # 5 % -> 15 %: tripled, and exactly 10 points
    (e,) = progression(series("bone_marrow_plasma_cells", [5, 15, 15]))
    assert e.confirmed is True


@pytest.mark.parametrize("other", [
    series("serum_m_protein", [1.2, 1.2, 1.2]),
    series("urine_m_protein", [250, 250, 250]),
    flc_series([15, 15, 15], [1, 1, 1]),              # involved kappa 15 mg/dL, ratio 15: measurable FLC
], ids=["serum", "urine", "flc"])
def test_marrow_not_used_when_another_parameter_is_measurable(other):
    assert only(progression(series("bone_marrow_plasma_cells", MARROW_RISE), other), "bone_marrow_plasma_cells") == []


def test_marrow_used_when_flc_abnormal_but_below_10_mg_dl():
    events = progression(series("bone_marrow_plasma_cells", MARROW_RISE), flc_series([5, 5, 5], [1, 1, 1]))
    assert [e.analyte for e in events] == ["bone_marrow_plasma_cells"]


# ---- circulating plasma cells ---------------------------------------------------------------------------------------
def test_circulating_rise_of_50_percent_to_200_confirmed():
    (e,) = progression(series("circulating_plasma_cells", [100, 200, 250]))
    assert e.analyte == "circulating_plasma_cells" and e.confirmed is True
    assert (e.nadir, e.value, e.confirm_value) == (100, 200, 250)


def test_circulating_rise_of_exactly_50_percent_counts():
    (e,) = progression(series("circulating_plasma_cells", [200, 300, 300]))
    assert e.confirmed is True


def test_circulating_rise_must_reach_200_per_ul():
    assert progression(series("circulating_plasma_cells", [100, 199, 199])) == []


def test_circulating_rise_under_50_percent_is_not_progression():
    assert progression(series("circulating_plasma_cells", [150, 220, 220])) == []


@pytest.mark.parametrize("other", [
    series("bone_marrow_plasma_cells", [20, 20]),
    series("serum_m_protein", [1.2, 1.2, 1.2]),
    series("urine_m_protein", [250, 250, 250]),
    flc_series([15, 15, 15], [1, 1, 1]),
], ids=["marrow", "serum", "urine", "flc"])
def test_circulating_not_used_when_another_parameter_is_measurable(other):
    events = progression(series("circulating_plasma_cells", [100, 200, 250]), other)
    assert only(events, "circulating_plasma_cells") == []
