"""Every acceptance scenario in ../shared/scenarios, run unchanged against the JSON contract."""

from __future__ import annotations


import pytest

from priorauth.determination import determine
from priorauth.intake.casefile import load_case_file
from priorauth.output import to_json

from conftest import SCENARIOS
from helpers import assert_subset

PUBLIC = sorted(SCENARIOS.glob("*.yaml")) + sorted(SCENARIOS.glob("*.json"))
#: real-world records (per-drug histories, clinic spellings, IMWG corrections, CNS context): issue 9
RECORDS = sorted((SCENARIOS / "records").glob("*.yaml"))
FILES = PUBLIC + RECORDS




def test_scenarios_are_there():
    assert len(PUBLIC) >= 24, f"expected the shared acceptance scenarios in {SCENARIOS}"
    assert len(RECORDS) >= 20, f"expected the real-world records in {SCENARIOS / 'records'}"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario(path, policy):
    case = load_case_file(path)
    expect = case.expect or {}
    out = to_json(determine(case, policy))
    assert out["case"] == case.id
    assert out["outcome"] == expect["outcome"], f"{out['outcome']}: {out['reasons']}"
    assert out["reasons"], "an outcome always carries its reasons"
    by_id = {c["id"]: c for c in out["criteria"]}
    for cid, status in (expect.get("criteria") or {}).items():
        assert cid in by_id, f"criterion {cid} was not evaluated"
        assert by_id[cid]["status"] == status, f"{cid}: {by_id[cid]['status']} ({by_id[cid]['reason']})"
        assert by_id[cid]["reason"]
    if "refer_to" in expect:
        assert out["refer_to"] == expect["refer_to"]
    if expect["outcome"] == "refer_to_policy":
        assert out["refer_to"], "a referral names its policy"
    if "authorization" in expect:
        assert_subset(expect["authorization"], out["authorization"])
    if expect["outcome"] == "needs_information":
        assert out["missing"], "needs_information lists what is missing"
    if expect["outcome"] != "meets_criteria":
        assert out["authorization"] is None
    assert out["review"]["required"] is True
