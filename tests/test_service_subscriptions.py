"""FHIR Subscriptions (R5 backport, rest-hook) on SQLite and PostgreSQL: a provider subscribes (handshake), a
reviewer decides, a real HTTP receiver on 127.0.0.1 gets the notification Bundle with the ClaimResponse; other
organizations get nothing and cannot reach the subscription; failing receivers are retried, then given up on;
bad Subscriptions are 4xx OperationOutcomes naming the element; every read and write is audited."""

from __future__ import annotations

import copy
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from priorauth.fhir.validate import validate_resource
from priorauth.service.subscriptions import (CONTENT_EXT, FILTER_EXT, MAX_ATTEMPTS, NOTIFICATION_PROFILE, PAS_TOPIC,
                                             STATUS_PROFILE, deliver_pending)
from priorauth.store.models import NotificationRow, SubscriptionRow
from service_helpers import FHIR, example, make_harness, outcome_text, review_codes, with_identifier

ELIGIBLE = "eligible-flc-only.json"
NEEDS_INFO = "needs-info-attested.json"
SECRET_HEADER = "Authorization: Bearer receiver-secret-7731"


# ---- a receiver: a real HTTP server that records what it is sent ---------------------------------------------------
class Receiver:
    def __init__(self):
        self.received: list[dict] = []
        self.statuses: list[int] = []          # answers to give, in turn (then 200)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.received.append({"path": self.path, "headers": dict(self.headers.items()),
                                              "body": json.loads(body)})
                    code = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/notify") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def bundles(self, path: str | None = None, kind: str | None = None) -> list[dict]:
        out = []
        for r in self.received:
            if path is not None and r["path"] != path:
                continue
            if kind is not None and status_of(r["body"])["type"] != kind:
                continue
            out.append(r["body"])
        return out

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def status_of(bundle: dict) -> dict:
    """The SubscriptionStatus parameters of a notification Bundle (or $status Bundle) as a dict."""
    params = bundle["entry"][0]["resource"]
    assert params["resourceType"] == "Parameters" and params["meta"]["profile"] == [STATUS_PROFILE]
    out: dict = {}
    for p in params["parameter"]:
        if p["name"] == "notification-event":
            ev: dict = {}
            for part in p["part"]:
                value = next(v for k, v in part.items() if k.startswith("value"))
                ev.setdefault(part["name"], []).append(value)
            out.setdefault("events", []).append(ev)
        else:
            out[p["name"]] = next(v for k, v in p.items() if k.startswith("value"))
    return out


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def h(url):
    harness = make_harness(url, subscription_allow=("127.0.0.1",))     # the local receiver, allowed as a plan would
    yield harness
    harness.app.state.notifier.stop()
    harness.store.close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def subscription(endpoint: str, content: str | None = "full-resource", **changes) -> dict:
    channel = {"type": "rest-hook", "endpoint": endpoint, "payload": FHIR["Content-Type"],
               "header": [SECRET_HEADER]}
    if content is not None:
        channel["_payload"] = {"extension": [{"url": CONTENT_EXT, "valueCode": content}]}
    sub = {"resourceType": "Subscription", "status": "requested",
           "reason": "Decisions on our prior authorization requests", "criteria": PAS_TOPIC,
           "_criteria": {"extension": [{"url": FILTER_EXT, "valueString": "ClaimResponse?orgIdentifier=anyone"}]},
           "channel": channel}
    sub.update(changes)
    return sub


class Subscribed:
    """The answer to a POST of a Subscription, with ``json()`` the Subscription read back once its handshake
    (sent off the request path) is done; ``posted`` is the 201 answer itself (``requested``)."""

    def __init__(self, h, who: str, r):
        self.posted, self.status_code, self.headers, self.text = r, r.status_code, r.headers, r.text
        self._h, self._who = h, who

    def json(self):
        body = self.posted.json()
        if self.status_code != 201:
            return body
        return self._h.client.get(f"/fhir/Subscription/{body['id']}", headers=self._h.auth(self._who)).json()


def subscribe(h, who: str, body: dict | str) -> Subscribed:
    text = body if isinstance(body, str) else json.dumps(body)
    r = h.client.post("/fhir/Subscription", content=text, headers={**h.auth(who), **FHIR})
    h.app.state.notifier.settle()
    return Subscribed(h, who, r)


def submitted(h, name=ELIGIBLE, who="lakeshore"):
    r = h.submit(who, example(name))
    assert r.status_code == 201, r.text
    return r.headers["location"].rsplit("/", 1)[1]


