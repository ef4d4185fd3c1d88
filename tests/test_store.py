"""The durable store: SQLite (a temporary file) and a real PostgreSQL (PRIORAUTH_TEST_PG_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/test; each test gets a fresh database). When PostgreSQL cannot be
reached its tests are skipped, or fail when CI is set."""

from __future__ import annotations

import copy
import json
import os
import threading
import uuid
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from conftest import ROOT, SCENARIOS
from priorauth import __version__
from priorauth.config import PayerConfig
from priorauth.determination import determine
from priorauth.fhir.claim_response import ReviewerDecision
from priorauth.fhir.pas_build import bundle_from_case
from priorauth.fhir.pas_intake import case_from_bundle
from priorauth.intake.casefile import load_case_file
from priorauth.policies import default_policy
from priorauth.store import (Actor, CaseStateConflict, IdempotencyConflict, PatientDataInAudit, Store, content_hash,
                             default_url)
from priorauth.store.models import Base

CONFIG = PayerConfig(policy_effective=date(2026, 12, 23))
PROVIDER = Actor("client:lakeshore", "provider")
REVIEWER = Actor("reviewer:1234567893", "reviewer")
RECEIVED = datetime(2027, 1, 10, 9, 0, tzinfo=timezone.utc)
EXAMPLES = sorted((ROOT / "examples" / "fhir").glob("*.json"))


@lru_cache(maxsize=None)
def _policy():
    return default_policy()


def evaluate(bundle: dict):
    case = case_from_bundle(bundle, "submission.json")
    return case, determine(case, _policy(), CONFIG)


def example(name: str) -> tuple[dict, str]:
    text_ = (ROOT / "examples" / "fhir" / name).read_text()
    return json.loads(text_), text_


@lru_cache(maxsize=None)
def _scenario_bundles() -> tuple[str, ...]:
    return tuple(json.dumps(bundle_from_case(load_case_file(p))) for p in sorted(SCENARIOS.glob("*.yaml")))


def scenario_bundle(i: int, value: str) -> tuple[dict, str]:
    b = json.loads(_scenario_bundles()[i % len(_scenario_bundles())])
    b["identifier"] = {"system": "urn:test:pas-submission", "value": value}
    return b, json.dumps(b, indent=1)


def decision(action="approve", reason="", **kw) -> ReviewerDecision:
    return ReviewerDecision(action=action, reason=reason, reviewer_npi="1234567893",
                            reviewer_specialty="207RH0003X", decided_at=datetime(2027, 1, 15, 9, 30), **kw)


@pytest.fixture
def store(url):
    s = Store(url)
    s.migrate()
    yield s
    s.close()


def submit(store, bundle, text_, actor=PROVIDER, organization="org-lakeshore", received_at=RECEIVED):
    return store.submit(bundle, text_, organization=organization, received_at=received_at, evaluate=evaluate,
                        actor=actor)


def count(store, table: str) -> int:
    with store.engine.connect() as c:
        return c.execute(text(f"select count(*) from {table}")).scalar_one()


APPEND_ONLY = ("submissions", "determinations", "decisions", "events", "audit_log")


def bypass_append_only(store, table: str = "audit_log") -> None:
    """What a database owner could do to rewrite history: turn the table's append-only triggers off."""
    with store.engine.begin() as c:
        if store.dialect == "postgresql":
            c.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            for verb in ("update", "delete"):
                c.execute(text(f"DROP TRIGGER {table}_no_{verb}"))


