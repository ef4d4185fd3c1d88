"""End-to-end boundaries of the I.A criteria: a PUB-01-like case varied one field at a time.

Each test parses a case file text, determines it against the bundled policy and checks the status and the reason
of one criterion (docs/policy-interpretation.md). Received 2027-01-11 throughout.
"""

from __future__ import annotations

import copy
from datetime import date, timedelta

import pytest
import yaml

from priorauth.determination import determine
from priorauth.intake.casefile import parse_case_text
from priorauth.policies import default_policy

from helpers import ELIGIBLE_YAML

# A copy of shared/scenarios/PUB-01.yaml (eligible: four prior lines, measurable serum M-protein, progression).
PUB_01 = ELIGIBLE_YAML

BASE = yaml.safe_load(PUB_01)
RECEIVED = date(2027, 1, 11)
POLICY = default_policy()


def determine_with(mutate=None):
    data = copy.deepcopy(BASE)
    data.pop("expect")
    if mutate is not None:
        mutate(data)
    case = parse_case_text(yaml.safe_dump(data, sort_keys=False), "test.yaml")
    return determine(case, POLICY)


def with_labs(*labs):
    def mutate(data):
        data["labs"] = [dict(lab) for lab in labs]
    return mutate


def node(d, node_id):
    n = d.node(node_id)
    assert n is not None, f"{node_id} not in the result"
    return n


def test_unchanged_case_meets_criteria():
    d = determine_with()
    assert d.outcome == "meets_criteria"
    n = node(d, "I.A.4.a.i")
    assert n.status == "met"
    assert n.reason == "Serum M-protein 1.6 g/dL on 2027-01-03 reaches 1.0 g/dL"


# ---- I.A.4.a window: 0 to 30 days before receipt -------------------------------------------------------------------
@pytest.mark.parametrize("days_before", [0, 30])
def test_measurable_result_within_30_days_is_met(days_before):
    day = RECEIVED - timedelta(days=days_before)
    d = determine_with(with_labs({"test": "serum_m_protein", "value": 1.6, "unit": "g/dL", "date": day.isoformat()}))
    n = node(d, "I.A.4.a.i")
    assert n.status == "met"
    assert f"1.6 g/dL on {day} reaches 1.0 g/dL" in n.reason


def test_measurable_result_31_days_before_is_unknown():
    d = determine_with(with_labs({"test": "serum_m_protein", "value": 1.6, "unit": "g/dL", "date": "2026-12-11"}))
    n = node(d, "I.A.4.a.i")
    assert n.status == "unknown"
    assert "No serum M-protein result between 2026-12-12 and 2027-01-11" in n.reason
    assert "31 days old" in n.reason
    assert node(d, "I.A.4.a").status == "unknown"


def test_result_dated_after_receipt_is_ignored_and_reported():
    d = determine_with(with_labs({"test": "serum_m_protein", "value": 1.6, "unit": "g/dL", "date": "2027-01-12"}))
    n = node(d, "I.A.4.a.i")
    assert n.status == "unknown"
    assert "No serum M-protein result between 2026-12-12 and 2027-01-11" in n.reason
    assert any("after the evaluation date; not used" in p for p in d.data_problems), d.data_problems


# ---- I.A.4.a.i serum >= 1.0 g/dL and I.A.4.a.ii urine >= 200 mg/24 h M-protein ---------------------------------------
@pytest.mark.parametrize("test, criterion, value, unit, status, fragment", [
    ("serum_m_protein", "I.A.4.a.i", 1.0, "g/dL", "met", "Serum M-protein 1.0 g/dL on 2027-01-03 reaches 1.0 g/dL"),
    ("serum_m_protein", "I.A.4.a.i", 10, "g/L", "met", "Serum M-protein 1.0 g/dL on 2027-01-03 reaches 1.0 g/dL"),
    ("serum_m_protein", "I.A.4.a.i", 1000, "mg/dL", "met", "Serum M-protein 1.0 g/dL on 2027-01-03 reaches 1.0 g/dL"),
    ("serum_m_protein", "I.A.4.a.i", 0.99, "g/dL", "not_met", "Serum M-protein 0.99 g/dL on 2027-01-03 is below 1.0 g/dL"),
    ("serum_m_protein", "I.A.4.a.i", 9.9, "g/L", "not_met", "Serum M-protein 0.99 g/dL on 2027-01-03 is below 1.0 g/dL"),
    ("urine_m_protein", "I.A.4.a.ii", 200, "mg/24h", "met", "Urine M-protein (24 h) 200 mg/24 h on 2027-01-03 reaches 200 mg/24 h"),
    ("urine_m_protein", "I.A.4.a.ii", 0.2, "g/24h", "met", "Urine M-protein (24 h) 200 mg/24 h on 2027-01-03 reaches 200 mg/24 h"),
    ("urine_m_protein", "I.A.4.a.ii", 200, "mg/d", "met", "Urine M-protein (24 h) 200 mg/24 h on 2027-01-03 reaches 200 mg/24 h"),
    ("urine_m_protein", "I.A.4.a.ii", 199, "mg/24h", "not_met", "Urine M-protein (24 h) 199 mg/24 h on 2027-01-03 is below 200 mg/24 h"),
])
def test_m_protein_threshold(test, criterion, value, unit, status, fragment):
    d = determine_with(with_labs({"test": test, "value": value, "unit": unit, "date": "2027-01-03"}))
    n = node(d, criterion)
    assert n.status == status
    assert fragment in n.reason


