"""CRD: coverage information for CDS Hooks order-sign requests."""

from __future__ import annotations

import copy
from datetime import date

import pytest

from priorauth.config import PayerConfig
from priorauth.fhir.codes import CRD_COVERAGE_INFORMATION, CRD_TEMP, CS_LINE_OF_BUSINESS, RXNORM
from priorauth.fhir.crd import coverage_information
from priorauth.fhir.dtr import questionnaire_canonical
from priorauth.fhir.validate import validate_resource


def med_request(id_: str, concept: dict | None = None, **extra) -> dict:
    mr = {"resourceType": "MedicationRequest", "id": id_, "status": "draft", "intent": "order",
          "subject": {"reference": "Patient/pat1"}, "authoredOn": "2027-01-05",
          "requester": {"reference": "Practitioner/prac1"}}
    if concept is not None:
        mr["medicationCodeableConcept"] = concept
    mr.update(extra)
    return mr


PRODUCT = {"text": "anitocabtagene autoleucel"}
LENALIDOMIDE = {"coding": [{"system": RXNORM, "code": "342369", "display": "lenalidomide"}], "text": "Revlimid 25 mg"}


def coverage(id_: str = "cov1", **extra) -> dict:
    cov = {"resourceType": "Coverage", "id": id_, "status": "active", "beneficiary": {"reference": "Patient/pat1"},
           "subscriberId": "M-0001", "payor": [{"display": "Health plan"}]}
    cov.update(extra)
    return cov


