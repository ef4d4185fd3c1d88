"""The prior authorization metrics report (CMS-0057-F) over HTTP: ``GET /review/report`` for reviewers and
admins, as JSON or CSV. The figures are computed by :mod:`priorauth.reporting`; this module reads the records it
needs from the store (also for ``priorauth report``)."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import and_, or_, select

from priorauth.reporting import (FINAL_ACTIONS, OPEN_STATUSES, CaseRecord, DecisionRecord, EventRecord, Report,
                                 ReportRangeError, compute_report, report_window)
from priorauth.service.auth import Principal
from priorauth.service.errors import ApiError
from priorauth.service.http import caller, json_response, service_of
from priorauth.store import Actor, Store
from priorauth.service.core import SEED_ORGANIZATION
from priorauth.store.models import CaseRow, DecisionRow, EventRow

__all__ = ["router", "load_records", "build_report", "parse_day"]

router = APIRouter(prefix="/review", tags=["Review"])

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _due_set(detail: str) -> datetime | None:
    """The due time an event set (the new value of its ``due_at`` change), or None."""
    try:
        changes = json.loads(detail)
    except ValueError:
        return None
    change = changes.get("due_at") if isinstance(changes, dict) else None
    if isinstance(change, list) and len(change) == 2 and isinstance(change[1], str):
        try:
            return datetime.fromisoformat(change[1])
        except ValueError:
            return None
    return None


def load_records(store: Store, start: date, end: date) -> list[CaseRecord]:
    """The cases the report on ``start``..``end`` needs, in one read: those with a final decision in the range and
    those open now that were received before its end, each with all its decisions and events."""
    lo, hi = report_window(start, end)
    decided = select(DecisionRow.case_id).where(DecisionRow.action.in_(sorted(FINAL_ACTIONS)),
                                                DecisionRow.decided_at >= lo, DecisionRow.decided_at < hi)
    # the bundled examples seeded as demo data (``serve --seed``) are no plan's requests: never reported
    wanted = select(CaseRow.id).where(CaseRow.organization != SEED_ORGANIZATION,
                                      or_(CaseRow.id.in_(decided),
                                          and_(CaseRow.status.in_(sorted(OPEN_STATUSES)), CaseRow.received_at < hi)))
    with store._read() as s:
        cases = list(s.scalars(select(CaseRow).where(CaseRow.id.in_(wanted)).order_by(CaseRow.id)))
        decisions: dict[str, list[DecisionRecord]] = {}
        for d in s.scalars(select(DecisionRow).where(DecisionRow.case_id.in_(wanted)).order_by(DecisionRow.id)):
            decisions.setdefault(d.case_id, []).append(DecisionRecord(d.action, d.decided_at))
        events: dict[str, list[EventRecord]] = {}
        for e in s.scalars(select(EventRow).where(EventRow.case_id.in_(wanted)).order_by(EventRow.id)):
            events.setdefault(e.case_id, []).append(EventRecord(e.kind, e.at, _due_set(e.detail)))
    return [CaseRecord(c.id, c.urgency, c.received_at, c.status, c.due_at, tuple(decisions.get(c.id, ())),
                       tuple(events.get(c.id, ()))) for c in cases]


def build_report(store: Store, start: date, end: date, now: datetime, actor: Actor | None = None,
                 fmt: str = "json") -> Report:
    """The report on ``start``..``end`` as of ``now``; audited as ``report.read`` when an actor is given."""
    report_window(start, end)                   # a bad range is refused before anything is read
    report = compute_report(load_records(store, start, end), start, end, now)
    if actor is not None:
        store.audit(actor.name, actor.role, "report.read", None,
                    {"start": start.isoformat(), "end": end.isoformat(), "format": fmt})
    return report


def parse_day(value: str, name: str) -> date:
    """A ``YYYY-MM-DD`` date, or a 400 naming the parameter."""
    if not _DAY.match(value):
        raise ApiError(400, f"{name}: {value[:40]!r} is not a date (YYYY-MM-DD)", name, code="value")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, f"{name}: {value!r} is not a date (YYYY-MM-DD)", name, code="value") from None


@router.get("/report", summary="The CMS-0057-F prior authorization metrics for a range of decision dates",
            responses={200: {"content": {"application/json": {}, "text/csv": {}},
                             "description": "The report: JSON, or CSV with one row per urgency"}})
def report(request: Request,
           start: str = Query(..., max_length=10, description="First decision date (YYYY-MM-DD, UTC), inclusive"),
           end: str = Query(..., max_length=10, description="Last decision date (YYYY-MM-DD, UTC), inclusive"),
           format: Literal["json", "csv"] = Query("json", description="json (default) or csv"),
           who: Principal = Depends(caller("reviewer", "admin"))):
    svc = service_of(request)
    first, last = parse_day(start, "start"), parse_day(end, "end")
    try:
        rep = build_report(svc.store, first, last, svc.settings.now(), who.actor, format)
    except ReportRangeError as err:
        raise ApiError(400, str(err), err.field, code="value") from None
    if format == "csv":
        name = f"priorauth-report-{first.isoformat()}-{last.isoformat()}.csv"
        return Response(rep.to_csv(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return json_response(rep.as_dict())
