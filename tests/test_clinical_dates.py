"""Calendar arithmetic (priorauth.clinical.dates): age in whole years and months added with clamping."""

from __future__ import annotations

from datetime import date

import pytest

from priorauth.clinical.dates import add_months, age_on


# ---- age_on ---------------------------------------------------------------------------------------------------
def test_day_before_18th_birthday_is_17():
    assert age_on(date(2009, 1, 11), date(2027, 1, 10)) == 17


def test_on_18th_birthday_is_18():
    # I.A.3: "the 18th birthday itself counts"
    assert age_on(date(2009, 1, 11), date(2027, 1, 11)) == 18


def test_day_after_18th_birthday_is_18():
    assert age_on(date(2009, 1, 11), date(2027, 1, 12)) == 18


def test_month_before_birthday_month():
    assert age_on(date(2009, 6, 15), date(2027, 5, 31)) == 17
    assert age_on(date(2009, 6, 15), date(2027, 6, 14)) == 17
    assert age_on(date(2009, 6, 15), date(2027, 6, 15)) == 18


def test_birthday_on_new_years_eve():
    assert age_on(date(2008, 12, 31), date(2026, 12, 30)) == 17
    assert age_on(date(2008, 12, 31), date(2026, 12, 31)) == 18
    assert age_on(date(2008, 12, 31), date(2027, 1, 1)) == 18


def test_feb_29_birth_turns_18_on_march_1_in_a_common_year():
    born = date(2008, 2, 29)
    assert age_on(born, date(2026, 2, 28)) == 17
    assert age_on(born, date(2026, 3, 1)) == 18


def test_feb_29_birth_in_a_leap_year_turns_on_feb_29():
    born = date(2008, 2, 29)
    assert age_on(born, date(2028, 2, 28)) == 19
    assert age_on(born, date(2028, 2, 29)) == 20


def test_age_on_birth_date_is_zero():
    assert age_on(date(2027, 1, 11), date(2027, 1, 11)) == 0


def test_adult_age():
    assert age_on(date(1957, 6, 30), date(2027, 1, 11)) == 69


# ---- add_months -----------------------------------------------------------------------------------------------
def test_authorization_window_three_months():
    # the spec's own example: valid 2027-01-11 to 2027-04-11
    assert add_months(date(2027, 1, 11), 3) == date(2027, 4, 11)


@pytest.mark.parametrize("start, months, expected", [
    (date(2027, 1, 31), 1, date(2027, 2, 28)),     # common-year February
    (date(2028, 1, 31), 1, date(2028, 2, 29)),     # leap-year February
    (date(2027, 11, 30), 3, date(2028, 2, 29)),    # into a leap February across the year end
    (date(2027, 3, 31), 1, date(2027, 4, 30)),     # 30-day month
    (date(2027, 5, 31), 3, date(2027, 8, 31)),     # 31-day month keeps the 31st
    (date(2027, 8, 31), 1, date(2027, 9, 30)),
    (date(2028, 2, 29), 12, date(2029, 2, 28)),    # leap day a year later
])
def test_month_end_clamping(start, months, expected):
    assert add_months(start, months) == expected


@pytest.mark.parametrize("start, months, expected", [
    (date(2027, 10, 15), 3, date(2028, 1, 15)),
    (date(2027, 12, 1), 1, date(2028, 1, 1)),
    (date(2027, 11, 11), 2, date(2028, 1, 11)),
    (date(2027, 1, 1), 24, date(2029, 1, 1)),
    (date(2027, 12, 31), 13, date(2029, 1, 31)),
])
def test_year_rollover(start, months, expected):
    assert add_months(start, months) == expected


def test_zero_months_is_the_same_day():
    assert add_months(date(2027, 1, 31), 0) == date(2027, 1, 31)


@pytest.mark.parametrize("start, months, expected", [
    (date(2027, 3, 31), -1, date(2027, 2, 28)),
    (date(2028, 1, 15), -1, date(2027, 12, 15)),
    (date(2027, 12, 31), -1, date(2027, 11, 30)),
])
def test_negative_months(start, months, expected):
    assert add_months(start, months) == expected
