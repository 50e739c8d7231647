"""Fixed starting instants for workflow tests whose outcome depends on the calendar.

A test on the time-skipping server cannot start in the past: its clock begins at the
wall clock's now and only moves forward. So each fixed instant (a weekday, the eve of a
holiday, a make-up working Saturday) is moved forward by whole weeks to lie just ahead of
the server's clock, and the holiday calendar the worker's policy carries is moved by the
same weeks. Weekdays, holidays and make-up days then fall exactly as they did around the
real date, whatever day the suite runs on, and a test can state its expected due dates as
the real dates they are (`Instant.shift` moves them too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from temporalio.testing import WorkflowEnvironment

from domain.calendar import WorkCalendar
from domain.policy import DeadlinePolicy
from infra.calendars import library_calendar

SHANGHAI = ZoneInfo("Asia/Shanghai")
WEEK = timedelta(weeks=1)


def _local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


@dataclass(frozen=True)
class Instant:
    """A named local instant in a year the holiday library knows."""

    name: str
    at: datetime

    def __str__(self) -> str:
        return self.name


# A week of November 2026 with no holiday in or near it, then the days around holidays.
INSTANTS = [
    Instant("monday", _local("2026-11-16T10:00")),
    Instant("tuesday", _local("2026-11-17T10:00")),
    Instant("wednesday", _local("2026-11-18T10:00")),
    Instant("thursday", _local("2026-11-19T10:00")),
    Instant("friday", _local("2026-11-20T10:00")),
    Instant("saturday", _local("2026-11-21T10:00")),
    Instant("sunday", _local("2026-11-22T10:00")),
    # 除夕 holidays 2026-02-15..23; the Saturday before them, 02-14, is worked (调休)
    Instant("spring-festival-eve", _local("2026-02-14T17:00")),
    # National Day 2026-10-01..07; Saturday 10-10 is worked
    Instant("national-day-eve", _local("2026-09-30T17:00")),
    Instant("before-make-up-saturday", _local("2026-10-09T10:00")),
    # New Year's Day 2026-01-01..02 off; Sunday 01-04 is worked
    Instant("new-years-eve", _local("2025-12-31T17:00")),
]

# the library's real calendar over the years the instants lie in
_CALENDAR = library_calendar(2025)


@dataclass(frozen=True)
class Placed:
    """An instant placed on a test server: where its clock is moved to, and the policy
    whose calendar is moved alike."""

    instant: Instant
    weeks: int
    policy: DeadlinePolicy

    @property
    def at(self) -> datetime:
        return self.shift(self.instant.at)

    def shift(self, real: datetime) -> datetime:
        """A real instant near the fixed one, where it falls in the moved calendar."""
        return real + self.weeks * WEEK


def shifted_calendar(calendar: WorkCalendar, weeks: int) -> WorkCalendar:
    """`calendar` with every holiday and make-up day moved by whole weeks (weekdays
    unchanged)."""
    holidays = frozenset(d + weeks * WEEK for d in calendar.holidays)
    workdays = frozenset(d + weeks * WEEK for d in calendar.workdays)
    first = date(calendar.first_year, 1, 1) + weeks * WEEK
    last = date(calendar.last_year, 12, 31) + weeks * WEEK
    return WorkCalendar(
        name=f"{calendar.name}, moved {weeks} weeks",
        first_year=first.year,
        last_year=last.year,
        holidays=holidays,
        workdays=workdays,
    )


def place(instant: Instant, now: datetime, policy: DeadlinePolicy) -> Placed:
    """`instant` moved by the fewest whole weeks that put it at least a minute after
    `now`, and `policy` with the library calendar moved alike."""
    ahead = now + timedelta(minutes=1) - instant.at
    weeks = max(0, math.ceil(ahead / WEEK))
    calendar = shifted_calendar(_CALENDAR, weeks)
    return Placed(instant, weeks, policy.model_copy(update={"calendar": calendar}))


async def skip_to(env: WorkflowEnvironment, placed: Placed) -> None:
    """Move the time-skipping server's clock to the placed instant."""
    now = await env.get_current_time()
    if placed.at > now:
        await env.sleep(placed.at - now)
    assert abs(await env.get_current_time() - placed.at) < timedelta(minutes=1)
