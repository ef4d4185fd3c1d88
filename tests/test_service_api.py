"""The authorization service over HTTP, on SQLite and on PostgreSQL: PAS submit/inquire/ClaimResponse, review
decisions, resubmission, DTR, CDS Hooks, tokens and roles, organization isolation on every route, audit."""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta

import jwt
import pytest
from typer.testing import CliRunner

from priorauth.cli import app as cli
from priorauth.store import Actor
from priorauth.store.models import ClientRow
from service_helpers import (EXAMPLES, FHIR, HEMONC, REVIEWER_NPI, claim_response, example, make_harness, outcome_text,
                             review_codes, with_identifier)

ELIGIBLE = "eligible-flc-only.json"
NEEDS_INFO = "needs-info-attested.json"


@pytest.fixture
def h(url):
    harness = make_harness(url)
    yield harness
    harness.store.close()


def submitted(h, name=ELIGIBLE, who="lakeshore", value=None):
    b = example(name) if value is None else with_identifier(example(name), value)
    r = h.submit(who, b)
    assert r.status_code == 201, r.text
    return r.headers["location"].rsplit("/", 1)[1], r.json()


# ---- submit ----------------------------------------------------------------------------------------------------
def test_submit_pends_every_item_for_committee_review_and_is_idempotent(h):
    case_id, bundle = submitted(h)
    cr = claim_response(bundle)
    assert cr["id"] == case_id and cr["outcome"] == "complete"
    assert set(review_codes(cr).values()) == {"A4"}
    notes = " ".join(n["text"] for n in cr["processNote"])
    assert "meets" in notes.lower() and "committee" in notes.lower()
    again = h.submit("lakeshore", example(ELIGIBLE))
    assert again.status_code == 200 and again.json() == bundle          # the same answer
    assert len(h.store.queue()) == 1                                      # and one case
    reformatted = h.submit("lakeshore", json.dumps(example(ELIGIBLE), indent=4))
    assert reformatted.status_code == 200 and claim_response(reformatted.json())["id"] == case_id


def test_same_identifier_with_other_content_is_refused_with_an_outcome(h):
    case_id, _ = submitted(h)
    changed = example(ELIGIBLE)
    changed["entry"][0]["resource"]["priority"]["coding"][0]["code"] = "stat"
    r = h.submit("lakeshore", changed)
    assert r.status_code == 409
    text = outcome_text(r)
    assert "Bundle.identifier" in text and "different content" in text and case_id in text
    assert len(h.store.queue()) == 1


def test_missing_documentation_is_named_in_the_response(h):
    _, bundle = submitted(h, NEEDS_INFO)
    cr = claim_response(bundle)
    assert set(review_codes(cr).values()) == {"A4"}
    detail = h.client.get(f"/review/cases/{cr['id']}", headers=h.auth("dr-reviewer")).json()
    assert detail["outcome"] == "needs_information"
    missing = detail["determination"]["missing"]
    assert missing, detail["determination"]
    notes = " ".join(n["text"] for n in cr["processNote"])
    for m in missing:
        assert m["criterion"] in notes