def test_serum_below_threshold_in_window_with_one_above_is_met():
    d = determine_with(with_labs(
        {"test": "serum_m_protein", "value": 1.2, "unit": "g/dL", "date": "2026-12-20"},
        {"test": "serum_m_protein", "value": 0.8, "unit": "g/dL", "date": "2027-01-03"},
    ))
    n = node(d, "I.A.4.a.i")
    assert n.status == "met"
    assert "1.2 g/dL on 2026-12-20 reaches 1.0 g/dL" in n.reason


# ---- I.A.4.a.iii involved FLC >= 10 mg/dL with an abnormal ratio ------------------------------------------------------
def flc(kappa, lambda_, unit="mg/dL", day="2027-01-03", **ratio):
    labs = [{"test": "kappa_flc", "value": kappa, "unit": unit, "date": day},
            {"test": "lambda_flc", "value": lambda_, "unit": unit, "date": day}]
    if ratio:
        labs.append({"test": "flc_ratio", "unit": "1", "date": day, **ratio})
    return with_labs(*labs)


@pytest.mark.parametrize("mutate, fragment", [
    (flc(10, 0.5), "Involved kappa 10 mg/dL on 2027-01-03 reaches 10 mg/dL; ratio 20 is outside the standard range"),
    (flc(100, 5, unit="mg/L"), "Involved kappa 10 mg/dL on 2027-01-03 reaches 10 mg/dL"),
    (flc(0.5, 10), "Involved lambda 10 mg/dL on 2027-01-03 reaches 10 mg/dL; ratio 0.05 is outside the standard range"),
], ids=["kappa", "mg/L", "lambda"])
def test_involved_flc_exactly_10_with_abnormal_ratio_is_met(mutate, fragment):
    n = node(determine_with(mutate), "I.A.4.a.iii")
    assert n.status == "met"
    assert fragment in n.reason


def test_involved_flc_just_below_10_is_not_met():
    n = node(determine_with(flc(9.9, 0.5)), "I.A.4.a.iii")
    assert n.status == "not_met"
    assert "Involved kappa 9.9 mg/dL on 2027-01-03 is below 10 mg/dL" in n.reason


def test_normal_ratio_is_not_met_even_with_high_chains():
    n = node(determine_with(flc(12, 10)), "I.A.4.a.iii")
    assert n.status == "not_met"
    assert "Kappa/lambda ratio 1.2 on 2027-01-03 is normal" in n.reason


def test_labs_own_range_makes_the_ratio_normal():
    n = node(determine_with(flc(20, 10, value=2.0, reference_range=[0.31, 2.5])), "I.A.4.a.iii")
    assert n.status == "not_met"
    assert "within the lab's range 0.31-2.5" in n.reason


def test_renal_range_with_egfr_below_60_in_the_window():
    def mutate(data):
        flc(25, 10)(data)
        data["labs"].append({"test": "egfr", "value": 45, "unit": "mL/min/1.73m2", "date": "2026-12-20"})
    n = node(determine_with(mutate), "I.A.4.a.iii")
    assert n.status == "not_met"
    assert "Kappa/lambda ratio 2.5 on 2027-01-03 is normal" in n.reason and "renal range" in n.reason