def notifications(h, sid: str | None = None) -> list[NotificationRow]:
    with h.store._read() as s:
        q = select(NotificationRow).order_by(NotificationRow.id)
        if sid is not None:
            q = q.where(NotificationRow.subscription_id == sid)
        return list(s.scalars(q))


# ---- subscribe, decide, notified ---------------------------------------------------------------------------------
def test_subscriber_gets_a_handshake_then_the_decision_with_the_claimresponse(h, receiver):
    r = subscribe(h, "lakeshore", subscription(receiver.url("/lakeshore")))
    assert r.status_code == 201, r.text
    assert r.posted.json()["status"] == "requested"          # answered at once; the handshake runs after
    sub = r.json()
    sid = sub["id"]
    assert sub["resourceType"] == "Subscription" and sub["status"] == "active"
    assert r.headers["location"] == f"/fhir/Subscription/{sid}"
    # the filter the service applies is the caller's organization, whatever was asked for
    assert sub["_criteria"]["extension"] == [{"url": FILTER_EXT,
                                              "valueString": "ClaimResponse?orgIdentifier=org-lakeshore"}]
    assert sub["channel"]["header"] == ["Authorization: [redacted]"]
    [hs] = receiver.bundles("/lakeshore")
    assert hs["type"] == "history" and hs["meta"]["profile"] == [NOTIFICATION_PROFILE]
    st = status_of(hs)
    assert st["type"] == "handshake" and st["status"] == "requested"
    assert st["subscription"] == {"reference": f"Subscription/{sid}"} and st["topic"] == PAS_TOPIC
    assert st["events-since-subscription-start"] == "0" and "events" not in st
    assert receiver.received[0]["headers"]["Authorization"] == "Bearer receiver-secret-7731"
    assert receiver.received[0]["headers"]["Content-Type"] == "application/fhir+json"

    case_id = submitted(h)
    assert deliver_pending(h.app) == 0                       # a submission is answered, not notified
    h.clock.advance(hours=3)
    assert h.decide("dr-reviewer", case_id, "approve").status_code == 201
    assert deliver_pending(h.app) == 1
    assert deliver_pending(h.app) == 0                       # delivered once
    [note] = receiver.bundles("/lakeshore", "event-notification")
    assert note["type"] == "history" and note["meta"]["profile"] == [NOTIFICATION_PROFILE]
    st = status_of(note)
    assert st["subscription"] == {"reference": f"Subscription/{sid}"} and st["status"] == "active"
    assert st["events-since-subscription-start"] == "1"
    [ev] = st["events"]
    assert ev["event-number"] == ["1"] and ev["focus"] == [{"reference": f"ClaimResponse/{case_id}"}]
    assert ev["timestamp"] == ["2027-01-12T12:00:00.000Z"]
    assert note["entry"][0]["request"] == {"method": "GET", "url": f"Subscription/{sid}/$status"}
    cr_entry = note["entry"][1]
    cr = cr_entry["resource"]
    assert cr["resourceType"] == "ClaimResponse" and cr["id"] == case_id
    assert cr_entry["request"] == {"method": "PUT", "url": f"ClaimResponse/{case_id}"}
    assert set(review_codes(cr).values()) == {"A1"}
    assert cr == h.client.get(f"/fhir/ClaimResponse/{case_id}", headers=h.auth("lakeshore")).json()
    # the resources the ClaimResponse refers to come along, named as the event's additional context
    extra = [e["fullUrl"] for e in note["entry"][2:]]
    assert extra and ev["additional-context"] == [{"reference": u} for u in extra]
    assert all(e["request"]["method"] == "GET" for e in note["entry"][2:])
    assert all(e["response"]["status"] == "200" for e in note["entry"])
    # all of it valid FHIR R4: the Subscription, the handshake, the notification, the $status answer
    st = h.client.get(f"/fhir/Subscription/{sid}/$status", headers=h.auth("lakeshore")).json()
    for resource in (sub, hs, note, st):
        assert validate_resource(resource) == [], resource["resourceType"]
    [row] = notifications(h, sid)
    assert (row.status, row.attempts, row.event_number, row.kind) == ("delivered", 1, 1, "decision.approve")
    assert receiver.received[-1]["headers"]["Authorization"] == "Bearer receiver-secret-7731"


def test_a_denial_from_a_clinician_is_notified_with_a3_and_its_reason(h, receiver):
    sid = subscribe(h, "lakeshore", subscription(receiver.url())).json()["id"]
    case_id = submitted(h, NEEDS_INFO)
    reason = "Measurable disease (I.A.7) not documented after request"
    assert h.decide("dr-reviewer", case_id, "deny", reason).status_code == 201
    assert deliver_pending(h.app) == 1
    [note] = receiver.bundles(kind="event-notification")
    assert status_of(note)["events"][0]["event-number"] == ["1"]
    cr = note["entry"][1]["resource"]
    assert set(review_codes(cr).values()) == {"A3"}
    notes = " ".join(n.get("text", "") for n in cr.get("processNote", []))
    assert "I.A.7" in notes, notes
    assert notifications(h, sid)[0].kind == "decision.deny"


