"""The ``priorauth`` command line: ``evaluate`` (report and JSON contract, ``--as-of``), ``policy show`` and
``policy check`` (the bundled policy and broken copies of it). Each test runs the real CLI in a subprocess;
the runs are started together by one module fixture (a few at a time) so the module stays fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers import ELIGIBLE_YAML, folded, refused

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_POLICY = ROOT / "src" / "priorauth" / "policies" / "data" / "cp_phar_769.yaml"

# shared/scenarios/PUB-01.yaml, verbatim but for its id: eligible, measurable serum M-protein on 2027-01-03
# (8 days before receipt) and a progression 4 days after the last dose of the last regimen.
CASE = ELIGIBLE_YAML.replace("id: PUB-01", "id: CLI-01", 1)


def edit(text: str, *edits: tuple[str, str]) -> str:
    for old, new in edits:
        assert text.count(old) == 1, f"edit target {old!r} occurs {text.count(old)} times"
        text = text.replace(old, new)
    return text


# The same member under Medicare: out of scope.
MEDICARE = edit(CASE, ("id: CLI-01", "id: CLI-02"), ("line_of_business: medicaid", "line_of_business: medicare"))
# Without the disease assessment, measurable disease (the 30-day lab window) is all that carries I.A.4.
LAB_ONLY = edit(CASE, ("id: CLI-01", "id: CLI-03"),
                ("assessments:\n- {date: 2026-12-05, response: progressive_disease}\n", ""))

POLICY_TEXT = BUNDLED_POLICY.read_text(encoding="utf-8")

# Broken copies of the bundled policy: the edit, and the path (and problem) `policy check` must name.
BROKEN = {
    "unknown_check": (
        [("check: minimum_age\n", "check: minimum_agee\n")],
        ["criteria[0].all[2].check: 'minimum_agee' is not a check"],
    ),
    "duplicate_id": (
        [("      - id: I.A.3\n", "      - id: I.A.2\n")],
        ["criteria[0].all[2].id: 'I.A.2' is used twice"],
    ),
    "missing_parameter": (
        [("threshold: $measurable_disease.serum_m_protein}", "threshold: $measurable_disease.serum_protein}")],
        ["criteria[0].all[3].any[0].any[0].params.threshold: $measurable_disease.serum_protein names no parameter"],
    ),
    "bad_threshold_unit": (
        [("threshold: $measurable_disease.urine_m_protein}", "threshold: {value: 200, unit: mg/dX}}")],
        ["criteria[0].all[3].any[0].any[1].params.threshold: 'mg/dX' is not a unit"],
    ),
    "bad_parameter_unit": (
        [("serum_m_protein: {value: 1.0, unit: g/dL, reference: I.A.4.a.i}",
          "serum_m_protein: {value: 1.0, unit: g/dX, reference: I.A.4.a.i}")],
        ["criteria[0].all[3].any[0].any[0].params.threshold: 'g/dX' is not a unit"],
    ),
    "refer_to_missing_lob": (
        [("refer_to: {commercial: CP.CPA.09, marketplace: HIM.PA.154, medicaid: CP.PMN.53}",
          "refer_to: {commercial: CP.CPA.09, medicaid: CP.PMN.53}")],
        ["criteria[1].any[1].refer_to: covers commercial, medicaid; the policy's lines of business are commercial, "
         "marketplace, medicaid"],
    ),
    "child_numbering": (
        [("      - id: I.A.4.a.ii\n", "      - id: I.A.5.a.ii\n")],
        ["criteria[0].all[3].any[0].any[1].id: 'I.A.5.a.ii' does not continue its parent's numbering 'I.A.4.a'"],
    ),
}
BROKEN_ALL = [e for edits, _ in BROKEN.values() for e in edits if e[0] != "serum_m_protein: {value: 1.0, unit: g/dL, reference: I.A.4.a.i}"]


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "cases"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "priorauth.cli", *args]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=120)



@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    out = {}
    for name, text in (("case", CASE), ("medicare", MEDICARE), ("lab_only", LAB_ONLY)):
        out[name] = d / f"{name}.yaml"
        out[name].write_text(text, encoding="utf-8")
    for name, (edits, _) in BROKEN.items():
        out[f"policy_{name}"] = d / f"policy_{name}.yaml"
        out[f"policy_{name}"].write_text(edit(POLICY_TEXT, *edits), encoding="utf-8")
    out["policy_all_broken"] = d / "policy_all_broken.yaml"
    out["policy_all_broken"].write_text(edit(POLICY_TEXT, *BROKEN_ALL), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def runs(files) -> dict[str, subprocess.CompletedProcess]:
    f = {k: str(v) for k, v in files.items()}
    cmds = {
        "json_one": _cli("evaluate", f["case"], "--json"),
        "json_one_again": _cli("evaluate", f["case"], "--json"),
        "json_two": _cli("evaluate", f["case"], f["medicare"], "--json"),
        "report": _cli("evaluate", f["case"]),
        "report_again": _cli("evaluate", f["case"]),
        "lab_only": _cli("evaluate", f["lab_only"], "--json"),
        "lab_only_later": _cli("evaluate", f["lab_only"], "--json", "--as-of", "2027-03-01"),
        "as_of_earlier": _cli("evaluate", f["case"], "--json", "--as-of", "2027-01-01"),
        "as_of_bad": _cli("evaluate", f["case"], "--json", "--as-of", "notadate"),
        "report_as_of": _cli("evaluate", f["case"], "--as-of", "2027-01-20"),
        "report_no_effective_date": _cli("evaluate", str(EXAMPLES / "not-yet-effective.yaml")),
        "policy_show": _cli("policy", "show"),
        "policy_check_bundled": _cli("policy", "check", str(BUNDLED_POLICY)),
        "policy_check_missing": _cli("policy", "check", str(Path(f["case"]).parent / "no_such_policy.yaml")),
        "policy_check_all_broken": _cli("policy", "check", f["policy_all_broken"]),
        "evaluate_broken_policy": _cli("evaluate", f["case"], "--policy", f["policy_unknown_check"]),
    }
    for name in BROKEN:
        cmds[f"check_{name}"] = _cli("policy", "check", f[f"policy_{name}"])
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {name: pool.submit(_run, cmd) for name, cmd in cmds.items()}
        return {name: fut.result() for name, fut in futures.items()}


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}"
    assert "Traceback" not in r.stderr
    return r


def criterion(out: dict, cid: str) -> dict:
    found = [c for c in out["criteria"] if c["id"] == cid]
    assert len(found) == 1, f"{cid}: {len(found)} entries"
    return found[0]


# ---- evaluate --json ----------------------------------------------------------------------------------------
def test_json_one_file_prints_one_object(runs):
    r = ok(runs["json_one"])
    out = json.loads(r.stdout)
    assert isinstance(out, dict)
    assert out["case"] == "CLI-01"
    assert out["outcome"] == "meets_criteria"


def test_json_several_files_print_an_array_in_order(runs):
    r = ok(runs["json_two"])
    out = json.loads(r.stdout)
    assert isinstance(out, list) and len(out) == 2
    assert [o["case"] for o in out] == ["CLI-01", "CLI-02"]
    assert [o["outcome"] for o in out] == ["meets_criteria", "not_applicable"]


def test_json_contract_keys(runs):
    out = json.loads(ok(runs["json_one"]).stdout)
    for key in ("case", "policy", "outcome", "criteria", "refer_to", "missing", "authorization", "review", "due"):
        assert key in out, f"contract key {key!r} missing"
    assert out["policy"]["id"] == "CP.PHAR.769"
    assert isinstance(out["policy"]["version"], str) and out["policy"]["version"]
    assert out["outcome"] in {"meets_criteria", "does_not_meet_criteria", "needs_information",
                              "refer_to_policy", "not_applicable"}
    assert isinstance(out["criteria"], list) and out["criteria"]
    for c in out["criteria"]:
        assert {"id", "status", "reason", "evidence"} <= c.keys(), c
        assert c["status"] in {"met", "not_met", "unknown"}, c
        assert isinstance(c["reason"], str) and c["reason"].strip(), c
        assert isinstance(c["evidence"], list), c
    ids = [c["id"] for c in out["criteria"]]
    assert {"I.A", "I.A.1", "I.A.4.a.i", "I.A.10"} <= set(ids)
    assert len(ids) == len(set(ids))
    assert out["refer_to"] is None
    assert out["missing"] == []
    assert out["authorization"]["product"] == "anitocabtagene autoleucel"
    assert out["authorization"]["max_cells"] == pytest.approx(115e6)
    assert out["review"]["required"] is True
    assert out["due"].startswith("2027-01-18")  # 7 calendar days for a standard request received 2027-01-11
    # evidence names where each fact came from
    lab = criterion(out, "I.A.4.a.i")
    assert lab["status"] == "met"
    assert any("labs[0]" in json.dumps(e) for e in lab["evidence"]), lab["evidence"]


def test_same_file_twice_gives_byte_identical_output(runs):
    a, b = ok(runs["json_one"]), ok(runs["json_one_again"])
    assert a.stdout and a.stdout == b.stdout
    c, d = ok(runs["report"]), ok(runs["report_again"])
    assert c.stdout and c.stdout == d.stdout


# ---- --as-of ------------------------------------------------------------------------------------------------
def test_as_of_later_makes_the_30_day_lab_stale(runs):
    before = json.loads(ok(runs["lab_only"]).stdout)
    after = json.loads(ok(runs["lab_only_later"]).stdout)
    assert before["as_of"] == "2027-01-11"
    assert after["as_of"] == "2027-03-01"
    assert criterion(before, "I.A.4.a.i")["status"] == "met"
    assert before["outcome"] == "meets_criteria"
    stale = criterion(after, "I.A.4.a.i")
    assert stale["status"] == "unknown"
    assert "2027-01-03" in stale["reason"], stale["reason"]   # the result now outside the window is named
    assert criterion(after, "I.A.4")["status"] == "unknown"
    assert after["outcome"] == "needs_information"
    assert any(m["criterion"] == "I.A.4" for m in after["missing"]), after["missing"]


def test_as_of_before_a_lab_date_ignores_the_lab_as_a_data_problem(runs):
    out = json.loads(ok(runs["as_of_earlier"]).stdout)
    assert out["as_of"] == "2027-01-01"
    assert criterion(out, "I.A.4.a.i")["status"] == "unknown"
    assert any("labs[0]" in p and "2027-01-03" in p for p in out["data_problems"]), out["data_problems"]


def test_as_of_not_a_date_exits_2(runs):
    r = runs["as_of_bad"]
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stdout.strip() == ""
    err = folded(r.stderr)
    assert "--as-of" in err and "'notadate' is not a date" in err, r.stderr


# ---- the readable report -----------------------------------------------------------------------------------
def test_default_report_has_outcome_and_criterion_ids(runs):
    out = ok(runs["report"]).stdout
    assert not out.lstrip().startswith(("{", "[")), "the default output is the report, not JSON"
    assert "MEETS CRITERIA" in out
    for cid in ("I.A.1", "I.A.2", "I.A.3", "I.A.4.a.i", "I.A.4.b", "I.A.5.c", "I.A.6", "I.A.10", "III.B"):
        assert cid in out, f"{cid} not in the report"
    assert "CLI-01" in out and "CP.PHAR.769" in out


def test_report_names_the_evaluation_date_and_the_receipt_date_apart(runs):
    out = " ".join(ok(runs["report_as_of"]).stdout.split())
    assert "evaluation date 2027-01-20 (received 2027-01-11)" in out


def test_not_applicable_for_want_of_an_effective_date_says_how_to_set_it(runs):
    out = " ".join(ok(runs["report_no_effective_date"]).stdout.split())
    assert "NOT APPLICABLE" in out
    assert "policy_effective: YYYY-MM-DD" in out and "--config payer.yaml" in out and "context:" in out


def test_report_shows_where_each_fact_came_from(runs):
    out = " ".join(ok(runs["report"]).stdout.split())
    assert "serum M-protein: 1.6 g/dL (2027-01-03), from" in out and "#labs[0]" in out


# ---- policy show / check ------------------------------------------------------------------------------------
def test_policy_show_prints_the_tree(runs):
    out = ok(runs["policy_show"]).stdout
    assert "CP.PHAR.769" in out
    for cid in ("I.A", "I.A.4.a.iii", "I.A.10", "I.B.1.b", "II.A.1", "II.B.2", "III.B"):
        assert f" {cid} " in out, f"{cid} not in the tree"
    assert "minimum_age" in out  # the check each leaf runs
    folded_out = folded(out)
    assert "CP.CPA.09" in folded_out and "HIM.PA.154" in folded_out and "CP.PMN.53" in folded_out


def test_policy_check_bundled_is_ok(runs):
    r = ok(runs["policy_check_bundled"])
    assert "OK" in r.stdout
    assert r.stderr.strip() == ""


@pytest.mark.parametrize("name", list(BROKEN))
def test_policy_check_names_the_problem_path(runs, files, name):
    r = runs[f"check_{name}"]
    assert r.returncode == 2, f"exit {r.returncode}: {r.stdout} {r.stderr}"
    assert "Traceback" not in r.stderr
    assert "OK" not in r.stdout
    err = folded(r.stderr)
    assert str(files[f"policy_{name}"]) in err
    for expected in BROKEN[name][1]:
        assert expected in err, f"{expected!r} not in: {err}"


def test_policy_check_reports_every_problem_of_a_file(runs):
    r = runs["policy_check_all_broken"]
    err = refused(r)
    for name, (_, expected) in BROKEN.items():
        if name == "bad_parameter_unit":
            continue
        for e in expected:
            assert e in err, f"{name}: {e!r} not in: {err}"


def test_policy_check_missing_file_exits_2(runs):
    r = runs["policy_check_missing"]
    err = refused(r)
    assert "no_such_policy.yaml" in err and "cannot be read" in err


def test_evaluate_with_a_broken_policy_exits_2(runs):
    r = runs["evaluate_broken_policy"]
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stdout.strip() == ""
    assert "criteria[0].all[2].check: 'minimum_agee'" in folded(r.stderr)
