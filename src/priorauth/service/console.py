"""The reviewer console: the pages a utilization-review pharmacist, nurse or medical director works in.

Server-rendered HTML (Jinja2, autoescaped), no script needed. Sign-in with a named account (argon2 password
hash, lockout after repeated failures); the session is a random value in an HttpOnly, SameSite=Strict cookie
(Secure when served over https), of which the store keeps only the hash; it ends on logout, after the idle
timeout and at its absolute limit. Every form carries the session's CSRF token (the sign-in form a token bound
to a pre-session cookie), checked before anything is done. Decisions go through the same service as the API:
the NPI and specialty recorded are the account's, a denial needs a clinician and a cited criterion, and the
store lets one of simultaneous decisions land.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from priorauth.documents import attachment_text
from priorauth.fhir.claim_response import cited_criteria
from priorauth.reporting import OPEN_STATUSES
from priorauth.service.auth import Principal
from priorauth.service.errors import ApiError
from priorauth.service.http import service_of
from priorauth.store import CaseNotFound
from priorauth.store.console import ConsoleSession, LoginRefused
from priorauth.store.models import as_utc

__all__ = ["router", "COOKIE", "LOGIN_COOKIE"]

router = APIRouter(prefix="/console", include_in_schema=False)
COOKIE = "priorauth_session"
LOGIN_COOKIE = "priorauth_login"
_ENV = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "console_templates")),
                   autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}
_STATUS_WORDS = {"pended": "pended for review", "pending_information": "pending information",
                 "appealed": "appealed", "approved": "approved", "modified": "approved with changes",
                 "denied": "denied"}
_OUTCOME_WORDS = {"meets_criteria": "meets criteria", "does_not_meet_criteria": "does not meet criteria",
                  "needs_information": "needs information", "refer_to_policy": "refer to policy",
                  "not_applicable": "not applicable"}
_PAGE = 100


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _ENV.get_template(name).render(status_words=_STATUS_WORDS, outcome_words=_OUTCOME_WORDS, **context)
    return HTMLResponse(html, status, headers=_HEADERS)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _session(request: Request) -> ConsoleSession | None:
    svc = service_of(request)
    return svc.store.session(request.cookies.get(COOKIE),
                             idle=timedelta(minutes=svc.settings.console_idle_minutes))


def _principal(session: ConsoleSession) -> Principal:
    return Principal(session.user.name, "reviewer", None, kind="user")


def _to_login(request: Request, expired: bool = False) -> RedirectResponse:
    target = "/console/login" + ("?expired=1" if expired else "")
    r = RedirectResponse(target, 303)
    r.delete_cookie(COOKIE, path="/console")
    return r


async def _form(request: Request) -> dict[str, Any]:
    form = await request.form()
    out: dict[str, Any] = {}
    for key in form.keys():
        values = form.getlist(key)
        out[key] = values if key == "cite" else values[-1]
    return out


def _clock(due: datetime | None, now: datetime) -> tuple[str, bool]:
    """Time left to the due time as a reviewer reads it ("5 h 20 min left", "overdue by 2 h"), and overdue."""
    if due is None:
        return "no due time", False
    delta = as_utc(due) - as_utc(now)
    overdue = delta.total_seconds() < 0
    minutes = int(abs(delta.total_seconds()) // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    text = (f"{days} d {hours} h" if days else f"{hours} h {mins} min")
    return (f"overdue by {text}" if overdue else f"{text} left"), overdue


def _when(dt: datetime | None) -> str:
    return "" if dt is None else as_utc(dt).strftime("%Y-%m-%d %H:%M UTC")


# ---- sign-in ---------------------------------------------------------------------------------------------------
@router.get("/login")
def login_page(request: Request, expired: int = 0):
    token = secrets.token_urlsafe(32)
    r = _page("login.html", csrf=token, error=None,
              notice="Your session ended; sign in again." if expired else None)
    r.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request), path="/console")
    return r


@router.post("/login")
async def login(request: Request):
    svc = service_of(request)
    form = await _form(request)
    expected = request.cookies.get(LOGIN_COOKIE) or ""
    if not expected or not hmac.compare_digest(expected, str(form.get("csrf", ""))):
        return _page("login.html", 403, csrf=expected or "", error="The sign-in form expired; load the page again.",
                     notice=None)
    name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
    try:
        user = svc.store.login(name, password, max_failures=svc.settings.console_max_failed_logins,
                               lockout=timedelta(minutes=svc.settings.console_lockout_minutes))
    except LoginRefused as refused:
        message = ("This account is locked after repeated failed sign-ins; try again later or ask an "
                   "administrator." if refused.locked else "The name or the password is not right.")
        return _page("login.html", 401, csrf=expected, error=message, notice=None)
    value, _csrf = svc.store.open_session(user.name, lifetime=timedelta(hours=svc.settings.console_session_hours))
    r = RedirectResponse("/console/", 303)
    r.set_cookie(COOKIE, value, httponly=True, samesite="strict", secure=_secure(request), path="/console",
                 max_age=svc.settings.console_session_hours * 3600)
    r.delete_cookie(LOGIN_COOKIE, path="/console")
    return r


@router.post("/logout")
async def logout(request: Request):
    session = _session(request)
    form = await _form(request)
    if session is None:
        return _to_login(request)
    if not service_of(request).store.csrf_ok(session, form.get("csrf")):
        return _page("message.html", 403, session=session, title="Refused",
                     message="The form's security token is not this session's; nothing was done.")
    service_of(request).store.close_session(request.cookies[COOKIE])
    return _to_login(request)


# ---- the queue -------------------------------------------------------------------------------------------------
@router.get("/")
def queue(request: Request, q: str = "", status: str = "", lob: str = "", urgency: str = "", mine: int = 0,
          overdue: int = 0):
    session = _session(request)
    if session is None:
        return _to_login(request, expired=COOKIE in request.cookies)
    svc = service_of(request)
    now = svc.settings.now()
    statuses = [status] if status in OPEN_STATUSES else list(OPEN_STATUSES)
    rows, total = svc.store.console_queue(
        statuses, search=q[:128] or None, line_of_business=lob[:64] or None,
        urgency=urgency if urgency in ("standard", "expedited") else None,
        assignee=session.user.name if mine else None, overdue_before=as_utc(now) if overdue else None, limit=_PAGE)
    counts = svc.store.status_counts()
    cases = []
    for r in rows:
        clock, late = _clock(r.due_at, now)
        cases.append({"row": r, "clock": clock, "overdue": late, "due": _when(r.due_at)})
    return _page("queue.html", session=session, cases=cases, total=total, shown=len(cases),
                 counts={s: counts.get(s, 0) for s in _STATUS_WORDS}, open_statuses=list(OPEN_STATUSES),
                 filters={"q": q, "status": status, "lob": lob, "urgency": urgency, "mine": mine, "overdue": overdue})


@router.post("/cases/{case_id}/claim")
async def claim(request: Request, case_id: str):
    return await _assign(request, case_id, take=True)


@router.post("/cases/{case_id}/release")
async def release(request: Request, case_id: str):
    return await _assign(request, case_id, take=False)


async def _assign(request: Request, case_id: str, take: bool):
    session = _session(request)
    if session is None:
        return _to_login(request, expired=True)
    form = await _form(request)
    svc = service_of(request)
    if not svc.store.csrf_ok(session, form.get("csrf")):
        return _page("message.html", 403, session=session, title="Refused",
                     message="The form's security token is not this session's; nothing was done.")
    try:
        svc.store.claim(case_id[:64], session.user.name if take else None, _principal(session).actor)
    except CaseNotFound:
        return _page("message.html", 404, session=session, title="No such case", message="There is no such case.")
    except ValueError as exc:
        return _page("message.html", 409, session=session, title="Already assigned",
                     message=str(exc).split(": ", 1)[-1] + "; it stays with them.")
    back = form.get("back") if form.get("back") in ("queue", "case") else "case"
    return RedirectResponse("/console/" if back == "queue" else f"/console/cases/{quote(case_id)}", 303)


# ---- one case --------------------------------------------------------------------------------------------------
def _anchor(source: str | None) -> tuple[str | None, str | None]:
    """The page anchor of an evidence's source in the stored Bundle ("Bundle#Coverage/cov-1.type" ->
    "src-Coverage-cov-1", and the element path), or None when it is not a Bundle resource."""
    if not source or not source.startswith("Bundle#"):
        return None, None
    ref = source[len("Bundle#"):]
    resource, _, path = ref.partition(".")
    return "src-" + resource.replace("/", "-"), path or None


def _tree(criteria: list[dict]) -> list[dict]:
    by_parent: dict[str | None, list[dict]] = {}
    for n in criteria:
        node = dict(n)
        node["evidence"] = [{**e, "anchor": _anchor(e.get("source"))[0], "path": _anchor(e.get("source"))[1]}
                            for e in n.get("evidence") or ()]
        by_parent.setdefault(n.get("parent"), []).append(node)

    def build(parent: str | None) -> list[dict]:
        out = by_parent.get(parent, [])
        for n in out:
            n["children"] = build(n["id"])
        return out

    return build(None)


def _attachments(bundle: dict) -> list[tuple[dict, dict]]:
    """``(resource, attachment)`` of each document attached to the request (DocumentReference content, Binary),
    in Bundle order: the n-th is served at ``/console/cases/{id}/attachments/{n}``."""
    out = []
    for entry in bundle.get("entry") or ():
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict) or res.get("resourceType") not in ("DocumentReference", "Binary"):
            continue
        attachments = [c.get("attachment") for c in res.get("content") or () if isinstance(c, dict)] \
            if res["resourceType"] == "DocumentReference" else [res]
        out += [(res, a) for a in attachments if isinstance(a, dict)]
    return out


def _attachment_bytes(a: dict) -> bytes | None:
    if not isinstance(a.get("data"), str):
        return None
    try:
        return base64.b64decode(a["data"], validate=True)
    except (binascii.Error, ValueError):
        return None


def _documents(bundle: dict) -> list[dict]:
    """The documents attached to the request, with their text (plain, HTML without markup, a PDF's text layer)
    shown in the page, and a link to open each as sent."""
    docs = []
    for n, (res, a) in enumerate(_attachments(bundle)):
        kind = a.get("contentType") or "unknown"
        data = _attachment_bytes(a)
        read = attachment_text(kind, data) if data is not None else None
        title = a.get("title") or res.get("description") or (res.get("type") or {}).get("text") or "document"
        docs.append({"n": n, "title": title, "type": kind, "text": read.text if read else None,
                     "note": read.note if read else "not attached in the request (a link only): not shown",
                     "openable": data is not None, "date": res.get("date") or a.get("creation")})
    return docs


def _sources(bundle: dict) -> list[dict]:
    out = []
    for entry in bundle.get("entry") or ():
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and res.get("resourceType"):
            out.append({"anchor": f"src-{res['resourceType']}-{res.get('id', '')}",
                        "ref": f"{res['resourceType']}/{res.get('id', '')}",
                        "json": json.dumps(res, indent=2, ensure_ascii=False)[:20000]})
    return out


def _case_page(request: Request, session: ConsoleSession, case_id: str, status: int = 200,
               error: str | None = None, form: dict | None = None) -> HTMLResponse:
    svc = service_of(request)
    principal = _principal(session)
    try:
        detail = svc.case_detail(case_id, principal)
    except ApiError as err:
        return _page("message.html", err.status, session=session, title="Case not shown", message=str(err))
    h = svc.store.history(case_id)
    now = svc.settings.now()
    det = detail["determination"] or {}
    bundle = orjson.loads(h.submissions[-1].text) if h.submissions else {}
    clock, late = _clock(h.case.due_at, now)
    history = [(_when(s.received_at), f"submission {s.sequence} received") for s in h.submissions]
    history += [(_when(d.created_at), f"determination: {_OUTCOME_WORDS.get(d.outcome, d.outcome)}")
                for d in h.determinations]
    history += [(_when(d.recorded_at), f"decision: {d.action} by NPI {d.reviewer_npi} ({d.specialty})"
                 + (f": {d.reason}" if d.reason else "")) for d in h.decisions]
    history += [(_when(e.at), f"event {e.kind}: " + ", ".join(
        f"{k} {v[0] or '-'} → {v[1] or '-'}" for k, v in json.loads(e.detail).items()
        if isinstance(v, list) and len(v) == 2)) for e in h.events]
    letters = svc.store.letters(case_id)
    history += [(_when(lt.created_at), f"letter: {lt.kind} for the {lt.audience}") for lt in letters]
    history.sort(key=lambda x: x[0])
    not_met = [n for n in det.get("criteria") or () if n["status"] != "met" and n["id"].count(".") >= 2]
    missing = det.get("missing") or []
    user = session.user
    toci = (det.get("authorization") or {}).get("tocilizumab")
    prefill = {
        "deny": "\n".join(f"{n['id']}: {n['reason']}" for n in not_met if n["status"] == "not_met"),
        "pend": "\n".join(m.get("documentation", "") for m in missing) or "",
        "modify": ("Tocilizumab authorized at the policy's cap: " + toci["basis"]) if toci else "",
    }
    return _page("case.html", status, session=session, case=h.case, detail=detail, det=det,
                 tree=_tree(det.get("criteria") or []), scope=det.get("scope") or [], clock=clock, overdue=late,
                 due=_when(h.case.due_at), received=_when(h.case.received_at), history=history,
                 documents=_documents(bundle), sources=_sources(bundle), letters=letters, not_met=not_met,
                 missing=missing, prefill=prefill, error=error, form=form or {},
                 suggested={"does_not_meet_criteria": "deny", "needs_information": "pend"}.get(
                     det.get("outcome"), "modify" if toci and toci.get("modified") else ""),
                 decidable=h.case.status in OPEN_STATUSES,
                 clinician=_is_clinician(user.specialty), user=user)


def _is_clinician(specialty: str) -> bool:
    from priorauth.fhir.claim_response import is_clinical_specialty

    return is_clinical_specialty(specialty)


@router.get("/cases/{case_id}")
def case_page(request: Request, case_id: str):
    session = _session(request)
    if session is None:
        return _to_login(request, expired=COOKIE in request.cookies)
    return _case_page(request, session, case_id[:64])


@router.post("/cases/{case_id}/decision")
async def decide(request: Request, case_id: str):
    session = _session(request)
    if session is None:
        return _to_login(request, expired=True)
    svc = service_of(request)
    form = await _form(request)
    case_id = case_id[:64]
    if not svc.store.csrf_ok(session, form.get("csrf")):
        return _page("message.html", 403, session=session, title="Refused",
                     message="The form's security token is not this session's; nothing was done.")
    action = form.get("action")
    if action not in ("approve", "modify", "pend", "deny"):
        return _case_page(request, session, case_id, 422, "Choose a decision: approve, modify, pend or deny.", form)
    reason = str(form.get("reason", "")).strip()[:4000]
    cited = [c for c in form.get("cite") or [] if isinstance(c, str) and cited_criteria(c) == (c,)]
    missing = [c for c in cited if c not in cited_criteria(reason)]
    if missing:
        reason = (reason + "\n" if reason else "") + "Criteria: " + ", ".join(missing)
    if action == "deny" and not _is_clinician(session.user.specialty):
        return _case_page(request, session, case_id, 403, "Only a clinician (physician or pharmacist) may deny; "
                          "pend the case for a clinician's review instead.", form)
    if action == "deny" and not cited_criteria(reason):
        return _case_page(request, session, case_id, 422, "A denial cites at least one criterion of the policy: "
                          "tick the criteria it rests on.", form)
    try:
        dec, _response = svc.decide(case_id, _principal(session), action, reason)
    except ApiError as err:
        status, message = err.status, str(err)
        if status == 409:
            message = ("Another reviewer's decision on this case was recorded first; yours was not recorded and "
                       "no letter was sent. " + message)
        return _case_page(request, session, case_id, status, message, form)
    return RedirectResponse(f"/console/cases/{quote(case_id)}?decided={dec.id}", 303)


@router.get("/cases/{case_id}/attachments/{n}")
def attachment(request: Request, case_id: str, n: int):
    """A document attached to the case's latest request, as sent: a PDF opens in the browser; any other type is
    sent as a download (never rendered as a page of this site)."""
    session = _session(request)
    if session is None:
        return _to_login(request, expired=True)
    svc = service_of(request)
    try:
        svc.case_for(case_id[:64], _principal(session), "attachment.read")
    except ApiError as err:
        return _page("message.html", err.status, session=session, title="Not shown", message=str(err))
    subs = svc.store.history(case_id[:64]).submissions
    found = _attachments(orjson.loads(subs[-1].text)) if subs else []
    data = _attachment_bytes(found[n][1]) if 0 <= n < len(found) else None
    if data is None:
        return _page("message.html", 404, session=session, title="No such document", message="There is no such "
                     "document attached to this request.")
    kind = (found[n][1].get("contentType") or "").split(";")[0].strip().lower()
    pdf = kind == "application/pdf"
    return Response(data, media_type="application/pdf" if pdf else "application/octet-stream", headers={
        "Content-Disposition": ("inline" if pdf else "attachment") + f'; filename="document-{n + 1}'
                               + (".pdf" if pdf else "") + '"',
        "Content-Security-Policy": "sandbox; default-src 'none'", "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store"})


# ---- letters ---------------------------------------------------------------------------------------------------
@router.get("/letters/{letter_id}.{fmt}")
def letter(request: Request, letter_id: int, fmt: str):
    session = _session(request)
    if session is None:
        return _to_login(request, expired=True)
    svc = service_of(request)
    row = svc.store.letter(letter_id)
    if row is None or fmt not in ("pdf", "html"):
        return _page("message.html", 404, session=session, title="No such letter", message="There is no such letter.")
    try:
        svc.case_for(row.case_id, _principal(session), "letter.read")
    except ApiError as err:
        return _page("message.html", err.status, session=session, title="No such letter", message=str(err))
    name = f"{row.kind}-{row.audience}-{row.case_id}.{fmt}"
    if fmt == "pdf":
        return Response(row.pdf, media_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})
    return HTMLResponse(row.html, headers={**_HEADERS, "Content-Security-Policy": "default-src 'none'; "
                                           "style-src 'unsafe-inline'; frame-ancestors 'none'"})


@router.get("/static/console.css")
def stylesheet():
    css = (Path(__file__).parent / "static" / "console.css").read_text(encoding="utf-8")
    return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=3600"})