# ---- tests ---------------------------------------------------------------------------------------------------
def test_migrate_from_empty_matches_the_models(url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    s = Store(url)
    assert s.schema_revision() is None
    s.migrate()
    s.migrate()                                   # idempotent
    assert s.schema_revision() == "0007_console"
    with s.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
        if s.dialect == "postgresql" and c.execute(text(
                "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)")).first():
            methods = c.execute(text(
                "SELECT attrelid::regclass::text, attname, attcompression FROM pg_attribute "
                "WHERE (attrelid::regclass::text, attname) IN (('submissions', 'text'), ('determinations', 'result_json'))"
            )).all()
            assert sorted(methods) == [("determinations", "result_json", "l"), ("submissions", "text", "l")]
    assert diff == []
    assert s.verify_audit() == (True, 0, None)
    s.close()


def test_default_url_is_a_sqlite_file_in_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIORAUTH_DATA_DIR", str(tmp_path / "data"))
    assert default_url() == f"sqlite:///{tmp_path / 'data' / 'priorauth.sqlite'}"
    s = Store()
    s.migrate()
    assert (tmp_path / "data" / "priorauth.sqlite").is_file()
    s.close()


def test_submit_keeps_the_bundle_verbatim_and_the_determination(store):
    bundle, text_ = example("eligible-flc-only.json")
    r = submit(store, bundle, text_)
    assert r.created
    h = store.history(r.case.id)
    assert h.submissions[0].text == text_                       # byte for byte
    assert h.submissions[0].content_hash == content_hash(bundle)
    assert h.submissions[0].received_at == RECEIVED
    det = h.determinations[0]
    _case, expected = evaluate(bundle)
    assert det.outcome == expected.outcome == r.case.outcome
    assert (det.policy_id, det.policy_version, det.policy_content_hash) == \
        (expected.policy.id, expected.policy.version, expected.policy.content_hash)
    assert det.engine_version == __version__
    result = json.loads(det.result_json)
    assert result["outcome"] == expected.outcome and result["policy"]["content_hash"] == expected.policy.content_hash
    c = store.case(r.case.id)
    assert (c.identifier_system, c.identifier_value) == (bundle["identifier"]["system"], bundle["identifier"]["value"])
    assert c.status == "pended" and c.organization == "org-lakeshore" and c.urgency == _case.request.urgency
    assert c.line_of_business == _case.member.line_of_business and c.member_id == _case.member.id
    due = expected.due if expected.due.tzinfo else expected.due.replace(tzinfo=timezone.utc)
    assert c.due_at == due and c.due_at.tzinfo == timezone.utc
    assert [e.kind for e in h.events] == ["submitted"]
    assert json.loads(h.events[0].detail)["status"] == [None, "pended"]


def test_same_bundle_twice_is_one_case_and_the_same_determination(store):
    bundle, text_ = example("needs-info-attested.json")
    first = submit(store, bundle, text_)
    # the same content re-sent with other formatting is the same submission
    again = submit(store, json.loads(text_), json.dumps(bundle))
    assert not again.created
    assert again.case.id == first.case.id and again.determination.id == first.determination.id
    assert again.submission.id == first.submission.id
    assert [count(store, t) for t in ("cases", "submissions", "determinations", "events")] == [1, 1, 1, 1]
    assert [a.action for a in store.audit_entries(first.case.id)] == ["case.submit", "case.submit.replay"]


def test_same_identifier_with_different_content_is_refused(store):
    bundle, text_ = example("eligible-flc-only.json")
    first = submit(store, bundle, text_)
    changed = copy.deepcopy(bundle)
    changed["timestamp"] = "2027-01-11T10:00:00Z"
    with pytest.raises(IdempotencyConflict, match=r"already submitted \(case .*\) with different content"):
        submit(store, changed, json.dumps(changed))
    assert [count(store, t) for t in ("cases", "submissions", "determinations")] == [1, 1, 1]
    assert store.audit_entries(first.case.id)[-1].action == "case.submit.conflict"
    assert store.verify_audit()[0]


def test_resubmission_keeps_history(store):
    bundle, text_ = scenario_bundle(0, "RESUB-1")
    first = submit(store, bundle, text_)
    store.record_decision(first.case.id, decision("pend", "send the FLC series"), REVIEWER)
    updated, _ = example("eligible-flc-only.json")
    updated["identifier"] = bundle["identifier"]
    up_text = json.dumps(updated)
    second = store.resubmit(first.case.id, updated, up_text, received_at=RECEIVED + timedelta(days=2),
                            evaluate=evaluate, actor=PROVIDER)
    assert second.created and second.case.id == first.case.id
    assert second.determination.id != first.determination.id
    h = store.history(first.case.id)
    assert [s.sequence for s in h.submissions] == [1, 2]
    assert [s.text for s in h.submissions] == [text_, up_text]
    assert [d.submission_id for d in h.determinations] == [first.submission.id, second.submission.id]
    assert [e.kind for e in h.events] == ["submitted", "decision.pend", "resubmitted"]
    assert h.case.status == "pended" and h.case.outcome == second.determination.outcome
    # the resubmitted content again is a replay; the original content via submit replays the first answer
    again = store.resubmit(first.case.id, updated, up_text, received_at=RECEIVED, evaluate=evaluate, actor=PROVIDER)
    assert not again.created and again.determination.id == second.determination.id
    orig = submit(store, bundle, text_)
    assert not orig.created and orig.determination.id == first.determination.id
    assert count(store, "submissions") == 2 and count(store, "cases") == 1
    # another case's identifier cannot be used for a resubmission
    other, other_text = example("needs-info-attested.json")
    submit(store, other, other_text)
    with pytest.raises(IdempotencyConflict):
        store.resubmit(first.case.id, other | {"timestamp": "2027-02-01T00:00:00Z"}, "{}", received_at=RECEIVED,
                       evaluate=evaluate, actor=PROVIDER)
    assert store.verify_audit()[0]


def test_a_change_the_case_status_no_longer_allows_is_refused_under_the_lock_and_writes_nothing(store):
    """Status checks are made on the locked row in the change's own transaction: a decision on a decided case, an
    appeal of a case not decided, simultaneous appeals (one lands) raise CaseStateConflict and write nothing."""
    bundle, text_ = example("prior-bcma-bispecific.json")
    case_id = submit(store, bundle, text_).case.id
    with pytest.raises(CaseStateConflict):
        store.appeal(case_id, "the member disagrees", REVIEWER)            # nothing to appeal yet
    store.record_decision(case_id, decision("deny", "Does not meet I.A.7: prior BCMA-directed therapy"), REVIEWER)
    before = (count(store, "decisions"), count(store, "events"), count(store, "audit_log"))
    with pytest.raises(CaseStateConflict) as info:
        store.record_decision(case_id, decision("approve"), REVIEWER)
    assert info.value.status == "denied" and str(info.value) == "the case is denied"
    with pytest.raises(CaseStateConflict):
        store.extend(case_id, datetime(2027, 3, 1, tzinfo=timezone.utc), "records requested", REVIEWER)
    assert (count(store, "decisions"), count(store, "events"), count(store, "audit_log")) == before
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def appeal() -> None:
        barrier.wait()
        try:
            store.appeal(case_id, "the member disagrees", REVIEWER)
            outcomes.append("appealed")
        except CaseStateConflict:
            outcomes.append("conflict")

    pool = [threading.Thread(target=appeal) for _ in range(6)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert sorted(outcomes) == ["appealed"] + ["conflict"] * 5
    assert [e.kind for e in store.history(case_id).events].count("appeal") == 1
    assert store.verify_audit()[0]


def test_decisions_append_and_change_the_status(store):
    bundle, text_ = example("prior-bcma-bispecific.json")
    r = submit(store, bundle, text_)
    d1 = store.record_decision(r.case.id, decision("pend", "need the PET-CT report"), REVIEWER)
    d2 = store.record_decision(r.case.id, decision("deny", "Does not meet I.A.7: prior BCMA-directed therapy"),
                               REVIEWER)
    h = store.history(r.case.id)
    assert [d.id for d in h.decisions] == [d1.id, d2.id]
    assert [d.action for d in h.decisions] == ["pend", "deny"]
    assert h.decisions[1].reviewer_npi == "1234567893" and h.decisions[1].specialty == "207RH0003X"
    assert h.decisions[1].decided_at == datetime(2027, 1, 15, 9, 30, tzinfo=timezone.utc)
    assert h.case.status == "denied"
    assert [json.loads(e.detail).get("status") for e in h.events] == \
        [[None, "pended"], ["pended", "pending_information"], ["pending_information", "denied"]]
    decide = [a for a in store.audit_entries(r.case.id) if a.action == "case.decide"]
    assert [json.loads(a.detail)["cited"] for a in decide] == [[], ["I.A.7"]]


def test_queue_filters_and_sorts_by_due_time(store):
    results = {}
    for path in EXAMPLES:
        bundle = json.loads(path.read_text())
        org = "org-a" if len(results) % 2 else "org-b"
        results[path.stem] = submit(store, bundle, path.read_text(), organization=org)
    cases = [store.case(r.case.id) for r in results.values()]
    q = store.queue()
    assert {c.id for c in q} == {c.id for c in cases}
    dues = [c.due_at for c in q if c.due_at is not None]
    assert dues == sorted(dues) and len(dues) >= 2
    assert all(c.due_at is not None for c in q[:len(dues)])            # no due time: last
    for field, value in (("outcome", "needs_information"), ("line_of_business", cases[0].line_of_business),
                         ("organization", "org-a")):
        got = store.queue(**{field: value})
        want = [c.id for c in q if getattr(c, field) == value]
        assert [c.id for c in got] == want and want
    cut = sorted(dues)[len(dues) // 2]
    assert [c.id for c in store.queue(due_before=cut)] == [c.id for c in q if c.due_at is not None and c.due_at < cut]
    first = q[0]
    store.record_decision(first.id, decision("approve"), REVIEWER)
    assert [c.id for c in store.queue(status="approved")] == [first.id]
    assert first.id not in [c.id for c in store.queue(status="pended")]
    assert [c.id for c in store.queue(status=["pended", "approved"])] == [c.id for c in q]


def test_audit_chain_verifies_and_tampering_is_found(store):
    bundle, text_ = example("eligible-flc-only.json")
    r = submit(store, bundle, text_)
    store.case(r.case.id, actor=REVIEWER)
    store.history(r.case.id, actor=REVIEWER)
    store.queue(actor=REVIEWER)
    store.record_decision(r.case.id, decision("approve"), REVIEWER)
    store.audit("admin:ops", "admin", "audit.export", None, {"rows": 5})
    entries = store.audit_entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6]
    assert [e.action for e in entries] == ["case.submit", "case.read", "case.history", "queue.read", "case.decide",
                                           "audit.export"]
    assert entries[1].actor == REVIEWER.name and entries[1].role == "reviewer" and entries[1].case_id == r.case.id
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:]))
    # no patient data in the log: not the bundle, not the member id, not the name
    case, _ = evaluate(bundle)
    log = " ".join(e.detail for e in entries)
    assert case.member.id not in log and "birthDate" not in log and text_[:200] not in log
    with pytest.raises(PatientDataInAudit):
        store.audit("x", "admin", "oops", None, {"member_id": case.member.id})
    assert store.verify_audit() == (True, 6, None)
    bypass_append_only(store)                     # as a database owner could: the chain still finds it
    with store.engine.begin() as c:
        c.execute(text("update audit_log set actor = 'someone-else' where seq = 3"))
    assert store.verify_audit() == (False, 2, 3)
    with store.engine.begin() as c:
        c.execute(text("update audit_log set actor = :a where seq = 3"), {"a": entries[2].actor})
    assert store.verify_audit() == (True, 6, None)
    with store.engine.begin() as c:               # a deleted row breaks the sequence
        c.execute(text("delete from audit_log where seq = 4"))
    assert store.verify_audit() == (False, 3, 4)


