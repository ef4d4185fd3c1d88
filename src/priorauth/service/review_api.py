"""The reviewer API: the queue, one case with its determination, trace and history, and the decisions a
reviewer records (approve, modify, deny, pend), extensions and appeals; client registration for admins."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from priorauth.store.models import as_utc
from priorauth.service.auth import Principal
from priorauth.service.core import OPEN_STATUSES
from priorauth.service.errors import ApiError
from priorauth.service.http import caller, json_response, service_of

router = APIRouter(prefix="/review", tags=["Review"])
admin = APIRouter(prefix="/admin", tags=["Administration"])

_CASE_ID = r"^[A-Za-z0-9\-]{1,64}$"
Status = Literal["pended", "pending_information", "appealed", "approved", "modified", "denied"]
Outcome = Literal["meets_criteria", "does_not_meet_criteria", "needs_information", "refer_to_policy",
                  "not_applicable"]


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["approve", "modify", "deny", "pend"]
    reason: str = Field("", max_length=4000, description="Required except for an approval; a denial cites "
                                                          "the criteria it rests on (such as I.A.7)")
    reviewer_npi: str | None = Field(None, min_length=10, max_length=10, pattern=r"^[0-9]{10}$",
                                     description="Optional: the decision is recorded under the reviewer client's "
                                                 "registered NPI; a value given must be that one")
    reviewer_specialty: str | None = Field(None, min_length=1, max_length=256,
                                           description="Optional: the registered specialty is recorded; a value "
                                                       "given must be that one")
    auth_number: str | None = Field(None, min_length=1, max_length=64)


class ExtensionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hours: int = Field(..., ge=1, le=24 * 30, description="How much later the decision is due")
    reason: str = Field(..., min_length=1, max_length=4000)


class AppealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(..., min_length=1, max_length=4000)
    urgency: Literal["standard", "expedited"] = "standard"


class ClientIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(..., min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")
    role: Literal["provider", "reviewer", "admin"]
    organization: str | None = Field(None, min_length=1, max_length=256)
    npi: str | None = Field(None, min_length=10, max_length=10, pattern=r"^[0-9]{10}$",
                            description="A reviewer's NPI (required for a reviewer), under which its decisions are made")
    specialty: str | None = Field(None, min_length=1, max_length=256,
                                  description="A reviewer's specialty, NUCC code or words (required for a reviewer)")


@router.get("/queue", summary="The review queue, earliest due first")
def queue(request: Request,
          status: list[Status] | None = Query(None, description="Default: the open statuses"),
          outcome: list[Outcome] | None = Query(None),
          due_before: datetime | None = Query(None, description="Only cases due before this instant"),
          overdue: bool | None = Query(None, description="Only overdue (true) or not overdue (false) cases"),
          line_of_business: str | None = Query(None, max_length=64),
          limit: int = Query(200, ge=1, le=1000),
          who: Principal = Depends(caller("reviewer", "admin"))):
    svc = service_of(request)
    if due_before is not None and due_before.tzinfo is None:
        raise ApiError(400, "due_before needs a time zone offset (such as Z)", "due_before", code="value")
    if due_before is not None:
        try:
            due_before = as_utc(due_before)
        except OverflowError:
            raise ApiError(400, "due_before is an instant between the years 1 and 9999 in UTC", "due_before",
                           code="value") from None
    now = svc.settings.now()
    lob = svc.term.line_of_business(line_of_business) if line_of_business else None
    statuses = status or list(OPEN_STATUSES)
    if overdue:
        due_before = min(due_before, now) if due_before else now
        statuses = [s for s in statuses if s in OPEN_STATUSES]
    rows = svc.store.queue(statuses, outcome, due_before, lob, limit=None if overdue is False else limit,
                           actor=who.actor)
    items = [svc.case_summary(r, now) for r in rows]
    if overdue is False:
        items = [i for i in items if not i["overdue"]][:limit]
    return json_response({"count": len(items), "cases": items})


@router.get("/cases/{case_id}", summary="One case: determination, criterion trace, evidence and history")
def case(request: Request, case_id: str = Path(..., pattern=_CASE_ID),
         who: Principal = Depends(caller("reviewer", "admin"))):
    return json_response(service_of(request).case_detail(case_id, who))


@router.post("/cases/{case_id}/decision", summary="Record a decision (updates the ClaimResponse, notifies)")
def decide(request: Request, body: DecisionIn, case_id: str = Path(..., pattern=_CASE_ID),
           who: Principal = Depends(caller("reviewer"))):
    svc = service_of(request)
    dec, response = svc.decide(case_id, who, body.action, body.reason, body.reviewer_npi, body.reviewer_specialty,
                               body.auth_number)
    return json_response({"decision": {"id": dec.id, "action": dec.action, "auth_number": dec.auth_number,
                                       "recorded_at": dec.recorded_at.isoformat().replace("+00:00", "Z")},
                          "claim_response": svc.claim_response(response)}, 201)


@router.post("/cases/{case_id}/extension", summary="Extend the decision's due time")
def extend(request: Request, body: ExtensionIn, case_id: str = Path(..., pattern=_CASE_ID),
           who: Principal = Depends(caller("reviewer"))):
    svc = service_of(request)
    return json_response(svc.case_summary(svc.extend(case_id, who, body.hours, body.reason)))


@router.post("/cases/{case_id}/appeal", summary="Record an appeal of a decided case (back to the queue)")
def appeal(request: Request, body: AppealIn, case_id: str = Path(..., pattern=_CASE_ID),
           who: Principal = Depends(caller("provider", "reviewer"))):
    svc = service_of(request)
    return json_response(svc.case_summary(svc.appeal(case_id, who, body.reason, body.urgency)))


@admin.post("/clients", summary="Register an OAuth2 client; the answer holds its secret, shown once")
def add_client(request: Request, body: ClientIn, who: Principal = Depends(caller("admin"))):
    svc = service_of(request)
    try:
        secret = svc.store.add_client(body.client_id, body.role, body.organization, who.actor, npi=body.npi,
                                      specialty=body.specialty)
    except ValueError as exc:
        status = 409 if "already registered" in str(exc) else 422
        raise ApiError(status, str(exc), str(exc).split(" ")[0].rstrip(":"), code="business-rule") from None
    return json_response({"client_id": body.client_id, "client_secret": secret, "role": body.role,
                          "organization": body.organization, "npi": body.npi, "specialty": body.specialty}, 201)


@admin.get("/audit/verify", summary="Walk the audit chain and check the stored records against it")
def audit_verify(request: Request, who: Principal = Depends(caller("admin"))):
    svc = service_of(request)
    ok, checked, bad = svc.store.verify_audit()
    counts, problems = svc.store.verify_records() if ok else ({}, [])
    return json_response({"ok": ok and not problems, "entries": checked, "first_bad": bad, "records": counts,
                          "record_problems": problems})