def test_single_chain_is_unknown():
    d = determine_with(with_labs({"test": "kappa_flc", "value": 50, "unit": "mg/dL", "date": "2027-01-03"}))
    n = node(d, "I.A.4.a.iii")
    assert n.status == "unknown"
    assert "a single chain without its pair or ratio" in n.reason


# ---- I.A.4.b progression after the last regimen began, within 60 days of its last dose -----------------------------------
def progression_on(day: str, last_dose: str | None = "2026-11-01", **assessment):
    def mutate(data):
        if last_dose is None:
            data["therapies"][-1].pop("end")
        else:
            data["therapies"][-1]["end"] = last_dose
        data["assessments"] = [{"date": day, **(assessment or {"response": "progressive_disease"})}]
    return mutate


def test_progression_exactly_60_days_after_last_dose_is_met():
    n = node(determine_with(progression_on("2026-12-31")), "I.A.4.b")
    assert n.status == "met"
    assert "Progression on 2026-12-31, 60 days after the last dose on 2026-11-01" in n.reason


def test_progression_61_days_after_last_dose_is_not_met():
    d = determine_with(progression_on("2027-01-01"))
    n = node(d, "I.A.4.b")
    assert n.status == "not_met"
    assert "Progression on 2027-01-01 is 61 days after the last dose on 2026-11-01, beyond 60 days" in n.reason


def test_progression_on_therapy_is_met():
    n = node(determine_with(progression_on("2025-06-21")), "I.A.4.b")
    assert n.status == "met"
    assert "Progression on 2025-06-21, on therapy" in n.reason


def test_progression_on_ongoing_regimen_is_met():
    n = node(determine_with(progression_on("2027-01-05", last_dose=None)), "I.A.4.b")
    assert n.status == "met"
    assert "Progression on 2027-01-05, on therapy" in n.reason


@pytest.mark.parametrize("day", ["2025-06-20", "2025-06-10"], ids=["on-start", "before-start"])
def test_progression_on_or_before_last_regimen_start_is_disregarded(day):
    n = node(determine_with(progression_on(day)), "I.A.4.b")
    assert n.status == "unknown"
    assert "No progression documented or computed since the start of" in n.reason
    assert "on 2025-06-20" in n.reason


def test_imaging_new_lesion_counts_as_progression():
    n = node(determine_with(progression_on("2026-12-15", finding="new_lesion")), "I.A.4.b")
    assert n.status == "met"
    assert "Progression on 2026-12-15, 44 days after the last dose on 2026-11-01 (imaging: new lesion)" in n.reason


def test_confirmed_lab_progression_after_the_last_regimen_is_met():
    def mutate(data):
        data["assessments"] = []
        data["labs"] = [{"test": "serum_m_protein", "value": v, "unit": "g/dL", "date": day}
                        for v, day in ((1.0, "2026-09-01"), (1.5, "2026-10-01"), (1.6, "2026-11-01"))]
    n = node(determine_with(mutate), "I.A.4.b")
    assert n.status == "met"
    assert "Progression on 2026-10-01, on therapy" in n.reason
    assert "confirmed by 1.6 g/dL on 2026-11-01" in n.reason


def test_unconfirmed_lab_rise_is_unknown():
    def mutate(data):
        data["assessments"] = []
        data["labs"] = [{"test": "serum_m_protein", "value": v, "unit": "g/dL", "date": day}
                        for v, day in ((1.0, "2026-11-01"), (1.6, "2027-01-03"))]
    n = node(determine_with(mutate), "I.A.4.b")
    assert n.status == "unknown"
    assert n.reason.startswith("Unconfirmed rise:")
    assert "not yet confirmed (a later result must reach at least 1.5 g/dL)" in n.reason
    assert "of at least 1.5 g/dL, to confirm the rise on 2027-01-03" in n.missing[0]


# ---- I.A.3 age --------------------------------------------------------------------------------------------------------
def born(day: str):
    def mutate(data):
        data["member"]["birth_date"] = day
    return mutate


def test_18th_birthday_on_receipt_date_is_met():
    n = node(determine_with(born("2009-01-11")), "I.A.3")
    assert n.status == "met"
    assert n.reason == "Age 18 on 2027-01-11 (born 2009-01-11) is at least 18"


def test_18th_birthday_the_day_after_receipt_is_not_met():
    d = determine_with(born("2009-01-12"))
    n = node(d, "I.A.3")
    assert n.status == "not_met"
    assert n.reason == "Age 17 on 2027-01-11 (born 2009-01-12) is under 18"
    assert d.outcome == "does_not_meet_criteria"