def test_event_numbers_count_up_and_pend_is_notified_but_not_appeal_or_extension(h, receiver):
    sid = subscribe(h, "lakeshore", subscription(receiver.url(), content="id-only")).json()["id"]
    case_id = submitted(h, NEEDS_INFO)
    assert h.decide("dr-reviewer", case_id, "pend", "Send the serum FLC results (I.A.7)").status_code == 201
    r = h.client.post(f"/review/cases/{case_id}/extension", json={"hours": 24, "reason": "awaiting labs"},
                      headers=h.auth("dr-reviewer"))
    assert r.status_code == 200, r.text
    assert h.decide("dr-reviewer", case_id, "deny", "I.A.7 not documented").status_code == 201
    r = h.client.post(f"/review/cases/{case_id}/appeal", json={"reason": "labs attached"},
                      headers=h.auth("lakeshore"))
    assert r.status_code == 200, r.text
    assert [(n.event_number, n.kind) for n in notifications(h, sid)] == [(1, "decision.pend"), (2, "decision.deny")]
    assert deliver_pending(h.app) == 2
    notes = receiver.bundles(kind="event-notification")
    assert sorted(status_of(b)["events"][0]["event-number"][0] for b in notes) == ["1", "2"]
    for b in notes:                                      # id-only: the focus, no resource
        assert len(b["entry"]) == 1
        assert status_of(b)["events"][0]["focus"] == [{"reference": f"ClaimResponse/{case_id}"}]
    st = h.client.get(f"/fhir/Subscription/{sid}/$status", headers=h.auth("lakeshore"))
    assert st.status_code == 200 and st.json()["type"] == "searchset"
    assert status_of(st.json())["events-since-subscription-start"] == "2"
    assert status_of(st.json())["type"] == "query-status" and status_of(st.json())["status"] == "active"


def test_empty_content_names_the_event_only(h, receiver):
    subscribe(h, "lakeshore", subscription(receiver.url(), content="empty"))
    case_id = submitted(h)
    h.decide("dr-reviewer", case_id, "approve")
    assert deliver_pending(h.app) == 1
    [note] = receiver.bundles(kind="event-notification")
    assert len(note["entry"]) == 1
    [ev] = status_of(note)["events"]
    assert "focus" not in ev and ev["event-number"] == ["1"]


def test_without_a_content_extension_the_subscription_is_id_only(h, receiver):
    r = subscribe(h, "lakeshore", subscription(receiver.url(), content=None))
    assert r.status_code == 201
    assert r.json()["channel"]["_payload"]["extension"] == [{"url": CONTENT_EXT, "valueCode": "id-only"}]


def test_with_a_public_base_url_the_notification_references_are_absolute(url, receiver):
    h = make_harness(url, base_url="https://pa.plan.example/priorauth", subscription_allow=("127.0.0.1",))
    try:
        sid = subscribe(h, "lakeshore", subscription(receiver.url())).json()["id"]
        [hs] = receiver.bundles()
        assert status_of(hs)["subscription"] == {
            "reference": f"https://pa.plan.example/priorauth/fhir/Subscription/{sid}"}
        case_id = submitted(h)
        h.decide("dr-reviewer", case_id, "approve")
        assert deliver_pending(h.app) == 1
        [note] = receiver.bundles(None, "event-notification")
        [ev] = status_of(note)["events"]
        assert ev["focus"] == [{"reference": f"https://pa.plan.example/priorauth/fhir/ClaimResponse/{case_id}"}]
        # the entry's request stays relative to the FHIR base, as in any history Bundle
        assert note["entry"][1]["request"]["url"] == f"ClaimResponse/{case_id}"
    finally:
        h.app.state.notifier.stop()
        h.store.close()


@pytest.mark.parametrize("value", ["pa.plan.example", "ftp://pa.plan.example", "https://", "https://x/?a=1",
                                   "https://x/#f"])
def test_a_base_url_that_is_not_an_absolute_http_address_is_refused(value):
    from priorauth.service.settings import settings_from_env

    with pytest.raises(ValueError, match="PRIORAUTH_BASE_URL"):
        settings_from_env({"PRIORAUTH_BASE_URL": value, "PRIORAUTH_DATA_DIR": "/nonexistent-priorauth"})


