"""I.A.6 (and III.B, the same check) on CNS text read in context: findings, uncertain mentions, negative
work-ups and disregarded mentions, through the determination, with statuses, reasons and the documentation
asked for."""

from __future__ import annotations

import pytest

from priorauth.determination import determine

from helpers import make_case

HTN = {"code": "I10", "text": "essential hypertension"}


def cns(policy, **changes):
    d = determine(make_case(**changes), policy)
    node, iii = d.node("I.A.6"), d.node("III.B")
    assert (iii.status, iii.reason) == (node.status, node.reason)      # III.B runs the same check
    return d, node


# ---- the three REC scenarios' phrasings ----------------------------------------------------------------------
def test_preventive_use_and_family_history_are_not_findings(policy):
    d, n = cns(policy, history=[HTN, {"text": "levetiracetam for seizure prophylaxis"},
                                {"text": "family history of dementia"}])
    assert n.status == "met" and d.outcome == "meets_criteria"
    assert n.reason == ("No CNS involvement or CNS pathology in the submitted history (3 entries) or diagnoses; "
                        "not counted: 'levetiracetam for seizure prophylaxis': preventive, not a finding; "
                        "'family history of dementia': about someone else, not a finding")
    assert [e.value for e in n.evidence] == ["levetiracetam for seizure prophylaxis", "family history of dementia"]
    assert [e.source for e in n.evidence] == ["test.yaml#history[1]", "test.yaml#history[2]"]


def test_an_uncertain_mention_makes_the_criterion_unknown(policy):
    d, n = cns(policy, history=[HTN, {"text": "possible TIA 2024, work-up pending"}])
    assert n.status == "unknown" and d.outcome == "needs_information"
    assert n.reason == ("Uncertain CNS mention and no negative neurologic work-up on record: stroke or transient "
                        "ischemic attack: 'possible TIA 2024, work-up pending' in the history (history[1]), "
                        "uncertain ('possible')")
    assert n.missing == ("The neurologic history or the result of the work-up for 'possible TIA 2024, work-up "
                         "pending' (for instance the brain MRI report)",)
    assert {"criterion": "I.A.6", "documentation": n.missing[0]} in [
        {k: m[k] for k in ("criterion", "documentation")} for m in d.missing]


def test_a_remote_stroke_is_a_finding(policy):
    d, n = cns(policy, history=[HTN, {"text": "remote stroke 2015"}])
    assert n.status == "not_met" and d.outcome == "does_not_meet_criteria"
    assert n.reason == ("CNS pathology on record: stroke or transient ischemic attack: 'remote stroke 2015' in the "
                        "history (history[1]), a prior history, which the policy counts")
    assert "reviewer" not in n.reason
    assert [e.source for e in n.evidence] == ["test.yaml#history[1]"]


# ---- findings -------------------------------------------------------------------------------------------------
def test_a_present_finding_reads_plainly(policy):
    _, n = cns(policy, history=[HTN, {"text": "Seizure disorder on levetiracetam"}])
    assert n.status == "not_met"
    assert n.reason == ("CNS pathology on record: epilepsy or seizure: 'Seizure disorder on levetiracetam' in the "
                        "history (history[1])")


def test_a_coded_entry_is_a_finding_whatever_its_text(policy):
    _, n = cns(policy, history=[HTN, {"code": "G40.909", "text": "no seizures in 10 years"}])
    assert n.status == "not_met"
    assert "'G40.909 no seizures in 10 years' in the history (history[1])" in n.reason


def test_a_cns_diagnosis_is_a_finding(policy):
    _, n = cns(policy, request__diagnoses=["C90.02", "G35"])
    assert n.status == "not_met"
    assert n.reason == "CNS pathology on record: other serious CNS disease: 'G35' in the request's diagnoses (request.diagnoses[1])"


def test_a_finding_wins_over_an_uncertain_mention(policy):
    _, n = cns(policy, history=[{"text": "possible TIA"}, {"text": "h/o CVA 2012"}])
    assert n.status == "not_met" and "'h/o CVA 2012'" in n.reason and "possible TIA" not in n.reason


def test_one_entry_is_quoted_once_with_its_first_finding(policy):
    _, n = cns(policy, history=[{"text": "stroke 2015, seizures since"}])
    assert n.status == "not_met" and n.reason.count("stroke 2015, seizures since") == 1


def test_sentences_do_not_leak_their_negation(policy):
    _, n = cns(policy, history=[{"text": "No seizures. Stroke in 2019."}])
    assert n.status == "not_met"
    assert "'Stroke in 2019.' in the history (history[0]), a prior history" in n.reason


