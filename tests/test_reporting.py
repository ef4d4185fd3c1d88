"""The CMS-0057-F metrics computed from hand-built records (priorauth.reporting, no store): which decisions a
range counts, what a request with several decisions counts as, appeals, extensions, times, due times, open and
overdue requests, rounding, the CSV and the refused ranges."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta, timezone

import pytest

from priorauth.reporting import (CSV_COLUMNS, METRIC_FIELDS, CaseRecord, DecisionRecord, EventRecord,
                                 ReportRangeError, UrgencyFigures, compute_report, report_window)

UTC = timezone.utc
T0 = datetime(2027, 3, 10, 9, 0, tzinfo=UTC)          # received
START, END = date(2027, 3, 1), date(2027, 3, 31)      # March 2027
NOW = datetime(2027, 4, 2, 12, 0, tzinfo=UTC)         # when the report is made
CLOCK = {"standard": timedelta(days=7), "expedited": timedelta(hours=72)}


def h(hours: float, base: datetime = T0) -> datetime:
    return base + timedelta(hours=hours)


def case(cid: str, decisions=(), events=(), *, urgency: str = "standard", received: datetime = T0,
         status: str | None = None, due: datetime | None = None) -> CaseRecord:
    """A request received at ``received`` with its clock's due time (``submitted`` sets it), the decisions
    ``(action, at)`` and further events ``(kind, at[, due set])``; status: that of its last decision."""
    due = due or received + CLOCK[urgency]
    decs = tuple(DecisionRecord(a, at) for a, at in decisions)
    evs = (EventRecord("submitted", received, due),) + tuple(EventRecord(*e) for e in events)
    if status is None:
        last = decs[-1].action if decs else None
        status = {"approve": "approved", "modify": "modified", "deny": "denied", "pend": "pending_information",
                  None: "pended"}[last]
    current_due = next((e.due_at for e in reversed(evs) if e.due_at is not None), due)
    return CaseRecord(cid, urgency, received, status, current_due, decs, evs)


def report(*cases, start=START, end=END, now=NOW):
    return compute_report(cases, start, end, now)


ZERO = UrgencyFigures()


# ---- ranges ----------------------------------------------------------------------------------------------------
def test_an_empty_range_gives_zeros_and_null_shares_and_times():
    r = report()
    for u in ("standard", "expedited"):
        f = r.figures(u).as_dict()
        assert f == ZERO.as_dict()
        assert f["decided"] == 0 and f["approved"] == 0 and f["open"] == 0
        assert f["approved_percent"] is None and f["denied_percent"] is None         # a share of nothing
        assert f["hours_to_decision_average"] is None and f["hours_to_decision_median"] is None
    d = r.as_dict()
    assert d["period"]["start"] == "2027-03-01" and d["period"]["end"] == "2027-03-31"
    assert "UTC" in d["period"]["basis"] and "inclusive" in d["period"]["basis"]
    assert d["as_of"] == "2027-04-02T12:00:00Z"
    assert set(d["standard"]) == set(METRIC_FIELDS)


def test_decisions_only_outside_the_range_give_an_empty_report():
    c = case("a", [("approve", datetime(2027, 2, 28, 23, 59, 59, 999999, tzinfo=UTC))],
             received=datetime(2027, 2, 27, tzinfo=UTC))
    assert report(c).standard == ZERO


@pytest.mark.parametrize("at, counted", [
    (datetime(2027, 3, 1, 0, 0, tzinfo=UTC), True),                         # the first instant of start
    (datetime(2027, 2, 28, 23, 59, 59, 999999, tzinfo=UTC), False),         # just before it
    (datetime(2027, 3, 31, 23, 59, 59, 999999, tzinfo=UTC), True),          # the last instant of end
    (datetime(2027, 4, 1, 0, 0, tzinfo=UTC), False),                        # the day after end, midnight
    (datetime(2027, 3, 31, 20, 0, tzinfo=timezone(timedelta(hours=-5))), False),   # 1 April 01:00 UTC
    (datetime(2027, 4, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))), True),       # 31 March 23:00 UTC
])
def test_a_decision_counts_by_its_utc_date_with_both_ends_included(at, counted):
    c = case("a", [("approve", at)], received=datetime(2027, 2, 25, tzinfo=UTC))
    f = report(c).standard
    assert f.decided == f.approved == (1 if counted else 0)


def test_a_one_day_range_is_start_equal_to_end():
    c = case("a", [("deny", datetime(2027, 3, 10, 18, 0, tzinfo=UTC))])
    assert report(c, start=date(2027, 3, 10), end=date(2027, 3, 10)).standard.denied == 1
    assert report(c, start=date(2027, 3, 11), end=date(2027, 3, 11)).standard.decided == 0


def test_end_before_start_is_refused_naming_end():
    with pytest.raises(ReportRangeError) as err:
        report(start=date(2027, 3, 31), end=date(2027, 3, 1))
    assert err.value.field == "end" and "before start" in str(err.value) and str(err.value).startswith("end:")
    with pytest.raises(ReportRangeError) as err:
        report_window(datetime(2027, 3, 1, tzinfo=UTC), date(2027, 3, 2))        # a datetime is not a date
    assert err.value.field == "start"
    lo, hi = report_window(START, END)
    assert lo == datetime(2027, 3, 1, tzinfo=UTC) and hi == datetime(2027, 4, 1, tzinfo=UTC)


def test_times_without_a_zone_and_unknown_urgencies_are_refused():
    naive = CaseRecord("a", "standard", datetime(2027, 3, 10), "approved", None,
                       (DecisionRecord("approve", datetime(2027, 3, 11)),))
    with pytest.raises(ValueError, match="time zone"):
        report(naive)
    with pytest.raises(ValueError, match="urgency 'urgent'"):
        report(CaseRecord("b", "urgent", T0, "pended"))
    with pytest.raises(ValueError, match="now"):
        report(now=datetime(2027, 4, 2))


# ---- what a request counts as ----------------------------------------------------------------------------------
def test_approve_modify_and_deny_shares_of_the_decided_requests():
    cases = [case("a1", [("approve", h(10))]), case("a2", [("approve", h(20))]),
             case("m1", [("modify", h(30))]), case("d1", [("deny", h(40))])]
    f = report(*cases).standard
    assert f.decided == 4
    assert (f.approved, f.approved_as_requested, f.approved_modified, f.denied) == (3, 2, 1, 1)
    assert (f.approved_percent, f.approved_modified_percent, f.denied_percent) == (75.0, 25.0, 25.0)
    assert f.approved + f.denied == f.decided                        # modified is inside approved
    assert f.hours_to_decision_average == 25.0 and f.hours_to_decision_median == 25.0
    assert report(*cases).expedited == ZERO                          # urgencies are kept apart


def test_shares_are_rounded_to_one_decimal_half_up():
    cases = [case("a", [("approve", h(1))]), case("b", [("deny", h(1))]), case("c", [("deny", h(1))])]
    f = report(*cases).standard
    assert f.approved_percent == 33.3 and f.denied_percent == 66.7
    eight = [case(f"x{i}", [("approve" if i else "deny", h(1))]) for i in range(8)]
    assert report(*eight).standard.denied_percent == 12.5                   # exact, no rounding
    # 9 minutes = 0.15 h: half up to 0.2 (binary rounding of 0.15 would give 0.1)
    assert report(case("q", [("approve", T0 + timedelta(minutes=9))])).standard.hours_to_decision_average == 0.2


def test_a_pend_is_not_a_decision():
    only_pend = case("p", [("pend", h(5))])
    f = report(only_pend).standard
    assert f.decided == 0 and f.approved_percent is None
    assert f.open == 1                                                 # pending information: still open
    # pend then approve: one decided request, timed from receipt (the pend does not restart the measurement)
    later = case("pa", [("pend", h(5)), ("approve", h(50))], events=[("resubmitted", h(30))])
    f = report(later).standard
    assert (f.decided, f.approved) == (1, 1) and f.hours_to_decision_average == 50.0


def test_median_of_an_even_count_is_the_mean_of_the_middle_two():
    cases = [case(f"c{i}", [("approve", h(x))]) for i, x in enumerate((1, 2, 3, 10))]
    f = report(*cases).standard
    assert f.hours_to_decision_median == 2.5 and f.hours_to_decision_average == 4.0
    odd = [case(f"c{i}", [("approve", h(x))]) for i, x in enumerate((1, 2, 30))]
    f = report(*odd).standard
    assert f.hours_to_decision_median == 2.0 and f.hours_to_decision_average == 11.0
    two = [case("a", [("approve", h(1.5))]), case("b", [("deny", h(2))])]
    assert report(*two).standard.hours_to_decision_median == 1.8          # 1.75 rounded half up


def test_appeal_then_approve_counts_as_approved_after_appeal_timed_from_the_appeal():
    c = case("x", [("deny", h(20)), ("approve", h(60))], events=[("appeal", h(40), h(40 + 168))])
    f = report(c).standard
    assert f.decided == 1                                               # one request, by its last decision
    assert (f.approved, f.denied, f.approved_after_appeal) == (1, 0, 1)
    assert f.approved_after_appeal_percent == 100.0 and f.approved_percent == 100.0
    assert f.hours_to_decision_average == 20.0                          # appeal at 40 h, decided at 60 h
    assert f.approved_after_extension == 0 and f.decided_after_due == 0


def test_deny_then_appeal_then_approve_across_two_ranges():
    deny_at = datetime(2027, 2, 20, 9, tzinfo=UTC)
    appeal_at = datetime(2027, 2, 25, 9, tzinfo=UTC)
    approve_at = datetime(2027, 3, 3, 9, tzinfo=UTC)
    c = case("x", [("deny", deny_at), ("approve", approve_at)],
             events=[("appeal", appeal_at, appeal_at + timedelta(days=7))],
             received=datetime(2027, 2, 18, 9, tzinfo=UTC))
    feb = report(c, start=date(2027, 2, 1), end=date(2027, 2, 28)).standard
    assert (feb.decided, feb.denied, feb.approved, feb.denied_percent) == (1, 1, 0, 100.0)   # the denial stands
    assert feb.hours_to_decision_average == 48.0
    assert feb.open == 0 and feb.approved_after_appeal == 0             # (the case is approved now)
    mar = report(c).standard
    assert (mar.decided, mar.approved, mar.denied, mar.approved_after_appeal) == (1, 1, 0, 1)
    assert mar.hours_to_decision_average == 144.0                        # 25 Feb 09:00 -> 3 Mar 09:00
    both = report(c, start=date(2027, 2, 1), end=date(2027, 3, 31)).standard
    assert (both.decided, both.approved, both.denied, both.approved_after_appeal) == (1, 1, 0, 1)


def test_a_denial_under_appeal_counts_as_denied_and_the_request_as_open():
    c = case("x", [("deny", h(20))], events=[("appeal", h(40), h(40 + 72))], status="appealed")
    f = report(c).standard
    assert (f.decided, f.denied, f.open, f.approved_after_appeal) == (1, 1, 1, 0)


def test_the_last_final_decision_in_the_range_is_the_one_counted():
    # modified, appealed for the full request, then denied: a denial (not an approval after appeal)
    c = case("x", [("modify", h(10)), ("deny", h(50))], events=[("appeal", h(20), h(20 + 168))])
    f = report(c).standard
    assert (f.decided, f.approved, f.approved_modified, f.denied, f.approved_after_appeal) == (1, 0, 0, 1, 0)
    assert f.hours_to_decision_average == 30.0
    # a range that ends before the denial counts the modification
    g = report(c, start=date(2027, 3, 10), end=date(2027, 3, 10)).standard
    assert (g.approved, g.approved_modified, g.denied) == (1, 1, 0)
    # modified, appealed, approved as requested: approved after appeal, not modified
    c2 = case("y", [("modify", h(10)), ("approve", h(50))], events=[("appeal", h(20), h(20 + 168))])
    f = report(c2).standard
    assert (f.approved, f.approved_modified, f.approved_as_requested, f.approved_after_appeal) == (1, 0, 1, 1)


def test_extension_then_approve_counts_as_approved_after_extension():
    due = T0 + CLOCK["standard"]
    c = case("x", [("approve", h(200))], events=[("extension", h(100), due + timedelta(hours=336))])
    f = report(c).standard
    assert (f.approved, f.approved_after_extension, f.approved_after_extension_percent) == (1, 1, 100.0)
    assert f.decided_after_due == 0                     # 200 h: late against 168 h, on time with the extension
    assert f.hours_to_decision_average == 200.0
    # the same request decided without the extension would have been late
    assert report(case("y", [("approve", h(200))])).standard.decided_after_due == 1


def test_an_extension_then_a_denial_is_not_an_approval_after_extension():
    c = case("x", [("deny", h(200))], events=[("extension", h(100), h(168 + 336))])
    f = report(c).standard
    assert (f.denied, f.approved_after_extension, f.approved_after_extension_percent) == (1, 0, 0.0)


def test_an_extension_after_the_decision_does_not_count():
    # approved, appealed, the appeal's clock extended, still open: the approval came before the extension
    c = case("x", [("approve", h(10))], events=[("appeal", h(20), h(20 + 168)), ("extension", h(30), h(500))],
             status="appealed")
    f = report(c).standard
    assert (f.approved, f.approved_after_extension, f.approved_after_appeal, f.open) == (1, 0, 0, 1)


# ---- due times -------------------------------------------------------------------------------------------------
def test_decided_after_the_due_time_uses_the_due_time_in_force_then():
    on_time = case("a", [("approve", h(168))])                               # exactly at the due time
    late = case("b", [("approve", h(168) + timedelta(seconds=1))])
    expedited_late = case("c", [("deny", h(73))], urgency="expedited")
    f = report(on_time, late, expedited_late)
    assert f.standard.decided_after_due == 1 and f.expedited.decided_after_due == 1
    # the appeal's clock (72 h from the appeal) decides whether the decision on the appeal is late, not the
    # original one; the first denial was on time against the original clock
    appealed = case("d", [("deny", h(10)), ("approve", h(100))], events=[("appeal", h(20), h(20 + 72))])
    assert report(appealed).standard.decided_after_due == 1
    appealed_in_time = case("e", [("deny", h(10)), ("approve", h(90))], events=[("appeal", h(20), h(20 + 72))])
    assert report(appealed_in_time).standard.decided_after_due == 0
    # an update (resubmission) sets a new due time from its receipt
    updated = case("f", [("pend", h(5)), ("approve", h(200))], events=[("resubmitted", h(100), h(100 + 168))])
    assert report(updated).standard.decided_after_due == 0


def test_without_due_events_the_case_due_time_is_used():
    c = CaseRecord("a", "expedited", T0, "approved", h(72), (DecisionRecord("approve", h(80)),))
    assert report(c).expedited.decided_after_due == 1
    no_due = CaseRecord("b", "expedited", T0, "approved", None, (DecisionRecord("approve", h(80)),))
    assert report(no_due).expedited.decided_after_due == 0


# ---- open and overdue ------------------------------------------------------------------------------------------
def test_open_and_overdue_requests_as_of_the_report():
    now = datetime(2027, 3, 20, 12, 0, tzinfo=UTC)
    cases = [
        case("overdue", received=h(0)),                                             # due 17 Mar 09:00
        case("due-now", received=now - CLOCK["standard"]),                          # due exactly now: not yet
        case("fresh", received=h(24 * 8)),                                          # due 25 Mar
        case("pending-info", [("pend", h(1))]),                                     # open, overdue
        case("after-end", received=datetime(2027, 4, 1, 0, 0, tzinfo=UTC)),         # received after the range
        case("earlier", received=datetime(2027, 1, 5, tzinfo=UTC)),                 # backlog from before
        case("decided", [("approve", h(5))]),
        case("exp", urgency="expedited", received=h(24 * 9)),                       # 19 Mar 09:00 + 72 h
        case("exp-late", urgency="expedited", received=h(0)),
    ]
    r = report(*cases, now=now)
    assert (r.standard.open, r.standard.overdue_now) == (5, 3)          # overdue, pending-info, earlier
    assert (r.expedited.open, r.expedited.overdue_now) == (2, 1)
    assert r.standard.decided == 1


# ---- output ----------------------------------------------------------------------------------------------------
def test_csv_has_one_row_per_urgency_under_stable_headers():
    cases = [case("a", [("approve", h(10))]), case("b", [("deny", h(30))]),
             case("c", [("approve", h(80))], urgency="expedited")]
    text = report(*cases).to_csv()
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    assert text.endswith("\r\n")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["urgency"] for r in rows] == ["standard", "expedited"]
    std, exp = rows
    assert std["period_start"] == "2027-03-01" and std["period_end"] == "2027-03-31"
    assert std["as_of"] == "2027-04-02T12:00:00Z"
    assert (std["decided"], std["approved"], std["approved_percent"], std["denied_percent"]) == ("2", "1", "50.0",
                                                                                                  "50.0")
    assert std["hours_to_decision_average"] == "20.0" and std["hours_to_decision_median"] == "20.0"
    assert (exp["decided"], exp["approved_percent"], exp["decided_after_due"]) == ("1", "100.0", "1")
    empty = list(csv.DictReader(io.StringIO(report().to_csv())))
    assert empty[0]["decided"] == "0" and empty[0]["approved_percent"] == ""
    assert empty[0]["hours_to_decision_median"] == "" and empty[1]["open"] == "0"
    assert list(CSV_COLUMNS[:4]) == ["urgency", "period_start", "period_end", "as_of"]


def test_decisions_are_ordered_by_time_not_by_the_order_given():
    c = CaseRecord("a", "standard", T0, "approved", h(168),
                   (DecisionRecord("approve", h(60)), DecisionRecord("deny", h(20))),
                   (EventRecord("appeal", h(40), h(40 + 168)), EventRecord("submitted", T0, h(168))))
    f = report(c).standard
    assert (f.approved, f.approved_after_appeal, f.hours_to_decision_average) == (1, 1, 20.0)
