"""The prior authorization metrics CMS-0057-F asks payers to publish, and the review clocks behind them.

Pure computation: no database, no files, no clock of its own. :func:`compute_report` takes plain records of
cases (:class:`CaseRecord`, with their decisions and events), an inclusive range of dates and the instant the
report is made, and returns a :class:`Report` for standard and for expedited requests separately.

The rules (docs/reporting.md explains each one):

- A request is counted in the range when a **final decision** (approve, modify or deny) on it is dated in the
  range: from ``start`` 00:00 UTC up to, not including, the day after ``end`` 00:00 UTC. A ``pend`` (a request
  for information) is not a final decision and is never counted as one.
- A request with several final decisions in the range counts once, by the **last** of them.
- **Approved** means certified: ``approve`` and ``modify`` (a certification with changed terms) both count as
  approved; ``modify`` is also reported on its own (``approved_modified``). approved + denied = decided.
- **Approved after appeal**: the counted decision is an approval and the request was appealed before it (an
  ``appeal`` event at or before the decision). **Approved after an extension**: the counted decision is an
  approval and the review's due time was extended before it (an ``extension`` event at or before it).
- **Time to decision**, hours: from the start of the review the decision answers (the request's receipt; for a
  decision on an appeal, the latest appeal before it) to the decision. Average and median, to one decimal
  (halves rounded up).
- **Decided after the due time**: the counted decision came strictly after the due time in force at that moment
  (the due time the latest event at or before the decision set: submitted, resubmitted, extension, appeal).
- **Open** and **overdue now**: requests received before the end of the range that are open when the report
  is made (pended, pending_information, appealed); overdue when their due time is before that moment.
- Shares are percentages of the decided requests of the urgency, to one decimal; ``None`` when none were decided
  (a share of nothing is not 0 %). Averages and medians are ``None`` when there is nothing to average.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from fractions import Fraction
from typing import Any, Iterable

__all__ = ["DecisionRecord", "EventRecord", "CaseRecord", "UrgencyFigures", "Report", "ReportRangeError",
           "compute_report", "report_window", "URGENCIES", "FINAL_ACTIONS", "CERTIFYING_ACTIONS", "OPEN_STATUSES",
           "CSV_COLUMNS", "METRIC_FIELDS", "BASIS"]

URGENCIES = ("standard", "expedited")
FINAL_ACTIONS = frozenset({"approve", "modify", "deny"})       # "pend" asks for information: not a decision
CERTIFYING_ACTIONS = frozenset({"approve", "modify"})
OPEN_STATUSES = ("pended", "pending_information", "appealed")   # the review queue's statuses
BASIS = ("requests with a final decision (approve, modify or deny) dated in the range, by the decision's date in "
         "UTC, start and end inclusive; each request counted once, by its last final decision in the range")

# every figure of one urgency, in the order of the CSV columns
METRIC_FIELDS = (
    "decided",
    "approved", "approved_percent",
    "approved_as_requested",
    "approved_modified", "approved_modified_percent",
    "denied", "denied_percent",
    "approved_after_appeal", "approved_after_appeal_percent",
    "approved_after_extension", "approved_after_extension_percent",
    "hours_to_decision_average", "hours_to_decision_median",
    "decided_after_due",
    "open", "overdue_now",
)
CSV_COLUMNS = ("urgency", "period_start", "period_end", "as_of") + METRIC_FIELDS


class ReportRangeError(ValueError):
    """The range of dates cannot be reported on; ``field`` names the bound at fault (``start`` or ``end``)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class DecisionRecord:
    """A reviewer's decision: ``approve``, ``modify``, ``deny`` or ``pend``, and when it was made."""

    action: str
    decided_at: datetime


@dataclass(frozen=True)
class EventRecord:
    """A change of a case: its kind (``submitted``, ``resubmitted``, ``decision.<action>``, ``extension``,
    ``appeal``), when, and the due time it set (``None``: the event left the due time as it was)."""

    kind: str
    at: datetime
    due_at: datetime | None = None