def test_an_assessment_text_is_read_too(policy):
    _, n = cns(policy, assessments=[{"date": "2026-12-05", "response": "progressive_disease",
                                     "text": "new leptomeningeal disease on MRI"}])
    assert n.status == "not_met" and "in the assessments (assessments[0])" in n.reason


# ---- uncertain mentions and negative work-ups -----------------------------------------------------------------
@pytest.mark.parametrize("workup", ["MRI brain negative", "CT head without acute findings",
                                    "neurology evaluation unremarkable"])
def test_a_negative_workup_settles_an_uncertain_mention(policy, workup):
    _, n = cns(policy, history=[HTN, {"text": "possible TIA 2024"}, {"text": workup}])
    assert n.status == "met"
    assert n.reason.endswith(f"not counted: 'possible TIA 2024': uncertain, settled by the negative work-up "
                             f"{workup!r} in the history (history[2])")
    assert ("negative neurologic work-up", workup) in [(e.fact, e.value) for e in n.evidence]


def test_a_pending_workup_settles_nothing(policy):
    _, n = cns(policy, history=[{"text": "r/o CNS involvement"}, {"text": "MRI brain ordered"}])
    assert n.status == "unknown" and "'r/o CNS involvement'" in n.reason and "('r/o')" in n.reason


def test_the_attestation_does_not_settle_an_uncertain_mention(policy):
    _, n = cns(policy, history=[{"text": "questionable seizure 2023"}], attestations={"no_cns_pathology": True})
    assert n.status == "unknown"
    assert n.missing == ("The neurologic history or the result of the work-up for 'questionable seizure 2023' (for "
                         "instance the brain MRI report)",)


def test_an_uncertain_assessment_text_asks_for_its_workup(policy):
    _, n = cns(policy, assessments=[{"date": "2026-12-05", "response": "progressive_disease",
                                     "text": "concerning for CNS involvement"}])
    assert n.status == "unknown" and "in the assessments (assessments[0]), uncertain ('concerning for')" in n.reason


def test_each_uncertain_entry_asks_for_its_own_workup(policy):
    _, n = cns(policy, history=[{"text": "possible TIA"}, {"text": "rule out seizure"}])
    assert [m.split("for ")[1].split(" (")[0] for m in n.missing] == ["'possible TIA'", "'rule out seizure'"]


# ---- met and unknown, as before, with what did not count -------------------------------------------------------
@pytest.mark.parametrize("text, why", [
    ("no history of seizures", "negated"),
    ("denies stroke", "negated"),
    ("mother had dementia", "about someone else"),
    ("risk of stroke", "a risk, not an event"),
    ("febrile seizure as a child", "febrile convulsions, excluded by the policy"),
    ("concussion 2010", "concussion, excluded by the policy"),
])
def test_disregarded_mentions_are_shown_with_why(policy, text, why):
    _, n = cns(policy, history=[HTN, {"text": text}])
    assert n.status == "met"
    assert n.reason.endswith(f"; not counted: {text!r}: {why}, not a finding")


def test_the_same_disregarded_clause_is_listed_once(policy):
    _, n = cns(policy, history=[{"text": "monitor for ICANS/seizures"}])
    assert n.status == "met" and n.reason.count("monitor for ICANS/seizures") == 1


def test_an_empty_history_is_met(policy):
    _, n = cns(policy, history=[])
    assert n.status == "met" and n.reason == "No CNS involvement or CNS pathology in the submitted history (0 entries) or diagnoses"


def test_without_history_or_attestation_it_stays_unknown_and_shows_what_did_not_count(policy):
    d, n = cns(policy, drop=("history",), assessments=[{"date": "2026-12-05", "response": "progressive_disease",
                                                        "text": "seizure precautions during admission"}])
    assert n.status == "unknown"
    assert n.reason == ("No medical history was submitted and the prescriber does not attest; not counted: "
                        "'seizure precautions during admission': preventive, not a finding")
    assert "medical history or problem list" in n.missing[0]


def test_the_attestation_is_met_without_history(policy):
    _, n = cns(policy, drop=("history",), attestations={"no_cns_pathology": True})
    assert n.status == "met" and n.reason == "The prescriber attests no CNS involvement or CNS pathology"


def test_an_entry_with_more_mentions_than_are_read_is_unknown_even_with_a_negative_workup(policy):
    from priorauth.terminology.cns import load_context_rules

    limit = load_context_rules()["bounds"]["mentions_read"]
    text = "".join(f"No stroke on visit {i}. " for i in range(limit + 5)) + " MRI brain negative."
    d = determine(make_case(history=[{"text": text}]), policy)
    n = d.node("I.A.6")
    assert n.status == "unknown" and n.reason.startswith("Not every CNS mention was read:")
    assert any("A reviewer's reading of the entry" in m for m in n.missing)
