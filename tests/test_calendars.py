"""The calendar loaded from the chinese-calendar library agrees with the library."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar  # type: ignore[import-untyped]
import pytest

from domain.calendar import WorkCalendar, working_days_end
from domain.policy import DEFAULT_POLICY
from infra.calendars import calendar_gap, library_calendar, with_library_calendar


def test_library_calendar_2025_on() -> None:
    cal = library_calendar(2025)
    assert cal.name == f"chinese-calendar {chinese_calendar.__version__}"
    assert (cal.first_year, cal.last_year) == (2025, 2026)
    assert not cal.is_working_day(date(2025, 10, 1))  # National Day, Wednesday
    assert cal.is_working_day(date(2025, 9, 28))  # Sunday make-up day
    assert cal.is_working_day(date(2026, 10, 10))  # Saturday make-up day
    assert all(d.year >= 2025 for d in cal.holidays | cal.workdays)
    assert all(d.weekday() < 5 for d in cal.holidays)  # weekend holidays dropped
    assert cal.knows(date(2026, 12, 31))
    assert not cal.knows(date(2027, 1, 1))
    assert not cal.knows(date(2024, 12, 31))


def test_library_calendar_agrees_with_the_library_every_day_of_2025_and_2026() -> None:
    cal = library_calendar(2025)
    day, checked = date(2025, 1, 1), 0
    while day.year <= 2026:
        assert cal.is_working_day(day) == chinese_calendar.is_workday(day), day
        day += timedelta(days=1)
        checked += 1
    assert checked == 730


def test_library_calendar_round_trips_through_json() -> None:
    cal = library_calendar(2025)
    assert WorkCalendar.model_validate_json(cal.model_dump_json()) == cal


def test_counting_with_the_library_calendar_crosses_into_an_unknown_year() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    start = datetime(2026, 12, 30, 10, tzinfo=shanghai)
    result = working_days_end(start, 3, shanghai, library_calendar(2026))
    assert result.at == datetime(2027, 1, 5, tzinfo=shanghai)
    assert result.unknown_years == (2027,)


def test_a_year_past_the_library_is_refused() -> None:
    with pytest.raises(ValueError, match="knows years up to 2026"):
        library_calendar(2027)


def test_the_worker_is_warned_of_years_the_calendar_does_not_know() -> None:
    policy = with_library_calendar(DEFAULT_POLICY, date(2026, 11, 23))
    gap = calendar_gap(policy, date(2026, 11, 23))
    assert gap is not None and "does not know 2027:" in gap and "weekends only" in gap
    assert (
        calendar_gap(with_library_calendar(DEFAULT_POLICY, date(2025, 6, 1)), date(2025, 6, 1))
        is None
    )
    bare = calendar_gap(DEFAULT_POLICY, date(2026, 1, 5))
    assert bare is not None and "(no calendar) does not know 2026 and 2027" in bare
