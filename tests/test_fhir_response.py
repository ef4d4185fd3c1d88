"""PAS response Bundles: ClaimResponse per determination, pended or after a reviewer's decision."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from functools import lru_cache

import pytest
from conftest import SCENARIOS
from helpers import make_case

from priorauth.determination import determine
from priorauth.fhir.claim_response import (
    ReviewerDecision, cited_criteria, default_auth_number, is_clinical_specialty, is_valid_npi, response_bundle,
)
from priorauth.fhir.codes import (
    EXT_ITEM_AUTHORIZED_DETAIL, EXT_ITEM_PREAUTH_PERIOD, EXT_REVIEW_ACTION, EXT_REVIEW_ACTION_CODE, EXT_REVIEWER, HCPCS,
    NPI, NUCC, PAS_CLAIM, PAS_CLAIM_RESPONSE, PAS_RESPONSE_BUNDLE, X12_REVIEW_ACTION,
)
from priorauth.fhir.pas_build import bundle_from_case
from priorauth.fhir.validate import validate_resource
from priorauth.intake.casefile import load_case_file
from priorauth.policies import default_policy

CREATED = datetime(2027, 1, 15, 12, 0, tzinfo=timezone.utc)
DECIDED = datetime(2027, 1, 15, 9, 30, tzinfo=timezone.utc)
REVIEWER_NPI = "1234567893"       # CMS's example NPI (valid check digit)
HEME_ONC = "207RH0003X"


@lru_cache(maxsize=None)
def scenario(name: str):
    case = load_case_file(SCENARIOS / f"{name}.yaml")
    return case, determine(case, default_policy())


def decision(action: str, reason: str = "", **kw) -> ReviewerDecision:
    args = {"reviewer_npi": REVIEWER_NPI, "reviewer_specialty": HEME_ONC, "decided_at": DECIDED}
    args.update(kw)
    return ReviewerDecision(action, reason, **args)


def _refs(node):
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node["reference"]
        for v in node.values():
            yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def produce(det, **kw) -> dict:
    """A response bundle, checked for what every response must be: valid FHIR, PAS shape, references resolved."""
    kw.setdefault("created", CREATED)
    if "request" not in kw:
        kw.setdefault("case", scenario(det.case_id)[0] if (SCENARIOS / f"{det.case_id}.yaml").exists() else None)
    bundle = response_bundle(det, **kw)
    assert validate_resource(bundle) == []
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    assert bundle["meta"]["profile"] == [PAS_RESPONSE_BUNDLE]
    assert bundle["timestamp"] == kw["created"].isoformat().replace("+00:00", "Z")
    cr = bundle["entry"][0]["resource"]
    assert cr["resourceType"] == "ClaimResponse" and cr["meta"]["profile"] == [PAS_CLAIM_RESPONSE]
    assert (cr["status"], cr["use"]) == ("active", "preauthorization")
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(set(urls)) == len(urls)
    # every reference but the one to the Claim (not copied, as in the PAS examples) resolves in the bundle
    without_request = {k: v for k, v in cr.items() if k != "request"}
    for ref in list(_refs(without_request)) + [r for e in bundle["entry"][1:] for r in _refs(e["resource"])]:
        # a relative reference resolves against the base of a RESTful fullUrl
        assert ref in urls or (not ref.startswith("urn:") and "://" not in ref
                               and any(u.endswith("/" + ref) for u in urls if "://" in u)), ref
    return bundle


def cr_of(bundle: dict) -> dict:
    return bundle["entry"][0]["resource"]


def review_code(item: dict) -> str:
    [adj] = item["adjudication"]
    assert adj["category"]["coding"] == [{"system": "http://terminology.hl7.org/CodeSystem/adjudication",
                                          "code": "submitted"}]
    [action] = [e for e in adj["extension"] if e["url"] == EXT_REVIEW_ACTION]
    [code] = [e for e in action["extension"] if e["url"] == EXT_REVIEW_ACTION_CODE]
    [coding] = code["valueCodeableConcept"]["coding"]
    assert coding["system"] == X12_REVIEW_ACTION
    return coding["code"]


def review_number(item: dict) -> str | None:
    [action] = [e for e in item["adjudication"][0]["extension"] if e["url"] == EXT_REVIEW_ACTION]
    numbers = [e["valueString"] for e in action["extension"] if e["url"] == "number"]
    return numbers[0] if numbers else None


def codes(bundle: dict) -> dict[int, str]:
    return {it["itemSequence"]: review_code(it) for it in cr_of(bundle)["item"]}


def item(bundle: dict, seq: int) -> dict:
    [it] = [i for i in cr_of(bundle)["item"] if i["itemSequence"] == seq]
    return it


def ext(element: dict, url: str) -> list[dict]:
    return [e for e in element.get("extension", ()) if e["url"] == url]


def authorized_quantity(it: dict) -> float | None:
    found = ext(it, EXT_ITEM_AUTHORIZED_DETAIL)
    if not found:
        return None
    [q] = [e for e in found[0]["extension"] if e["url"] == "quantity"]
    return q["valueQuantity"]["value"]


def notes(bundle: dict) -> list[str]:
    ns = cr_of(bundle)["processNote"]
    assert [n["number"] for n in ns] == list(range(1, len(ns) + 1))
    assert all(n["type"] == "display" for n in ns)
    return [n["text"] for n in ns]


def item_notes(bundle: dict, seq: int) -> list[str]:
    by_number = {n["number"]: n["text"] for n in cr_of(bundle)["processNote"]}
    return [by_number[k] for k in item(bundle, seq).get("noteNumber", ())]


def reviewer(bundle: dict) -> dict:
    [r] = ext(cr_of(bundle), EXT_REVIEWER)
    return {e["url"]: {k: v for k, v in e.items() if k != "url"} for e in r["extension"]}


# ---- no decision: everything pended, the recommendation in plain words -----------------------------------------
PENDED = [
    ("PUB-01", "meets_criteria", "meets the criteria"),
    ("PUB-03", "does_not_meet_criteria", "does not meet the criteria"),
    ("PUB-08", "needs_information", "needs information"),
    ("PUB-13", "refer_to_policy", "refer to another policy"),
    ("PUB-19", "not_applicable", "not applicable"),
]


@pytest.mark.parametrize("name,outcome,words", PENDED)
def test_without_a_decision_every_item_is_pended_with_the_recommendation(name, outcome, words):
    case, det = scenario(name)
    assert det.outcome == outcome
    bundle = produce(det)
    cr = cr_of(bundle)
    assert codes(bundle) == {1: "A4", 2: "A4"}          # the product and tocilizumab
    assert cr["outcome"] == "complete"
    assert "preAuthRef" not in cr and "preAuthPeriod" not in cr
    assert all(not ext(it, EXT_ITEM_PREAUTH_PERIOD) and not ext(it, EXT_ITEM_AUTHORIZED_DETAIL) for it in cr["item"])
    assert all(review_number(it) is None for it in cr["item"])
    assert not ext(cr, EXT_REVIEWER)
    text = notes(bundle)
    assert text[0].startswith("priorauth recommendation, not a decision") and words in text[0]
    assert det.summary in text[0]
    for reason in det.reasons:
        assert any(reason in t for t in text), reason
    for m in det.missing:
        assert f"Documentation needed for {m['criterion']}: {m['documentation']}." in text
    assert det.review["statement"] in text
    assert "no denial is final without a clinician" in det.review["statement"]
    if outcome != "not_applicable":
        assert "PDAC" in det.review["statement"]
    assert "Decision due by 2027-01-18 00:00." in text
    assert "not a decision" in cr["disposition"]


def test_pended_notes_name_the_criteria_and_documents():
    text = notes(produce(scenario("PUB-03")[1]))
    assert "Reason: I.A.7 not met: Prior BCMA-directed therapy: teclistamab from 2025-06-20" in text
    text = notes(produce(scenario("PUB-08")[1]))
    assert sum(t.startswith("Documentation needed for I.A.4: ") for t in text) == 4
    assert any("Serum M-protein result dated 2026-12-12 or later" in t for t in text)
    text = notes(produce(scenario("PUB-13")[1]))
    assert "Recommended referral: review under CP.CPA.09." in text
    text = notes(produce(scenario("PUB-19")[1]))
    assert any(t.startswith("Reason (the member's line of business is covered by the policy): ") and "medicare" in t
               for t in text)


def test_pended_recommendation_states_the_tocilizumab_cap():
    text = notes(produce(scenario("PUB-21")[1]))
    assert ("Recommended authorization: anitocabtagene autoleucel: 1 dose of at most 115 x 10^6 CAR-positive viable "
            "T cells, valid 2027-01-11 to 2027-04-11.") in text
    assert any("4 doses of at most 800 mg each" in t and "requested 6 doses of 1000 mg" in t for t in text)


# ---- decisions ------------------------------------------------------------------------------------------------
def test_approve_capped_tocilizumab_is_modified_to_four_doses():
    case, det = scenario("PUB-21")
    assert det.authorization["tocilizumab"]["modified"] is True
    bundle = produce(det, decision=decision("approve"))
    cr = cr_of(bundle)
    assert codes(bundle) == {1: "A1", 2: "A6"}
    assert authorized_quantity(item(bundle, 1)) is None
    assert authorized_quantity(item(bundle, 2)) == 4
    assert any("at most 800 mg" in t and "requested 6 doses of 1000 mg" in t for t in item_notes(bundle, 2))
    assert cr["outcome"] == "complete"
    assert cr["preAuthRef"] == default_auth_number("PUB-21") == default_auth_number("PUB-21")
    assert cr["preAuthRef"] != default_auth_number("PUB-01")
    assert cr["preAuthPeriod"] == {"start": "2027-01-11", "end": "2027-04-11"}
    for seq in (1, 2):
        assert [e["valuePeriod"] for e in ext(item(bundle, seq), EXT_ITEM_PREAUTH_PERIOD)] == [cr["preAuthPeriod"]]
        assert review_number(item(bundle, seq)) == cr["preAuthRef"]
    assert reviewer(bundle) == {
        "npi": {"valueIdentifier": {"system": NPI, "value": REVIEWER_NPI}},
        "specialty": {"valueCodeableConcept": {"coding": [{"system": NUCC, "code": HEME_ONC}]}},
        "decidedAt": {"valueDateTime": "2027-01-15T09:30:00Z"},
    }
    assert notes(bundle)[0].startswith("Certified by reviewer NPI 1234567893 (207RH0003X) on 2027-01-15T09:30:00Z")


def test_approve_within_the_cap_certifies_both_in_total():
    bundle = produce(scenario("PUB-01")[1], decision=decision("approve", "criteria met on review"))
    assert codes(bundle) == {1: "A1", 2: "A1"}
    assert all(authorized_quantity(it) is None for it in cr_of(bundle)["item"])
    assert "criteria met on review" in notes(bundle)[0]


def test_given_authorization_number_is_used():
    bundle = produce(scenario("PUB-01")[1], decision=decision("approve", auth_number="UM-2027-000123"))
    assert cr_of(bundle)["preAuthRef"] == "UM-2027-000123"
    assert {review_number(it) for it in cr_of(bundle)["item"]} == {"UM-2027-000123"}


def test_modify_gives_a6_with_the_authorized_quantities():
    bundle = produce(scenario("PUB-21")[1], decision=decision("modify", "tocilizumab limited to the I.A dosing"))
    assert codes(bundle) == {1: "A6", 2: "A6"}
    assert (authorized_quantity(item(bundle, 1)), authorized_quantity(item(bundle, 2))) == (1, 4)
    assert cr_of(bundle)["outcome"] == "complete" and "preAuthRef" in cr_of(bundle)


def test_deny_with_a_cited_criterion_is_not_certified():
    det = scenario("PUB-03")[1]
    reason = "I.A.7: prior BCMA-directed therapy (teclistamab) documented"
    bundle = produce(det, decision=decision("deny", reason, reviewer_specialty="medical oncology"))
    cr = cr_of(bundle)
    assert codes(bundle) == {1: "A3", 2: "A3"}
    assert cr["outcome"] == "complete"
    assert "preAuthRef" not in cr and "preAuthPeriod" not in cr
    assert all(not ext(it, EXT_ITEM_PREAUTH_PERIOD) and review_number(it) is None for it in cr["item"])
    text = notes(bundle)
    assert text[0].startswith("Not certified by clinical reviewer NPI 1234567893 (medical oncology)")
    assert reason in text[0]
    label = default_policy().node("I.A.7").label
    assert any(t.startswith(f"I.A.7 ({label}") and "not met" in t and "teclistamab" in t for t in text)
    assert all(text[0] in item_notes(bundle, seq) for seq in (1, 2))
    assert reviewer(bundle)["specialty"] == {"valueCodeableConcept": {"text": "medical oncology"}}


def test_deny_of_a_meets_recommendation_is_possible_for_a_clinician():
    dec = decision("deny", "I.A.4: the M-protein is not measurable on review")
    bundle = produce(scenario("PUB-01")[1], decision=dec)
    assert codes(bundle) == {1: "A3", 2: "A3"}


@pytest.mark.parametrize("reason", ["not medically necessary", "see the policy, criterion seven",
                                    "see CP.PMN.255 and HIM.PA.33", "I did not find it"])
def test_deny_without_a_criterion_id_is_refused(reason):
    with pytest.raises(ValueError, match="cite at least one criterion"):
        decision("deny", reason)


def test_deny_without_a_reason_is_refused():
    with pytest.raises(ValueError, match="needs a reason"):
        decision("deny", "  ")


@pytest.mark.parametrize("specialty", ["utilization review coordinator", "163W00000X", "183700000X", "261QM1300X",
                                       "pharmacy technician", "intake"])
def test_deny_without_a_clinical_reviewer_is_refused(specialty):
    with pytest.raises(ValueError, match="clinician"):
        decision("deny", "I.A.7 not met", reviewer_specialty=specialty)
    decision("approve", reviewer_specialty=specialty)   # an approval does not need a clinician


@pytest.mark.parametrize("npi", ["1234567890", "123456789", "", "12345678931", "ABCDEFGHIJ"])
def test_a_reviewer_needs_a_valid_npi(npi):
    with pytest.raises(ValueError, match="NPI"):
        decision("deny", "I.A.7 not met", reviewer_npi=npi)
    with pytest.raises(ValueError, match="NPI"):
        decision("approve", reviewer_npi=npi)


@pytest.mark.parametrize("specialty", [HEME_ONC, "207R00000X", "183500000X", "363L00000X", "Hematology/Oncology",
                                       "clinical pharmacist", "PharmD", "internal medicine", "hem onc"])
def test_clinical_specialties_may_deny(specialty):
    assert is_clinical_specialty(specialty)
    assert decision("deny", "I.A.7 not met", reviewer_specialty=specialty).cited == ("I.A.7",)


def test_deny_citing_a_criterion_the_policy_lacks_is_refused():
    det = scenario("PUB-03")[1]
    with pytest.raises(ValueError, match="I.Z.9, which is not a criterion of CP.PHAR.769"):
        response_bundle(det, case=scenario("PUB-03")[0], created=CREATED, decision=decision("deny", "I.A.7 and I.Z.9"))


def test_decision_fields_are_checked():
    with pytest.raises(ValueError, match="action"):
        decision("reject", "I.A.7")
    with pytest.raises(ValueError, match="authorization number"):
        decision("deny", "I.A.7 not met", auth_number="UM-1")
    with pytest.raises(ValueError, match="authorization number"):
        decision("pend", "need labs", auth_number="UM-1")
    with pytest.raises(ValueError, match="needs a reason"):
        decision("pend", "")


def test_pend_lists_the_missing_documentation():
    det = scenario("PUB-08")[1]
    bundle = produce(det, decision=decision("pend", "serum and urine M-protein within 30 days needed (I.A.4)"))
    cr = cr_of(bundle)
    assert codes(bundle) == {1: "A4", 2: "A4"}
    assert cr["outcome"] == "complete"
    assert "preAuthRef" not in cr and "preAuthPeriod" not in cr
    text = notes(bundle)
    assert text[0].startswith("Pended for additional information by reviewer NPI 1234567893")
    for m in det.missing:
        assert f"Documentation needed for {m['criterion']}: {m['documentation']}." in text
    assert all(text[0] in item_notes(bundle, seq) for seq in (1, 2))
    assert set(reviewer(bundle)) == {"npi", "specialty", "decidedAt"}


@pytest.mark.parametrize("action,certified", [(None, False), ("approve", True), ("modify", True), ("deny", False),
                                              ("pend", False)])
def test_preauth_period_only_when_certified(action, certified):
    det = scenario("PUB-21")[1]
    dec = decision(action, "I.A.10 reviewed") if action else None
    cr = cr_of(produce(det, decision=dec))
    assert ("preAuthRef" in cr, "preAuthPeriod" in cr) == (certified, certified)
    assert all(bool(ext(it, EXT_ITEM_PREAUTH_PERIOD)) == certified for it in cr["item"])
    assert cr["outcome"] == "complete"


@pytest.mark.parametrize("name", ["PUB-03", "PUB-08", "PUB-13", "PUB-19"])
@pytest.mark.parametrize("action", ["approve", "modify"])
def test_certifying_without_authorization_terms_is_refused(name, action):
    case, det = scenario(name)
    with pytest.raises(ValueError, match="no authorization terms"):
        response_bundle(det, case=case, created=CREATED, decision=decision(action, "override"))


def test_a_product_requested_alongside_stays_pended_under_this_policy():
    case = make_case(request__concurrent=["dexamethasone"])
    det = determine(case, default_policy())
    assert det.outcome == "meets_criteria"
    bundle = produce(det, case=case, decision=decision("approve"))
    assert codes(bundle) == {1: "A1", 2: "A1", 3: "A4"}
    assert cr_of(bundle)["outcome"] == "complete"
    assert any("Not part of the CP.PHAR.769 authorization" in t for t in item_notes(bundle, 3))
    pended = produce(det, case=case)
    assert codes(pended) == {1: "A4", 2: "A4", 3: "A4"}


def test_decision_after_the_response_is_refused():
    case, det = scenario("PUB-01")
    late = decision("approve", decided_at=CREATED + timedelta(minutes=1))
    with pytest.raises(ValueError, match="after the response"):
        response_bundle(det, case=case, created=CREATED, decision=late)


def test_times_without_offset_are_utc():
    case, det = scenario("PUB-01")
    naive = datetime(2027, 1, 15, 12, 0)
    dec = decision("approve", decided_at=datetime(2027, 1, 15, 9))
    a = response_bundle(det, case=case, created=naive, decision=dec)
    assert validate_resource(a) == []
    assert cr_of(a)["created"] == "2027-01-15T12:00:00Z"
    assert reviewer(a)["decidedAt"] == {"valueDateTime": "2027-01-15T09:00:00Z"}
    dec = decision("approve", decided_at=datetime(2027, 1, 15, 9, tzinfo=timezone.utc))
    b = response_bundle(det, case=case, created=CREATED, decision=dec)
    assert a == b


# ---- a PAS request bundle -------------------------------------------------------------------------------------
BASE = "https://provider.example/fhir"


def pas_request(case_id: str = "PUB-21") -> dict:
    """A hand-made PAS request: tocilizumab is item 1 and the product item 2 (the roles come from the codes)."""
    claim = {
        "resourceType": "Claim", "id": "claim-1", "meta": {"profile": [PAS_CLAIM]},
        "identifier": [{"system": "urn:trnorg:1234567893", "value": "TRN-77"}],
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "use": "preauthorization", "patient": {"reference": "Patient/pat-1"}, "created": "2027-01-11",
        "insurer": {"reference": f"{BASE}/Organization/payer-1"}, "provider": {"reference": "PractitionerRole/role-1"},
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": "Coverage/cov-1"}}],
        "item": [
            {"sequence": 1, "productOrService": {"coding": [{"system": HCPCS, "code": "J3262"}]},
             "quantity": {"value": 6}},
            {"sequence": 2, "productOrService": {"text": "anitocabtagene autoleucel"}, "quantity": {"value": 1}},
        ],
    }
    resources = [
        claim,
        {"resourceType": "Patient", "id": "pat-1", "identifier": [{"value": "M-0001"}], "birthDate": "1957-06-30"},
        {"resourceType": "Organization", "id": "payer-1", "name": "Health plan"},
        {"resourceType": "PractitionerRole", "id": "role-1",
         "practitioner": {"reference": "Practitioner/prac-1"}, "organization": {"reference": "Organization/clinic-1"},
         "code": [{"coding": [{"system": NUCC, "code": HEME_ONC}]}]},
        {"resourceType": "Practitioner", "id": "prac-1", "identifier": [{"system": NPI, "value": "1234567893"}]},
        {"resourceType": "Organization", "id": "clinic-1", "name": "Cell therapy center"},
        {"resourceType": "Coverage", "id": "cov-1", "status": "active", "beneficiary": {"reference": "Patient/pat-1"},
         "payor": [{"reference": "Organization/payer-1"}]},
    ]
    return {"resourceType": "Bundle", "id": "req-1", "identifier": {"value": case_id}, "type": "collection",
            "timestamp": "2027-01-11T09:00:00Z",
            "entry": [{"fullUrl": f"{BASE}/{r['resourceType']}/{r['id']}", "resource": r} for r in resources]}


def test_request_bundle_items_and_references_are_echoed():
    det = scenario("PUB-21")[1]
    request = pas_request()
    original = copy.deepcopy(request)
    bundle = produce(det, request=request, decision=decision("approve"))
    assert request == original                       # the request is not changed
    cr = cr_of(bundle)
    assert codes(bundle) == {1: "A6", 2: "A1"}       # tocilizumab capped, the product certified
    assert authorized_quantity(item(bundle, 1)) == 4 and authorized_quantity(item(bundle, 2)) is None
    assert cr["patient"] == {"reference": f"{BASE}/Patient/pat-1"}
    assert cr["insurer"] == {"reference": f"{BASE}/Organization/payer-1"}
    assert cr["requestor"] == {"reference": f"{BASE}/PractitionerRole/role-1"}
    assert cr["request"] == {"reference": "Claim/claim-1", "type": "Claim",
                             "identifier": {"system": "urn:trnorg:1234567893", "value": "TRN-77"}}
    assert cr["identifier"] == [{"system": "urn:trnorg:1234567893", "value": "TRN-77"}]
    assert cr["type"] == request["entry"][0]["resource"]["type"]
    assert bundle["identifier"] == {"value": "PUB-21"}
    # the referenced resources (and what the requestor references) are copied; the Coverage and Claim are not
    copied = {e["fullUrl"]: e["resource"] for e in bundle["entry"][1:]}
    by_url = {e["fullUrl"]: e["resource"] for e in request["entry"]}
    assert list(copied) == [f"{BASE}/Patient/pat-1", f"{BASE}/Organization/payer-1", f"{BASE}/PractitionerRole/role-1",
                            f"{BASE}/Practitioner/prac-1", f"{BASE}/Organization/clinic-1"]
    assert all(copied[u] == by_url[u] and copied[u] is not by_url[u] for u in copied)


def test_request_bundle_pended_has_one_item_per_claim_item():
    request = pas_request()
    request["entry"][0]["resource"]["item"][1]["sequence"] = 7
    bundle = produce(scenario("PUB-21")[1], request=request)
    assert codes(bundle) == {1: "A4", 7: "A4"}
    assert [it["itemSequence"] for it in cr_of(bundle)["item"]] == [1, 7]


def test_request_bundle_of_another_case_is_refused():
    with pytest.raises(ValueError, match="'OTHER-1'"):
        response_bundle(scenario("PUB-21")[1], request=pas_request("OTHER-1"), created=CREATED)


def test_request_bundle_with_an_unresolvable_reference_is_refused():
    request = pas_request()
    request["entry"][0]["resource"]["patient"] = {"reference": "Patient/nobody"}
    with pytest.raises(ValueError, match="Claim.patient"):
        response_bundle(scenario("PUB-21")[1], request=request, created=CREATED)
    request = pas_request()
    request["entry"][0]["resource"]["use"] = "claim"
    with pytest.raises(ValueError, match="preauthorization"):
        response_bundle(scenario("PUB-21")[1], request=request, created=CREATED)


def test_case_file_response_names_the_converted_request():
    for name in ("PUB-01", "PUB-21", "PUB-03"):
        case, det = scenario(name)
        dec = decision("approve") if det.authorization else decision("deny", "I.A.7 not met")
        assert response_bundle(det, case=case, created=CREATED, decision=dec) == \
            response_bundle(det, request=bundle_from_case(case), created=CREATED, decision=dec)
        converted = bundle_from_case(case)
        claim_url = converted["entry"][0]["fullUrl"]
        cr = cr_of(produce(det, case=case))
        patient_url = next(e["fullUrl"] for e in converted["entry"] if e["resource"]["resourceType"] == "Patient")
        assert cr["patient"] == {"reference": patient_url}
        assert cr["request"]["reference"] == "Claim/claim" and claim_url.startswith("urn:uuid:")


def test_a_response_needs_the_request_or_the_case():
    case, det = scenario("PUB-01")
    with pytest.raises(ValueError, match="request= .* or case="):
        response_bundle(det, created=CREATED)
    with pytest.raises(ValueError, match="PUB-03"):
        response_bundle(det, case=scenario("PUB-03")[0], created=CREATED)


# ---- determinism -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["PUB-01", "PUB-21", "PUB-03", "PUB-08", "PUB-13", "PUB-19"])
def test_same_input_same_output(name):
    _, det = scenario(name)
    decisions = [None, decision("pend", "I.A.4 documents"), decision("deny", "I.A.7 not met")]
    if det.authorization:
        decisions += [decision("approve"), decision("modify", "I.A dosing")]
    for dec in decisions:
        a = produce(det, decision=dec)
        b = produce(scenario(name)[1], decision=dec)
        assert a == b
        assert json.dumps(a, sort_keys=False) == json.dumps(b, sort_keys=False)
    # the ids follow the case, the decision and the time of the response
    pended, decided = produce(det), produce(det, decision=decisions[1])
    later = produce(det, created=CREATED + timedelta(hours=1))
    assert len({pended["id"], decided["id"], later["id"]}) == 3
    assert len({cr_of(pended)["id"], cr_of(decided)["id"], cr_of(later)["id"]}) == 3


def test_response_id_names_the_bundle_and_the_claim_response():
    bundle = produce(scenario("PUB-01")[1], response_id="resp-0001")
    assert bundle["id"] == cr_of(bundle)["id"] == "resp-0001"
    with pytest.raises(ValueError, match="not a FHIR id"):
        response_bundle(scenario("PUB-01")[1], case=scenario("PUB-01")[0], created=CREATED, response_id="bad id!")


# ---- helpers ---------------------------------------------------------------------------------------------------
def test_cited_criteria_and_npi_check():
    assert cited_criteria("I.A.7 and II.A.1; see CP.PMN.255, HIM.PA.33. Also I.A.4.a.ii, and I.A.7 again.") == \
        ("I.A.7", "II.A.1", "I.A.4.a.ii")
    assert cited_criteria("I think not") == ()
    assert is_valid_npi("1234567893") and not is_valid_npi("1234567894")


def test_a_human_decision_carries_the_pas_reviewer_extension():
    from priorauth.fhir.codes import EXT_CLAIM_RESPONSE_REVIEWER

    bundle = produce(scenario("PUB-01")[1], decision=decision("approve", "criteria met on review"))
    pas = [e for e in cr_of(bundle)["extension"] if e["url"] == EXT_CLAIM_RESPONSE_REVIEWER]
    assert len(pas) == 1
    sub = {e["url"]: e for e in pas[0]["extension"]}
    assert sub["wasHumanReviewedFlag"]["valueBoolean"] is True
    assert sub["reviewerNPI"]["valueIdentifier"]["value"] == REVIEWER_NPI
    assert sub["reviewerSpecialty"]["valueCodeableConcept"]["coding"][0]["code"] == HEME_ONC
    pended = produce(scenario("PUB-01")[1])
    assert "extension" not in cr_of(pended) or not [e for e in cr_of(pended)["extension"] if e["url"] == EXT_CLAIM_RESPONSE_REVIEWER]
