"""Talk days (周二说事日, 议事日): when each community deliberates its cases.

A community holds a weekly talk day (e.g. every Tuesday at 14:00, 西郊社区 in the Dali
report, docs/rules.md) or
a monthly deliberation day (e.g. the 15th). The day before each talk day, at a fixed local
hour (`TalkDays.agenda_at`, 17:00 by default), the community's agenda is drawn up from
the self-governance cases waiting for deliberation, and each is told its talk day.

Pure: no I/O, no clock. Times are local to `TalkDays.timezone`.

Which talk day an agenda is for (`next_talk_day`): the first talk day whose meeting has
not begun at the given moment. The agenda drawn up on Monday at 17:00 finds Tuesday's
meeting; an agenda drawn up late, on the talk day itself before the meeting (a catch-up
after an outage), still finds that day's meeting; one drawn up after the meeting began
finds the next one.

Why `day_of_month` is 2..28: the agenda runs the day before, and a calendar schedule can
say "the 14th" but not "the last day of the previous month" (the 1st would need that),
and every month has a 28th but not a 29th.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from datetime import time as TimeOfDay
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, field_validator, model_validator

from domain.model import Frozen, OrgId, ShortText

DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_AGENDA_AT = "17:00"


class Weekday(StrEnum):
    MONDAY = "monday"
    TUESDAY = "tuesday"
    WEDNESDAY = "wednesday"
    THURSDAY = "thursday"
    FRIDAY = "friday"
    SATURDAY = "saturday"
    SUNDAY = "sunday"

    @property
    def number(self) -> int:
        """0 for Monday … 6 for Sunday, as `date.weekday()` counts."""
        return list(Weekday).index(self)

    @classmethod
    def of(cls, day: date) -> Weekday:
        return list(cls)[day.weekday()]

    def before(self) -> Weekday:
        """The day before (Monday before Tuesday, Sunday before Monday)."""
        return list(Weekday)[(self.number - 1) % 7]


def _local_time(value: str) -> str:
    parts = value.split(":")
    if (
        len(value) != 5
        or len(parts) != 2
        or not all(p.isascii() and p.isdigit() for p in parts)
        or int(parts[0]) > 23
        or int(parts[1]) > 59
    ):
        raise ValueError("must be a local time HH:MM (24-hour clock), e.g. 14:00")
    return value


def _day_of_month(value: int) -> int:
    if not 2 <= value <= 28:
        raise ValueError(
            "must be between 2 and 28: every month has it, and the agenda, drawn up "
            "the day before, falls in the same month"
        )
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA timezone name such as Asia/Shanghai") from None
    return value


LocalTime = Annotated[str, AfterValidator(_local_time)]  # "HH:MM"
DayOfMonth = Annotated[int, AfterValidator(_day_of_month)]
TimezoneName = Annotated[str, Field(max_length=64), AfterValidator(_timezone)]


def clock_time(value: str) -> TimeOfDay:
    """A validated "HH:MM" as a time of day."""
    hours, minutes = value.split(":")
    return TimeOfDay(int(hours), int(minutes))


class TalkDayRule(Frozen):
    """When one community holds its talk day: weekly on `weekday`, or monthly on
    `day_of_month`, at `time` (local), optionally at `place`."""

    community_id: OrgId
    street_id: OrgId | None = None
    weekday: Weekday | None = None
    day_of_month: DayOfMonth | None = None
    time: LocalTime
    place: ShortText | None = None

    @model_validator(mode="after")
    def _one_rhythm(self) -> TalkDayRule:
        if (self.weekday is None) == (self.day_of_month is None):
            raise ValueError(
                "weekday, day_of_month: set exactly one of them "
                "(weekly on a weekday, or monthly on a day of the month)"
            )
        return self

    @property
    def meeting_time(self) -> TimeOfDay:
        return clock_time(self.time)

    def is_talk_day(self, day: date) -> bool:
        if self.weekday is not None:
            return Weekday.of(day) is self.weekday
        return day.day == self.day_of_month

    def describe(self) -> str:
        """ "every tuesday 14:00" / "monthly on the 15th 09:30", plus the place."""
        if self.weekday is not None:
            when = f"every {self.weekday.value} {self.time}"
        else:
            when = f"monthly on day {self.day_of_month} {self.time}"
        return when + (f" at {self.place}" if self.place else "")


class TalkDays(Frozen):
    """The talk-day configuration (env CASE_TALK_DAYS names a JSON file of this shape)."""

    timezone: TimezoneName = DEFAULT_TIMEZONE
    agenda_at: LocalTime = DEFAULT_AGENDA_AT  # local time the day before a talk day
    communities: list[TalkDayRule] = []

    @field_validator("communities")
    @classmethod
    def _unique(cls, rules: list[TalkDayRule]) -> list[TalkDayRule]:
        seen: dict[str, int] = {}
        for index, rule in enumerate(rules):
            if rule.community_id in seen:
                raise ValueError(
                    f"community_id: item {index} configures community "
                    f"{rule.community_id} again (first at item {seen[rule.community_id]})"
                )
            seen[rule.community_id] = index
        return rules


class AgendaTime(Frozen):
    """When the agenda of a talk day is drawn up: the day before the talk day, at a fixed
    local time. Weekly rules give `weekday`, monthly rules `day_of_month`; `hour` and
    `minute` are local to the configuration's timezone."""

    weekday: Weekday | None = None
    day_of_month: int | None = Field(default=None, ge=1, le=27)
    hour: int = Field(ge=0, le=23)
    minute: int = Field(ge=0, le=59)


