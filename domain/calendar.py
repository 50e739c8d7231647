"""The working-day calendar (工作日历): which days count when a limit is in working days.

A calendar is data: the holidays (法定节假日) and the make-up working days (调休上班日) of
the years it knows. It travels inside the deadline policy, so it is part of every case's
history: its JSON is deterministic (sorted dates) and it holds only the years it needs.

Counting rule: N working days end at local midnight after the Nth working
day. The day the period starts is not counted (期间开始之日不计算在内): counting begins on
the local day after `start`.

Outside the years a calendar knows, and when a policy has no calendar at all, Monday to
Friday count and every year so counted is reported in `unknown_years`, so the caller can
flag a deadline that may ignore a holiday.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Annotated

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    ValidationInfo,
    field_serializer,
    field_validator,
)

from domain.model import Frozen, _no_control_chars

CalendarName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=80),
    AfterValidator(_no_control_chars),
]
Year = Annotated[int, Field(ge=2000, le=2100)]


def _weekday(day: date) -> bool:
    return day.weekday() < 5  # Monday..Friday


class WorkCalendar(Frozen):
    """Holidays and make-up working days of the years `first_year..last_year`."""

    name: CalendarName  # e.g. "chinese-calendar 1.11.0" or a city's own calendar
    first_year: Year
    last_year: Year
    # Days off that would otherwise be working days (a weekend day here changes nothing).
    holidays: frozenset[date] = frozenset()
    # Make-up working days (调休): Saturdays or Sundays that are worked.
    workdays: frozenset[date] = frozenset()

    @field_validator("last_year")
    @classmethod
    def _years_ordered(cls, value: int, info: ValidationInfo) -> int:
        first = info.data.get("first_year")
        if first is not None and value < first:
            raise ValueError("must not be before first_year")
        return value

    @field_validator("holidays", "workdays")
    @classmethod
    def _days_known(cls, value: frozenset[date], info: ValidationInfo) -> frozenset[date]:
        first, last = info.data.get("first_year"), info.data.get("last_year")
        if first is not None and last is not None:
            for day in sorted(value):
                if not first <= day.year <= last:
                    raise ValueError(f"{day} lies outside first_year..last_year")
        if info.field_name == "workdays":
            for day in sorted(value):
                if _weekday(day):
                    raise ValueError(f"{day} is a weekday; make-up working days are weekends")
            both = sorted(value & info.data.get("holidays", frozenset()))
            if both:
                raise ValueError(f"{both[0]} is in both holidays and workdays")
        return value

    @field_serializer("holidays", "workdays")
    def _sorted(self, value: frozenset[date]) -> list[date]:
        return sorted(value)  # a set's order is arbitrary; the history needs the same bytes

    def knows(self, day: date) -> bool:
        return self.first_year <= day.year <= self.last_year

    def is_working_day(self, day: date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return _weekday(day)

    def working_days_end(self, start: datetime, n: int, tz: tzinfo) -> WorkingDaysEnd:
        return working_days_end(start, n, tz, self)


class WorkingDaysEnd(Frozen):
    at: datetime  # aware, in the timezone the days were counted in
    # Years counted Monday..Friday only because the calendar does not know them.
    unknown_years: tuple[int, ...] = ()


def working_days_end(
    start: datetime, n: int, tz: tzinfo, calendar: WorkCalendar | None
) -> WorkingDaysEnd:
    """The end of `n` working days from `start`, counted on local dates in `tz`.

    `calendar=None` counts Monday..Friday and reports every year it counted as unknown.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must carry a timezone offset")
    day = start.astimezone(tz).date()
    unknown: set[int] = set()
    counted = 0
    while counted < n:
        day += timedelta(days=1)
        if calendar is not None and calendar.knows(day):
            working = calendar.is_working_day(day)
        else:
            unknown.add(day.year)
            working = _weekday(day)
        if working:
            counted += 1
    end = start_of_day(day + timedelta(days=1), tz)  # midnight after the Nth working day
    return WorkingDaysEnd(at=end, unknown_years=tuple(sorted(unknown)))


def start_of_day(day: date, tz: tzinfo) -> datetime:
    """The first instant of local `day` in `tz`.

    The round trip through UTC turns a wall-clock midnight that does not exist (a DST jump
    at 00:00, e.g. America/Santiago) into the real first instant (01:00); a midnight that
    occurs twice gives the earlier one.
    """
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC).astimezone(tz)