# ---- organizations ---------------------------------------------------------------------------------------------
def test_another_organizations_subscription_gets_nothing_and_cannot_reach_ours(h, receiver):
    ours = subscribe(h, "lakeshore", subscription(receiver.url("/lakeshore"))).json()["id"]
    theirs = subscribe(h, "gulfcoast", subscription(receiver.url("/gulfcoast"))).json()
    assert theirs["status"] == "active"
    assert theirs["_criteria"]["extension"][0]["valueString"] == "ClaimResponse?orgIdentifier=org-gulfcoast"
    case_id = submitted(h)
    h.decide("dr-reviewer", case_id, "approve")
    assert deliver_pending(h.app) == 1
    assert len(receiver.bundles("/lakeshore", "event-notification")) == 1
    assert receiver.bundles("/gulfcoast", "event-notification") == []
    assert [r["path"] for r in receiver.received].count("/gulfcoast") == 1        # its handshake only
    assert notifications(h, theirs["id"]) == []
    other = h.auth("gulfcoast")
    for method, path in (("GET", f"/fhir/Subscription/{ours}"), ("GET", f"/fhir/Subscription/{ours}/$status"),
                         ("DELETE", f"/fhir/Subscription/{ours}"), ("GET", "/fhir/Subscription/no-such-id")):
        r = h.client.request(method, path, headers=other)
        assert r.status_code == 404, (method, path, r.text)
        assert "no Subscription" in outcome_text(r) and "not-found" in outcome_text(r)
    mine = h.client.get(f"/fhir/Subscription/{ours}", headers=h.auth("lakeshore"))
    assert mine.status_code == 200 and mine.json()["status"] == "active"
    refused = [a for a in h.store.audit_entries() if a.action.endswith(".refused") and a.actor == "client:gulfcoast"]
    assert {a.action for a in refused} == {"subscription.read.refused", "subscription.status.refused",
                                           "subscription.delete.refused"}
    # a reviewer does not subscribe
    r = subscribe(h, "dr-reviewer", subscription(receiver.url()))
    assert r.status_code == 403 and "provider" in outcome_text(r)


def test_delete_turns_the_subscription_off_and_stops_notifications(h, receiver):
    sid = subscribe(h, "lakeshore", subscription(receiver.url())).json()["id"]
    case_id = submitted(h)
    h.decide("dr-reviewer", case_id, "approve")            # queued while active
    r = h.client.delete(f"/fhir/Subscription/{sid}", headers=h.auth("lakeshore"))
    assert r.status_code == 200 and r.json()["status"] == "off" and r.json()["id"] == sid
    assert deliver_pending(h.app) == 0                     # the queued one is dropped, not sent
    [row] = notifications(h, sid)
    assert row.status == "failed" and "off" in row.last_error
    other = submitted(h, NEEDS_INFO)
    h.decide("dr-reviewer", other, "pend", "Send the serum FLC results (I.A.7)")
    assert len(notifications(h, sid)) == 1
    assert receiver.bundles(kind="event-notification") == []
    assert h.client.get(f"/fhir/Subscription/{sid}", headers=h.auth("lakeshore")).json()["status"] == "off"


def test_a_subscription_that_has_ended_is_sent_nothing(h, receiver):
    sid = subscribe(h, "lakeshore", subscription(receiver.url(), end="2027-01-12T10:00:00Z")).json()["id"]
    first = submitted(h)
    h.decide("dr-reviewer", first, "approve")
    h.clock.advance(hours=2)
    second = submitted(h, NEEDS_INFO)
    h.decide("dr-reviewer", second, "pend", "Send the serum FLC results (I.A.7)")
    assert [(n.case_id, n.event_number) for n in notifications(h, sid)] == [(first, 1)]
    assert h.client.get(f"/fhir/Subscription/{sid}", headers=h.auth("lakeshore")).json()["status"] == "off"
    assert ("service:notifications", "subscription.ended") in [(a.actor, a.action) for a in h.store.audit_entries()]


# ---- the outbox is the decision's transaction ---------------------------------------------------------------
def test_a_decision_that_rolls_back_leaves_no_notification(h, receiver):
    sid = subscribe(h, "lakeshore", subscription(receiver.url())).json()["id"]
    case_id = submitted(h)

    def boom(session, case, kind, event):
        raise RuntimeError("after the outbox wrote its row")

    h.store.listen(boom)
    r = h.decide("dr-reviewer", case_id, "approve")
    assert r.status_code == 500 and r.json()["resourceType"] == "OperationOutcome"
    h.store.unlisten(boom)
    assert notifications(h, sid) == [] and h.store.case(case_id).status == "pended"
    with h.store._read() as s:
        assert s.get(SubscriptionRow, sid).events_since_start == 0
    assert h.decide("dr-reviewer", case_id, "approve").status_code == 201
    assert [n.event_number for n in notifications(h, sid)] == [1]


