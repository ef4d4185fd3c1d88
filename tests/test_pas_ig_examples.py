"""The Da Vinci PAS IG's own example request bundles (tests/fixtures/pas-ig, compiled from the IG's FSH; sources
in its README): none requests anitocabtagene autoleucel, so each is answered ``not_applicable`` by its product,
although none says the member's line of business, or refused with an OperationOutcome that names the element
(the surgical example's PractitionerRole points at entries its Bundle does not hold). Never a traceback; the
inquiry example is an inquiry, answered by $inquire and refused by $submit and evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from service_helpers import claim_response, make_harness, outcome_text

FIXTURES = Path(__file__).parent / "fixtures" / "pas-ig"
INQUIRY = "pas-claim-inquiry-bundle-example.json"
REQUESTS = sorted(p.name for p in FIXTURES.glob("*.json") if p.name != INQUIRY)
#: the one example refused, and the elements its OperationOutcome names
REFUSED = {"surgical-request-bundle-example.json": ["Bundle.entry[6].resource.practitioner.reference",
                                                    "Bundle.entry[6].resource.location[0].reference"]}
#: the update example updates the home care request (Claim.related refers to that Claim, sent in the Bundle)
PRIOR = {"homecare-authorization-update-bundle-example.json": "homecare-authorization-bundle-example.json"}


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def products(bundle: dict) -> list[str]:
    return [c["code"] for it in bundle["entry"][0]["resource"]["item"] for c in it["productOrService"]["coding"]]


@pytest.fixture(scope="module")
def payer(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("cfg") / "payer.yaml"
    p.write_text("policy_effective: 2026-12-23\n")
    return str(p)


@pytest.fixture
def h(tmp_path):
    harness = make_harness(f"sqlite:///{tmp_path / 'priorauth.sqlite'}")
    yield harness
    harness.store.close()


def test_the_examples_are_there():
    assert len(REQUESTS) == 5 and (FIXTURES / INQUIRY).exists() and (FIXTURES / "README.md").exists()


@pytest.mark.parametrize("name", REQUESTS)
def test_evaluate_answers_an_ig_example_not_applicable_or_names_the_element(name, payer):
    r = subprocess.run([sys.executable, "-m", "priorauth.cli", "evaluate", "--json", "--config", payer,
                        str(FIXTURES / name)], capture_output=True, text=True, cwd=ROOT)
    assert "Traceback" not in r.stderr, r.stderr
    if name in REFUSED:
        assert r.returncode == 2 and r.stdout == ""
        for expression in REFUSED[name]:
            assert f'"{expression}"' in r.stderr, r.stderr
        return
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["outcome"] == "not_applicable" and out["criteria"] == []
    [product] = [s for s in out["scope"] if s["id"] == "scope.product"]
    assert product["status"] == "not_met" and "anitocabtagene autoleucel" in " ".join(out["reasons"])
    assert [s["id"] for s in out["scope"]] == ["scope.product"]        # routing stopped at the product
    # the line of business the examples do not give is reported, not refused
    assert any("no line of business" in p for p in out["data_problems"]), out["data_problems"]


@pytest.mark.parametrize("name", REQUESTS)
def test_submit_answers_an_ig_example_not_applicable_or_names_the_element(h, name):
    bundle = load(name)
    if name in PRIOR:      # an update of a request this plan never received is refused, naming the reference
        r = h.submit("lakeshore", bundle)
        assert r.status_code == 404 and "Claim.related[0].claim.reference" in outcome_text(r)
        assert h.submit("lakeshore", load(PRIOR[name])).status_code == 201
    r = h.submit("lakeshore", bundle)
    if name in REFUSED:
        assert r.status_code == 400
        text = outcome_text(r)
        assert all(expression in text for expression in REFUSED[name]), text
        assert h.store.queue() == []
        return
    assert r.status_code == (200 if name in PRIOR else 201), r.text
    cr = claim_response(r.json())
    assert [it["itemSequence"] for it in cr["item"]] == [it["sequence"] for it in bundle["entry"][0]["resource"]["item"]]
    case_id = r.headers["location"].rsplit("/", 1)[1]
    detail = h.client.get(f"/review/cases/{case_id}", headers=h.auth("dr-reviewer")).json()
    assert detail["outcome"] == "not_applicable"
    [row] = [c for c in h.client.get("/review/queue", headers=h.auth("dr-reviewer")).json()["cases"]
             if c["id"] == case_id]
    assert row["line_of_business"] is None
    assert products(bundle) and all(code not in ("KITE-772",) for code in products(bundle))


def test_the_ig_inquiry_example_is_answered_by_inquire_and_refused_by_submit(h, payer):
    inquiry = load(INQUIRY)
    r = h.submit("lakeshore", inquiry)
    assert r.status_code == 400 and "Bundle.meta.profile[0]" in outcome_text(r)
    assert h.inquire("lakeshore", inquiry).status_code == 404          # nothing sent yet
    # the medical services example is the request the inquiry names (Bundle.identifier 5269367)
    r = h.submit("lakeshore", load("medical-services-authorization-bundle-example.json"))
    assert r.status_code == 201, r.text
    case_id = r.headers["location"].rsplit("/", 1)[1]
    r = h.inquire("lakeshore", inquiry)
    assert r.status_code == 200 and claim_response(r.json())["id"] == case_id
    assert h.inquire("gulfcoast", inquiry).status_code == 404         # another organization's request
