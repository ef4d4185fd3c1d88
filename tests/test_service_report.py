"""GET /review/report and ``priorauth report`` on SQLite and on PostgreSQL: example requests submitted and decided
on a moving clock (approvals, a modification, denials, a denial appealed and approved, an extension, a late
decision, a pend, open requests), then the CMS-0057-F figures as JSON and CSV, ranges and roles."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from priorauth.cli import app as cli
from priorauth.reporting import CSV_COLUMNS
from service_helpers import dated, example, make_harness, outcome_text, with_identifier

ELIGIBLE = "eligible-flc-only.json"                      # standard, meets the criteria (can be certified)
NEEDS_INFO = "needs-info-attested.json"                  # standard, needs information (can be denied)
EXPEDITED = "internist-consult-expedited.json"           # expedited, meets the criteria
JANUARY = {"start": "2027-01-01", "end": "2027-01-31"}


@pytest.fixture
def h(url):
    harness = make_harness(url)
    yield harness
    harness.store.close()


def renew_tokens(h) -> None:
    """Fresh tokens on the moved clock (the harness's last ten days)."""
    for client_id, secret in h.secrets.items():
        r = h.client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
        assert r.status_code == 200, r.text
        h.tokens[client_id] = r.json()["access_token"]


@pytest.fixture
def decided(h):
    """The requests of the scenario, submitted and decided at hours after T = 2027-01-12 09:00 UTC; the report
    is made at T + 300 h (24 Jan 21:00)."""
    t0 = h.clock.at

    def at(hours: float) -> None:
        assert t0 + timedelta(hours=hours) >= h.clock.at, "the clock only moves forward"
        h.clock.at = t0 + timedelta(hours=hours)
        renew_tokens(h)

    def submit(name: str, value: str) -> str:
        # each request is sent on the day of receipt (the service evaluates as of its own clock)
        r = h.submit("lakeshore", with_identifier(dated(example(name), h.clock.at.date()), value))
        assert r.status_code == 201, r.text
        return r.headers["location"].rsplit("/", 1)[1]

    def decide(case_id: str, action: str, reason: str = "") -> None:
        r = h.decide("dr-reviewer", case_id, action, reason)
        assert r.status_code == 201, r.text

    rev = h.auth("dr-reviewer")
    ids = {k: submit(ELIGIBLE, k) for k in ("S1-approve", "S2-modify", "S3-appeal", "S4-extension", "S5-late")}
    ids.update({k: submit(NEEDS_INFO, k) for k in ("S6-deny", "S7-pend")})
    ids.update({k: submit(EXPEDITED, k) for k in ("E1-approve", "E2-deny-late", "E3-open")})
    at(5)
    decide(ids["S7-pend"], "pend", "Send the serum FLC results (I.A.7)")
    at(10)
    decide(ids["S1-approve"], "approve")
    at(20)
    decide(ids["S2-modify"], "modify", "One infusion authorized instead of two")
    at(24)
    decide(ids["E1-approve"], "approve")
    at(30)
    decide(ids["S3-appeal"], "deny", "Measurable disease (I.A.7) not documented")
    at(40)
    r = h.client.post(f"/review/cases/{ids['S3-appeal']}/appeal", headers=h.auth("lakeshore"),
                      json={"reason": "FLC results attached"})
    assert r.status_code == 200, r.text
    at(50)
    decide(ids["S3-appeal"], "approve")
    at(60)
    decide(ids["S6-deny"], "deny", "I.A.7 is not documented")
    at(80)
    decide(ids["E2-deny-late"], "deny", "I.A.7 is not documented")
    at(100)
    r = h.client.post(f"/review/cases/{ids['S4-extension']}/extension", headers=rev,
                      json={"hours": 336, "reason": "awaiting outside records"})
    assert r.status_code == 200, r.text
    at(190)
    decide(ids["S5-late"], "approve")                               # past the 7-day (168 h) clock
    at(200)
    decide(ids["S4-extension"], "approve")                          # on time: due at 168 + 336 h
    at(250)
    ids["S8-open"] = submit(ELIGIBLE, "S8-open")                    # received 22 Jan, due 29 Jan
    at(300)
    return ids


def get_report(h, who="dr-reviewer", **params):
    return h.client.get("/review/report", params=params, headers=h.auth(who))


# the figures of January: standard decided S1..S6 (S3 once, by its approval after appeal; S7 only pended)
STANDARD_JANUARY = {
    "decided": 6,
    "approved": 5, "approved_percent": 83.3,                       # S1, S2 (modified), S3, S4, S5
    "approved_as_requested": 4,
    "approved_modified": 1, "approved_modified_percent": 16.7,     # S2
    "denied": 1, "denied_percent": 16.7,                           # S6
    "approved_after_appeal": 1, "approved_after_appeal_percent": 16.7,           # S3
    "approved_after_extension": 1, "approved_after_extension_percent": 16.7,     # S4
    # 10 (S1), 20 (S2), 10 (S3: from its appeal at 40 h), 200 (S4), 190 (S5), 60 (S6): 490 / 6; (20 + 60) / 2
    "hours_to_decision_average": 81.7, "hours_to_decision_median": 40.0,
    "decided_after_due": 1,                                        # S5 (S4 was extended)
    "open": 2, "overdue_now": 1,                                   # S7 (pending information, due 19 Jan), S8
}
EXPEDITED_JANUARY = {
    "decided": 2,
    "approved": 1, "approved_percent": 50.0,
    "approved_as_requested": 1,
    "approved_modified": 0, "approved_modified_percent": 0.0,
    "denied": 1, "denied_percent": 50.0,
    "approved_after_appeal": 0, "approved_after_appeal_percent": 0.0,
    "approved_after_extension": 0, "approved_after_extension_percent": 0.0,
    "hours_to_decision_average": 52.0, "hours_to_decision_median": 52.0,        # 24 and 80 h
    "decided_after_due": 1,                                        # E2, 80 h against 72 h
    "open": 1, "overdue_now": 1,                                   # E3, due 15 Jan
}


def test_january_figures_as_json(h, decided):
    r = get_report(h, **JANUARY)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["period"]["start"] == "2027-01-01" and body["period"]["end"] == "2027-01-31"
    assert "UTC" in body["period"]["basis"]
    assert body["as_of"] == "2027-01-24T21:00:00Z"                  # the service clock
    assert body["standard"] == STANDARD_JANUARY
    assert body["expedited"] == EXPEDITED_JANUARY
    assert get_report(h, "ops-admin", **JANUARY).json()["standard"] == STANDARD_JANUARY     # admin too
    audited = [a for a in h.store.audit_entries() if a.action == "report.read"]
    assert [(a.actor, json.loads(a.detail)) for a in audited][0] == (
        "client:dr-reviewer", {"start": "2027-01-01", "end": "2027-01-31", "format": "json"})


def test_january_figures_as_csv(h, decided):
    r = get_report(h, **JANUARY, format="csv")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="priorauth-report-2027-01-01-2027-01-31.csv"' in r.headers["content-disposition"]
    reader = csv.DictReader(io.StringIO(r.text))
    assert tuple(reader.fieldnames) == CSV_COLUMNS
    rows = list(reader)
    assert [row["urgency"] for row in rows] == ["standard", "expedited"]
    for row, expected in zip(rows, (STANDARD_JANUARY, EXPEDITED_JANUARY)):
        assert row["period_start"] == "2027-01-01" and row["period_end"] == "2027-01-31"
        assert row["as_of"] == "2027-01-24T21:00:00Z"
        assert {k: row[k] for k in expected} == {k: str(v) for k, v in expected.items()}


def test_a_request_counts_by_its_last_decision_in_the_range(h, decided):
    # 13 Jan: S2 modified (20 h) and S3 denied (30 h); 14 Jan: S3 approved after its appeal, S6 denied
    r = get_report(h, start="2027-01-13", end="2027-01-13").json()["standard"]
    assert (r["decided"], r["approved"], r["approved_modified"], r["denied"]) == (2, 1, 1, 1)
    assert (r["approved_after_appeal"], r["hours_to_decision_average"]) == (0, 25.0)
    r = get_report(h, start="2027-01-14", end="2027-01-14").json()["standard"]
    assert (r["decided"], r["approved"], r["denied"], r["approved_after_appeal"]) == (2, 1, 1, 1)
    assert r["approved_after_appeal_percent"] == 50.0 and r["hours_to_decision_average"] == 35.0
    # 20 Jan: S5 (late, 190 h) at 07:00 and S4 (after its extension, 200 h) at 17:00; open: only what was
    # received by the end of the range (S7, not S8)
    r = get_report(h, start="2027-01-20", end="2027-01-20").json()
    s = r["standard"]
    assert (s["decided"], s["approved"], s["approved_after_extension"], s["decided_after_due"]) == (2, 2, 1, 1)
    assert (s["hours_to_decision_average"], s["hours_to_decision_median"]) == (195.0, 195.0)
    assert (s["open"], s["overdue_now"]) == (1, 1)
    assert r["expedited"]["decided"] == 0 and r["expedited"]["approved_percent"] is None
    assert (r["expedited"]["open"], r["expedited"]["overdue_now"]) == (1, 1)


def test_an_empty_range_gives_zeros_and_nulls(h, decided):
    r = get_report(h, start="2026-06-01", end="2026-06-30")
    assert r.status_code == 200
    for u in ("standard", "expedited"):
        f = r.json()[u]
        assert all(f[k] == 0 for k in ("decided", "approved", "denied", "open", "overdue_now", "decided_after_due"))
        assert f["approved_percent"] is None and f["hours_to_decision_average"] is None
        assert f["hours_to_decision_median"] is None
    rows = list(csv.DictReader(io.StringIO(get_report(h, start="2026-06-01", end="2026-06-30", format="csv").text)))
    assert rows[0]["decided"] == "0" and rows[0]["approved_percent"] == "" and len(rows) == 2


def test_bad_ranges_are_400s_naming_the_field(h):
    r = get_report(h, start="2027-01-31", end="2027-01-01")
    assert r.status_code == 400
    [issue] = r.json()["issue"]
    assert issue["expression"] == ["end"] and "before start" in issue["diagnostics"]
    r = get_report(h, start="2027-13-01", end="2027-01-31")
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["start"]
    r = get_report(h, start="20270101", end="2027-01-31")
    assert r.status_code == 400 and "YYYY-MM-DD" in outcome_text(r)
    r = get_report(h, start="2027-01-01")
    assert r.status_code == 400 and "end" in outcome_text(r)
    r = get_report(h, **JANUARY, format="xml")
    assert r.status_code == 400 and "format" in outcome_text(r)
    assert not [a for a in h.store.audit_entries() if a.action == "report.read"]      # nothing was read


def test_providers_and_anonymous_callers_get_no_report(h, decided):
    r = get_report(h, "lakeshore", **JANUARY)
    assert r.status_code == 403 and "provider role" in outcome_text(r)
    r = h.client.get("/review/report", params=JANUARY)
    assert r.status_code == 401


def test_cli_report_reads_the_same_store(h, decided, url):
    runner = CliRunner()
    r = runner.invoke(cli, ["report", "--from", "2027-01-01", "--to", "2027-01-31", "--database-url", url])
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    # the command line reports as of the real time, so only "overdue now" can differ from the service's report
    for u, expected in (("standard", STANDARD_JANUARY), ("expedited", EXPEDITED_JANUARY)):
        assert {k: v for k, v in body[u].items() if k != "overdue_now"} == \
            {k: v for k, v in expected.items() if k != "overdue_now"}
    r = runner.invoke(cli, ["report", "--from", "2027-01-20", "--to", "2027-01-20", "--format", "csv",
                            "--database-url", url])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["urgency"] for row in rows] == ["standard", "expedited"]
    assert (rows[0]["decided"], rows[0]["approved_after_extension"], rows[0]["decided_after_due"]) == ("2", "1", "1")
    assert any(a.actor == "cli:report" for a in h.store.audit_entries() if a.action == "report.read")


@pytest.mark.parametrize("args, option", [
    (["--from", "2027-01-31", "--to", "2027-01-01"], "--to"),
    (["--from", "January", "--to", "2027-01-01"], "--from"),
    (["--from", "2027-01-01", "--to", "2027-02-30"], "--to"),
    (["--from", "2027-01-01", "--to", "2027-01-31", "--format", "xml"], "--format"),
])
def test_cli_report_bad_input_exits_2_naming_the_option(url, args, option):
    r = CliRunner().invoke(cli, ["report", *args, "--database-url", url])
    assert r.exit_code == 2 and r.stderr.startswith(option), r.output
