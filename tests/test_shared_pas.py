"""The PAS request bundles of ../shared/pas, written from the Da Vinci PAS IG by other senders, evaluated by
``priorauth evaluate`` with the payer configuration of ``expected.yaml`` and each file's evaluation date."""

from __future__ import annotations

import json
from datetime import datetime, timezone
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import SCENARIOS
from helpers import assert_subset

PAS = SCENARIOS.parent / "pas"
EXPECTED = yaml.safe_load((PAS / "expected.yaml").read_text(encoding="utf-8")) if (PAS / "expected.yaml").exists() else {}
FILES = sorted((EXPECTED.get("files") or {}).items())


def test_the_bundles_are_there():
    assert len(FILES) >= 10, f"expected the shared PAS bundles and expected.yaml in {PAS}"


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pas") / "payer.yaml"
    path.write_text(yaml.safe_dump(EXPECTED["context"]), encoding="utf-8")
    return path


def _evaluate(path: Path, config: Path, as_of) -> dict:
    run = subprocess.run([sys.executable, "-m", "priorauth.cli", "evaluate", "--json", "--config", str(config),
                          "--as-of", str(as_of), str(path)], capture_output=True, text=True)
    assert run.returncode in (0, 1), run.stderr
    return json.loads(run.stdout)


@pytest.mark.parametrize("name, spec", FILES, ids=[n for n, _ in FILES])
def test_a_bundle_from_another_sender(name, spec, config):
    out = _evaluate(PAS / name, config, spec["received"])
    expect = spec["expect"]
    assert out["outcome"] == expect["outcome"], f"{out['outcome']}: {out['reasons']}"
    by_id = {}

    def walk(nodes):
        for c in nodes:
            by_id[c["id"]] = c
            walk(c.get("children") or [])

    walk(out["criteria"])
    for cid, status in (expect.get("criteria") or {}).items():
        assert cid in by_id, f"criterion {cid} was not evaluated"
        assert by_id[cid]["status"] == status, f"{cid}: {by_id[cid]['status']} ({by_id[cid]['reason']})"
    if "refer_to" in expect:
        assert out["refer_to"] == expect["refer_to"]
    if "authorization" in expect:
        assert_subset(expect["authorization"], out["authorization"])
    if expect["outcome"] != "meets_criteria":
        assert out["authorization"] is None
    if "line_of_business" in spec:
        lob = next(s for s in out["scope"] if s["id"] == "scope.line_of_business")
        assert spec["line_of_business"] in lob["reason"]


# ---- the same bundles through the service, its clock set to each Claim's created -------------------------------
def _claim_created(bundle: dict) -> datetime:
    claim = bundle["entry"][0]["resource"]
    return datetime.fromisoformat(claim["created"].replace("Z", "+00:00")).astimezone(timezone.utc)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from priorauth.config import PayerConfig
    from priorauth.service import ServiceSettings, create_app
    from priorauth.store import Actor
    from fastapi.testclient import TestClient

    from service_helpers import Clock

    clock = Clock()
    url = f"sqlite:///{tmp_path_factory.mktemp('pas-service') / 'priorauth.sqlite'}"
    st = ServiceSettings(database_url=url, signing_key=b"test-signing-key-" * 3, config=PayerConfig(**EXPECTED["context"]),
                         now=clock, deliver_notifications=False, token_ttl_seconds=10 * 86400)
    client = TestClient(create_app(st), raise_server_exceptions=False)
    store = client.app.state.store
    secrets = {"sender": store.add_client("sender", "provider", "org-sender", Actor("test:setup", "admin")),
               "reviewer": store.add_client("reviewer", "reviewer", None, Actor("test:setup", "admin"),
                                            npi="1234567893", specialty="207RH0003X")}

    def tokens() -> dict:      # issued on the service's clock as it stands
        out = {}
        for who, secret in secrets.items():
            r = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(who, secret))
            out[who] = {"Authorization": f"Bearer {r.json()['access_token']}"}
        return out

    yield client, clock, tokens
    store.close()


@pytest.mark.parametrize("name, spec", FILES, ids=[n for n, _ in FILES])
def test_a_bundle_from_another_sender_through_the_service(name, spec, service):
    client, clock, issue = service
    bundle = json.loads((PAS / name).read_text(encoding="utf-8"))
    clock.at = _claim_created(bundle)
    tokens = issue()
    r = client.post("/fhir/Claim/$submit", content=json.dumps(bundle),
                    headers={**tokens["sender"], "Content-Type": "application/fhir+json"})
    assert r.status_code in (200, 201), r.text
    case_id = r.headers["location"].rsplit("/", 1)[1]
    detail = client.get(f"/review/cases/{case_id}", headers=tokens["reviewer"]).json()
    expect = spec["expect"]
    assert detail["outcome"] == expect["outcome"], detail["determination"]["reasons"]
    by_id = {}

    def walk(nodes):
        for c in nodes:
            by_id[c["id"]] = c
            walk(c.get("children") or [])

    walk(detail["determination"]["criteria"])
    for cid, status in (expect.get("criteria") or {}).items():
        assert by_id[cid]["status"] == status, f"{cid}: {by_id[cid]['status']} ({by_id[cid]['reason']})"
    if "authorization" in expect:
        assert_subset(expect["authorization"], detail["determination"]["authorization"])


@pytest.mark.parametrize("years", [1, -1])
def test_the_senders_timestamp_moves_no_window_and_no_clock(service, years):
    """Bundle.timestamp and Claim.created a year off: the service evaluates as of its own receipt."""
    client, clock, issue = service
    name, spec = FILES[0]
    original = json.loads((PAS / name).read_text(encoding="utf-8"))
    clock.at = _claim_created(original)
    tokens = issue()
    headers = {**tokens["sender"], "Content-Type": "application/fhir+json"}

    def moved(text: str) -> str:
        return str(int(text[:4]) + years) + text[4:]

    results = []
    for k, bundle in enumerate((original, json.loads(json.dumps(original)))):
        if k:
            bundle["timestamp"] = moved(bundle["timestamp"])
            bundle["entry"][0]["resource"]["created"] = moved(bundle["entry"][0]["resource"]["created"])
        bundle["identifier"] = {**bundle["identifier"], "value": f"{bundle['identifier']['value']}-ts{years}-{k}"}
        r = client.post("/fhir/Claim/$submit", content=json.dumps(bundle), headers=headers)
        assert r.status_code == 201, r.text
        case_id = r.headers["location"].rsplit("/", 1)[1]
        results.append(client.get(f"/review/cases/{case_id}", headers=tokens["reviewer"]).json()["determination"])
    same, shifted = results

    def statuses(d):
        out = {}

        def walk(nodes):
            for c in nodes:
                out[c["id"]] = c["status"]
                walk(c.get("children") or [])

        walk(d["scope"] + d["criteria"])
        return out

    assert shifted["outcome"] == same["outcome"] == spec["expect"]["outcome"]
    assert statuses(shifted) == statuses(same)
    assert shifted["as_of"] == same["as_of"] == clock.at.date().isoformat()
    assert shifted["due"] == same["due"]
    assert shifted["authorization"] == same["authorization"]
    assert shifted["receipt"] == same["receipt"] == clock.at.isoformat()
    assert shifted["sent"] == moved(same["sent"])
    assert any("evaluated as of its receipt by the plan" in p for p in shifted["data_problems"])