def test_bundle_without_identifier_and_unreadable_bundles_are_4xx_outcomes(h):
    b = example(ELIGIBLE)
    del b["identifier"]
    r = h.submit("lakeshore", b)
    assert r.status_code == 400 and "Bundle.identifier" in outcome_text(r)
    r = h.submit("lakeshore", '{"resourceType": "Patient"}')
    assert r.status_code == 400 and "resourceType" in outcome_text(r) and "Bundle" in outcome_text(r)
    r = h.submit("lakeshore", '{"resourceType": "Bundle", ')
    assert r.status_code == 400 and "not valid JSON at line 1" in outcome_text(r)
    broken = example(ELIGIBLE)
    broken["entry"][0]["resource"]["patient"] = {"reference": "urn:uuid:00000000-0000-0000-0000-000000000000"}
    r = h.submit("lakeshore", with_identifier(broken, "broken-ref-1"))
    assert r.status_code == 400 and "resolves to no entry" in outcome_text(r) and "patient" in outcome_text(r)
    r = h.client.post("/fhir/Claim/$submit", content=json.dumps(b), headers={**h.auth("lakeshore"),
                                                                            "Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/fhir+json" in outcome_text(r)
    assert h.store.queue() == []


def test_oversized_body_is_413(url):
    h = make_harness(url, max_body_bytes=4096)
    r = h.submit("lakeshore", example(ELIGIBLE))
    assert r.status_code == 413 and "4096 bytes" in outcome_text(r)
    h.store.close()


# ---- read and inquire ------------------------------------------------------------------------------------------
def test_claimresponse_read_and_inquiry_by_claim_identifier(h):
    case_id, bundle = submitted(h)
    r = h.client.get(f"/fhir/ClaimResponse/{case_id}", headers=h.auth("lakeshore"))
    assert r.status_code == 200 and r.json() == claim_response(bundle)
    assert r.headers["content-type"].startswith("application/fhir+json")
    inquiry = example(ELIGIBLE)
    del inquiry["identifier"]                      # found by the Claim's identifier alone
    r = h.inquire("lakeshore", inquiry)
    assert r.status_code == 200 and claim_response(r.json())["id"] == case_id
    inquiry["entry"][0]["resource"]["identifier"][0]["value"] = "no-such-request"
    r = h.inquire("lakeshore", inquiry)
    assert r.status_code == 404 and "Claim.identifier" in outcome_text(r)


@pytest.mark.parametrize("where", ["bundle", "claim"])
def test_an_inquiry_sent_to_submit_is_refused_and_answered_by_inquire(h, where):
    case_id, _ = submitted(h)
    inquiry = example(ELIGIBLE)
    pas = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/"
    if where == "bundle":
        inquiry["meta"] = {"profile": [pas + "profile-pas-inquiry-request-bundle"]}
        expression = "Bundle.meta.profile[0]"
    else:
        inquiry["entry"][0]["resource"]["meta"] = {"profile": [pas + "profile-claim-inquiry"]}
        expression = "Bundle.entry[0].resource.meta.profile[0]"
    r = h.submit("lakeshore", inquiry)
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert "Inquiry" in issue["diagnostics"] and "$inquire" in issue["diagnostics"]
    assert issue["expression"] == [expression]
    assert len(h.store.queue()) == 1                      # nothing new was stored
    r = h.inquire("lakeshore", inquiry)
    assert r.status_code == 200 and claim_response(r.json())["id"] == case_id


# ---- organization isolation ------------------------------------------------------------------------------------
def test_a_provider_cannot_reach_another_organizations_case_by_any_route(h):
    case_id, _ = submitted(h)
    other = h.auth("gulfcoast")
    r = h.client.get(f"/fhir/ClaimResponse/{case_id}", headers=other)
    assert r.status_code == 404 and "no case" in outcome_text(r)
    inquiry = example(ELIGIBLE)
    r = h.inquire("gulfcoast", inquiry)
    assert r.status_code == 404
    for path in ("/review/queue", f"/review/cases/{case_id}"):
        r = h.client.get(path, headers=other)
        assert r.status_code == 403 and "provider role" in outcome_text(r)
    r = h.client.post(f"/review/cases/{case_id}/decision", headers=other,
                      json={"action": "approve", "reviewer_npi": "1234567893", "reviewer_specialty": HEMONC})
    assert r.status_code == 403
    r = h.client.post(f"/review/cases/{case_id}/appeal", headers=other, json={"reason": "please reconsider"})
    assert r.status_code == 404
    # an update naming the other organization's request as its prior is not attached to it
    update = with_identifier(example(ELIGIBLE), "GC-update-1")
    update["entry"][0]["resource"]["related"] = [{"claim": {"identifier": example(ELIGIBLE)["identifier"]},
                                                  "relationship": {"coding": [{"code": "prior"}]}}]
    r = h.submit("gulfcoast", update)
    assert r.status_code == 404 and "Claim.related[0].claim.identifier" in outcome_text(r)
    # submitting the very same bundle is that organization's own, separate request? No: the identifier is taken
    r = h.submit("gulfcoast", example(ELIGIBLE))
    assert r.status_code in (200, 409)
    if r.status_code == 200:
        pytest.fail("a replay across organizations must not return another organization's response")
    hist = h.store.history(case_id)
    assert len(hist.submissions) == 1
    refused = [a for a in h.store.audit_entries() if a.action == "case.read.refused"]
    assert refused and all(a.actor == "client:gulfcoast" for a in refused)


def test_the_same_bundle_from_another_organization_is_not_a_replay(h):
    submitted(h)
    r = h.submit("gulfcoast", example(ELIGIBLE))
    assert r.status_code == 409 and "Bundle.identifier" in outcome_text(r)
    assert "org-lakeshore" not in r.text and "Kowalski" not in r.text


def test_a_resubmission_under_another_organizations_identifier_names_none_of_its_cases(h):
    theirs, _ = submitted(h)                                                     # lakeshore's request
    mine, _ = submitted(h, NEEDS_INFO, who="gulfcoast")
    update = example(ELIGIBLE)                                                   # lakeshore's identifier ...
    update["entry"][0]["resource"]["related"] = [{"claim": {"identifier": example(NEEDS_INFO)["identifier"]},
                                                  "relationship": {"coding": [{"code": "prior"}]}}]
    update["entry"][0]["resource"]["item"][0]["sequence"] = 1
    r = h.submit("gulfcoast", update)                                            # ... as an update of gulfcoast's
    assert r.status_code == 409 and "another submitter" in outcome_text(r)
    assert theirs not in r.text and mine not in r.text
    assert len(h.store.history(mine).submissions) == 1


def test_a_refusal_names_the_members_element_without_echoing_its_value(h):
    """The 400 for a bundle names the element of the member's data at fault, not the value sent (a birth date,
    an identifier); problems elsewhere keep their value, which the sender needs to find them."""
    b = example(ELIGIBLE)
    patient = next(e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["birthDate"] = "1957-13-45"
    b["entry"][0]["resource"]["diagnosis"][0]["diagnosisCodeableConcept"]["coding"][0]["code"] = "C9O.02"
    r = h.submit("lakeshore", b)
    assert r.status_code == 400
    issues = r.json()["issue"]
    born = [i for i in issues if i["expression"][0].endswith(".birthDate")]
    assert born and "1957-13-45" not in r.text and "the value given" in born[0]["diagnostics"]
    assert any("C9O.02" in i["diagnostics"] for i in issues)


# ---- review ----------------------------------------------------------------------------------------------------
def test_queue_filters_and_due_order(h):
    ids = {}
    for name in (ELIGIBLE, NEEDS_INFO, "internist-consult-expedited.json", "medicare-not-applicable.json"):
        ids[name], _ = submitted(h, name)
        h.clock.advance(minutes=5)
    rev = h.auth("dr-reviewer")
    q = h.client.get("/review/queue", headers=rev).json()
    dues = [c["due_at"] for c in q["cases"]]
    assert q["count"] == 4 and dues == sorted(dues)
    assert q["cases"][0]["id"] == ids["internist-consult-expedited.json"]      # expedited: due first
    assert q["cases"][0]["urgency"] == "expedited"
    q = h.client.get("/review/queue", params={"outcome": "needs_information"}, headers=rev).json()
    assert [c["id"] for c in q["cases"]] == [ids[NEEDS_INFO]]
    q = h.client.get("/review/queue", params={"line_of_business": "Medicare"}, headers=rev).json()
    assert [c["id"] for c in q["cases"]] == [ids["medicare-not-applicable.json"]]
    h.clock.advance(hours=80)                                  # past the 72-hour expedited clock only
    q = h.client.get("/review/queue", params={"overdue": "true"}, headers=rev).json()
    assert [c["id"] for c in q["cases"]] == [ids["internist-consult-expedited.json"]]
    assert q["cases"][0]["overdue"] is True
    q = h.client.get("/review/queue", params={"overdue": "false"}, headers=rev).json()
    assert q["count"] == 3 and not any(c["overdue"] for c in q["cases"])
    r = h.client.get("/review/queue", params={"status": "bogus"}, headers=rev)
    assert r.status_code in (400, 422) and "status" in outcome_text(r)


def test_case_detail_has_the_trace_evidence_and_history(h):
    case_id, _ = submitted(h)
    d = h.client.get(f"/review/cases/{case_id}", headers=h.auth("dr-reviewer")).json()
    assert d["outcome"] == "meets_criteria" and d["status"] == "pended"
    crit = {c["id"]: c for c in d["determination"]["criteria"]}
    assert crit["I.A.7"]["status"] == "met"
    assert crit["I.A.7"]["reason"] and crit["I.A.1"]["evidence"][0]["source"]
    assert d["determinations"][0]["policy"]["id"] == "CP.PHAR.769"
    assert d["determinations"][0]["policy"]["content_hash"] == d["determination"]["policy"]["content_hash"]
    assert [e["kind"] for e in d["events"]] == ["submitted"]
    assert d["submissions"][0]["sequence"] == 1


def test_approve_updates_the_claimresponse_to_certified(h):
    case_id, _ = submitted(h)
    h.clock.advance(hours=2)
    r = h.decide("dr-reviewer", case_id, "approve")
    assert r.status_code == 201, r.text
    cr = r.json()["claim_response"]
    assert review_codes(cr)[1] == "A1"
    assert r.json()["decision"]["auth_number"].startswith("PA-")
    again = h.client.get(f"/fhir/ClaimResponse/{case_id}", headers=h.auth("lakeshore")).json()
    assert again == cr
    assert h.store.case(case_id).status == "approved"
    r = h.decide("dr-reviewer", case_id, "deny", "fails I.A.7")
    assert r.status_code == 409 and "appeal" in outcome_text(r)


def test_a_denial_needs_a_clinician_and_a_cited_criterion(h):
    case_id, _ = submitted(h, NEEDS_INFO)
    r = h.decide("dr-reviewer", case_id, "deny", "not enough information")
    assert r.status_code == 422 and "cite" in outcome_text(r) and "reason" in outcome_text(r)
    h.register("clerk", "reviewer", specialty="claims processor")
    r = h.decide("clerk", case_id, "deny", "I.A.7 not documented")
    assert r.status_code == 422 and "clinician" in outcome_text(r)
    r = h.decide("dr-reviewer", case_id, "deny", "I.Z.99 is not met")
    assert r.status_code == 422 and "I.Z.99" in outcome_text(r)
    assert h.store.history(case_id).decisions == []
    r = h.decide("dr-reviewer", case_id, "deny", "Measurable disease (I.A.7) not documented after request")
    assert r.status_code == 201
    assert set(review_codes(r.json()["claim_response"]).values()) == {"A3"}
    assert h.store.case(case_id).status == "denied"


def test_pend_then_resubmission_with_new_documentation_reevaluates_and_keeps_history(h):
    case_id, _ = submitted(h, NEEDS_INFO)
    r = h.decide("dr-reviewer", case_id, "pend", "Send the serum FLC results (I.A.7)")
    assert r.status_code == 201 and set(review_codes(r.json()["claim_response"]).values()) == {"A4"}
    assert h.store.case(case_id).status == "pending_information"
    original = example(NEEDS_INFO)
    update = with_identifier(example(ELIGIBLE), "PHO-PA-88412-u1")
    update["entry"][0]["resource"]["related"] = [{"claim": {"identifier": original["identifier"]},
                                                  "relationship": {"coding": [{"code": "prior"}]}}]
    h.clock.advance(days=1)
    r = h.submit("lakeshore", update)
    assert r.status_code == 200, r.text
    cr = claim_response(r.json())
    assert cr["id"] == case_id and set(review_codes(cr).values()) == {"A4"}
    hist = h.store.history(case_id)
    assert [s.sequence for s in hist.submissions] == [1, 2]
    assert [d.outcome for d in hist.determinations] == ["needs_information", "meets_criteria"]
    assert [e.kind for e in hist.events] == ["submitted", "decision.pend", "resubmitted"]
    row = h.store.case(case_id)
    assert row.status == "pended" and row.outcome == "meets_criteria"
    assert h.decide("dr-reviewer", case_id, "approve").status_code == 201


def test_appeal_reopens_a_decided_case(h):
    case_id, _ = submitted(h, NEEDS_INFO)
    assert h.decide("dr-reviewer", case_id, "deny", "I.A.7 is not documented").status_code == 201
    r = h.client.post(f"/review/cases/{case_id}/appeal", headers=h.auth("lakeshore"),
                      json={"reason": "FLC results attached to the chart", "urgency": "expedited"})
    assert r.status_code == 200 and r.json()["status"] == "appealed"
    assert r.json()["due_at"] == (h.clock.at + timedelta(hours=72)).isoformat().replace("+00:00", "Z")
    r = h.client.post(f"/review/cases/{case_id}/appeal", headers=h.auth("lakeshore"), json={"reason": "again"})
    assert r.status_code == 409


def test_extension_moves_the_due_time(h):
    case_id, _ = submitted(h)
    due = h.store.case(case_id).due_at
    r = h.client.post(f"/review/cases/{case_id}/extension", headers=h.auth("dr-reviewer"),
                      json={"hours": 336, "reason": "awaiting outside records"})
    assert r.status_code == 200
    assert r.json()["due_at"] == (due + timedelta(hours=336)).isoformat().replace("+00:00", "Z")
    r = h.client.post(f"/review/cases/{case_id}/extension", headers=h.auth("dr-reviewer"), json={"hours": 0})
    assert r.status_code == 422 and "hours" in outcome_text(r) and "reason" in outcome_text(r)


def test_certifying_a_request_outside_the_policy_is_refused(h):
    case_id, _ = submitted(h, "medicare-not-applicable.json")
    r = h.decide("dr-reviewer", case_id, "approve")
    assert r.status_code == 422 and "authorization terms" in outcome_text(r)
    assert h.store.case(case_id).status == "pended"


# ---- DTR and CRD -----------------------------------------------------------------------------------------------
def test_questionnaire_package(h):
    params = {"resourceType": "Parameters", "parameter": [{"name": "coverage", "resource": {
        "resourceType": "Coverage", "status": "active", "beneficiary": {"reference": "Patient/p"},
        "payor": [{"display": "Plan"}]}}]}
    r = h.client.post("/fhir/Questionnaire/$questionnaire-package", content=json.dumps(params),
                      headers={**h.auth("lakeshore"), **FHIR})
    assert r.status_code == 200
    [bundle] = [p["resource"] for p in r.json()["parameter"] if p["name"] == "packagebundle"]
    assert bundle["entry"][0]["resource"]["resourceType"] == "Questionnaire"
    r = h.client.post("/fhir/Questionnaire/$questionnaire-package", headers={**h.auth("lakeshore"), **FHIR},
                      content=json.dumps({"resourceType": "Parameters", "parameter": []}))
    assert r.status_code == 400 and "coverage" in outcome_text(r)


def test_cds_hooks_discovery_is_open_and_order_sign_returns_coverage_information(h):
    d = h.client.get("/cds-services")
    assert d.status_code == 200
    [svc] = d.json()["services"]
    assert svc["hook"] == "order-sign"
    order = {"resourceType": "MedicationRequest", "id": "mr1", "status": "draft", "intent": "order",
             "subject": {"reference": "Patient/pat1"}, "authoredOn": "2027-01-05",
             "medicationCodeableConcept": {"text": "anitocabtagene autoleucel"}}
    hook = {"hook": "order-sign", "hookInstance": "h-1", "context": {
        "userId": "Practitioner/p1", "patientId": "pat1",
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}}}
    r = h.client.post(f"/cds-services/{svc['id']}", json=hook)
    assert r.status_code == 401
    r = h.client.post(f"/cds-services/{svc['id']}", json=hook, headers=h.auth("lakeshore"))
    assert r.status_code == 200, r.text
    [action] = r.json()["systemActions"]
    assert action["type"] == "update" and action["resource"]["id"] == "mr1"
    assert "CP.PHAR.769" in action["description"]


# ---- tokens ----------------------------------------------------------------------------------------------------
def test_token_endpoint_follows_rfc6749(h):
    r = h.client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=("lakeshore", "wrong"))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = h.client.post("/oauth/token", data={"grant_type": "password"}, auth=("lakeshore", h.secrets["lakeshore"]))
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = h.client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "lakeshore",
                                            "client_secret": h.secrets["lakeshore"]})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
    assert claims["role"] == "provider" and claims["org"] == "org-lakeshore" and claims["sub"] == "lakeshore"