@dataclass(frozen=True)
class CaseRecord:
    """One request (case): its urgency, receipt, current status and due time, decisions and events."""

    case_id: str
    urgency: str
    received_at: datetime
    status: str
    due_at: datetime | None = None
    decisions: tuple[DecisionRecord, ...] = ()
    events: tuple[EventRecord, ...] = ()


@dataclass(frozen=True)
class UrgencyFigures:
    decided: int = 0
    approved: int = 0
    approved_percent: float | None = None
    approved_as_requested: int = 0
    approved_modified: int = 0
    approved_modified_percent: float | None = None
    denied: int = 0
    denied_percent: float | None = None
    approved_after_appeal: int = 0
    approved_after_appeal_percent: float | None = None
    approved_after_extension: int = 0
    approved_after_extension_percent: float | None = None
    hours_to_decision_average: float | None = None
    hours_to_decision_median: float | None = None
    decided_after_due: int = 0
    open: int = 0
    overdue_now: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in METRIC_FIELDS}


@dataclass(frozen=True)
class Report:
    start: date
    end: date
    as_of: datetime
    standard: UrgencyFigures = field(default_factory=UrgencyFigures)
    expedited: UrgencyFigures = field(default_factory=UrgencyFigures)

    def figures(self, urgency: str) -> UrgencyFigures:
        if urgency not in URGENCIES:
            raise KeyError(urgency)
        return getattr(self, urgency)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "report": "prior authorization metrics (CMS-0057-F)",
            "period": {"start": self.start.isoformat(), "end": self.end.isoformat(), "basis": BASIS},
            "as_of": _instant(self.as_of),
            "standard": self.standard.as_dict(),
            "expedited": self.expedited.as_dict(),
        }

    def csv_rows(self) -> list[dict[str, Any]]:
        return [{"urgency": u, "period_start": self.start.isoformat(), "period_end": self.end.isoformat(),
                 "as_of": _instant(self.as_of), **self.figures(u).as_dict()} for u in URGENCIES]

    def to_csv(self) -> str:
        """One row per urgency under :data:`CSV_COLUMNS`; a figure that is ``None`` is an empty field."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        for row in self.csv_rows():
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        return out.getvalue()


# ---- helpers ---------------------------------------------------------------------------------------------------
def _aware(dt: datetime, what: str) -> datetime:
    if not isinstance(dt, datetime):
        raise TypeError(f"{what}: expected a datetime, got {type(dt).__name__}")
    if dt.tzinfo is None:
        raise ValueError(f"{what}: a time zone is needed (the report is in UTC)")
    return dt.astimezone(timezone.utc)


def _instant(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _round1(x: Fraction) -> float:
    """``x`` to one decimal, halves away from zero (exact: no binary rounding surprises)."""
    scaled = x * 10
    n = math.floor(abs(scaled) + Fraction(1, 2))
    return (n if scaled >= 0 else -n) / 10


def _hours(delta: timedelta) -> Fraction:
    return Fraction(delta // timedelta(microseconds=1), 3_600_000_000)


def _percent(n: int, of: int) -> float | None:
    return None if of == 0 else _round1(Fraction(100 * n, of))


def _median(values: list[Fraction]) -> Fraction:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def report_window(start: date, end: date) -> tuple[datetime, datetime]:
    """The instants ``[start 00:00 UTC, the day after end 00:00 UTC)`` of an inclusive range of dates (to the
    last representable instant when ``end`` is 9999-12-31)."""
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, date) or isinstance(value, datetime):
            raise ReportRangeError(name, f"expected a date (YYYY-MM-DD), got {type(value).__name__}")
    if end < start:
        raise ReportRangeError("end", f"{end.isoformat()} is before start {start.isoformat()}; the range is "
                                      "inclusive, so a one-day report has start = end")
    lo = datetime.combine(start, time(0), timezone.utc)
    if end == date.max:     # the day after 9999-12-31 is not representable: the range runs to its last instant
        return lo, datetime.max.replace(tzinfo=timezone.utc)
    hi = datetime.combine(end, time(0), timezone.utc) + timedelta(days=1)
    return lo, hi


# ---- one request -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Counted:
    action: str
    hours: Fraction
    after_appeal: bool
    after_extension: bool
    late: bool


def _ordered(items: Iterable, key) -> list:
    return sorted(items, key=key)          # stable: equal times keep the order given (the store's order)


def _counted(case: CaseRecord, lo: datetime, hi: datetime) -> _Counted | None:
    """The request's last final decision in ``[lo, hi)`` and what it counts as, or None."""
    decisions = _ordered(((d.action, _aware(d.decided_at, f"case {case.case_id}: decided_at"))
                          for d in case.decisions), key=lambda d: d[1])
    finals = [d for d in decisions if d[0] in FINAL_ACTIONS and lo <= d[1] < hi]
    if not finals:
        return None
    action, at = finals[-1]
    events = _ordered(((e.kind, _aware(e.at, f"case {case.case_id}: event at"),
                        None if e.due_at is None else _aware(e.due_at, f"case {case.case_id}: event due_at"))
                       for e in case.events), key=lambda e: e[1])
    before = [e for e in events if e[1] <= at]
    appeals = [e[1] for e in before if e[0] == "appeal"]
    extended = any(e[0] == "extension" for e in before)
    # the due time in force when the decision was made: the latest one an event set before it; when no event set
    # one at all, the case's own due time
    if any(e[2] is not None for e in events):
        set_before = [e[2] for e in before if e[2] is not None]
        due = set_before[-1] if set_before else None
    else:
        due = None if case.due_at is None else _aware(case.due_at, f"case {case.case_id}: due_at")
    received = _aware(case.received_at, f"case {case.case_id}: received_at")
    began = max([received, *appeals])
    certified = action in CERTIFYING_ACTIONS
    return _Counted(action, _hours(at - began), certified and bool(appeals), certified and extended,
                    due is not None and at > due)