# ---- failures ------------------------------------------------------------------------------------------------------
def test_a_failing_receiver_is_retried_with_backoff_then_given_up(h, receiver, caplog):
    caplog.set_level(logging.INFO, "priorauth")
    sid = subscribe(h, "lakeshore", subscription(receiver.url())).json()["id"]
    case_id = submitted(h)
    h.decide("dr-reviewer", case_id, "approve")
    receiver.statuses = [500] * MAX_ATTEMPTS
    waits = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert deliver_pending(h.app) == 0
        [row] = notifications(h, sid)
        assert row.attempts == attempt and row.last_error == "the endpoint did not answer with 2xx"
        if attempt < MAX_ATTEMPTS:
            assert row.status == "pending"
            waits.append((row.next_attempt_at - h.clock()).total_seconds())
            assert deliver_pending(h.app) == 0 and notifications(h, sid)[0].attempts == attempt   # not yet due
            h.clock.advance(hours=2)
    assert waits[:4] == [30, 60, 120, 240] and max(waits) == 3600
    assert row.status == "failed"
    assert len(receiver.bundles(kind="event-notification")) == MAX_ATTEMPTS
    # the same event each time (the receiver can tell a retry by its Bundle id)
    assert len({b["id"] for b in receiver.bundles(kind="event-notification")}) == 1
    sub = h.client.get(f"/fhir/Subscription/{sid}", headers=h.auth("lakeshore")).json()
    assert sub["status"] == "error" and "did not answer with 2xx" in sub["error"] \
        and f"{MAX_ATTEMPTS} attempts" in sub["error"] and "500" not in sub["error"]      # what answered is not told
    st = status_of(h.client.get(f"/fhir/Subscription/{sid}/$status", headers=h.auth("lakeshore")).json())
    assert st["status"] == "error" and "did not answer with 2xx" in st["error"]["text"]
    # a subscription in error is sent nothing more
    other = submitted(h, NEEDS_INFO)
    h.decide("dr-reviewer", other, "pend", "Send the serum FLC results (I.A.7)")
    assert len(notifications(h, sid)) == 1
    assert "failed after 10 attempts" in caplog.text and "receiver-secret" not in caplog.text


def test_a_retry_that_succeeds_is_delivered(h, receiver):
    sid = subscribe(h, "lakeshore", subscription(receiver.url())).json()["id"]
    case_id = submitted(h)
    h.decide("dr-reviewer", case_id, "approve")
    receiver.statuses = [503]
    assert deliver_pending(h.app) == 0
    h.clock.advance(seconds=31)
    assert deliver_pending(h.app) == 1
    [row] = notifications(h, sid)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 2, None)


def test_a_failed_handshake_stores_the_subscription_in_error(h, receiver):
    receiver.statuses = [500]
    r = subscribe(h, "lakeshore", subscription(receiver.url()))
    assert r.status_code == 201
    sub = r.json()
    assert sub["status"] == "error" and "handshake" in sub["error"] and "did not answer with 2xx" in sub["error"]
    assert h.client.get(f"/fhir/Subscription/{sub['id']}", headers=h.auth("lakeshore")).json()["status"] == "error"
    case_id = submitted(h)
    h.decide("dr-reviewer", case_id, "approve")
    assert notifications(h, sub["id"]) == []
    # nobody listening: no answer, and nothing else of it
    closed = Receiver()
    url = closed.url()
    closed.close()
    sub = subscribe(h, "lakeshore", subscription(url)).json()
    assert sub["status"] == "error" and "no answer from the endpoint" in sub["error"]


# ---- bad Subscriptions ---------------------------------------------------------------------------------------------
def _bad(h, body, status, *expected):
    r = subscribe(h, "lakeshore", body)
    assert r.status_code == status, r.text
    text = outcome_text(r)
    for e in expected:
        assert e in text, text
    return text