def hook(*orders: dict, prefetch: dict | None = None, instance: str = "hook-0001") -> dict:
    req = {"hook": "order-sign", "hookInstance": instance, "fhirServer": "https://ehr.example/fhir",
           "context": {"userId": "Practitioner/prac1", "patientId": "pat1",
                       "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                       "entry": [{"resource": o} for o in orders]}}}
    if prefetch is not None:
        req["prefetch"] = prefetch
    return req


def searchset(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def info(resource: dict) -> dict:
    """The coverage-information extension's sub-extensions by url (value only)."""
    [ext] = [e for e in resource["extension"] if e["url"] == CRD_COVERAGE_INFORMATION]
    out = {}
    for sub in ext["extension"]:
        values = [v for k, v in sub.items() if k.startswith("value")]
        out[sub["url"]] = values[0] if values else sub["extension"]
    return out


def test_product_order_gets_one_update_with_coverage_information(policy):
    req = hook(med_request("mr1", PRODUCT), prefetch={"coverageBundle": searchset(coverage())})
    original = copy.deepcopy(req)
    resp = coverage_information(req, policy)
    assert req == original  # the request is not changed
    assert resp["cards"] == []
    [action] = resp["systemActions"]
    assert action["type"] == "update" and "prior authorization" in action["description"]
    mr = action["resource"]
    assert mr["resourceType"] == "MedicationRequest" and mr["id"] == "mr1"
    assert validate_resource(mr) == []
    got = info(mr)
    assert got["coverage"] == {"reference": "Coverage/cov1"}
    assert got["covered"] == "conditional"
    assert got["pa-needed"] == "auth-needed"
    assert got["doc-needed"] == "clinical"
    assert got["questionnaire"] == questionnaire_canonical(policy) == "urn:priorauth:questionnaire:CP.PHAR.769|2026.02"
    assert got["date"] == "2027-01-05"
    assert got["coverage-assertion-id"].startswith("priorauth-")
    # the clinician is told that the committee reviews
    detail = {d["url"]: d for d in got["detail"]}
    assert detail["code"]["valueCodeableConcept"]["coding"][0] == {"system": CRD_TEMP, "code": "instructions-clinical",
                                                                   "display": "Clinical instructions"}
    assert "PDAC" in detail["value"]["valueString"] and "CP.PHAR.769" in detail["value"]["valueString"]
    assert got["reason"]["coding"][0]["code"] == "committee-review"
    assert "Precision Drug Action Committee" in got["reason"]["coding"][0]["display"]
    # everything else of the order is kept
    assert {k: v for k, v in mr.items() if k != "extension"} == original["context"]["draftOrders"]["entry"][0]["resource"]


def test_assertion_id_is_deterministic_and_per_request(policy):
    def assertion(req):
        return info(coverage_information(req, policy)["systemActions"][0]["resource"])["coverage-assertion-id"]

    pre = {"coverageBundle": searchset(coverage())}
    first = assertion(hook(med_request("mr1", PRODUCT), prefetch=pre))
    assert first == assertion(hook(med_request("mr1", PRODUCT), prefetch=pre))
    assert first != assertion(hook(med_request("mr1", PRODUCT), prefetch=pre, instance="hook-0002"))
    assert first != assertion(hook(med_request("mr1", PRODUCT), prefetch={"coverageBundle": searchset(coverage("cov2"))}))


def test_other_drug_gets_no_action(policy):
    resp = coverage_information(hook(med_request("mr2", LENALIDOMIDE)), policy)
    assert resp == {"cards": [], "systemActions": []}


def test_only_the_product_order_is_updated(policy):
    req = hook(med_request("mr2", LENALIDOMIDE), med_request("mr1", {"coding": [{"display": "KITE-772"}]}),
               {"resourceType": "ServiceRequest", "id": "sr1", "status": "draft", "intent": "order",
                "subject": {"reference": "Patient/pat1"}, "code": {"text": "anitocabtagene autoleucel"}})
    actions = coverage_information(req, policy)["systemActions"]
    assert [a["resource"]["id"] for a in actions] == ["mr1"]


def test_product_named_through_a_medication_reference(policy):
    med = {"resourceType": "Medication", "id": "med1", "code": {"coding": [{"display": "anito-cel"}]}}
    req = hook(med_request("mr1", medicationReference={"reference": "Medication/med1"}))
    req["context"]["draftOrders"]["entry"].append({"resource": med})
    [action] = coverage_information(req, policy)["systemActions"]
    assert action["resource"]["medicationReference"] == {"reference": "Medication/med1"}
    contained = med_request("mr3", medicationReference={"reference": "#m"},
                            contained=[{"resourceType": "Medication", "id": "m", "code": {"text": "lenalidomide"}}])
    assert coverage_information(hook(contained), policy)["systemActions"] == []


def test_coverage_from_the_order_or_named_when_absent(policy):
    by_insurance = hook(med_request("mr1", PRODUCT, insurance=[{"reference": "Coverage/cov9"}]))
    got = info(coverage_information(by_insurance, policy)["systemActions"][0]["resource"])
    assert got["coverage"] == {"reference": "Coverage/cov9"}
    none = coverage_information(hook(med_request("mr1", PRODUCT)), policy)["systemActions"][0]["resource"]
    assert validate_resource(none) == []
    assert info(none)["coverage"]["type"] == "Coverage" and "not supplied" in info(none)["coverage"]["display"]


def test_assertion_date_given_or_from_the_order(policy):
    req = hook(med_request("mr1", PRODUCT))
    got = info(coverage_information(req, policy, as_of=date(2027, 2, 1))["systemActions"][0]["resource"])
    assert got["date"] == "2027-02-01"


def test_line_of_business_the_policy_does_not_cover(policy):
    medicare = coverage(type={"coding": [{"system": CS_LINE_OF_BUSINESS, "code": "medicare"}]})
    req = hook(med_request("mr1", PRODUCT), prefetch={"coverageBundle": searchset(medicare)})
    assert coverage_information(req, policy)["systemActions"] == []
    # the payer's eligibility table wins over the Coverage's coding
    config = PayerConfig(member_eligibility={"M-0001": "medicaid"})
    assert len(coverage_information(req, policy, config=config)["systemActions"]) == 1


def test_an_order_already_carrying_the_assertion_is_not_updated_again(policy):
    req = hook(med_request("mr1", PRODUCT), prefetch={"coverageBundle": searchset(coverage())})
    updated = coverage_information(req, policy)["systemActions"][0]["resource"]
    again = hook(updated, prefetch={"coverageBundle": searchset(coverage())})
    assert coverage_information(again, policy)["systemActions"] == []


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["context"].pop("draftOrders"), "context.draftOrders` is missing"),
    (lambda r: r.pop("context"), "no `context`"),
    (lambda r: r["context"].__setitem__("draftOrders", [{"resourceType": "MedicationRequest"}]), "not a FHIR Bundle"),
    (lambda r: r.__setitem__("hook", "patient-view"), "'patient-view' is not supported"),
    (lambda r: r["context"]["draftOrders"]["entry"].append({"fullUrl": "urn:uuid:x"}), "entry[1]` holds no resource"),
])
def test_malformed_hook_is_refused_clearly(policy, mutate, message):
    req = hook(med_request("mr1", PRODUCT))
    mutate(req)
    with pytest.raises(ValueError) as err:
        coverage_information(req, policy)
    assert message in str(err.value)
    with pytest.raises(ValueError, match="not a JSON object"):
        coverage_information([req], policy)


def test_invalid_draft_order_is_refused_with_its_path(policy):
    bad = med_request("mr1", PRODUCT)
    del bad["subject"]
    with pytest.raises(ValueError, match=r"context\.draftOrders\.entry\[0\]\.resource\.subject"):
        coverage_information(hook(bad), policy)
