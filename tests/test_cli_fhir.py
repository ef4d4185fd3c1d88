"""The CLI with FHIR: PAS bundles in evaluate, convert, questionnaire, the PAS response, OperationOutcome errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, SCENARIOS
from priorauth.fhir.validate import validate_resource


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "priorauth.cli", *args], capture_output=True, text=True, input=stdin,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def payer(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("cfg") / "payer.yaml"
    p.write_text("policy_effective: 2026-12-23\n")
    return str(p)


def test_evaluate_a_pas_bundle(payer):
    r = cli("evaluate", "examples/fhir/prior-bcma-bispecific.json", "--config", payer, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["outcome"] == "does_not_meet_criteria"
    i_a_7 = next(c for c in out["criteria"] if c["id"] == "I.A.7")
    assert i_a_7["status"] == "not_met" and "teclistamab" in i_a_7["reason"]
    assert all("#MedicationStatement/" in e["source"] for e in i_a_7["evidence"])
    # without --as-of, the bundle's own date is used, and the CLI says so (the service uses its receipt)
    assert f"evaluated as of {out['as_of']}, the date the bundle gives" in r.stderr and "--as-of" in r.stderr
    r = cli("evaluate", "examples/fhir/prior-bcma-bispecific.json", "--config", payer, "--json", "--as-of", out["as_of"])
    assert r.returncode == 0 and r.stderr == ""


def test_convert_then_evaluate_gives_the_case_files_result(tmp_path):
    out = tmp_path / "pub09.json"
    r = cli("convert", str(SCENARIOS / "PUB-09.yaml"), "--to", "pas-bundle", "-o", str(out))
    assert r.returncode == 0, r.stderr
    bundle = json.loads(out.read_text())
    assert validate_resource(bundle) == []
    cfg = tmp_path / "payer.yaml"
    cfg.write_text("policy_effective: 2026-12-23\n")
    a = json.loads(cli("evaluate", str(SCENARIOS / "PUB-09.yaml"), "--json").stdout)
    b = json.loads(cli("evaluate", str(out), "--config", str(cfg), "--json").stdout)
    assert a["outcome"] == b["outcome"] == "meets_criteria"
    assert {c["id"]: c["status"] for c in a["criteria"]} == {c["id"]: c["status"] for c in b["criteria"]}


def test_convert_refuses_an_unknown_format():
    r = cli("convert", str(SCENARIOS / "PUB-01.yaml"), "--to", "hl7v2")
    assert r.returncode == 2 and "--to: 'hl7v2' is not a format" in r.stderr


def test_questionnaire_package_prefilled():
    r = cli("questionnaire", str(SCENARIOS / "PUB-01.yaml"))
    assert r.returncode == 0, r.stderr
    params = json.loads(r.stdout)
    assert validate_resource(params) == []
    bundle = params["parameter"][0]["resource"]
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds == ["Questionnaire", "QuestionnaireResponse"]


def test_pas_response_is_pended_for_the_committee():
    r = cli("evaluate", str(SCENARIOS / "PUB-01.yaml"), "--pas-response")
    assert r.returncode == 0, r.stderr
    bundle = json.loads(r.stdout)
    assert validate_resource(bundle) == []
    cr = bundle["entry"][0]["resource"]
    assert cr["resourceType"] == "ClaimResponse"
    actions = [i["adjudication"][0]["extension"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"]
               for i in cr["item"]]
    assert actions == ["A4", "A4"]
    assert "PDAC" in " ".join(n["text"] for n in cr["processNote"])


def test_malformed_bundle_prints_an_operation_outcome_and_exits_2(tmp_path):
    bundle = json.loads((ROOT / "examples/fhir/prior-bcma-bispecific.json").read_text())
    bundle["entry"][0]["resource"]["use"] = "claim"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(bundle))
    r = cli("evaluate", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "Bundle.entry[0].resource.use" in r.stderr
    outcome = json.loads(r.stderr[r.stderr.index("{"):])
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[0].resource.use"]


def test_an_inquiry_is_answered_from_the_store_and_is_not_evaluated_as_a_request(tmp_path, payer):
    """`priorauth inquire` answers a PAS Inquiry Request Bundle as Claim/$inquire does (the current response of
    the request it names, among the organization's); `evaluate` refuses it, saying where it is answered."""
    from service_helpers import claim_response, example, make_harness

    url = f"sqlite:///{tmp_path / 'pa.sqlite'}"
    h = make_harness(url)
    r = h.submit("lakeshore", example("eligible-flc-only.json"))
    assert r.status_code == 201, r.text
    case_id = r.headers["location"].rsplit("/", 1)[1]
    h.store.close()
    inquiry = example("eligible-flc-only.json")
    inquiry["meta"] = {"profile": ["http://hl7.org/fhir/us/davinci-pas/StructureDefinition/"
                                   "profile-pas-inquiry-request-bundle"]}
    path = tmp_path / "inquiry.json"
    path.write_text(json.dumps(inquiry))
    store = ("--database-url", url, "--data-dir", str(tmp_path), "--config", payer)
    r = cli("inquire", str(path), "--organization", "org-lakeshore", *store)
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert answer["resourceType"] == "Bundle" and claim_response(answer)["id"] == case_id
    r = cli("inquire", str(path), "--organization", "org-gulfcoast", *store)     # another organization's request
    assert r.returncode == 1 and "no request with that identifier" in r.stderr and r.stdout == ""
    r = cli("evaluate", str(path), "--config", payer)
    assert r.returncode == 2 and r.stdout == ""
    assert "Bundle.meta.profile[0]" in r.stderr and "Inquiry" in r.stderr and "priorauth inquire" in r.stderr