def test_token_requests_are_rate_limited_per_client_and_per_address(url):
    h = make_harness(url, token_rate_per_client="2/minute", token_rate_per_address="8/minute")
    try:
        def ask(client_id, secret="wrong"):
            return h.client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
        # per client id: the third guess at one id within the minute is refused
        assert [ask("guess-1").status_code for _ in range(3)] == [401, 401, 429]
        # per address: make_harness's four registrations and these make eight; the ninth is refused
        assert [ask("guess-2").status_code, ask("guess-3").status_code] == [401, 429]
        r = ask("guess-4")
        assert r.status_code == 429 and r.json()["error"] == "temporarily_unavailable"
        assert int(r.headers["retry-after"]) >= 1 and "too many token requests" in r.json()["error_description"]
        assert r.headers["cache-control"] == "no-store"
        # the secret is not even checked once over the rate: the right secret is refused too
        assert ask("lakeshore", h.secrets["lakeshore"]).status_code == 429
    finally:
        h.store.close()


def test_an_unknown_client_costs_the_same_secret_check_as_a_known_one(h, monkeypatch):
    from priorauth.store import core

    checked = []
    real = core.check_secret
    monkeypatch.setattr(core, "check_secret", lambda secret, stored: checked.append(stored) or real(secret, stored))
    assert h.store.authenticate("no-such-client", "x") is None
    assert h.store.authenticate("lakeshore", "wrong") is None
    assert h.store.authenticate("lakeshore", h.secrets["lakeshore"]) is not None
    assert len(checked) == 3 and checked[0].startswith("pbkdf2_sha256$") and checked[0] != checked[1]