def test_truncating_the_audit_log_is_found(store):
    for i in range(3):
        store.audit("admin:ops", "admin", "audit.export", None, {"n": i})
    bypass_append_only(store)
    with store.engine.begin() as c:
        c.execute(text("delete from audit_log where seq = 3"))
    assert store.verify_audit() == (False, 2, 3)


def test_a_tail_cut_off_with_the_head_rewritten_is_found_by_an_anchor_kept_elsewhere(store, tmp_path):
    """A database owner who deletes the last entries and sets the head row to the new last one leaves a chain
    that verifies by itself; the anchor the plan printed earlier (`priorauth audit anchor`) finds the cut."""
    from typer.testing import CliRunner

    from priorauth.cli import app as cli

    for i in range(3):
        store.audit("admin:ops", "admin", "audit.export", None, {"n": i})
    kept = store.anchor()
    assert kept["seq"] == 3 and store.check_anchor(kept) is None
    store.audit("admin:ops", "admin", "audit.export", None, {"n": 3})
    assert store.check_anchor(kept) is None                  # later entries do not disturb an anchor
    path = tmp_path / "anchor.json"
    path.write_text(json.dumps(kept))
    runner = CliRunner()
    ok = runner.invoke(cli, ["audit", "verify", "--anchor", str(path), "--database-url", store.url])
    assert ok.exit_code == 0, ok.output
    bypass_append_only(store)
    with store.engine.begin() as c:                          # cut the tail and make the head agree
        c.execute(text("delete from audit_log where seq >= 3"))
        second = c.execute(text("select hash from audit_log where seq = 2")).scalar_one()
        c.execute(text("update audit_head set seq = 2, hash = :h where id = 1"), {"h": second})
    assert store.verify_audit()[0]                           # the chain alone looks whole
    assert "gone" in store.check_anchor(kept)
    r = runner.invoke(cli, ["audit", "verify", "--anchor", str(path), "--database-url", store.url])
    assert r.exit_code == 1 and "anchor" in r.output and "cut back" in r.output
    assert store.check_anchor({"seq": "x"}) is not None