def agenda_time(rule: TalkDayRule, at: str = DEFAULT_AGENDA_AT) -> AgendaTime:
    """The recurring moment a rule's agenda is drawn up: the day before each talk day, at
    `at` (local "HH:MM")."""
    moment = clock_time(_local_time(at))
    if rule.weekday is not None:
        return AgendaTime(weekday=rule.weekday.before(), hour=moment.hour, minute=moment.minute)
    assert rule.day_of_month is not None
    return AgendaTime(day_of_month=rule.day_of_month - 1, hour=moment.hour, minute=moment.minute)


# Every rule has a talk day within a month and a half of any day.
_SEARCH_DAYS = 62


def _meeting(rule: TalkDayRule, day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, rule.meeting_time, tzinfo=zone)


def next_talk_day(rule: TalkDayRule, after: datetime, tz: str = DEFAULT_TIMEZONE) -> date:
    """The first talk day whose meeting (local date and `rule.time` in `tz`) starts
    strictly after `after` (an aware datetime): on the day before, that is the next day's
    meeting; on the talk day itself, that day's meeting until it begins."""
    if after.tzinfo is None:
        raise ValueError("after: must carry a timezone offset")
    zone = ZoneInfo(tz)
    local = after.astimezone(zone)
    day = local.date()
    for offset in range(_SEARCH_DAYS):
        candidate = day + timedelta(days=offset)
        if rule.is_talk_day(candidate) and _meeting(rule, candidate, zone) > local:
            return candidate
    raise AssertionError("unreachable: every rule has a talk day within two months")


def next_agenda_at(
    rule: TalkDayRule, after: datetime, tz: str = DEFAULT_TIMEZONE, at: str = DEFAULT_AGENDA_AT
) -> datetime:
    """The first moment strictly after `after` at which the rule's agenda is drawn up
    (what the Temporal Schedule's next action time should be), in `tz`."""
    if after.tzinfo is None:
        raise ValueError("after: must carry a timezone offset")
    zone = ZoneInfo(tz)
    moment = clock_time(_local_time(at))
    local = after.astimezone(zone)
    for offset in range(_SEARCH_DAYS):
        day = local.date() + timedelta(days=offset)
        candidate = datetime.combine(day, moment, tzinfo=zone)
        if rule.is_talk_day(day + timedelta(days=1)) and candidate > local:
            return candidate
    raise AssertionError("unreachable: every rule has a talk day within two months")