# ---- the report ------------------------------------------------------------------------------------------------
def compute_report(cases: Iterable[CaseRecord], start: date, end: date, now: datetime) -> Report:
    """The CMS-0057-F figures of the requests decided from ``start`` to ``end`` (inclusive dates, UTC), with the
    requests open at ``now``. Raises :class:`ReportRangeError` when ``end`` is before ``start``."""
    lo, hi = report_window(start, end)
    now = _aware(now, "now")
    counted: dict[str, list[_Counted]] = {u: [] for u in URGENCIES}
    open_: dict[str, int] = {u: 0 for u in URGENCIES}
    overdue: dict[str, int] = {u: 0 for u in URGENCIES}
    for case in cases:
        if case.urgency not in URGENCIES:
            raise ValueError(f"case {case.case_id}: urgency {case.urgency!r} is not standard or expedited")
        c = _counted(case, lo, hi)
        if c is not None:
            counted[case.urgency].append(c)
        if case.status in OPEN_STATUSES and _aware(case.received_at, f"case {case.case_id}: received_at") < hi:
            open_[case.urgency] += 1
            if case.due_at is not None and _aware(case.due_at, f"case {case.case_id}: due_at") < now:
                overdue[case.urgency] += 1
    return Report(start, end, now, **{u: _figures(counted[u], open_[u], overdue[u]) for u in URGENCIES})


def _figures(counted: list[_Counted], open_: int, overdue: int) -> UrgencyFigures:
    n = len(counted)
    approved = sum(c.action in CERTIFYING_ACTIONS for c in counted)
    modified = sum(c.action == "modify" for c in counted)
    denied = sum(c.action == "deny" for c in counted)
    after_appeal = sum(c.after_appeal for c in counted)
    after_extension = sum(c.after_extension for c in counted)
    hours = [c.hours for c in counted]
    return UrgencyFigures(
        decided=n,
        approved=approved, approved_percent=_percent(approved, n),
        approved_as_requested=approved - modified,
        approved_modified=modified, approved_modified_percent=_percent(modified, n),
        denied=denied, denied_percent=_percent(denied, n),
        approved_after_appeal=after_appeal, approved_after_appeal_percent=_percent(after_appeal, n),
        approved_after_extension=after_extension, approved_after_extension_percent=_percent(after_extension, n),
        hours_to_decision_average=_round1(sum(hours, Fraction(0)) / n) if n else None,
        hours_to_decision_median=_round1(_median(hours)) if n else None,
        decided_after_due=sum(c.late for c in counted),
        open=open_, overdue_now=overdue,
    )
