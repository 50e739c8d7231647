"""The working-day calendar: counting rule, unknown years, validation, JSON."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from domain.calendar import WorkCalendar, WorkingDaysEnd, working_days_end

SHANGHAI = ZoneInfo("Asia/Shanghai")


def days(first: date, last: date) -> frozenset[date]:
    return frozenset(first + timedelta(days=i) for i in range((last - first).days + 1))


# The State Council's 2026 notice, as far as these tests need it.
CAL_2026 = WorkCalendar(
    name="test 2026",
    first_year=2026,
    last_year=2026,
    holidays=days(date(2026, 2, 15), date(2026, 2, 23))  # 春节
    | days(date(2026, 10, 1), date(2026, 10, 7)),  # 国庆节
    workdays=frozenset(
        {
            date(2026, 2, 14),  # Saturday
            date(2026, 2, 28),  # Saturday
            date(2026, 9, 20),  # Sunday
            date(2026, 10, 10),  # Saturday
        }
    ),
)


def local(y: int, m: int, d: int, hh: int = 9, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SHANGHAI)


def midnight(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=SHANGHAI)


def end(start: datetime, n: int, cal: WorkCalendar | None = CAL_2026) -> datetime:
    result = working_days_end(start, n, SHANGHAI, cal)
    assert result.unknown_years == (), result.unknown_years
    return result.at


def test_is_working_day_follows_holidays_make_up_days_and_weekdays() -> None:
    assert not CAL_2026.is_working_day(date(2026, 10, 1))  # Thursday, National Day
    assert not CAL_2026.is_working_day(date(2026, 10, 5))  # Monday in the holiday
    assert CAL_2026.is_working_day(date(2026, 10, 10))  # Saturday, make-up day
    assert CAL_2026.is_working_day(date(2026, 9, 20))  # Sunday, make-up day
    assert not CAL_2026.is_working_day(date(2026, 10, 11))  # ordinary Sunday
    assert CAL_2026.is_working_day(date(2026, 10, 9))  # ordinary Friday
    assert CAL_2026.knows(date(2026, 12, 31))
    assert not CAL_2026.knows(date(2027, 1, 1))
    assert not CAL_2026.knows(date(2025, 12, 31))


def test_outside_known_years_only_weekends_are_off() -> None:
    assert CAL_2026.is_working_day(date(2027, 1, 1))  # a Friday; the calendar cannot know
    assert not CAL_2026.is_working_day(date(2027, 1, 2))  # Saturday


def test_n_1_counts_from_the_next_day_and_ends_at_midnight_after_it() -> None:
    # Monday 09:00: the first working day is Tuesday, the end is Wednesday 00:00.
    assert end(local(2026, 11, 23), 1) == midnight(2026, 11, 25)
    assert end(local(2026, 11, 23), 3) == midnight(2026, 11, 27)


def test_the_start_day_never_counts_even_at_its_first_minute() -> None:
    assert end(local(2026, 11, 23, 0, 0), 1) == midnight(2026, 11, 25)


def test_friday_evening_start_skips_the_weekend() -> None:
    assert end(local(2026, 11, 20, 21, 45), 1) == midnight(2026, 11, 24)  # Monday counted
    assert end(local(2026, 11, 20, 21, 45), 5) == midnight(2026, 11, 28)  # ends Sat 00:00


def test_national_day_holidays_are_skipped_and_make_up_saturday_counts() -> None:
    # Wednesday 30 Sep: 1-7 Oct are off, 8 Oct (Thu) is the first working day.
    assert end(local(2026, 9, 30), 1) == midnight(2026, 10, 9)
    # Thu 8, Fri 9, Sat 10 (调休上班): the third working day is the Saturday.
    assert end(local(2026, 9, 30), 3) == midnight(2026, 10, 11)
    # Sunday 11 is off again: the fourth is Monday 12.
    assert end(local(2026, 9, 30), 4) == midnight(2026, 10, 13)


def test_make_up_sunday_before_national_day_counts() -> None:
    # Saturday 19 Sep: Sunday 20 is worked, so one working day ends Monday 00:00.
    assert end(local(2026, 9, 19), 1) == midnight(2026, 9, 21)


def test_spring_festival_2026() -> None:
    # Friday 13 Feb: Sat 14 is worked, then 15-23 off, Tue 24 next.
    assert end(local(2026, 2, 13), 1) == midnight(2026, 2, 15)
    assert end(local(2026, 2, 13), 2) == midnight(2026, 2, 25)
    # Start inside the holiday: Tue 24 .. Fri 27, Sat 28 is a make-up day.
    assert end(local(2026, 2, 18), 5) == midnight(2026, 3, 1)


def test_start_is_read_on_the_local_date_not_the_utc_date() -> None:
    # 2026-11-23T23:30+08:00 is 15:30Z on the same date; 00:30+08:00 on the 24th is the
    # 23rd in UTC, yet it is counted from the Shanghai date (the 24th).
    late = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)
    assert end(late, 1) == midnight(2026, 11, 25)
    just_after_midnight = datetime(2026, 11, 23, 16, 30, tzinfo=UTC)  # 24th 00:30 local
    assert end(just_after_midnight, 1) == midnight(2026, 11, 26)


def test_result_is_aware_and_in_the_counting_zone() -> None:
    result = working_days_end(datetime(2026, 11, 23, 1, tzinfo=UTC), 1, SHANGHAI, CAL_2026)
    assert result.at.tzinfo is SHANGHAI
    assert result.at.utcoffset() == timedelta(hours=8)
    assert result.at.isoformat() == "2026-11-25T00:00:00+08:00"


def test_method_and_function_agree() -> None:
    start = local(2026, 9, 30)
    assert CAL_2026.working_days_end(start, 3, SHANGHAI) == working_days_end(
        start, 3, SHANGHAI, CAL_2026
    )


def test_span_into_an_unknown_year_counts_weekdays_and_flags_the_year() -> None:
    # Wed 30 Dec 2026: Thu 31 (known), then 2027: Fri 1 Jan counts (not known as a holiday),
    # Mon 4 Jan.
    result = working_days_end(local(2026, 12, 30), 3, SHANGHAI, CAL_2026)
    assert result == WorkingDaysEnd(at=midnight(2027, 1, 5), unknown_years=(2027,))
    # Counted entirely inside the known year (Wed 30, Thu 31): nothing flagged, even
    # though the end, midnight after the 31st, lies in 2027.
    within = working_days_end(local(2026, 12, 29), 2, SHANGHAI, CAL_2026)
    assert within == WorkingDaysEnd(at=midnight(2027, 1, 1), unknown_years=())


def test_no_calendar_counts_monday_to_friday_and_flags_every_year() -> None:
    result = working_days_end(local(2026, 9, 30), 3, SHANGHAI, None)
    assert result == WorkingDaysEnd(at=midnight(2026, 10, 6), unknown_years=(2026,))
    across = working_days_end(local(2026, 12, 30), 3, SHANGHAI, None)
    assert across.unknown_years == (2026, 2027)


def test_start_of_day_is_correct_where_midnight_does_not_exist() -> None:
    # America/Santiago jumps from 00:00 to 01:00 on Sunday 6 Sep 2026.
    santiago = ZoneInfo("America/Santiago")
    cal = WorkCalendar(
        name="make-up Saturday",
        first_year=2026,
        last_year=2026,
        workdays=frozenset({date(2026, 9, 5)}),
    )
    result = working_days_end(datetime(2026, 9, 4, 10, tzinfo=santiago), 1, santiago, cal)
    assert result.at.astimezone(UTC) == datetime(2026, 9, 6, 4, tzinfo=UTC)
    assert result.at.isoformat() == "2026-09-06T01:00:00-03:00"


@pytest.mark.parametrize("n", [0, -1])
def test_n_must_be_positive(n: int) -> None:
    with pytest.raises(ValueError, match="n must be at least 1"):
        working_days_end(local(2026, 11, 23), n, SHANGHAI, CAL_2026)


def test_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        working_days_end(datetime(2026, 11, 23, 9), 1, SHANGHAI, CAL_2026)


def invalid(**fields: object) -> str:
    base: dict[str, object] = {"name": "x", "first_year": 2026, "last_year": 2026}
    with pytest.raises(ValidationError) as caught:
        WorkCalendar.model_validate(base | fields)
    return str(caught.value)


def test_a_date_in_both_sets_is_refused_naming_the_field() -> None:
    message = invalid(holidays=[date(2026, 10, 3)], workdays=[date(2026, 10, 3)])
    assert "workdays" in message
    assert "both holidays and workdays" in message


def test_a_weekday_make_up_day_is_refused_naming_the_field() -> None:
    message = invalid(workdays=[date(2026, 10, 9)])  # a Friday
    assert "workdays" in message
    assert "is a weekday" in message


def test_dates_outside_the_known_years_are_refused() -> None:
    message = invalid(holidays=[date(2027, 1, 1)])
    assert "holidays" in message
    assert "outside first_year..last_year" in message
    assert "workdays" in invalid(workdays=[date(2025, 9, 28)])


def test_years_must_be_ordered_and_name_bounded() -> None:
    assert "must not be before first_year" in invalid(first_year=2026, last_year=2025)
    assert "name" in invalid(name="")
    assert "name" in invalid(name="x" * 81)
    assert "extra" in invalid(extra_field=1)


def test_a_holiday_on_a_weekend_is_accepted() -> None:
    cal = WorkCalendar(
        name="x", first_year=2026, last_year=2026, holidays=frozenset({date(2026, 10, 3)})
    )
    assert not cal.is_working_day(date(2026, 10, 3))


def test_json_is_sorted_and_round_trips() -> None:
    dumped = CAL_2026.model_dump_json()
    again = WorkCalendar.model_validate_json(dumped)
    assert again == CAL_2026
    assert again.model_dump_json() == dumped
    data = CAL_2026.model_dump(mode="json")
    assert data["workdays"] == ["2026-02-14", "2026-02-28", "2026-09-20", "2026-10-10"]
    assert data["holidays"] == sorted(data["holidays"])
    assert len(data["holidays"]) == 16
    # Built from differently ordered input, the bytes are the same.
    reordered = WorkCalendar(
        name=CAL_2026.name,
        first_year=2026,
        last_year=2026,
        holidays=frozenset(sorted(CAL_2026.holidays, reverse=True)),
        workdays=frozenset(sorted(CAL_2026.workdays, reverse=True)),
    )
    assert reordered.model_dump_json() == dumped
