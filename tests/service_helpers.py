"""A service under test: the app on a store URL with a clock the test moves, registered clients and their
tokens, and shorthands for the FHIR and reviewer calls."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from fastapi.testclient import TestClient

from conftest import ROOT
from priorauth.config import PayerConfig
from priorauth.service import ServiceSettings, create_app
from priorauth.store import Actor

EXAMPLES = ROOT / "examples" / "fhir"
CONFIG = PayerConfig(policy_effective=date(2026, 12, 23))
FHIR = {"Content-Type": "application/fhir+json"}
REVIEWER_NPI = "1234567893"
HEMONC = "207RH0003X"
X12_REVIEW_ACTION = "https://codesystem.x12.org/005010/306"


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


_ISO_DAY = re.compile(r'"(\d{4}-\d{2}-\d{2})')


def dated(bundle: dict, day: date) -> dict:
    """The bundle as if written on ``day``: every date in it moved by the days from its Claim.created to ``day``
    (the service evaluates as of its own receipt, so a request is sent on or after the dates it documents)."""
    created = date.fromisoformat(bundle["entry"][0]["resource"]["created"][:10])
    shift = day - created
    text = _ISO_DAY.sub(lambda m: '"' + (date.fromisoformat(m.group(1)) + shift).isoformat(), json.dumps(bundle))
    return json.loads(text)


def with_identifier(bundle: dict, value: str) -> dict:
    b = copy.deepcopy(bundle)
    b["identifier"] = {**b["identifier"], "value": value}
    return b


@dataclass
class Clock:
    at: datetime = datetime(2027, 1, 12, 9, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **kw) -> None:
        self.at = self.at + timedelta(**kw)


@dataclass
class Harness:
    client: TestClient
    clock: Clock
    tokens: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def app(self):
        return self.client.app

    @property
    def store(self):
        return self.client.app.state.store

    def register(self, client_id: str, role: str, organization: str | None = None, npi: str = REVIEWER_NPI,
                 specialty: str = HEMONC) -> str:
        identity = {"npi": npi, "specialty": specialty} if role == "reviewer" else {}
        secret = self.store.add_client(client_id, role, organization, Actor("test:setup", "admin"), **identity)
        self.secrets[client_id] = secret
        r = self.client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
        assert r.status_code == 200, r.text
        self.tokens[client_id] = r.json()["access_token"]
        return self.tokens[client_id]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def submit(self, who: str, bundle: dict | str):
        body = bundle if isinstance(bundle, str) else json.dumps(bundle)
        return self.client.post("/fhir/Claim/$submit", content=body, headers={**self.auth(who), **FHIR})

    def inquire(self, who: str, bundle: dict):
        return self.client.post("/fhir/Claim/$inquire", content=json.dumps(bundle), headers={**self.auth(who), **FHIR})

    def decide(self, who: str, case_id: str, action: str, reason: str = "", **kw):
        """A decision by reviewer client ``who``, recorded under the NPI and specialty it is registered with."""
        body = {"action": action, "reason": reason, **kw}
        return self.client.post(f"/review/cases/{case_id}/decision", json=body, headers=self.auth(who))


def make_harness(url: str, **settings) -> Harness:
    clock = Clock()
    settings = {"token_rate_per_client": "100000/minute", "token_rate_per_address": "100000/minute", **settings}
    st = ServiceSettings(database_url=url, signing_key=b"test-signing-key-" * 3, config=CONFIG, now=clock,
                         deliver_notifications=False, token_ttl_seconds=10 * 86400, **settings)
    client = TestClient(create_app(st), raise_server_exceptions=False)
    h = Harness(client, clock)
    h.register("lakeshore", "provider", "org-lakeshore")
    h.register("gulfcoast", "provider", "org-gulfcoast")
    h.register("dr-reviewer", "reviewer")
    h.register("ops-admin", "admin")
    return h


def claim_response(bundle: dict) -> dict:
    [cr] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ClaimResponse"]
    return cr


def review_codes(cr: dict) -> dict[int, str]:
    """itemSequence -> X12 review action code of a ClaimResponse."""
    out = {}
    for it in cr["item"]:
        for adj in it["adjudication"]:
            for ext in adj.get("extension", ()):
                for sub in ext.get("extension", ()):
                    for c in sub.get("valueCodeableConcept", {}).get("coding", ()):
                        if c.get("system") == X12_REVIEW_ACTION:
                            out[it["itemSequence"]] = c["code"]
    return out


def outcome_text(r) -> str:
    """The diagnostics and expressions of an OperationOutcome answer, folded to one string."""
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    return " | ".join(f"{i.get('code')}: {i.get('diagnostics')} @ {','.join(i.get('expression', []))}"
                      for i in body["issue"])