@pytest.mark.parametrize("tamper", ["delete a case", "delete a decision", "delete a determination",
                                    "move a decision", "move a determination", "set a case status",
                                    "set a determination outcome", "add a decision", "delete an event",
                                    "move an event", "alter an event", "add an event"])
def test_the_audit_finds_records_deleted_moved_added_or_restated(store, tamper):
    """Each kind of tampering a database owner could do beside rewriting content is named by verify_records."""
    a = submit(store, *scenario_bundle(0, "TAMPER-1"))
    b = submit(store, *scenario_bundle(1, "TAMPER-2"))
    d = store.record_decision(a.case.id, decision("deny", "Does not meet I.A.7: prior BCMA-directed therapy"),
                              REVIEWER)
    assert store.verify_records()[1] == []
    for table in ("cases", "submissions", "determinations", "decisions", "events"):
        if table in APPEND_ONLY:
            bypass_append_only(store, table)
    with store.engine.begin() as c:
        run = lambda sql, **kw: c.execute(text(sql), kw)  # noqa: E731
        if tamper == "delete a case":
            for table in ("decisions", "determinations", "events", "submissions"):
                run(f"DELETE FROM {table} WHERE case_id = :c", c=b.case.id)
            run("DELETE FROM cases WHERE id = :c", c=b.case.id)
            expected = f"case {b.case.id}: the audit records its submission, but the case is no longer stored"
        elif tamper == "delete a decision":
            run("DELETE FROM decisions WHERE id = :d", d=d.id)
            expected = f"case {a.case.id} decision {d.id}: recorded by the audit, no longer stored"
        elif tamper == "delete a determination":
            run("DELETE FROM determinations WHERE id = :d", d=b.determination.id)
            expected = f"case {b.case.id} determination of submission 1: recorded by the audit, no longer stored"
        elif tamper == "move a decision":
            run("UPDATE decisions SET case_id = :c WHERE id = :d", c=b.case.id, d=d.id)
            expected = f"case {b.case.id} decision {d.id}: the audit records it in case {a.case.id}"
        elif tamper == "move a determination":
            run("UPDATE determinations SET case_id = :c WHERE id = :d", c=a.case.id, d=b.determination.id)
            expected = f"case {a.case.id} determination of submission 1 of case {b.case.id}: moved"
        elif tamper == "set a case status":
            run("UPDATE cases SET status = 'approved' WHERE id = :c", c=a.case.id)
            expected = f"case {a.case.id}: its status approved is not the denied its events set"
        elif tamper == "set a determination outcome":
            run("UPDATE determinations SET outcome = 'not_applicable' WHERE id = :d", d=a.determination.id)
            expected = (f"case {a.case.id} determination of submission 1: its outcome not_applicable is not the "
                        f"{a.determination.outcome} recorded")
        elif tamper == "delete an event":        # the decision's event: the case's status then stands alone
            run("DELETE FROM events WHERE case_id = :c AND kind = 'decision.deny'", c=a.case.id)
            expected = f"case {a.case.id} event 2: recorded by the audit, no longer stored"
        elif tamper == "move an event":
            run("UPDATE events SET case_id = :b WHERE case_id = :a AND kind = 'decision.deny'", a=a.case.id,
                b=b.case.id)
            expected = f"case {b.case.id} event 2 (decision.deny): no audit entry records it"
        elif tamper == "alter an event":
            run("UPDATE events SET detail = '{\"status\":[\"pended\",\"approved\"]}' WHERE case_id = :c "
                "AND kind = 'decision.deny'", c=a.case.id)
            expected = f"case {a.case.id} event 2 (decision.deny): its content is not what was stored"
        elif tamper == "add an event":
            run("INSERT INTO events (case_id, at, kind, detail) SELECT case_id, at, 'decision.approve', "
                "'{\"status\":[\"denied\",\"approved\"]}' FROM events WHERE case_id = :c AND kind = 'decision.deny'",
                c=a.case.id)
            run("UPDATE cases SET status = 'approved' WHERE id = :c", c=a.case.id)
            expected = f"case {a.case.id} event 3 (decision.approve): no audit entry records it"
        else:
            run("INSERT INTO decisions (case_id, action, reason, reviewer_npi, specialty, auth_number, decided_at, "
                "recorded_at) SELECT case_id, 'approve', '', reviewer_npi, specialty, 'PA-X', decided_at, "
                "recorded_at FROM decisions WHERE id = :d", d=d.id)
            expected = "no audit entry records it"
    problems = store.verify_records()[1]
    assert any(expected in p for p in problems), problems


