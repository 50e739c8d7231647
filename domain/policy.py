"""The deadline policy: the 7135 ladder as versioned data (its sources: docs/rules.md).

A policy is loaded once when a case opens and kept with the case, so a later change of
policy never moves the deadlines of cases already running; its version is stamped on
every deadline, warning and escalation.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, TypedDict
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, field_validator

from domain.calendar import WorkCalendar, start_of_day, working_days_end
from domain.model import (
    Frozen,
    HandlingClass,
    Level,
    Loop,
    ResidentCategory,
    Severity,
    replaced,
)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be a positive duration, e.g. PT7M or P1D")
    return value


Limit = Annotated[timedelta, AfterValidator(_positive)]


class WorkingDays(Frozen):
    """A limit in working days (JSON `{"working_days": 5}`): weekends, public holidays and
    make-up working days as the policy's calendar has them; it ends at local midnight after
    the last working day (the start day is not counted)."""

    working_days: int = Field(ge=1, le=60)


# A limit in natural time (ISO 8601 duration, e.g. "P3D") or in working days.
Span = Limit | WorkingDays


class Clock(StrEnum):
    ON_SITE = "on_site"  # dispatch -> check_in
    RESOLVE = "resolve"  # dispatch (or reopen, escalation, deliberation) -> report_resolution
    REVISIT = "revisit"  # feedback accepted -> record_revisit
    DELIBERATE = "deliberate"  # self-governance dispatch -> record_deliberation (talk day)
    DEPARTMENT = "department"  # summon_departments -> that department's report
    INTAKE = "intake"  # opening (or a return approved) -> dispatch
    CLAIM = "claim"  # dispatch -> claim (秒认领)
    FEEDBACK = "feedback"  # report_resolution -> the resident's feedback


# Clocks that pass the case to the level (or loop) above when they run out, and turn it
# red once the district's has run out too.
LADDER_CLOCKS = (Clock.RESOLVE, Clock.INTAKE)


class CommunityLimits(Frozen):
    minor: Span = timedelta(days=1)
    major: Span = timedelta(days=3)


class LoopLimits(Frozen):
    """The time each loop of the 7135 rule has for a case, from when the case enters it."""

    micro_grid: Span = timedelta(days=1)
    grid: Span = timedelta(days=3)
    street: Span = timedelta(days=5)
    district: Span = timedelta(days=5)

    def of(self, loop: Loop) -> Span:
        return getattr(self, loop.value)  # type: ignore[no-any-return]


class RevisitRule(Frozen):
    """What a resident category requires of the revisit (三必问四必访)."""

    in_person: bool = True
    within: Span | None = None  # None: the policy's revisit limit


class DeadlinePolicy(Frozen):
    version: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,40}$")]
    timezone: str = "Asia/Shanghai"
    warn_ratio: float = Field(default=0.8, gt=0, lt=1)
    on_site: Limit = timedelta(minutes=7)
    resolve_community: CommunityLimits = CommunityLimits()
    resolve_street: Span = timedelta(days=5)
    resolve_district: Span = timedelta(days=5)
    revisit: Span = timedelta(days=7)
    district_reminder: Limit = timedelta(days=1)
    # The fields below are absent from policies recorded before they existed; absent, the
    # case behaves as it did then (replay of old histories derives the same events).
    # A self-governance case waits in deliberation for its community's talk day: this is
    # the wait before a talk day is set for it (the agenda sets the exact day). None: no
    # deliberation clock, the resolve clock starts at dispatch.
    deliberation: Span | None = None
    # Each summoned department's part (街道吹哨、部门报到). None: no department clocks.
    department: Span | None = None
    # Revisit requirements by resident category; the strictest of the reporter's applies.
    revisit_rules: dict[ResidentCategory, RevisitRule] = {}
    # Holidays and make-up working days for limits in working days; without one (or
    # beyond its years) Monday to Friday count and the deadline's label says so.
    calendar: WorkCalendar | None = None
    # Version 2026.3 (docs/rules.md): no open case waits without a running clock, the
    # three loops of 7135, the five ways of handling, reviewed returns, the light apart
    # from the record. Each rule is off in a policy that lacks its field.
    # The report must be dispatched within this, by the community; then by the street,
    # then the district (a fresh clock at each), overdue reminders after the district's.
    intake: Span | None = None
    # A dispatched case must be claimed within this (秒认领); late: recorded, yellow.
    claim: Span | None = None
    # The resident's feedback after the resolution; no answer within this: recorded as
    # not rated and the case goes on to the revisit.
    feedback: Span | None = None
    # The revisit is recorded no earlier than this after the feedback (or its absence).
    revisit_earliest: Span | None = None
    # A missed revisit reminds this often until it is recorded.
    revisit_reminder: Limit | None = None
    # The loops of 7135 for the resolve clock (replacing the level limits above).
    loops: LoopLimits | None = None
    # The handling classes whose handler must be on site within `on_site` (community
    # level); None: every class.
    on_site_for: list[HandlingClass] | None = None
    # The five ways of handling change the path (immediate: resolved after check-in with
    # no deliberation; explanation: explained, no visit; joint: departments summoned
    # before the resolution).
    handling_paths: bool = False
    # A return (退单) is a request the dispatcher reviews; the resolve clock keeps running.
    reviewed_returns: bool = False
    # The flag the UI filters on is the current light, not the worst colour so far.
    flag_is_light: bool = False
    # A revisit is recorded with the answers to the three questions (三必问: `checklist`).
    # Left out of the JSON while off, so a policy recorded without it reads as before.
    revisit_checklist: Annotated[bool, Field(exclude_if=lambda v: not v)] = False

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

    def resolve_limit(self, level: Level, severity: Severity) -> Span:
        if level is Level.COMMUNITY:
            if severity is Severity.HARD:
                return self.resolve_street
            return getattr(self.resolve_community, severity.value)  # type: ignore[no-any-return]
        if level is Level.STREET:
            return self.resolve_street
        return self.resolve_district

    def limit(
        self, clock: Clock, level: Level, severity: Severity, loop: Loop | None = None
    ) -> Span:
        if clock is Clock.RESOLVE and loop is not None and self.loops is not None:
            return self.loops.of(loop)
        if clock is Clock.INTAKE and self.intake is not None:
            return self.intake
        if clock is Clock.CLAIM and self.claim is not None:
            return self.claim
        if clock is Clock.FEEDBACK and self.feedback is not None:
            return self.feedback
        if clock is Clock.ON_SITE:
            return self.on_site
        if clock is Clock.REVISIT:
            return self.revisit
        if clock is Clock.DELIBERATE and self.deliberation is not None:
            return self.deliberation
        if clock is Clock.DEPARTMENT and self.department is not None:
            return self.department
        return self.resolve_limit(level, severity)

    def end(self, start: datetime, span: Span) -> tuple[datetime, str]:
        """When `span` from `start` runs out, and a note when the calendar could not
        count every day (years it does not know: weekends only)."""
        if isinstance(span, timedelta):
            return start + span, ""
        counted = working_days_end(start, span.working_days, ZoneInfo(self.timezone), self.calendar)
        note = ""
        if counted.unknown_years:
            years = ", ".join(str(y) for y in counted.unknown_years)
            name = self.calendar.name if self.calendar else "no calendar"
            note = f" (holidays of {years} unknown to {name}: weekends only)"
        return counted.at, note

    def deadline(
        self,
        clock: Clock,
        level: Level,
        severity: Severity,
        start: datetime,
        *,
        span: Span | None = None,
        what: str | None = None,
        loop: Loop | None = None,
    ) -> Deadline:
        """The clock `clock` from `start`: the policy's limit (or `span`), warned at the
        policy's ratio of the natural time to its end. `what` replaces the matter and
        level in the label (e.g. a department's name); `loop`, with the policy's loops,
        chooses the resolve limit and is kept on the clock."""
        loop = loop if self.loops is not None else None
        span = self.limit(clock, level, severity, loop) if span is None else span
        due, note = self.end(start, span)
        where = f"{loop.value} loop" if loop is not None else f"{level.value} level"
        subject = what or f"{severity.value} matter, {where}"
        return Deadline(
            clock=clock,
            level=level,
            started_at=start,
            due_at=due,
            warn_at=start + (due - start) * self.warn_ratio,
            label=f"{clock.value}: {subject}, {format_span(span)}{note}",
            policy_version=self.version,
            loop=loop,
        )

    def talk_day_deadline(self, level: Level, started_at: datetime, talk_day: date) -> Deadline:
        """The deliberation clock of a case put on a talk day's agenda: it runs out at
        local midnight after the talk day, with no warning before (waiting is expected)."""
        due = start_of_day(talk_day + timedelta(days=1), ZoneInfo(self.timezone))
        return Deadline(
            clock=Clock.DELIBERATE,
            level=level,
            started_at=started_at,
            due_at=due,
            warn_at=due,
            label=f"deliberate: talk day {talk_day.isoformat()}",
            policy_version=self.version,
        )

    def revisit_rule(self, categories: list[ResidentCategory]) -> RevisitRule:
        """The strictest rule of the reporter's categories: in person if any requires it,
        the shortest interval of those that set one."""
        rules = [self.revisit_rules[c] for c in categories if c in self.revisit_rules]
        spans = [r.within for r in rules if r.within is not None]
        within = min(spans, key=lambda s: self._rough(s)) if spans else None
        return RevisitRule(in_person=any(r.in_person for r in rules), within=within)

    @staticmethod
    def _rough(span: Span) -> timedelta:
        # to pick the shortest of several limits: a working day is taken as 1.4 days
        return span if isinstance(span, timedelta) else timedelta(days=1.4 * span.working_days)


class DeadlineChanges(TypedDict, total=False):
    """What may change in a running clock, by name and type (a test keeps these the
    model's own)."""

    due_at: datetime
    warn_at: datetime
    warned: bool
    breached: bool
    remind_at: datetime | None


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
    # the 7135 loop of a resolve clock (policies with loops); left out of the JSON when
    # None, so clocks recorded before loops existed keep their exact content
    loop: Annotated[Loop | None, Field(exclude_if=lambda v: v is None)] = None

    def next_wake(self) -> datetime | None:
        """When this clock next needs the workflow's attention, if ever."""
        if not self.breached:
            return self.warn_at if not self.warned and self.warn_at < self.due_at else self.due_at
        return self.remind_at

    def moved(self, due_at: datetime, policy: DeadlinePolicy, now: datetime) -> Deadline:
        """The same clock with a new end (an approved extension). A breached clock whose new
        end lies ahead runs again: no "overdue" reminders before that end."""
        warn_at = self.started_at + (due_at - self.started_at) * policy.warn_ratio
        changes: DeadlineChanges = {
            "due_at": due_at,
            "warn_at": warn_at,
            "warned": self.warned and warn_at <= now,
        }
        if self.breached and due_at > now:
            changes |= {"breached": False, "remind_at": None}
        return self.changed(changes)

    def changed(self, changes: DeadlineChanges) -> Deadline:
        """The same clock with `changes` (checked at run time too, as `replaced` does)."""
        return replaced(self, changes)


def format_span(span: Span) -> str:
    if isinstance(span, timedelta):
        return format_duration(span)
    n = span.working_days
    return f"{n} working day{'s' if n != 1 else ''}"


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


def format_local(at: datetime, timezone: str) -> str:
    """`at` as people read it: the office's local time, to the minute (2026-11-24 09:30)."""
    return at.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


DEFAULT_POLICY = DeadlinePolicy(
    version="7135-2026.4",
    # a weekly talk day is at most a week away; the agenda sets the exact day
    deliberation=timedelta(days=8),
    department=WorkingDays(working_days=3),
    revisit_rules={
        ResidentCategory.OLD_PARTY_MEMBER: RevisitRule(),
        ResidentCategory.REPEAT_PETITIONER: RevisitRule(),
        ResidentCategory.HOUSEHOLD_IN_DIFFICULTY: RevisitRule(within=timedelta(days=3)),
        ResidentCategory.ELDERLY_LIVING_ALONE: RevisitRule(within=timedelta(days=3)),
        ResidentCategory.RESIDENTS_REPRESENTATIVE: RevisitRule(),
    },
    intake=timedelta(hours=2),
    claim=timedelta(hours=1),
    feedback=timedelta(days=3),
    revisit_earliest=timedelta(days=1),
    revisit_reminder=timedelta(days=1),
    loops=LoopLimits(),
    on_site_for=[HandlingClass.IMMEDIATE, HandlingClass.JOINT, HandlingClass.ESCALATE],
    handling_paths=True,
    reviewed_returns=True,
    flag_is_light=True,
    revisit_checklist=True,
)
"""The built-in policy (7135; every rule and limit with its source: docs/rules.md).
Version 2026.4 added the 三必问 checklist at every revisit and the in-person revisit of
residents' representatives (四必访); 2026.3 added the intake, claim and feedback clocks,
the earliest revisit and the reminders of a missed one, the three loops, the on-site
clock only where a visit is needed, the five ways of handling, reviewed returns and the
light; 2026.2 added the
deliberation clock, department clocks in working days and the revisit rules; 2026.1 had
none of them. The calendar is attached where the policy is loaded (infra.settings), from
the chinese-calendar package."""
