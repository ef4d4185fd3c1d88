"""Calendar arithmetic for review windows: age in whole years, months added with the day clamped."""

from __future__ import annotations

import calendar
from datetime import date

__all__ = ["age_on", "add_months", "days_between"]


def age_on(birth: date, on: date) -> int:
    """Whole years of age on a date; the birthday itself counts (29 February counts on 1 March)."""
    years = on.year - birth.year
    if (on.month, on.day) < (birth.month, birth.day):
        years -= 1
    return years


def add_months(d: date, months: int) -> date:
    """The same day ``months`` later, clamped to the month's last day (2027-11-30 + 3 -> 2028-02-29)."""
    m = d.month - 1 + months
    year, month = d.year + m // 12, m % 12 + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def days_between(earlier: date, later: date) -> int:
    return (later - earlier).days
