"""The deadline policy: the 7135 ladder (seed 004) as versioned data.

A policy is loaded once when a case opens and kept with the case, so a later change of
policy never moves the deadlines of cases already running; its version is stamped on
every deadline, warning and escalation.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, field_validator

from domain.model import Frozen, Level, Severity


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be a positive duration, e.g. PT7M or P1D")
    return value


Limit = Annotated[timedelta, AfterValidator(_positive)]


class Clock(StrEnum):
    ON_SITE = "on_site"  # dispatch -> check_in
    RESOLVE = "resolve"  # dispatch (or reopen, or escalation) -> report_resolution
    REVISIT = "revisit"  # feedback accepted -> record_revisit


class CommunityLimits(Frozen):
    minor: Limit = timedelta(days=1)
    major: Limit = timedelta(days=3)


class DeadlinePolicy(Frozen):
    version: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,40}$")]
    timezone: str = "Asia/Shanghai"
    warn_ratio: float = Field(default=0.8, gt=0, lt=1)
    on_site: Limit = timedelta(minutes=7)
    resolve_community: CommunityLimits = CommunityLimits()
    resolve_street: Limit = timedelta(days=5)
    resolve_district: Limit = timedelta(days=5)
    revisit: Limit = timedelta(days=7)
    district_reminder: Limit = timedelta(days=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA timezone name such as Asia/Shanghai") from None
        return value

    def local(self, at: datetime) -> datetime:
        """`at` in the policy's timezone: the office's wall clock."""
        return at.astimezone(ZoneInfo(self.timezone))

    def resolve_limit(self, level: Level, severity: Severity) -> timedelta:
        if level is Level.COMMUNITY:
            if severity is Severity.HARD:
                return self.resolve_street
            return getattr(self.resolve_community, severity.value)  # type: ignore[no-any-return]
        if level is Level.STREET:
            return self.resolve_street
        return self.resolve_district

    def limit(self, clock: Clock, level: Level, severity: Severity) -> timedelta:
        if clock is Clock.ON_SITE:
            return self.on_site
        if clock is Clock.REVISIT:
            return self.revisit
        return self.resolve_limit(level, severity)

    def deadline(self, clock: Clock, level: Level, severity: Severity, start: datetime) -> Deadline:
        limit = self.limit(clock, level, severity)
        return Deadline(
            clock=clock,
            level=level,
            started_at=start,
            due_at=start + limit,
            warn_at=start + limit * self.warn_ratio,
            label=f"{clock.value}: {severity.value} matter, {level.value} level, "
            f"{format_duration(limit)}",
            policy_version=self.version,
        )


class Deadline(Frozen):
    """One running clock of a case."""

    clock: Clock
    level: Level
    started_at: datetime
    due_at: datetime
    warn_at: datetime
    label: str
    policy_version: str
    warned: bool = False
    breached: bool = False
    remind_at: datetime | None = None  # next daily warning once breached at district

    def next_wake(self) -> datetime | None:
        """When this clock next needs the workflow's attention, if ever."""
        if not self.breached:
            return self.warn_at if not self.warned and self.warn_at < self.due_at else self.due_at
        return self.remind_at

    def moved(self, due_at: datetime, policy: DeadlinePolicy, now: datetime) -> Deadline:
        """The same clock with a new end (an approved extension). A breached clock whose new
        end lies ahead runs again: no "overdue" reminders before that end."""
        warn_at = self.started_at + (due_at - self.started_at) * policy.warn_ratio
        update: dict[str, object] = {
            "due_at": due_at,
            "warn_at": warn_at,
            "warned": self.warned and warn_at <= now,
        }
        if self.breached and due_at > now:
            update |= {"breached": False, "remind_at": None}
        return self.model_copy(update=update)


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [
        f"{n} {unit}{'s' if n != 1 else ''}"
        for n, unit in ((days, "day"), (hours, "hour"), (minutes, "minute"))
        if n
    ]
    return " ".join(parts) or f"{seconds} seconds"


DEFAULT_POLICY = DeadlinePolicy(version="7135-2026.1")
