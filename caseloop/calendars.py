"""Working-day calendars from the `chinese-calendar` library (State Council holiday notices).

Loaded outside workflow code (the library is data that changes with each release) and
carried in the policy, so a running case never sees its calendar change under it.
"""

from __future__ import annotations

from datetime import date

import chinese_calendar  # type: ignore[import-untyped]
from chinese_calendar import constants

from domain.calendar import WorkCalendar


def library_calendar(from_year: int) -> WorkCalendar:
    """The library's holidays and make-up working days from `from_year` to its last year.

    Older years are left out, and so are holidays on a weekend (they change nothing): the
    calendar travels in every case's history, so it is kept small.
    """
    holidays: dict[date, str] = constants.holidays
    workdays: dict[date, str] = constants.workdays
    last_year = max(holidays).year
    if from_year > last_year:
        raise ValueError(f"chinese-calendar knows years up to {last_year}, not {from_year}")
    return WorkCalendar(
        name=f"chinese-calendar {chinese_calendar.__version__}",
        first_year=from_year,
        last_year=last_year,
        holidays=frozenset(d for d in holidays if d.year >= from_year and d.weekday() < 5),
        workdays=frozenset(d for d in workdays if d.year >= from_year),
    )