def test_bad_subscriptions_are_refused_naming_the_element(h, receiver):
    good = subscription(receiver.url())
    _bad(h, {**good, "criteria": "http://example.org/SubscriptionTopic/admission"}, 422,
         "@ Subscription.criteria", PAS_TOPIC, "not-supported")
    _bad(h, {**good, "criteria": "ClaimResponse?status=active"}, 422, "@ Subscription.criteria")
    for kind in ("websocket", "email", "message", "bogus"):
        _bad(h, {**good, "channel": {**good["channel"], "type": kind}}, 422, "@ Subscription.channel.type",
             "rest-hook")
    for endpoint, why in (("ftp://provider.example/in", "http or https"), ("not a url", "not a URL"),
                          ("/relative/path", "http or https"), ("https://user:pw@provider.example/", "credentials"),
                          ("https://provider.example/in#frag", "fragment")):
        _bad(h, {**good, "channel": {**good["channel"], "endpoint": endpoint}}, 422,
             "@ Subscription.channel.endpoint", why)
    no_endpoint = copy.deepcopy(good)
    del no_endpoint["channel"]["endpoint"]
    _bad(h, no_endpoint, 422, "@ Subscription.channel.endpoint", "required")
    _bad(h, {**good, "channel": {**good["channel"], "endpoint": 17}}, 400, "@ Subscription.channel.endpoint")
    _bad(h, {**good, "channel": {**good["channel"], "payload": "application/fhir+xml"}}, 422,
         "@ Subscription.channel.payload", "application/fhir+json")
    _bad(h, subscription(receiver.url(), content="everything"), 422, "backport-payload-content", "everything")
    for header, why in (("no colon here", "Name: value"), ("Host: elsewhere.example", "set by the service"),
                        ("X-Evil: a\r\nX-Injected: b", "control characters")):
        _bad(h, {**good, "channel": {**good["channel"], "header": [header]}}, 422,
             "@ Subscription.channel.header[0]", why)
    _bad(h, {**good, "end": "2020-01-01T00:00:00Z"}, 422, "@ Subscription.end")
    # not valid FHIR: 400, every problem named
    text = _bad(h, {k: v for k, v in good.items() if k not in ("reason", "criteria")}, 400,
                "@ Subscription.reason", "@ Subscription.criteria")
    assert text.count(" @ Subscription.") >= 2
    _bad(h, {**good, "status": "sleeping"}, 400, "@ Subscription.status", "requested")
    _bad(h, {**good, "unknownElement": 1}, 400, "Subscription.unknownElement")
    _bad(h, {k: v for k, v in good.items() if k != "channel"}, 400, "@ Subscription.channel")
    # several problems at once are all listed
    text = _bad(h, {**good, "criteria": "urn:other", "channel": {**good["channel"], "type": "email"}}, 422,
                "Subscription.criteria", "Subscription.channel.type")
    # not a Subscription at all
    _bad(h, json.dumps({**good, "resourceType": "Claim"}), 400, "resourceType", "Subscription")
    _bad(h, '{"resourceType": "Subscription", ', 400, "not valid JSON at line 1")
    _bad(h, "[1, 2]", 400, "not a FHIR resource")
    r = h.client.post("/fhir/Subscription", content=json.dumps(good),
                      headers={**h.auth("lakeshore"), "Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/fhir+json" in outcome_text(r)
    # none of them was stored, nor sent anything
    with h.store._read() as s:
        assert list(s.scalars(select(SubscriptionRow))) == []
    assert receiver.received == []


# ---- audit ------------------------------------------------------------------------------------------------------
def test_every_subscription_read_and_write_is_audited_without_headers_or_patient_data(h, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    sid = subscribe(h, "lakeshore", subscription(receiver.url())).posted.json()["id"]
    h.client.get(f"/fhir/Subscription/{sid}", headers=h.auth("lakeshore"))
    h.client.get(f"/fhir/Subscription/{sid}/$status", headers=h.auth("lakeshore"))
    case_id = submitted(h)
    h.decide("dr-reviewer", case_id, "approve")
    deliver_pending(h.app)
    h.client.delete(f"/fhir/Subscription/{sid}", headers=h.auth("lakeshore"))
    entries = h.store.audit_entries()
    trail = [(a.actor, a.action) for a in entries if "subscription" in a.action]
    assert trail == [("client:lakeshore", "subscription.create"),
                     ("service:notifications", "subscription.handshake"),
                     ("client:lakeshore", "subscription.read"),
                     ("client:lakeshore", "subscription.status"),
                     ("service:notifications", "subscription.notify.queue"),
                     ("service:notifications", "subscription.notify.delivered"),
                     ("client:lakeshore", "subscription.delete")]
    create = next(a for a in entries if a.action == "subscription.create")
    assert json.loads(create.detail)["endpoint"] == receiver.url()
    assert json.loads(create.detail)["header_count"] == 1
    queued = next(a for a in entries if a.action == "subscription.notify.queue")
    assert queued.case_id == case_id and json.loads(queued.detail)["event_number"] == 1
    everything = json.dumps([[a.detail, a.actor] for a in entries])
    assert "receiver-secret" not in everything and "receiver-secret" not in caplog.text
    with h.store._read() as s:
        assert "receiver-secret" not in s.get(SubscriptionRow, sid).resource_json
    for phi in ("Kowalski", "Margaret", "LMC-MRN", "1958-"):
        assert phi not in everything and phi not in caplog.text
    assert h.store.verify_audit()[0] is True


# ---- workers ------------------------------------------------------------------------------------------------
def test_two_workers_on_one_database_deliver_each_notification_once(h, receiver):
    from priorauth.service import create_app

    sid = subscribe(h, "lakeshore", subscription(receiver.url(), content="id-only")).json()["id"]
    cases = []
    for i in range(6):
        r = h.submit("lakeshore", with_identifier(example(ELIGIBLE), f"LMC-SUB-{i}"))
        assert r.status_code == 201, r.text
        cases.append(r.headers["location"].rsplit("/", 1)[1])
        assert h.decide("dr-reviewer", cases[-1], "approve").status_code == 201
    other = create_app(h.app.state.settings)                 # a second worker (its own store and engine)
    try:
        counts: list[int] = []
        barrier = threading.Barrier(3)

        def work(app):
            barrier.wait()
            counts.append(deliver_pending(app))

        threads = [threading.Thread(target=work, args=(a,)) for a in (h.app, other, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sum(counts) == 6
        numbers = sorted(int(status_of(b)["events"][0]["event-number"][0])
                         for b in receiver.bundles(kind="event-notification"))
        assert numbers == [1, 2, 3, 4, 5, 6]                  # each event once
        assert {n.status for n in notifications(h, sid)} == {"delivered"}
        assert all(n.attempts == 1 for n in notifications(h, sid))
    finally:
        other.state.notifier.stop()
        other.state.store.close()


# ---- the worker ------------------------------------------------------------------------------------------------
def test_the_background_worker_delivers_and_stops_with_the_app(url, receiver):
    from fastapi.testclient import TestClient

    h = make_harness(url, subscription_allow=("127.0.0.1",))
    h.app.state.settings.deliver_notifications = True
    h.app.state.notifier.interval = 0.05
    try:
        with TestClient(h.app) as client:                     # runs the startup hooks: the worker starts
            h.client = client
            r = subscribe(h, "lakeshore", subscription(receiver.url()))
            assert r.json()["status"] == "active"
            case_id = submitted(h)
            h.decide("dr-reviewer", case_id, "approve")
            for _ in range(200):
                if receiver.bundles(kind="event-notification"):
                    break
                threading.Event().wait(0.05)
            [note] = receiver.bundles(kind="event-notification")
            assert set(review_codes(note["entry"][1]["resource"]).values()) == {"A1"}
            worker = h.app.state.notifier._thread
            assert worker is not None and worker.is_alive()
        assert not worker.is_alive() and h.app.state.notifier._thread is None
    finally:
        h.store.close()


# ---- one decision per case ---------------------------------------------------------------------------------------
def test_simultaneous_decisions_on_one_case_record_one_decision_and_one_notification(h, receiver):
    """Ten reviewers' decisions at once (approve and deny mixed, two reviewer clients): the store checks the case's
    status under its lock in the decision's own transaction, so exactly one lands; the nine others get 409 and
    write nothing: one decision, one event, one notification, and the case ends as the one decision says."""
    from priorauth.store.models import DecisionRow, EventRow

    assert subscribe(h, "lakeshore", subscription(receiver.url("/lakeshore"))).status_code == 201
    h.register("dr-second", "reviewer")
    case_id = submitted(h)
    barrier = threading.Barrier(10)
    answers: list[tuple[str, int]] = []
    lock = threading.Lock()

    def decide(n: int) -> None:
        action = "approve" if n % 2 else "deny"
        reason = "" if action == "approve" else "I.A.5 not met: fewer than four prior lines (reviewer's reading)"
        barrier.wait()
        r = h.decide("dr-reviewer" if n < 5 else "dr-second", case_id, action, reason)
        with lock:
            answers.append((action, r.status_code))

    pool = [threading.Thread(target=decide, args=(n,)) for n in range(10)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    codes = sorted(code for _, code in answers)
    assert codes == [201] + [409] * 9, answers
    [(won, _)] = [(a, c) for a, c in answers if c == 201]
    with h.store._read() as s:
        decisions = list(s.scalars(select(DecisionRow).where(DecisionRow.case_id == case_id)))
        events = list(s.scalars(select(EventRow).where(EventRow.case_id == case_id, EventRow.kind.like("decision.%"))))
    assert [d.action for d in decisions] == [won] and len(events) == 1
    assert h.store.case(case_id).status == {"approve": "approved", "deny": "denied"}[won]
    assert len(notifications(h)) == 1
    assert deliver_pending(h.app) == 1
    assert len(receiver.bundles("/lakeshore", "event-notification")) == 1


# ---- where notifications may go ----------------------------------------------------------------------------------
@pytest.mark.parametrize("endpoint, why", [
    ("http://127.0.0.1:9/notify", "https"), ("https://127.0.0.1/notify", "private, loopback or link-local"),
    ("https://[::1]/notify", "private, loopback or link-local"), ("https://169.254.169.254/latest/meta-data", "link-local"),
    ("https://10.0.0.8/hook", "private"), ("http://provider.example/notify", "https"),
])
def test_an_endpoint_in_the_plans_network_or_over_http_is_refused(url, endpoint, why):
    """Without the plan's allowance a Subscription endpoint is public https: loopback, link-local (the cloud
    metadata address), private addresses and plain http are refused with a 422 naming the endpoint."""
    h = make_harness(url)
    try:
        r = subscribe(h, "lakeshore", subscription(endpoint))
        assert r.status_code == 422 and why in outcome_text(r) and "Subscription.channel.endpoint" in outcome_text(r)
        with h.store._read() as s:
            assert list(s.scalars(select(SubscriptionRow))) == []
    finally:
        h.app.state.notifier.stop()
        h.store.close()


def test_a_host_that_resolves_into_the_plans_network_is_refused_at_each_connection(h, receiver):
    """The address is checked after DNS at the handshake and again at every delivery (a name may be pointed
    elsewhere later); the provider is told the rule, not what answered."""
    from priorauth.service.endpoints import EndpointPolicy

    notifier = h.app.state.notifier
    answers = {"hooks.provider.example": ["93.184.215.14"]}
    public = EndpointPolicy((), resolve=lambda host, port: answers[host])
    notifier.endpoints = public
    assert public.target("https://hooks.provider.example/n").url == "https://93.184.215.14/n"
    assert public.target("https://hooks.provider.example/n").host_header == "hooks.provider.example"
    answers["hooks.provider.example"] = ["10.1.2.3"]
    sub = subscribe(h, "lakeshore", subscription("https://hooks.provider.example/n")).json()
    assert sub["status"] == "error" and "resolves to a private, loopback or link-local address" in sub["error"]
    # a delivery checks again: a name moved to loopback is refused before any connection
    notifier.endpoints = EndpointPolicy((), resolve=lambda host, port: ["127.0.0.1"])
    import httpx
    with httpx.Client() as client:
        ok, error = notifier._post(client, "https://hooks.provider.example/n", [], {"resourceType": "Bundle"})
    assert not ok and "resolves to a private, loopback or link-local address" in error
    # and an allowance the plan withdraws stops the deliveries to an endpoint it had allowed
    notifier.endpoints = EndpointPolicy(("127.0.0.1",))
    sid = subscribe(h, "lakeshore", subscription(receiver.url())).json()["id"]
    notifier.endpoints = EndpointPolicy(())
    case_id = submitted(h)
    h.decide("dr-reviewer", case_id, "approve")
    assert deliver_pending(h.app) == 0
    [row] = notifications(h, sid)
    assert "https" in row.last_error and receiver.bundles(kind="event-notification") == []


def test_a_subscriber_that_never_answers_holds_no_request_thread(h):
    """Eight subscriptions to an endpoint that accepts connections and never answers: each POST is answered at
    once (requested), and /health and $submit are answered while every handshake still waits on the endpoint;
    then each handshake times out and its subscription is in error."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)                       # connections queue here; nothing is ever read or answered
    notifier = h.app.state.notifier
    notifier.timeout_seconds = 2.0
    endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}/never"
    try:
        ids = []
        for _ in range(8):
            r = h.client.post("/fhir/Subscription", content=json.dumps(subscription(endpoint)),
                              headers={**h.auth("lakeshore"), **FHIR})
            assert r.status_code == 201 and r.json()["status"] == "requested"
            ids.append(r.json()["id"])
        assert h.client.get("/health").status_code == 200
        assert h.submit("lakeshore", example(ELIGIBLE)).status_code == 201
        with notifier._lock:
            waiting = len(notifier._pending)
        assert waiting > 0, "the handshakes were waited for on the request path"
        notifier.settle()
        for sid in ids:
            sub = h.client.get(f"/fhir/Subscription/{sid}", headers=h.auth("lakeshore")).json()
            assert sub["status"] == "error" and "no answer from the endpoint" in sub["error"]
    finally:
        silent.close()