def test_a_replay_never_crosses_organizations(store):
    bundle, text_ = example("eligible-flc-only.json")
    first = submit(store, bundle, text_)
    with pytest.raises(IdempotencyConflict) as err:
        submit(store, bundle, text_, organization="org-other", actor=Actor("client:other", "provider"))
    assert "another submitter" in str(err.value) and first.case.id not in str(err.value)
    assert count(store, "cases") == count(store, "submissions") == 1
    [refused] = [a for a in store.audit_entries() if a.action == "case.submit.conflict"]
    assert refused.actor == "client:other" and json.loads(refused.detail)["other_organization"] is True


@pytest.mark.parametrize("instances", [1, 2], ids=["one-store", "two-stores"])
def test_concurrent_submissions_keep_one_chain(store, instances):
    """Threads submitting through one Store, or through two (as two workers or hosts sharing the database)."""
    stores = [store] + [Store(store.url) for _ in range(instances - 1)]
    threads, per_thread = 8, 10
    errors: list[BaseException] = []
    ids: dict[str, str] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker(t: int) -> None:
        try:
            barrier.wait()
            for k in range(per_thread):
                value = f"CONC-{t}-{k}"
                bundle, text_ = scenario_bundle(t * per_thread + k, value)
                mine = stores[(t + k) % instances]
                r = submit(mine, bundle, text_, actor=Actor(f"worker-{t}", "provider"), organization=f"org-{t}")
                if k % 3 == 0:                                   # some replays and reads interleaved
                    again = submit(stores[(t + k + 1) % instances], bundle, text_, organization=f"org-{t}")
                    assert again.determination.id == r.determination.id
                    store.case(r.case.id, actor=REVIEWER)
                with lock:
                    ids[value] = r.case.id
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    for other in stores[1:]:
        other.close()
    assert errors == []
    n = threads * per_thread
    assert len(ids) == n and len(set(ids.values())) == n
    assert count(store, "cases") == count(store, "submissions") == count(store, "determinations") == n
    replays = threads * len(range(0, per_thread, 3))
    ok, checked, bad = store.verify_audit()
    assert (ok, checked, bad) == (True, n + 2 * replays, None)
    for value, case_id in ids.items():
        assert store.case_by_identifier("urn:test:pas-submission", value).id == case_id