def test_no_birth_date_is_unknown():
    def mutate(data):
        data["member"].pop("birth_date")
    n = node(determine_with(mutate), "I.A.3")
    assert n.status == "unknown"
    assert "No birth date was submitted" in n.reason


# ---- I.A.10 dose ------------------------------------------------------------------------------------------------------
def dose(value, unit, weight=None):
    def mutate(data):
        data["request"]["dose"] = {"value": value, "unit": unit}
        if weight is not None:
            data["member"]["weight"] = weight
    return mutate


@pytest.mark.parametrize("value, unit, status, fragment", [
    (115, "10*6{cells}", "met", "Dose 115 x 10^6 cells does not exceed 115 x 10^6"),
    (115000000, "{cells}", "met", "Dose 115 x 10^6 cells does not exceed 115 x 10^6"),
    (116, "10*6{cells}", "not_met", "Dose 116 x 10^6 cells exceeds 115 x 10^6"),
])
def test_flat_dose_boundary(value, unit, status, fragment):
    d = determine_with(dose(value, unit))
    n = node(d, "I.A.10")
    assert n.status == status
    assert fragment in n.reason


@pytest.mark.parametrize("per_kg, weight, status, fragment", [
    (1.15, {"value": 100, "unit": "kg"}, "met", "x 100 kg = 115 x 10^6 cells does not exceed 115 x 10^6"),
    (1.5, {"value": 76, "unit": "kg"}, "met", "x 76 kg = 114 x 10^6 cells does not exceed"),
    (1.5, {"value": 80, "unit": "kg"}, "not_met", "x 80 kg = 120 x 10^6 cells exceeds 115 x 10^6"),
    (1.0, {"value": 220.46, "unit": "lb"}, "met", "x 100 kg = 100 x 10^6 cells does not exceed"),
])
def test_per_kg_dose_uses_the_weight(per_kg, weight, status, fragment):
    n = node(determine_with(dose(per_kg, "10*6{cells}/kg", weight)), "I.A.10")
    assert n.status == status
    assert fragment in n.reason


def test_per_kg_dose_without_weight_is_unknown():
    d = determine_with(dose(1.5, "10*6{cells}/kg"))
    n = node(d, "I.A.10")
    assert n.status == "unknown"
    assert "per kilogram" in n.reason and "no weight was submitted" in n.reason
    assert d.outcome == "needs_information"


def test_no_dose_is_unknown():
    def mutate(data):
        data["request"].pop("dose")
    n = node(determine_with(mutate), "I.A.10")
    assert n.status == "unknown"
    assert "No dose was submitted" in n.reason


# ---- tocilizumab cap in the authorization ------------------------------------------------------------------------------
def tocilizumab(doses, mg, unit="mg"):
    def mutate(data):
        data["request"]["tocilizumab"] = {"doses": doses, "dose": {"value": mg, "unit": unit}}
    return mutate


@pytest.mark.parametrize("asked, granted", [
    ((6, 1000), (4, 800, True)),
    ((2, 400), (2, 400, False)),
    ((4, 800), (4, 800, False)),
    ((5, 800), (4, 800, True)),
    ((4, 801), (4, 800, True)),
])
def test_tocilizumab_cap(asked, granted):
    d = determine_with(tocilizumab(*asked))
    assert d.outcome == "meets_criteria"
    assert "All criteria of I.A are met" in d.reasons
    toci = d.authorization["tocilizumab"]
    assert (toci["doses"], toci["max_mg_per_dose"], toci["modified"]) == granted
    assert toci["requested"]["doses"] == asked[0] and toci["requested"]["mg_per_dose"] == asked[1]


def test_tocilizumab_in_grams_is_converted():
    d = determine_with(tocilizumab(4, 0.8, unit="g"))
    assert d.outcome == "meets_criteria"
    assert "All criteria of I.A are met" in d.reasons
    toci = d.authorization["tocilizumab"]
    assert (toci["doses"], toci["max_mg_per_dose"], toci["modified"]) == (4, 800, False)


def test_no_tocilizumab_requested_none_authorized():
    def mutate(data):
        data["request"].pop("tocilizumab")
    d = determine_with(mutate)
    assert d.outcome == "meets_criteria"
    assert d.summary == "Meets I.A"
    assert d.authorization["tocilizumab"] is None
