"""Routing, outcome precedence, referrals, authorization, clocks and configuration."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest

from priorauth.config import PayerConfig
from priorauth.determination import determine
from priorauth.intake.errors import IntakeError
from priorauth.output import dumps, to_json

from helpers import make_case


def test_base_case_meets_with_authorization(policy):
    d = determine(make_case(), policy)
    assert d.outcome == "meets_criteria"
    assert d.authorization["valid_from"] == "2027-01-11" and d.authorization["valid_to"] == "2027-04-11"
    assert d.authorization["max_cells"] == 115e6
    assert d.review["required"] is True and "PDAC" in d.review["statement"]
    assert "no denial is final" in d.review["statement"]


@pytest.mark.parametrize("drug", ["axicabtagene ciloleucel", "Carvykti", "something unheard of"])
def test_other_product_not_applicable(policy, drug):
    d = determine(make_case(request__drug=drug), policy)
    assert d.outcome == "not_applicable"
    assert d.node("scope.product").status == "not_met"
    assert d.criteria == [] and d.authorization is None
    assert "anitocabtagene autoleucel" in d.reasons[0]


@pytest.mark.parametrize("alias", ["KITE-772", "anito-cel", "Anitocabtagene Autoleucel"])
def test_product_aliases_in_scope(policy, alias):
    assert determine(make_case(request__drug=alias), policy).outcome == "meets_criteria"


def test_medicare_not_applicable(policy):
    d = determine(make_case(member__line_of_business="medicare"), policy)
    assert d.outcome == "not_applicable"
    assert "medicare" in d.node("scope.line_of_business").reason


def test_a_missing_line_of_business_is_refused_only_for_the_policys_product(policy):
    """Routing in the specification's order: the product first, so another product is not applicable however
    little the request says of the member's plan; the policy's product without a line of business is refused."""
    d = determine(make_case(request__drug="idecabtagene vicleucel", drop=("member__line_of_business",)), policy)
    assert d.outcome == "not_applicable" and "idecabtagene vicleucel" in d.node("scope.product").reason
    with pytest.raises(IntakeError) as info:
        determine(make_case(drop=("member__line_of_business",)), policy)
    assert info.value.problems == ["member.line_of_business: is required (commercial, marketplace, medicaid or the "
                                   "plan's name for another line of business)"]
    assert info.value.origin == "test.yaml"


def test_no_effective_date_configured(policy):
    d = determine(make_case(drop=("context",)), policy)
    assert d.outcome == "not_applicable"
    assert "no effective date" in d.reasons[0]


def test_effective_date_from_payer_configuration(policy):
    cfg = PayerConfig(policy_effective=date(2026, 12, 23))
    assert determine(make_case(drop=("context",)), policy, cfg).outcome == "meets_criteria"
    # a case's context wins over the configuration, null included
    d = determine(make_case(context={"policy_effective": None}), policy, cfg)
    assert d.outcome == "not_applicable"


def test_effective_on_the_day(policy):
    d = determine(make_case(request__received="2026-12-23", labs=[{"test": "serum_m_protein", "value": 1.6, "unit": "g/dL", "date": "2026-12-20"}]), policy)
    assert d.node("scope.effective_date").status == "met"
    d = determine(make_case(request__received="2026-12-22"), policy)
    assert d.outcome == "not_applicable" and "before the policy's effective date 2026-12-23" in d.reasons[0]


@pytest.mark.parametrize("lob,flag,formulary,expected", [
    ("commercial", False, True, "CP.CPA.09"),
    ("marketplace", False, True, "HIM.PA.154"),
    ("medicaid", False, True, "CP.PMN.53"),
    ("commercial", True, True, "CP.CPA.190"),
    ("marketplace", True, True, "HIM.PA.33"),
    ("medicaid", True, True, "CP.PMN.255"),
    ("commercial", True, False, "CP.CPA.190"),
    ("marketplace", True, False, "HIM.PA.103"),
    ("medicaid", True, False, "CP.PMN.16"),
])
def test_referral_table(policy, lob, flag, formulary, expected):
    case = make_case(member__line_of_business=lob, request__diagnoses=["E85.81"],
                     context={"policy_effective": "2026-12-23", "label_change_within_6_months": flag,
                              "formulary": {lob: formulary}})
    d = determine(case, policy)
    assert d.outcome == "refer_to_policy" and d.refer_to == expected
    assert d.node("I.B").status == "met"
    assert d.node("I.B.1").status == ("met" if flag else "not_met")
    assert expected in d.summary


@pytest.mark.parametrize("code", ["C90.10", "C90.20", "C90.31"])
def test_plasma_cell_leukemia_and_plasmacytoma_are_not_myeloma(policy, code):
    d = determine(make_case(request__diagnoses=[code]), policy)
    assert d.outcome == "refer_to_policy"
    assert d.node("scope.diagnosis").status == "not_met"


def test_continuation_other_diagnosis_uses_II_B(policy):
    d = determine(make_case(request__kind="continuation", request__diagnoses=["E85.81"]), policy)
    assert d.outcome == "refer_to_policy" and d.refer_to == "CP.PMN.53"
    assert d.node("II.B.2").status == "met" and d.node("I.B") is None


def test_continuation_myeloma(policy):
    d = determine(make_case(request__kind="continuation"), policy)
    assert d.outcome == "does_not_meet_criteria"
    assert d.node("II.A.1").status == "not_met" and "single infusion" in d.node("II.A.1").reason
    assert d.node("I.A") is None


def test_label_change_on_failed_myeloma_request_names_I_B_1(policy):
    case = make_case(member__birth_date="2010-01-01",
                     context={"policy_effective": "2026-12-23", "label_change_within_6_months": True})
    d = determine(case, policy)
    assert d.outcome == "does_not_meet_criteria"
    assert d.refer_to == "CP.PMN.255"
    assert any("label change" in r for r in d.reasons)


def test_label_change_does_not_refer_a_request_that_only_needs_information(policy):
    case = make_case(drop=("therapies",), context={"policy_effective": "2026-12-23", "label_change_within_6_months": True})
    d = determine(case, policy)
    assert d.outcome == "needs_information" and d.refer_to is None


def test_not_met_wins_over_unknown_and_all_failures_are_listed(policy):
    case = make_case(member__birth_date="2010-01-01", request__dose={"value": 200, "unit": "10*6{cells}"},
                     drop=("prescriber",))
    d = determine(case, policy)
    assert d.outcome == "does_not_meet_criteria"
    assert d.node("I.A.2").status == "unknown"
    failed = [r.split(" ")[0] for r in d.reasons]
    assert failed == ["I.A.3", "I.A.10"]
    assert d.missing == []


def test_needs_information_lists_documentation_per_criterion(policy):
    case = make_case(drop=("therapies", "history", "member__birth_date"))
    d = determine(case, policy)
    assert d.outcome == "needs_information"
    by = {}
    for m in d.missing:
        by.setdefault(m["criterion"], []).append(m["documentation"])
    assert set(by) == {"I.A.3", "I.A.5", "I.A.6", "I.A.7", "I.A.8"}
    assert "date of birth" in by["I.A.3"][0]
    assert "treatment history" in by["I.A.5"][0]
    assert "CNS" in by["I.A.6"][0]
    # I.A.4 is met by the serum M-protein, so progression is not asked for
    assert d.node("I.A.4").status == "met"


def test_attestations_settle_exclusions_but_not_lines(policy):
    case = make_case(drop=("therapies", "history"),
                     attestations={"no_cns_pathology": True, "no_prior_bcma": True, "no_prior_car_t": True,
                                   "prior_lines": 4, "prior_classes": ["imid", "proteasome_inhibitor", "anti_cd38"]})
    d = determine(case, policy)
    for cid in ("I.A.6", "I.A.7", "I.A.8"):
        assert d.node(cid).status == "met" and "attests" in d.node(cid).reason
    assert d.node("I.A.5").status == "unknown" and "states 4 prior lines" in d.node("I.A.5").reason
    assert d.outcome == "needs_information"


def test_attestation_false_is_a_statement(policy):
    d = determine(make_case(drop=("therapies",), attestations={"no_prior_bcma": False}), policy)
    assert d.node("I.A.7").status == "not_met" and "no_prior_bcma: false" in str(d.node("I.A.7").evidence)


def test_prior_anito_cel_fails_I_A_7_and_8(policy):
    from helpers import BASE

    therapies = BASE["therapies"] + [{"drugs": ["KITE-772"], "start": "2026-12-05", "end": "2026-12-05"}]
    d = determine(make_case(therapies=therapies), policy)
    assert d.node("I.A.7").status == "not_met" and d.node("I.A.8").status == "not_met"


def test_empty_history_is_newly_diagnosed(policy):
    d = determine(make_case(therapies=[]), policy)
    assert d.node("I.A.1").status == "not_met" and "newly diagnosed" in d.node("I.A.1").reason
    assert d.node("I.A.5").status == "not_met"
    assert d.node("I.A.7").status == "met"  # an empty history shows no BCMA therapy


def test_tocilizumab_not_requested(policy):
    d = determine(make_case(drop=("request__tocilizumab",)), policy)
    assert d.authorization["tocilizumab"] is None


def test_tocilizumab_per_kg(policy):
    d = determine(make_case(request__tocilizumab={"doses": 4, "dose": {"value": 8, "unit": "mg/kg"}},
                            member__weight={"value": 120, "unit": "kg"}), policy)
    t = d.authorization["tocilizumab"]
    assert t["max_mg_per_dose"] == 800 and t["modified"] is True and t["requested"]["mg_per_dose"] == 960
    d = determine(make_case(request__tocilizumab={"doses": 4, "dose": {"value": 8, "unit": "mg/kg"}}), policy)
    t = d.authorization["tocilizumab"]
    assert t["max_mg_per_dose"] == 800 and t["modified"] is False and "no weight" in t["note"]


@pytest.mark.parametrize("ceiling, weight, mg, modified, basis", [
    (None, 82, 656, False, "8 mg/kg x 82 kg = 656 mg"),                         # no ceiling: the weight decides
    (800, 82, 800, False, "8 mg/kg (656 mg at 82 kg), up to 800 mg per dose as ordered"),
    (1000, 82, 800, True, "up to 1000 mg per dose as ordered, capped at 800 mg"),  # the order's ceiling over the cap
    (800, None, 800, False, "8 mg/kg, up to 800 mg per dose as ordered"),      # no weight needed with a ceiling
])
def test_a_per_kg_order_with_its_own_ceiling_per_dose(policy, ceiling, weight, mg, modified, basis):
    toci = {"doses": 4, "dose": {"value": 8, "unit": "mg/kg"}}
    if ceiling is not None:
        toci["max_per_dose"] = {"value": ceiling, "unit": "mg"}
    kw = {"member__weight": {"value": weight, "unit": "kg"}} if weight is not None else {}
    t = determine(make_case(request__tocilizumab=toci, **kw), policy).authorization["tocilizumab"]
    assert t["max_mg_per_dose"] == mg and t["modified"] is modified
    assert basis in t["basis"]


def test_a_ceiling_per_dose_is_in_mg(policy):
    from priorauth.intake.errors import IntakeError
    with pytest.raises(IntakeError, match="max_per_dose"):
        make_case(request__tocilizumab={"doses": 4, "dose": {"value": 8, "unit": "mg/kg"},
                                        "max_per_dose": {"value": 10, "unit": "mg/kg"}})


@pytest.mark.parametrize("urgency,lob,cfg,due", [
    ("standard", "medicaid", None, datetime(2027, 1, 18)),
    ("expedited", "medicaid", None, datetime(2027, 1, 14)),
    ("expedited", "medicaid", PayerConfig(clocks={"medicaid": {"expedited": 24}}), datetime(2027, 1, 12)),
    ("standard", "commercial", PayerConfig(clocks={"medicaid": {"standard": 24}}), datetime(2027, 1, 18)),
])
def test_due_time(policy, urgency, lob, cfg, due):
    d = determine(make_case(request__urgency=urgency, member__line_of_business=lob), policy, cfg)
    assert d.due == due


def test_due_time_from_receipt_time(policy):
    d = determine(make_case(request__received="2027-01-11T15:30:00", request__urgency="expedited"), policy)
    assert d.due == datetime(2027, 1, 14, 15, 30) and d.as_of == date(2027, 1, 11)


def test_valid_to_clamps_to_month_end(policy):
    case = make_case(request__received="2027-11-30", labs=[{"test": "serum_m_protein", "value": 1.6, "unit": "g/dL", "date": "2027-11-20"}],
                     assessments=[{"date": "2027-11-01", "response": "progressive_disease"}])
    d = determine(case, policy)
    assert d.authorization["valid_to"] == "2028-02-29"


def test_facts_after_the_evaluation_date_are_reported_not_used(policy):
    case = make_case(labs=[{"test": "serum_m_protein", "value": 1.6, "unit": "g/dL", "date": "2027-01-20"}])
    d = determine(case, policy)
    assert d.node("I.A.4.a.i").status == "unknown"
    assert any("after the evaluation date" in p and "labs[0]" in p for p in d.data_problems)


def test_as_of_moves_every_window(policy):
    d = determine(make_case(), policy, as_of=date(2027, 2, 3))  # the serum result is now 31 days old
    assert d.node("I.A.4.a.i").status == "unknown"
    assert d.authorization["valid_from"] == "2027-02-03"


def test_evidence_names_its_source(policy):
    out = to_json(determine(make_case(), policy))
    node = next(c for c in out["criteria"] if c["id"] == "I.A.4.a.i")
    assert node["evidence"][0] == {"fact": "serum M-protein", "value": 1.6, "unit": "g/dL", "date": "2027-01-03",
                                   "source": "test.yaml#labs[0]"}


def test_json_is_deterministic_and_serializable(policy):
    a = dumps(to_json(determine(make_case(), policy)))
    b = dumps(to_json(determine(make_case(), policy)))
    assert a == b
    assert json.loads(a)["outcome"] == "meets_criteria"


def test_every_criterion_of_the_policy_is_reported(policy):
    out = to_json(determine(make_case(), policy))
    ids = {c["id"] for c in out["criteria"]}
    expected = {f"I.A.{i}" for i in range(1, 11)} | {"I.A.4.a.i", "I.A.4.a.ii", "I.A.4.a.iii", "I.A.4.b",
                                                     "I.A.5.a", "I.A.5.b", "I.A.5.c", "III.A", "III.B"}
    assert expected <= ids
    assert all(c["reason"] for c in out["criteria"])


@pytest.mark.parametrize("written,expected", [("HIM", "marketplace"), ("Health Insurance Marketplace", "marketplace"),
                                              ("Medicare Advantage", "medicare"), ("Medicaid", "medicaid")])
def test_line_of_business_as_plans_write_it(policy, written, expected):
    d = determine(make_case(member__line_of_business=written), policy)
    assert d.node("scope.line_of_business").evidence[0].value == expected
    assert d.outcome == ("not_applicable" if expected == "medicare" else "meets_criteria")


def test_provider_directory_resolves_an_unstated_specialty(policy):
    case = make_case(prescriber={"npi": "1234567893"})
    assert determine(case, policy).node("I.A.2").status == "unknown"
    d = determine(case, policy, PayerConfig(provider_directory={"1234567893": "207RX0202X"}))
    assert d.node("I.A.2").status == "met"
    assert d.node("I.A.2").evidence[0].source == "provider directory (NPI 1234567893)"
    d = determine(case, policy, PayerConfig(provider_directory={"1234567893": "207Q00000X"}))
    assert d.node("I.A.2").status == "not_met" and "family medicine" in d.node("I.A.2").reason


def test_unconfirmed_rise_asks_for_the_confirming_test_in_I_A_1_and_I_A_4_b(policy):
    case = make_case(request__diagnoses=["C90.00"], assessments=[], labs=[
        {"test": "serum_m_protein", "value": 0.5, "unit": "g/dL", "date": "2025-09-01"},
        {"test": "serum_m_protein", "value": 1.2, "unit": "g/dL", "date": "2026-12-20"}])
    d = determine(case, policy)
    assert d.outcome == "needs_information"
    assert d.node("I.A.1").status == "unknown" and "unconfirmed rise: serum M-protein 1.2 g/dL" in d.node("I.A.1").reason
    assert d.node("I.A.4.b").status == "unknown"
    asked = [m["documentation"] for m in d.missing if m["criterion"] == "I.A.1"]
    assert asked == ["A serum M-protein result dated after 2026-12-20 of at least 1.0 g/dL, to confirm the rise on "
                     "2026-12-20 (IMWG requires two consecutive assessments), or a disease assessment showing "
                     "progression or relapse"]


# ---- reasons a reviewer can sign ------------------------------------------------------------------------------------
def test_a_parent_states_the_decisive_fact_of_its_failing_child(policy):
    d = determine(make_case(therapies=[
        {"drugs": ["bortezomib", "lenalidomide", "dexamethasone"], "start": "2021-03-01", "end": "2021-07-15"},
        {"drugs": ["carfilzomib", "pomalidomide", "dexamethasone"], "start": "2022-01-01", "end": "2023-06-01"},
        {"drugs": ["selinexor", "bortezomib", "dexamethasone"], "start": "2023-07-01", "end": "2026-12-01"},
    ]), policy)
    i_a5 = d.node("I.A.5")
    assert i_a5.status == "not_met"
    assert "Not met: I.A.5.c: No anti-CD38 monoclonal antibody in the 3 prior lines" in i_a5.reason
    assert "All 3 met" not in i_a5.reason
    assert "I.A.5: I.A.5.c: No anti-CD38 monoclonal antibody in the 3 prior lines" in d.node("I.A").reason


def test_a_count_below_the_minimum_never_sits_beside_all_met(policy):
    d = determine(make_case(therapies=[
        {"drugs": ["daratumumab", "lenalidomide", "dexamethasone"], "start": "2021-03-01", "end": "2021-07-15"},
        {"drugs": ["carfilzomib", "pomalidomide", "dexamethasone"], "start": "2022-01-01", "end": "2026-12-01"},
    ]), policy)
    n = d.node("I.A.5")
    assert n.status == "not_met" and "All 3 met" not in n.reason
    assert n.reason.startswith("Only 2 prior lines of therapy (IMWG rules), fewer than the 3 required: line 1:")
    assert d.node("I.A").reason.startswith("Not met: I.A.5: only 2 prior lines of therapy")


def test_section_III_reads_met_as_good_news(policy):
    d = determine(make_case(), policy)
    iii = d.node("III")
    assert iii.status == "met" and iii.label.startswith("No use that section III excludes")


def test_tocilizumab_cap_and_per_kg_arithmetic_are_shown(policy):
    d = determine(make_case(request__tocilizumab={"doses": 6, "dose": {"value": 8, "unit": "mg/kg"}},
                            member__weight={"value": 110, "unit": "kg"}), policy)
    t = d.authorization["tocilizumab"]
    assert t["basis"] == "8 mg/kg x 110 kg = 880 mg, capped at 800 mg; 6 doses requested, at most 4"
    assert (t["doses"], t["max_mg_per_dose"], t["modified"]) == (4, 800, True)
    d = determine(make_case(request__tocilizumab={"doses": 4, "dose": {"value": 8, "unit": "mg/kg"}},
                            member__weight={"value": 82, "unit": "kg"}), policy)
    assert d.authorization["tocilizumab"]["basis"] == "8 mg/kg x 82 kg = 656 mg, within the cap of 800 mg"


def test_dose_reason_speaks_of_car_positive_viable_t_cells(policy):
    n = determine(make_case(), policy).node("I.A.10")
    assert n.reason == "Dose 115 x 10^6 cells does not exceed 115 x 10^6 (the maximum dose of CAR-positive viable T cells)"
    assert "10*6" not in n.reason


def test_no_effective_date_says_how_to_set_it(policy):
    d = determine(make_case(drop=("context",)), policy)
    assert "policy_effective in its payer configuration" in d.reasons[0] and "context.policy_effective" in d.reasons[0]


def test_an_evaluation_date_before_the_effective_date_is_not_called_the_receipt_date(policy):
    d = determine(make_case(request__received="2027-01-11"), policy, as_of=date(2026, 12, 1))
    assert d.outcome == "not_applicable"
    assert "the evaluation date 2026-12-01 is before the policy's effective date 2026-12-23" in d.reasons[0]
    assert "received" not in d.reasons[0]
    assert to_json(d)["received"] == "2027-01-11" and to_json(d)["as_of"] == "2026-12-01"