def test_an_admin_administers_and_neither_submits_nor_decides(h):
    case_id, _ = submitted(h)
    assert h.submit("ops-admin", example(NEEDS_INFO)).status_code == 403
    r = h.decide("ops-admin", case_id, "approve")
    assert r.status_code == 403 and "admin role may not" in outcome_text(r)
    assert h.store.history(case_id).decisions == []
    assert h.client.get("/review/queue", headers=h.auth("ops-admin")).status_code == 200
    assert h.client.get(f"/review/cases/{case_id}", headers=h.auth("ops-admin")).status_code == 200


@pytest.mark.parametrize("specialty", ["not a physician", "non-clinical staff", "retired pharmacist"])
def test_a_denial_needs_a_reviewer_registered_with_an_unambiguous_clinical_specialty(h, specialty):
    h.register("r-2", "reviewer", specialty=specialty)
    case_id, _ = submitted(h)
    r = h.decide("r-2", case_id, "deny", "I.A.7 not met: prior BCMA-directed therapy")
    assert r.status_code == 422 and "clinician" in outcome_text(r)
    assert h.store.history(case_id).decisions == []


def test_a_decision_is_recorded_under_the_reviewers_registered_identity(h):
    """The NPI and specialty come from the reviewer client's registration: a request may repeat them, not change
    them; a reviewer registered without them (before migration 0006) cannot decide; an NPI in other scripts'
    digits is refused at registration."""
    with pytest.raises(ValueError, match="npi"):
        h.store.add_client("r-arabic", "reviewer", None, Actor("test:setup", "admin"), npi="١٢٣٤٥٦٧٨٩٣",
                           specialty=HEMONC)
    with pytest.raises(ValueError, match="npi"):
        h.store.add_client("r-none", "reviewer", None, Actor("test:setup", "admin"))
    case_id, _ = submitted(h)
    r = h.decide("dr-reviewer", case_id, "approve", reviewer_npi="1245319599")
    assert r.status_code == 422 and "reviewer_npi" in outcome_text(r) and "registered" in outcome_text(r)
    r = h.decide("dr-reviewer", case_id, "approve", reviewer_specialty="claims processor")
    assert r.status_code == 422 and "reviewer_specialty" in outcome_text(r)
    with h.store.writing() as s:                       # a reviewer registered before reviewers carried identities
        s.add(ClientRow(client_id="legacy", secret_hash="x", role="reviewer", organization=None,
                        created_at=h.clock(), disabled=False))
    legacy = jwt.encode({**jwt.decode(h.tokens["dr-reviewer"], options={"verify_signature": False}), "sub": "legacy"},
                        h.app.state.settings.signing_key, algorithm="HS256")
    r = h.client.post(f"/review/cases/{case_id}/decision", json={"action": "approve"},
                      headers={"Authorization": f"Bearer {legacy}"})
    assert r.status_code == 403 and "--npi" in outcome_text(r)
    r = h.decide("dr-reviewer", case_id, "approve", reviewer_npi=REVIEWER_NPI)       # the same: accepted
    assert r.status_code == 201
    [d] = h.store.history(case_id).decisions
    assert (d.reviewer_npi, d.specialty) == (REVIEWER_NPI, HEMONC)


