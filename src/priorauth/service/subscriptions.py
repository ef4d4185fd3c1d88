"""FHIR Subscriptions (the Subscriptions R5 Backport for R4, rest-hook channel): a provider's system subscribes to
the Da Vinci PAS topic and is sent a notification when a reviewer decides one of its organization's requests.

- ``POST /fhir/Subscription`` validates the Subscription, stores it and answers 201 with it ``requested``; the
  backport ``handshake`` is sent to the endpoint by a small pool of threads off the request path (an endpoint
  that never answers holds none of the threads serving requests), and the subscription becomes ``active`` when
  the endpoint answered it with 2xx, ``error`` (with ``Subscription.error`` saying why) when it did not. A
  subscription left ``requested`` by a process that stopped is handshaken again by the delivery pass.
- ``GET``/``DELETE /fhir/Subscription/{id}`` and ``GET /fhir/Subscription/{id}/$status`` for the subscribing
  organization only (404 to any other, as for a subscription that does not exist).
- The outbox: a store listener writes one notification row per active subscription of the case's organization
  for every decision (approve, modify, deny, pend), inside the decision's transaction.
- Delivery: a background thread (``settings.deliver_notifications``) claims due notifications (PostgreSQL:
  ``FOR UPDATE SKIP LOCKED``, so several workers share a database), POSTs the notification Bundle and marks it
  delivered, or retries with exponential backoff and finally gives up (notification ``failed``, subscription
  ``error``). ``deliver_pending(app)`` does one pass synchronously.

Log lines and audit details carry ids, counts and HTTP status codes only: never patient data, never the
subscription's headers (they may hold the receiver's credentials).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
import orjson
from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from priorauth.service.endpoints import EndpointPolicy, EndpointRefused
from priorauth.fhir.validate import validate_resource
from priorauth.service.auth import Principal
from priorauth.service.errors import FHIR_JSON, ApiError, operation_outcome
from priorauth.service.http import FHIR_BODY, caller, fhir_response, read_resource
from priorauth.store import Actor, Store
from priorauth.store.models import CaseRow, EventRow, NotificationRow, SubscriptionRow, as_utc

__all__ = ["router", "install", "deliver_pending", "Notifier", "PAS_TOPIC", "NOTIFY_KINDS", "status_parameters",
           "notification_bundle"]

log = logging.getLogger("priorauth.service.subscriptions")

router = APIRouter(prefix="/fhir", tags=["FHIR (provider)"])

PAS_TOPIC = "http://hl7.org/fhir/us/davinci-pas/SubscriptionTopic/PASSubscriptionTopic"
_BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
CONTENT_EXT = _BACKPORT + "backport-payload-content"
FILTER_EXT = _BACKPORT + "backport-filter-criteria"
STATUS_PROFILE = _BACKPORT + "backport-subscription-status-r4"
NOTIFICATION_PROFILE = _BACKPORT + "backport-subscription-notification-r4"

CONTENTS = ("empty", "id-only", "full-resource")
DEFAULT_CONTENT = "id-only"
STATUSES = ("requested", "active", "error", "off")
#: the case changes a subscriber is notified of: a reviewer's decision is a new result for the request. Not the
#: submission or a resubmission (the submitter has the response in the answer to its own request), not an
#: extension (the result does not change) and not an appeal (no new result until the case is decided again).
NOTIFY_KINDS = frozenset({"decision.approve", "decision.modify", "decision.deny", "decision.pend"})

MAX_ATTEMPTS = 10                     # then the notification is failed and the subscription in error
BACKOFF_SECONDS = 30.0                # 30 s, 1 min, 2 min, ... doubling
MAX_BACKOFF_SECONDS = 3600.0          # at most an hour between attempts (about 3 hours in all)
LEASE_SECONDS = 120.0                 # a claimed notification is claimable again after this (a worker died)
TIMEOUT_SECONDS = 5.0                 # connect, write and read timeouts of a POST to an endpoint
HANDSHAKE_THREADS = 4                 # handshakes under way at once per process (off the request threads)
STALE_HANDSHAKE_SECONDS = 120         # a subscription still requested this long after it was made is handshaken again
BATCH = 50                            # notifications claimed per transaction
MAX_HEADERS = 10
MAX_HEADER_CHARS = 4096
_ENDPOINT_CHARS = 2048

SYSTEM = Actor("service:notifications", "service")

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")        # an HTTP header name (RFC 9110 token)
_FORBIDDEN_HEADERS = frozenset({"host", "content-type", "content-length", "transfer-encoding", "connection",
                                "keep-alive", "te", "trailer", "upgrade", "expect", "proxy-authorization",
                                "proxy-connection"})
_ID = r"^[A-Za-z0-9\-\.]{1,64}$"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:priorauth:subscription-notification")



def _instant(dt: datetime) -> str:
    return as_utc(dt).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _shown(value: Any) -> str:
    """A short rendering of an offending value for a diagnostic (no more than 120 characters)."""
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 120 else text[:117] + "..."


# ---- the Subscription as asked for -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Requested:
    endpoint: str
    headers: list[tuple[str, str]]
    content: str
    end: datetime | None


Issue = tuple[str, str, str]          # (OperationOutcome issue code, diagnostics, FHIRPath)


def check_subscription(resource: dict, now: datetime, endpoints: EndpointPolicy | None = None) -> Requested:
    """The endpoint, headers, content and end of a Subscription this service accepts; otherwise ApiError: 400
    when it is not a valid FHIR Subscription, 422 when it is valid but asks for what the service does not do.
    Every problem found is listed, each with the element it is about."""
    structure = [("structure", msg, path) for path, msg in validate_resource(resource, "Subscription")]
    rules: list[Issue] = []
    status = resource.get("status")
    if isinstance(status, str) and status not in STATUSES:
        structure.append(("code-invalid", f"{_shown(status)} is not a Subscription status "
                                          f"({', '.join(STATUSES)}); send requested", "Subscription.status"))
    criteria = resource.get("criteria")
    if criteria is None:
        _once(structure, ("required", f"Subscription.criteria is required: the topic canonical {PAS_TOPIC}",
                          "Subscription.criteria"))
    elif isinstance(criteria, str) and criteria != PAS_TOPIC:
        rules.append(("not-supported", f"the topic {_shown(criteria)} is not one this service offers; "
                                       f"Subscription.criteria is the topic canonical {PAS_TOPIC}",
                      "Subscription.criteria"))
    channel = resource.get("channel")
    endpoint, headers, content = "", [], DEFAULT_CONTENT
    if isinstance(channel, dict):
        ctype = channel.get("type")
        if ctype is None:
            _once(structure, ("required", "channel.type is required: rest-hook", "Subscription.channel.type"))
        elif not isinstance(ctype, str):
            _once(structure, ("structure", "channel.type is a code: rest-hook", "Subscription.channel.type"))
        elif ctype != "rest-hook":
            rules.append(("not-supported", f"channel type {_shown(ctype)} is not supported; this service delivers "
                                           "by rest-hook only", "Subscription.channel.type"))
        endpoint = channel.get("endpoint")
        where = "Subscription.channel.endpoint"
        if endpoint is None:
            rules.append(("required", "a rest-hook subscription needs the endpoint (an http or https URL) that "
                                      "notifications are POSTed to", where))
        elif not isinstance(endpoint, str):
            _once(structure, ("structure", f"the endpoint is a URL string, not {type(endpoint).__name__}", where))
        else:
            problem = _endpoint_problem(endpoint)
            refused = (endpoints or EndpointPolicy()).check_url(endpoint) if problem is None else None
            if refused:
                rules.append(("business-rule", refused, where))
            if problem:
                rules.append(("value", problem, where))
        payload = channel.get("payload")
        where = "Subscription.channel.payload"
        if payload is None:
            rules.append(("required", "the payload MIME type is required: application/fhir+json", where))
        elif isinstance(payload, str) and payload.split(";")[0].strip().lower() != FHIR_JSON:
            rules.append(("not-supported", f"payload {_shown(payload)} is not supported; notifications are "
                                           f"{FHIR_JSON}", where))
        content, problem = _content(channel.get("_payload"))
        if problem:
            rules.append(("value", problem, f"Subscription.channel.payload.extension('{CONTENT_EXT}')"))
        raw = channel.get("header")
        if raw is not None and not isinstance(raw, list):
            _once(structure, ("structure", "channel.header is a list of strings", "Subscription.channel.header"))
        elif isinstance(raw, list):
            if len(raw) > MAX_HEADERS:
                rules.append(("too-long", f"at most {MAX_HEADERS} headers", "Subscription.channel.header"))
            for i, h in enumerate(raw):
                parsed, problem = _header(h)
                if problem and isinstance(h, str):
                    rules.append(("value", problem, f"Subscription.channel.header[{i}]"))
                elif problem:
                    _once(structure, ("structure", problem, f"Subscription.channel.header[{i}]"))
                elif parsed:
                    headers.append(parsed)
    elif channel is not None:
        _once(structure, ("structure", "channel is an object", "Subscription.channel"))
    end = None
    if isinstance(resource.get("end"), str):
        try:
            end = as_utc(datetime.fromisoformat(resource["end"]))
        except (ValueError, OverflowError):   # OverflowError: an offset that moves it outside years 1 to 9999
            _once(structure, ("structure", "end is an instant between the years 1 and 9999 in UTC (such as "
                                           "2027-06-30T00:00:00Z)", "Subscription.end"))
        else:
            if end <= now:
                rules.append(("business-rule", "the subscription would end before it starts; leave end out or "
                                               "give a time to come", "Subscription.end"))
    if structure:
        raise ApiError(400, structure[0][1], outcome=operation_outcome(structure + rules))
    if rules:
        raise ApiError(422, rules[0][1], outcome=operation_outcome(rules))
    return Requested(endpoint, headers, content, end)


def _once(issues: list[Issue], issue: Issue) -> None:
    """Add ``issue`` unless one about the same element (or an element within it) is there already."""
    path = issue[2]
    if not any(i[2] == path or i[2].startswith(path + ".") or i[2].startswith(path + "[") for i in issues):
        issues.append(issue)


def _endpoint_problem(endpoint: str) -> str | None:
    if len(endpoint) > _ENDPOINT_CHARS:
        return f"the endpoint is longer than {_ENDPOINT_CHARS} characters"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in endpoint):
        return "the endpoint is not a URL (it holds spaces or control characters)"
    try:
        parts = urlsplit(endpoint)
        parts.port                                        # noqa: B018 - raises on a bad port
    except ValueError:
        return "the endpoint is not a URL"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return "the endpoint is an absolute http or https URL (such as https://provider.example/notify)"
    if parts.username is not None or parts.password is not None:
        return "the endpoint carries credentials in the URL; send them as a channel.header instead"
    if parts.fragment:
        return "the endpoint has a fragment (#...); give the URL without it"
    return None


def _content(payload_element: Any) -> tuple[str, str | None]:
    """The backport payload content code of ``channel._payload`` (id-only when not given)."""
    if payload_element is None:
        return DEFAULT_CONTENT, None
    exts = payload_element.get("extension") if isinstance(payload_element, dict) else None
    found = [e for e in exts or () if isinstance(e, dict) and e.get("url") == CONTENT_EXT]
    if not found:
        return DEFAULT_CONTENT, None
    if len(found) > 1:
        return DEFAULT_CONTENT, "the payload content is given more than once"
    code = found[0].get("valueCode")
    if code not in CONTENTS:
        return DEFAULT_CONTENT, f"payload content {_shown(code)} is not one of {', '.join(CONTENTS)}"
    return code, None


def _header(h: Any) -> tuple[tuple[str, str] | None, str | None]:
    if not isinstance(h, str):
        return None, f"a header is a string 'Name: value', not {type(h).__name__}"
    if len(h) > MAX_HEADER_CHARS:
        return None, f"the header is longer than {MAX_HEADER_CHARS} characters"
    name, sep, value = h.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not _TOKEN.match(name):
        return None, "a header is 'Name: value' with an HTTP header name (such as 'Authorization: Bearer ...')"
    if any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in value):
        return None, f"the value of header {name} holds control characters (a line break, say)"
    if name.lower() in _FORBIDDEN_HEADERS or name.lower().startswith("proxy-"):
        return None, f"the header {name} is set by the service itself and cannot be given"
    return (name, value), None


def _accepted(resource: dict, sid: str, req: Requested, organization: str) -> dict:
    """The Subscription as the service keeps and shows it: its id, the content it applies, the organization
    filter it applies whatever filter was asked for, and header values redacted (they stay only in the
    subscription's delivery settings)."""
    r = copy.deepcopy(resource)
    r["id"] = sid
    r["status"] = "requested"
    r.pop("error", None)
    crit = r.get("_criteria") if isinstance(r.get("_criteria"), dict) else {}
    others = [e for e in crit.get("extension") or () if not (isinstance(e, dict) and e.get("url") == FILTER_EXT)]
    crit["extension"] = others + [{"url": FILTER_EXT,
                                   "valueString": f"ClaimResponse?orgIdentifier={quote(organization, safe='')}"}]
    r["_criteria"] = crit
    ch = r["channel"]
    if req.headers:
        ch["header"] = [f"{name}: [redacted]" for name, _ in req.headers]
    pe = ch.get("_payload") if isinstance(ch.get("_payload"), dict) else {}
    pe["extension"] = [e for e in pe.get("extension") or ()
                       if not (isinstance(e, dict) and e.get("url") == CONTENT_EXT)] + \
        [{"url": CONTENT_EXT, "valueCode": req.content}]
    ch["_payload"] = pe
    return r


def _served(row: SubscriptionRow) -> dict:
    r = orjson.loads(row.resource_json)
    r["id"] = row.id
    r["status"] = row.status
    return r


# ---- notification resources ------------------------------------------------------------------------------------
def status_parameters(subscription_id: str, status: str, type_: str, events_since_start: int, *,
                      event: dict | None = None, error: str | None = None, id_: str | None = None,
                      fhir_base: str = "") -> dict:
    """A backport SubscriptionStatus for R4 (a Parameters). ``event``: ``{"number", "timestamp", "focus",
    "additional"}`` for one notification-event. ``fhir_base``: prefix of the Subscription reference (the
    service's public FHIR base with a trailing slash, or empty for a relative reference)."""
    params: list[dict] = [
        {"name": "subscription", "valueReference": {"reference": f"{fhir_base}Subscription/{subscription_id}"}},
        {"name": "topic", "valueCanonical": PAS_TOPIC},
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": type_},
        {"name": "events-since-subscription-start", "valueString": str(events_since_start)},
    ]
    if event is not None:
        part = [{"name": "event-number", "valueString": str(event["number"])},
                {"name": "timestamp", "valueInstant": event["timestamp"]}]
        if event.get("focus"):
            part.append({"name": "focus", "valueReference": {"reference": event["focus"]}})
        part += [{"name": "additional-context", "valueReference": {"reference": ref}}
                 for ref in event.get("additional", ())]
        params.append({"name": "notification-event", "part": part})
    if error:
        params.append({"name": "error", "valueCodeableConcept": {"text": error}})
    out: dict = {"resourceType": "Parameters"}
    if id_:
        out["id"] = id_
    out["meta"] = {"profile": [STATUS_PROFILE]}
    out["parameter"] = params
    return out


def notification_bundle(subscription_id: str, status_params: dict, timestamp: datetime, *, bundle_id: str,
                        resources: list[dict] | None = None) -> dict:
    """A backport notification Bundle (type history): the SubscriptionStatus first, then ``resources`` (entries
    with fullUrl, resource, request, response)."""
    sid = status_params.get("id") or str(uuid.uuid4())
    first = {"fullUrl": f"urn:uuid:{sid}", "resource": status_params,
             "request": {"method": "GET", "url": f"Subscription/{subscription_id}/$status"},
             "response": {"status": "200"}}
    return {"resourceType": "Bundle", "id": bundle_id, "meta": {"profile": [NOTIFICATION_PROFILE]},
            "type": "history", "timestamp": _instant(timestamp), "entry": [first] + list(resources or ())}


def _response_entries(response: dict, case_id: str) -> tuple[list[dict], list[str]]:
    """The PAS response Bundle's entries as history entries: the ClaimResponse first (updated), then the
    resources it references (as read); and the fullUrls of the latter (the event's additional context)."""
    claim, others, refs = None, [], []
    for e in response.get("entry", ()):
        res = e.get("resource") or {}
        rt, rid = res.get("resourceType"), res.get("id")
        url = f"{rt}/{rid}" if rid else rt
        if rt == "ClaimResponse" and claim is None:
            claim = {"fullUrl": e.get("fullUrl"), "resource": res,
                     "request": {"method": "PUT", "url": f"ClaimResponse/{case_id}"}, "response": {"status": "200"}}
        else:
            others.append({"fullUrl": e.get("fullUrl"), "resource": res, "request": {"method": "GET", "url": url},
                           "response": {"status": "200"}})
            if e.get("fullUrl"):
                refs.append(e["fullUrl"])
    return ([claim] if claim else []) + others, refs


# ---- the notifier ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Job:
    id: int
    subscription_id: str
    case_id: str
    event_number: int
    kind: str
    attempts: int
    created_at: datetime
    endpoint: str
    headers: list[tuple[str, str]]
    content: str
    events_since_start: int


class Notifier:
    """Subscriptions of one app: its routes' work, the outbox listener and the delivery worker."""

    def __init__(self, app: FastAPI):
        self.app = app
        self.store: Store = app.state.store
        self.settings = app.state.settings
        self.max_attempts = MAX_ATTEMPTS
        self.backoff_seconds = BACKOFF_SECONDS
        self.max_backoff_seconds = MAX_BACKOFF_SECONDS
        self.lease_seconds = LEASE_SECONDS
        self.timeout_seconds = TIMEOUT_SECONDS
        self.interval = max(0.05, float(self.settings.delivery_interval_seconds))
        #: the prefix of references in notifications: the public FHIR base when the service knows it
        self.fhir_base = f"{self.settings.base_url}/fhir/" if self.settings.base_url else ""
        self.endpoints = EndpointPolicy(self.settings.subscription_allow)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        # handshakes run here, off the request threads: an endpoint that never answers holds one of these (for
        # at most the timeout), never a thread serving requests
        self._handshakes = ThreadPoolExecutor(max_workers=HANDSHAKE_THREADS, thread_name_prefix="priorauth-handshake")
        self._pending: set[Future] = set()

    def now(self) -> datetime:
        return as_utc(self.settings.now())

    # ---- the API's work ----------------------------------------------------------------------------------------
    def create(self, resource: dict, who: Principal) -> dict:
        if not who.organization:
            raise ApiError(403, "a subscription is made by a provider client, for its organization's requests")
        now = self.now()
        req = check_subscription(resource, now, self.endpoints)
        sid = str(uuid.uuid4())
        served = _accepted(resource, sid, req, who.organization)
        with self.store.writing() as s:
            s.add(SubscriptionRow(id=sid, client_id=who.client_id, organization=who.organization, topic=PAS_TOPIC,
                                  endpoint=req.endpoint, headers=json.dumps([f"{n}: {v}" for n, v in req.headers]),
                                  content=req.content, status="requested", resource_json=orjson.dumps(served).decode(),
                                  created_at=now, events_since_start=0))
            self.store._append_audit(s, who.actor.name, who.role, "subscription.create", None,
                                     {"subscription": sid, "topic": PAS_TOPIC, "endpoint": req.endpoint,
                                      "content": req.content, "header_count": len(req.headers),
                                      "organization": who.organization})
        self._start_handshake(sid, req.endpoint, req.headers, served, now)
        return served

    def _start_handshake(self, sid: str, endpoint: str, headers: list[tuple[str, str]], served: dict,
                         now: datetime) -> None:
        """Hand the handshake to the handshake threads, tracked until done (see settle)."""
        future = self._handshakes.submit(self._handshake, sid, endpoint, headers, served, now)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)

    def settle(self, timeout: float | None = None) -> None:
        """Wait for the handshakes under way (tests, and a stop that lets them finish)."""
        with self._lock:
            pending = list(self._pending)
        futures_wait(pending, timeout=timeout)

    def _handshake(self, sid: str, endpoint: str, headers: list[tuple[str, str]], served: dict, now: datetime) -> None:
        """POST the handshake; the subscription becomes active (2xx) or error, unless it changed meanwhile."""
        try:
            self._handshake_once(sid, endpoint, headers, served, now)
        except Exception as exc:  # noqa: BLE001 - a failed handshake leaves the subscription requested (logged)
            log.error("subscription %s: the handshake could not be recorded: %s", sid, type(exc).__name__)

    def _handshake_once(self, sid: str, endpoint: str, headers: list[tuple[str, str]], served: dict,
                        now: datetime) -> None:
        served = dict(served)
        handshake = notification_bundle(sid, status_parameters(sid, "requested", "handshake", 0,
                                                               id_=str(uuid.uuid5(_NAMESPACE, f"{sid}|handshake")),
                                                               fhir_base=self.fhir_base),
                                        now, bundle_id=str(uuid.uuid5(_NAMESPACE, f"{sid}|handshake|bundle")))
        with httpx.Client(timeout=self.timeout_seconds, follow_redirects=False) as client:
            ok, error = self._post(client, endpoint, headers, handshake)
        status = "active" if ok else "error"
        if not ok:
            served["error"] = f"the handshake to the endpoint failed ({error}); no notifications are sent to an " \
                              "endpoint that does not answer it with 2xx: fix the endpoint and subscribe again"
        served["status"] = status
        with self.store.writing() as s:
            s.execute(update(SubscriptionRow).where(SubscriptionRow.id == sid, SubscriptionRow.status == "requested")
                      .values(status=status, resource_json=orjson.dumps(served).decode())
                      .execution_options(synchronize_session=False))
            self.store._append_audit(s, SYSTEM.name, SYSTEM.role, "subscription.handshake", None,
                                     {"subscription": sid, "ok": ok, "result": error or "2xx"})
        log.info("subscription %s: handshake %s, status %s", sid, "answered" if ok else f"failed ({error})", status)

    def _access(self, sid: str, who: Principal, action: str, work, *, lock: bool = False):
        """``work(session, row)`` on the subscription, in one transaction with its audit entry, when the caller's
        organization made it (an admin may reach any); otherwise the refusal is audited and answered 404, as
        for a subscription that does not exist."""
        with self.store.writing() as s:
            q = select(SubscriptionRow).where(SubscriptionRow.id == sid)
            row = s.scalars(q.with_for_update() if lock else q).first()
            allowed = row is not None and (who.role == "admin" or
                                           (bool(who.organization) and who.organization == row.organization))
            if not allowed:
                self.store._append_audit(s, who.actor.name, who.role, f"{action}.refused", None,
                                         {"requested": sid[:64]})
            else:
                result, detail = work(s, row)
                self.store._append_audit(s, who.actor.name, who.role, action, None, {"subscription": sid, **detail})
        if not allowed:
            raise ApiError(404, f"no Subscription {sid[:64]!r} of your organization", code="not-found")
        return result

    def read(self, sid: str, who: Principal) -> dict:
        return self._access(sid, who, "subscription.read", lambda s, row: (_served(row), {}))

    def delete(self, sid: str, who: Principal) -> dict:
        def off(s: Session, row: SubscriptionRow):
            before = row.status
            row.status = "off"
            log.info("subscription %s: off (was %s)", row.id, before)
            return _served(row), {"status": [before, "off"]}

        return self._access(sid, who, "subscription.delete", off, lock=True)

    def status(self, sid: str, who: Principal) -> dict:
        def query(s: Session, row: SubscriptionRow):
            error = orjson.loads(row.resource_json).get("error") if row.status == "error" else None
            return status_parameters(row.id, row.status, "query-status", row.events_since_start, error=error,
                                     id_=str(uuid.uuid4())), {}

        params = self._access(sid, who, "subscription.status", query)
        return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "searchset", "total": 1,
                "timestamp": _instant(self.now()),
                "entry": [{"fullUrl": f"urn:uuid:{params['id']}", "resource": params, "search": {"mode": "match"}}]}

    # ---- the outbox (inside the case change's transaction) ---------------------------------------------------
    def on_case_change(self, s: Session, case: CaseRow, kind: str, event: EventRow) -> None:
        """The store's listener for the kinds in NOTIFY_KINDS (see install())."""
        now = self.now()
        subs = s.execute(select(SubscriptionRow.id, SubscriptionRow.resource_json)
                         .where(SubscriptionRow.organization == case.organization,
                                SubscriptionRow.status == "active", SubscriptionRow.topic == PAS_TOPIC)
                         .order_by(SubscriptionRow.id)).all()
        for sid, resource_json in subs:
            end = _end(resource_json)
            if end is not None and end <= now:
                s.execute(update(SubscriptionRow).where(SubscriptionRow.id == sid, SubscriptionRow.status == "active")
                          .values(status="off").execution_options(synchronize_session=False))
                self.store._append_audit(s, SYSTEM.name, SYSTEM.role, "subscription.ended", None,
                                         {"subscription": sid})
                continue
            number = s.execute(update(SubscriptionRow)
                               .where(SubscriptionRow.id == sid, SubscriptionRow.status == "active")
                               .values(events_since_start=SubscriptionRow.events_since_start + 1)
                               .returning(SubscriptionRow.events_since_start)
                               .execution_options(synchronize_session=False)).scalar_one_or_none()
            if number is None:                  # turned off meanwhile
                continue
            nid = s.execute(insert(NotificationRow).values(
                subscription_id=sid, case_id=case.id, event_number=number, kind=kind, created_at=now,
                status="pending", attempts=0, next_attempt_at=now).returning(NotificationRow.id)).scalar_one()
            self.store._append_audit(s, SYSTEM.name, SYSTEM.role, "subscription.notify.queue", case.id,
                                     {"subscription": sid, "notification": nid, "event_number": number,
                                      "kind": kind})

    # ---- delivery -----------------------------------------------------------------------------------------------
    def deliver_pending(self) -> int:
        """Deliver the notifications that are due, once (after the handshakes under way, and handshaking again
        subscriptions left requested by a process that stopped); returns how many were delivered."""
        self.settle()
        self._restart_handshakes()
        self.settle()
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout_seconds, follow_redirects=False)
            client = self._client
        delivered = failed = 0
        while True:
            jobs, claimed = self._claim()
            for job in jobs:
                if self._deliver(client, job):
                    delivered += 1
                else:
                    failed += 1
            if claimed < BATCH:
                break
        if delivered or failed:
            log.info("notifications: %d delivered, %d not delivered", delivered, failed)
        return delivered

    def _restart_handshakes(self) -> None:
        cutoff = self.now() - timedelta(seconds=STALE_HANDSHAKE_SECONDS)
        with self.store._read() as s:
            rows = list(s.scalars(select(SubscriptionRow).where(SubscriptionRow.status == "requested",
                                                                SubscriptionRow.created_at < cutoff).limit(BATCH)))
        for row in rows:
            self._start_handshake(row.id, row.endpoint, [_split(h) for h in json.loads(row.headers)],
                                  orjson.loads(row.resource_json), self.now())

    def _claim(self) -> tuple[list[_Job], int]:
        """The due notifications this worker now holds (for the lease time), and how many rows were claimed
        (those of a subscription no longer active are marked failed instead)."""
        now = self.now()
        with self.store.writing() as s:
            q = (select(NotificationRow)
                 .where(NotificationRow.status == "pending", NotificationRow.next_attempt_at <= now)
                 .order_by(NotificationRow.next_attempt_at, NotificationRow.id).limit(BATCH))
            if self.store.dialect == "postgresql":
                q = q.with_for_update(skip_locked=True)
            rows = list(s.scalars(q))
            if not rows:
                return [], 0
            subs = {r.id: r for r in s.scalars(select(SubscriptionRow).where(
                SubscriptionRow.id.in_({n.subscription_id for n in rows})))}
            orgs = dict(s.execute(select(CaseRow.id, CaseRow.organization)
                                  .where(CaseRow.id.in_({n.case_id for n in rows}))).all())
            jobs = []
            for n in rows:
                sub = subs.get(n.subscription_id)
                why = None
                if sub is None or sub.status != "active":
                    why = f"not sent: the subscription is {sub.status if sub else 'gone'}"
                elif orgs.get(n.case_id) != sub.organization:        # never: the outbox writes none such
                    why = "not sent: the case is not the subscribing organization's"
                if why:
                    n.status, n.last_error = "failed", why
                    self.store._append_audit(s, SYSTEM.name, SYSTEM.role, "subscription.notify.drop", n.case_id,
                                             {"subscription": n.subscription_id, "notification": n.id,
                                              "event_number": n.event_number,
                                              "subscription_status": sub.status if sub else None})
                    continue
                n.attempts += 1
                n.next_attempt_at = now + timedelta(seconds=self.lease_seconds)
                jobs.append(_Job(n.id, sub.id, n.case_id, n.event_number, n.kind, n.attempts, n.created_at,
                                 sub.endpoint, [_split(h) for h in json.loads(sub.headers)], sub.content,
                                 sub.events_since_start))
        return jobs, len(rows)

    def _bundle(self, job: _Job) -> dict:
        resources: list[dict] = []
        additional: list[str] = []
        if job.content == "full-resource":
            try:
                resources, additional = _response_entries(self.app.state.service.response(job.case_id), job.case_id)
            except Exception as exc:  # noqa: BLE001 - the event is still notified (as id-only)
                log.warning("notification %s: the ClaimResponse could not be built (%s); sent without it",
                            job.id, type(exc).__name__)
        event = {"number": job.event_number, "timestamp": _instant(job.created_at),
                 "focus": None if job.content == "empty" else f"{self.fhir_base}ClaimResponse/{job.case_id}",
                 "additional": additional}
        key = f"{job.subscription_id}|{job.event_number}"
        params = status_parameters(job.subscription_id, "active", "event-notification",
                                   max(job.events_since_start, job.event_number), event=event,
                                   id_=str(uuid.uuid5(_NAMESPACE, key)), fhir_base=self.fhir_base)
        return notification_bundle(job.subscription_id, params, self.now(), resources=resources,
                                   bundle_id=str(uuid.uuid5(_NAMESPACE, key + "|bundle")))

    def _deliver(self, client: httpx.Client, job: _Job) -> bool:
        try:
            bundle = self._bundle(job)
        except Exception as exc:  # noqa: BLE001 - a failed attempt, retried
            ok, error = False, f"the notification could not be built ({type(exc).__name__})"
        else:
            ok, error = self._post(client, job.endpoint, job.headers, bundle)
        self._finish(job, ok, error)
        return ok

    def _post(self, client: httpx.Client, endpoint: str, headers: list[tuple[str, str]],
              bundle: dict) -> tuple[bool, str | None]:
        """POST to the endpoint's checked address. The error returned (recorded for the provider) names the rule
        or says that no 2xx came, never what answered; the server log has the detail."""
        try:
            target = self.endpoints.target(endpoint)
        except EndpointRefused as refused:
            return False, str(refused)
        sent = [h for h in headers if h[0].lower() != "host"] + [
            ("Host", target.host_header), ("Content-Type", FHIR_JSON), ("Accept", FHIR_JSON)]
        extensions = {"sni_hostname": target.server_name} if target.server_name else None
        try:
            with client.stream("POST", target.url, content=orjson.dumps(bundle), headers=sent,
                               extensions=extensions) as r:
                code = r.status_code            # the body of the answer is not read
        except Exception as exc:  # noqa: BLE001 - any transport failure is a failed attempt
            log.info("POST to a subscription endpoint failed: %s", type(exc).__name__)
            return False, "no answer from the endpoint (no connection, or none in time)"
        if 200 <= code < 300:
            return True, None
        log.info("a subscription endpoint answered HTTP %s", code)
        return False, "the endpoint did not answer with 2xx"

    def _finish(self, job: _Job, ok: bool, error: str | None) -> None:
        now = self.now()
        detail = {"subscription": job.subscription_id, "notification": job.id, "event_number": job.event_number,
                  "attempts": job.attempts}
        with self.store.writing() as s:
            n = s.get(NotificationRow, job.id)
            if ok:
                n.status, n.delivered_at, n.last_error = "delivered", now, None
                self.store._append_audit(s, SYSTEM.name, SYSTEM.role, "subscription.notify.delivered", job.case_id,
                                         detail)
                log.info("notification %s (subscription %s, event %d) delivered", job.id, job.subscription_id,
                         job.event_number)
                return
            n.last_error = error
            if job.attempts >= self.max_attempts:
                n.status = "failed"
                sub = s.execute(select(SubscriptionRow).where(SubscriptionRow.id == job.subscription_id)
                                .with_for_update()).scalar_one()
                if sub.status == "active":
                    served = orjson.loads(sub.resource_json)
                    served["status"] = "error"
                    served["error"] = f"notification {job.event_number} was not accepted after {job.attempts} " \
                                      f"attempts (last: {error}); subscribe again once the endpoint is fixed"
                    sub.status, sub.resource_json = "error", orjson.dumps(served).decode()
                self.store._append_audit(s, SYSTEM.name, SYSTEM.role, "subscription.notify.failed", job.case_id,
                                         {**detail, "result": error})
                log.warning("notification %s (subscription %s, event %d) failed after %d attempts (%s); "
                            "subscription in error", job.id, job.subscription_id, job.event_number, job.attempts,
                            error)
                return
            wait = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (job.attempts - 1))
            n.next_attempt_at = now + timedelta(seconds=wait)
            self.store._append_audit(s, SYSTEM.name, SYSTEM.role, "subscription.notify.retry", job.case_id,
                                     {**detail, "result": error, "retry_in_seconds": wait})
            log.warning("notification %s (subscription %s, event %d) attempt %d failed (%s); retry in %ds", job.id,
                        job.subscription_id, job.event_number, job.attempts, error, wait)

    # ---- the worker thread ------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="priorauth-notifications", daemon=True)
        self._thread.start()
        log.info("notification delivery started (every %.1fs)", self.interval)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.deliver_pending()
            except Exception as exc:  # noqa: BLE001 - the worker keeps going; the next pass retries
                log.error("notification delivery pass failed: %s", type(exc).__name__)

    def stop(self) -> None:
        self._stop.set()
        self.settle(timeout=self.timeout_seconds + 1)
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_seconds * 3 + 5)
            self._thread = None
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _split(header: str) -> tuple[str, str]:
    name, _, value = header.partition(":")
    return name.strip(), value.strip()


