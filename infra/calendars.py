"""Working-day calendars from the `chinese-calendar` library (State Council holiday notices).

Loaded outside workflow code (the library is data that changes with each release) and
carried in the policy, so a running case never sees its calendar change under it.
"""

from __future__ import annotations

from datetime import date

import chinese_calendar  # type: ignore[import-untyped]
from chinese_calendar import constants

from domain.calendar import WorkCalendar
from domain.policy import DeadlinePolicy

# the last year whose holidays the installed library knows
LAST_YEAR: int = max(constants.holidays).year


def library_calendar(from_year: int) -> WorkCalendar:
    """The library's holidays and make-up working days from `from_year` to its last year.

    Older years are left out, and so are holidays on a weekend (they change nothing): the
    calendar travels in every case's history, so it is kept small.
    """
    holidays: dict[date, str] = constants.holidays
    workdays: dict[date, str] = constants.workdays
    if from_year > LAST_YEAR:
        raise ValueError(f"chinese-calendar knows years up to {LAST_YEAR}, not {from_year}")
    return WorkCalendar(
        name=f"chinese-calendar {chinese_calendar.__version__}",
        first_year=from_year,
        last_year=LAST_YEAR,
        holidays=frozenset(d for d in holidays if d.year >= from_year and d.weekday() < 5),
        workdays=frozenset(d for d in workdays if d.year >= from_year),
    )


def with_library_calendar(policy: DeadlinePolicy, today: date) -> DeadlinePolicy:
    """`policy` with the library's calendar from last year on. When the library is older
    than that, its last year only: deadlines in working days beyond it count weekends only
    and say so in their labels (`calendar_gap` tells the worker to warn)."""
    calendar = library_calendar(min(today.year - 1, LAST_YEAR))
    return policy.model_copy(update={"calendar": calendar})


def calendar_gap(policy: DeadlinePolicy, today: date) -> str | None:
    """A warning when the policy's calendar does not know this year or the next (the State
    Council publishes a year's holidays late in the year before): limits in working days
    then count weekends only there."""
    calendar = policy.calendar
    missing = [
        year
        for year in (today.year, today.year + 1)
        if calendar is None or not calendar.knows(date(year, 1, 1))
    ]
    if not missing:
        return None
    name = calendar.name if calendar else "no calendar"
    years = " and ".join(str(y) for y in missing)
    return (
        f"the working-day calendar ({name}) does not know {years}: deadlines in working days "
        "there count weekends only (update chinese-calendar, or give CASE_POLICY a calendar)"
    )