def test_concurrent_submissions_of_the_same_bundle_give_one_case(store):
    bundle, text_ = scenario_bundle(3, "SAME-1")
    results, errors = [], []
    barrier = threading.Barrier(6)

    def worker() -> None:
        try:
            barrier.wait()
            results.append(submit(store, bundle, text_))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(6)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert errors == []
    assert len({r.case.id for r in results}) == 1 and len({r.determination.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert count(store, "cases") == 1 and store.verify_audit() == (True, 6, None)


@pytest.mark.parametrize("detail", [{}, {"count": 3, "outcome": "meets_criteria"}, {"reason_length": 7, "ü": ["ß", 1.5]}])
def test_the_audit_text_prepared_for_postgresql_is_the_canonical_row(detail):
    from priorauth.store.core import _audit_text_parts, audit_hash

    at = datetime(2027, 1, 10, 9, 0, 0, 123456, tzinfo=timezone.utc)
    prefix, middle = _audit_text_parts(at, "client:lakeshore", "provider", "case.submit", "c-1", detail)
    prev = "ab" * 32
    text_ = prefix + prev + middle + "42" + "}"
    import hashlib
    assert hashlib.sha256(text_.encode("utf-8")).hexdigest() == \
        audit_hash(42, at, "client:lakeshore", "provider", "case.submit", "c-1", detail, prev)


def test_an_identifier_a_resubmission_used_cannot_start_a_new_case(store):
    bundle, text_ = scenario_bundle(0, "FIRST-1")
    first = submit(store, bundle, text_)
    updated, _ = scenario_bundle(1, "UPDATE-1")
    store.resubmit(first.case.id, updated, json.dumps(updated), received_at=RECEIVED + timedelta(days=1),
                   evaluate=evaluate, actor=PROVIDER)
    other, _ = scenario_bundle(2, "UPDATE-1")            # the update's identifier, other content, as a new request
    with pytest.raises(IdempotencyConflict, match=rf"already submitted \(case {first.case.id}\)"):
        submit(store, other, json.dumps(other))
    assert [count(store, t) for t in ("cases", "submissions", "determinations")] == [1, 2, 2]
    assert store.verify_audit()[0]


def test_a_listener_for_submissions_writes_in_the_submissions_transaction(store):
    """With a listener for "submitted", a new case is written in one transaction with the listener's writes
    (on PostgreSQL too, where it is otherwise one statement); a listener that fails leaves nothing behind."""
    seen = []

    def record(session, case, kind, ev):
        assert session.execute(text("SELECT count(*) FROM cases WHERE id = :id"), {"id": case.id}).scalar() == 1
        seen.append((case.id, kind, ev.id))

    store.listen(record, {"submitted"})
    bundle, text_ = scenario_bundle(0, "LISTEN-1")
    r = submit(store, bundle, text_)
    assert seen == [(r.case.id, "submitted", store.history(r.case.id).events[0].id)]
    store.unlisten(record)

    def boom(session, case, kind, ev):
        raise RuntimeError("the listener failed")

    store.listen(boom, {"submitted"})
    with pytest.raises(RuntimeError):
        submit(store, *scenario_bundle(1, "LISTEN-2"))
    store.unlisten(boom)
    assert count(store, "cases") == 1 and store.verify_audit() == (True, 1, None)
    store.listen(boom, {"decision.approve"})            # a listener for other kinds leaves submissions alone
    assert submit(store, *scenario_bundle(1, "LISTEN-2")).created


def test_the_record_is_append_only_in_the_database(store):
    """Whoever connects, the stored submissions, determinations, decisions, events and audit rows cannot be
    changed or removed: the database refuses, and nothing is lost."""
    from sqlalchemy.exc import DBAPIError

    r = submit(store, *example("eligible-flc-only.json"))
    store.record_decision(r.case.id, decision("pend", "send the FLC series"), REVIEWER)
    before = [count(store, t) for t in APPEND_ONLY]
    assert all(before)
    statements = [(t, f"UPDATE {t} SET case_id = case_id") for t in APPEND_ONLY] + \
        [(t, f"DELETE FROM {t}") for t in APPEND_ONLY]
    if store.dialect == "postgresql":
        statements += [(t, f"TRUNCATE {t} CASCADE") for t in APPEND_ONLY]
    for table, statement in statements:
        with pytest.raises(DBAPIError, match=f"{table} is append-only"):
            with store.engine.begin() as c:
                c.execute(text(statement))
    assert [count(store, t) for t in APPEND_ONLY] == before
    assert store.verify_audit() == (True, 2, None)
    # the case itself still moves (its status, outcome and due time are the mutable part, each change an event)
    assert store.case(r.case.id).status == "pending_information"


def test_changed_records_are_found_against_their_audit_entries(store):
    first = submit(store, *scenario_bundle(0, "VERIFY-1"))
    second = submit(store, *scenario_bundle(1, "VERIFY-2"))
    updated, _ = scenario_bundle(2, "VERIFY-3")
    third = store.resubmit(first.case.id, updated, json.dumps(updated), received_at=RECEIVED + timedelta(days=1),
                           evaluate=evaluate, actor=PROVIDER)
    d1 = store.record_decision(second.case.id, decision("pend", "send the FLC series"), REVIEWER)
    store.record_decision(first.case.id, decision("pend", "send the PET-CT report"), REVIEWER)
    assert store.verify_records() == ({"cases": 2, "submissions": 3, "determinations": 3, "decisions": 2,
                                      "events": 5, "letters": 0}, [])
    for table in ("submissions", "determinations", "decisions"):
        bypass_append_only(store, table)            # as a database owner could
    changed = json.loads(second.submission.text)
    changed["entry"][0]["resource"]["item"][0]["quantity"] = {"value": 2}
    with store.engine.begin() as c:
        c.execute(text("UPDATE submissions SET text = :t WHERE id = :id"),
                  {"t": json.dumps(changed), "id": second.submission.id})
        c.execute(text("UPDATE submissions SET text = 'not JSON' WHERE case_id = :c AND sequence = 2"),
                  {"c": first.case.id})
        c.execute(text("UPDATE determinations SET outcome = 'does_not_meet', "
                       "result_json = replace(result_json, '\"outcome\":\"', '\"outcome\":\"x') WHERE id = :id"),
                  {"id": third.determination.id})
        c.execute(text("UPDATE decisions SET reason = 'approved after all' WHERE id = :id"), {"id": d1.id})
    counts, problems = store.verify_records()
    assert counts == {"cases": 2, "submissions": 3, "determinations": 3, "decisions": 2, "events": 5, "letters": 0}
    assert problems == [
        f"case {second.case.id} submission 1: its content is not what was stored",
        f"case {first.case.id} submission 2: its content is not what was stored",
        f"case {first.case.id} determination of submission 2: its outcome does_not_meet is not the "
        f"{third.determination.outcome} recorded",
        f"case {first.case.id} determination of submission 2: its content is not what was stored",
        f"case {second.case.id} decision {d1.id}: its content is not what was stored"]
    assert store.verify_audit()[0]                  # the chain itself is intact: the rows around it changed