def test_a_token_is_not_accepted_before_its_nbf(h):
    claims = jwt.decode(h.tokens["dr-reviewer"], options={"verify_signature": False})
    key = h.app.state.settings.signing_key
    now = int(h.clock().timestamp())
    for nbf, status in ((now + 60, 401), (now - 60, 200), ("soon", 401), (now + 3, 200)):
        token = jwt.encode({**claims, "nbf": nbf}, key, algorithm="HS256")
        r = h.client.get("/review/queue", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == status, (nbf, r.text)
        if status == 401:
            assert "nbf" in outcome_text(r)


@pytest.mark.parametrize("tamper", ["expired", "other-key", "garbage", "no-scheme", "none-alg"])
def test_bad_tokens_are_401_outcomes(h, tamper):
    good = h.tokens["lakeshore"]
    claims = jwt.decode(good, options={"verify_signature": False})
    if tamper == "expired":
        h.clock.advance(days=10, seconds=6)
        header = f"Bearer {good}"
    elif tamper == "other-key":
        header = "Bearer " + jwt.encode(claims, "another-key-of-sufficient-length-0123456789", algorithm="HS256")
    elif tamper == "garbage":
        header = "Bearer not.a.token"
    elif tamper == "no-scheme":
        header = good
    else:
        header = "Bearer " + jwt.encode({**claims, "role": "admin"}, None, algorithm="none")
    r = h.client.get("/review/queue", headers={"Authorization": header})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert outcome_text(r).startswith("login:")


def test_health_needs_no_token_and_unknown_routes_are_outcomes(h):
    assert h.client.get("/health").json()["status"] == "ok"
    r = h.client.get("/fhir/Patient/1", headers=h.auth("lakeshore"))
    assert r.status_code == 404 and "no such endpoint" in outcome_text(r)


def test_admin_registers_clients_and_others_cannot(h):
    r = h.client.post("/admin/clients", headers=h.auth("ops-admin"),
                      json={"client_id": "mesa", "role": "provider", "organization": "org-mesa"})
    assert r.status_code == 201 and len(r.json()["client_secret"]) >= 32
    r = h.client.post("/admin/clients", headers=h.auth("ops-admin"), json={"client_id": "mesa2", "role": "provider"})
    assert r.status_code == 422 and "organization" in outcome_text(r)
    r = h.client.post("/admin/clients", headers=h.auth("dr-reviewer"), json={"client_id": "x", "role": "admin"})
    assert r.status_code == 403
    verified = h.client.get("/admin/audit/verify", headers=h.auth("ops-admin")).json()
    assert verified["ok"] is True and verified["first_bad"] is None and verified["record_problems"] == []
    assert verified["records"]["submissions"] == len(h.store.queue())
    assert verified["entries"] == len(h.store.audit_entries())


# ---- audit and logs --------------------------------------------------------------------------------------------
def test_every_read_and_write_is_audited_without_patient_data(h, caplog):
    caplog.set_level(logging.DEBUG)
    case_id, _ = submitted(h)
    h.client.get(f"/fhir/ClaimResponse/{case_id}", headers=h.auth("lakeshore"))
    h.client.get(f"/review/cases/{case_id}", headers=h.auth("dr-reviewer"))
    h.decide("dr-reviewer", case_id, "approve")
    trail = [(a.actor, a.action) for a in h.store.audit_entries(case_id)]
    assert ("client:lakeshore", "case.submit") in trail
    assert ("client:lakeshore", "claimresponse.read") in trail
    assert ("client:dr-reviewer", "case.detail") in trail
    assert ("client:dr-reviewer", "case.decide") in trail
    everything = json.dumps([[a.detail, a.actor] for a in h.store.audit_entries()])
    for phi in ("Kowalski", "Margaret", "LMC-MRN", "1958-"):
        assert phi not in everything and phi not in caplog.text
    assert h.store.verify_audit()[0] is True


# ---- CLI -------------------------------------------------------------------------------------------------------
def test_cli_client_add_and_audit_verify(url, tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["client", "add", "mesa", "--role", "provider", "--organization", "org-mesa",
                            "--database-url", url])
    assert r.exit_code == 0 and len(r.stdout.strip()) >= 32
    r = runner.invoke(cli, ["client", "add", "mesa", "--role", "provider", "--organization", "org-mesa",
                            "--database-url", url])
    assert r.exit_code == 2 and "already registered" in r.output
    r = runner.invoke(cli, ["client", "add", "x", "--role", "superuser", "--database-url", url])
    assert r.exit_code == 2 and "role" in r.output
    r = runner.invoke(cli, ["audit", "verify", "--database-url", url])
    assert r.exit_code == 0 and "verified: 1 entries" in r.stdout
    r = runner.invoke(cli, ["client", "list", "--database-url", url])
    assert "mesa\tprovider\torg-mesa" in r.stdout


def test_seeding_fills_an_empty_store_once(h):
    svc = h.app.state.service
    n = svc.seed(EXAMPLES)
    assert n == len(list(EXAMPLES.glob("*.json")))
    assert {c.organization for c in h.store.queue(status=None)} == {"examples"}
    assert svc.seed(EXAMPLES) == 0
    # demo data: decided or open, the seeded requests are not in the CMS-0057-F report
    from priorauth.service.reports import build_report, load_records

    demo = h.store.queue()[0]
    assert h.decide("dr-reviewer", demo.id, "pend", "send the FLC series").status_code == 201
    assert load_records(h.store, date(2027, 1, 1), date(2027, 1, 31)) == []
    report = build_report(h.store, date(2027, 1, 1), date(2027, 1, 31), h.clock())
    assert report.standard.decided == report.expedited.decided == 0


def test_a_database_that_stops_answering_gives_503_and_nothing_half_written(h):
    from sqlalchemy.exc import OperationalError

    from sqlalchemy import event

    def down(_conn, _cursor, statement, *_a):
        if "INSERT INTO audit_log" in statement:        # the last write of a submission
            raise OperationalError(statement, {}, ConnectionError("server closed the connection"))

    event.listen(h.store.engine, "before_cursor_execute", down)
    try:
        r = h.submit("lakeshore", example(ELIGIBLE))
    finally:
        event.remove(h.store.engine, "before_cursor_execute", down)
    assert r.status_code == 503 and r.headers["retry-after"] == "5" and "send the request again" in outcome_text(r)
    assert h.store.queue() == []                          # rolled back with the failed transaction
    assert h.submit("lakeshore", example(ELIGIBLE)).status_code == 201