def _end(resource_json: str) -> datetime | None:
    if '"end"' not in resource_json:
        return None
    end = orjson.loads(resource_json).get("end")
    try:
        return as_utc(datetime.fromisoformat(end)) if isinstance(end, str) else None
    except (ValueError, OverflowError):
        return None


# ---- wiring ------------------------------------------------------------------------------------------------------
def install(app: FastAPI) -> Notifier:
    """Attach the notifier to ``app``: the outbox listener on its store, delivery started at startup (when
    ``settings.deliver_notifications``) and stopped at shutdown."""
    notifier = Notifier(app)
    app.state.notifier = notifier
    app.state.store.listen(notifier.on_case_change, NOTIFY_KINDS)

    def start(app_: FastAPI) -> None:
        if app_.state.settings.deliver_notifications:
            notifier.start()

    app.state.startup.append(start)
    app.state.on_stop.append(notifier.stop)
    return notifier


def deliver_pending(app: FastAPI) -> int:
    """Deliver the due notifications of ``app`` once, synchronously; how many were delivered."""
    return app.state.notifier.deliver_pending()


def _notifier(request: Request) -> Notifier:
    return request.app.state.notifier


# ---- routes --------------------------------------------------------------------------------------------------------
@router.post("/Subscription", openapi_extra=FHIR_BODY, status_code=201,
             summary="Subscribe to decisions on your organization's requests (R5 backport, rest-hook)",
             description="An R4 Subscription on the PAS topic (`criteria` "
                         f"`{PAS_TOPIC}`), channel `rest-hook` to an http(s) endpoint, payload "
                         "`application/fhir+json` with the backport payload content `full-resource`, `id-only` "
                         "or `empty`, optional `channel.header`. The answer is the Subscription `requested`; the "
                         "endpoint is sent a handshake in the background, and the Subscription becomes `active`, "
                         "or `error` when the handshake was not answered with 2xx (read it back). Notifications cover your organization's requests only, whatever filter is "
                         "given.")
async def create(request: Request, who: Principal = Depends(caller("provider"))):
    resource, _text = await read_resource(request, "Subscription")
    served = await run_in_threadpool(_notifier(request).create, resource, who)
    return fhir_response(served, 201, {"Location": f"/fhir/Subscription/{served['id']}"})


@router.get("/Subscription/{subscription_id}", summary="One of your organization's Subscriptions")
def read(request: Request, subscription_id: str = Path(..., pattern=_ID),
         who: Principal = Depends(caller("provider"))):
    return fhir_response(_notifier(request).read(subscription_id, who))


@router.delete("/Subscription/{subscription_id}", summary="Turn a Subscription off")
def delete(request: Request, subscription_id: str = Path(..., pattern=_ID),
           who: Principal = Depends(caller("provider"))):
    return fhir_response(_notifier(request).delete(subscription_id, who))


@router.get("/Subscription/{subscription_id}/$status",
            summary="The backport SubscriptionStatus (a searchset Bundle holding the status Parameters)")
def status(request: Request, subscription_id: str = Path(..., pattern=_ID),
           who: Principal = Depends(caller("provider"))):
    return fhir_response(_notifier(request).status(subscription_id, who))
