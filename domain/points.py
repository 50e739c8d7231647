"""Points of the party members and volunteers who take cases (党员接单), per grid and month.

The Dali report describes the service: "落实'群众点单、组织建单、党员接单'服务模式" (the
resident asks, the community offers the case with `offer_case`, a party member takes it
with `claim`); news reports count what party members took and completed the same way
("党员认领并完成居民'微心愿'22个"). The Choucheng report gives the two schemes the points
feed: "持续运用党员'十二分制'管理机制 … 引导党员主动参与联系户走访、党群志愿
服务" for party members, and "探索建立志愿积分系统，居民参与社区服务可获得一定志愿积分，可兑换社区
准物业免费服务" for volunteers.

Neither report gives the arithmetic. Our assumptions, in `POINTS_2026_1`:

- a party member earns one point for each completed case they took, toward the twelve a
  party member should reach in a calendar year (十二分制), and at most twelve a year;
- a volunteer earns two volunteer points for a completed minor case, one more when it was
  resolved on time (no resolve deadline missed); the points are exchanged for the
  community's property services, which this engine does not record.

A case counts for whoever took it when it is archived as completed, the last resolution
was reported by them, and the resident's last feedback accepted it with a content rating
(satisfied, very or basically satisfied); a case whose feedback went unanswered earns
nothing. It counts in the month (and year) it was archived, cut at local midnight in the
policy's timezone.

The scheme is data, versioned like the deadline policy: every report carries its version
and its rules, so each figure can be recomputed from the events in `case_events`. Pure:
the events come from activities/points.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from pydantic import Field

from domain.events import (
    CaseArchived,
    CaseClaimed,
    CaseDispatched,
    Event,
    FeedbackRecorded,
    FeedbackUnanswered,
    ResolutionReported,
)
from domain.model import Frozen, OrgId, Outcome, Role, Severity, replaced
from domain.ranking import month_bounds, parse_month

# The events the points are computed from (the others change nothing here).
POINTS_EVENT_TYPES = (
    "case_dispatched",
    "case_claimed",
    "resolution_reported",
    "feedback_recorded",
    "feedback_unanswered",
    "case_archived",
)


class RolePoints(Frozen):
    """How the members of one role earn points for a completed case they took."""

    case_points: dict[Severity, int]  # by the case's severity; a severity not named earns 0
    on_time_bonus: int = Field(default=0, ge=0)  # when no resolve deadline was missed
    year_cap: int | None = Field(default=None, ge=1)  # at most this many points a year

    def earned(self, severity: Severity, on_time: bool) -> int:
        """The points of one case, before the year's cap."""
        return self.case_points.get(severity, 0) + (self.on_time_bonus if on_time else 0)


class PointsScheme(Frozen):
    """A version of the points rules and every number in them."""

    version: str
    party_member: RolePoints  # 党员十二分制
    volunteer: RolePoints  # 志愿积分

    def for_role(self, role: Role) -> RolePoints:
        if role is Role.PARTY_MEMBER:
            return self.party_member
        if role is Role.VOLUNTEER:
            return self.volunteer
        raise ValueError(f"no points for the role {role.value}")

    def rules(self) -> list[str]:
        """The scheme in words, as printed on every report."""

        def role(name: str, r: RolePoints) -> str:
            per = ", ".join(f"{p} per {s.value} case" for s, p in r.case_points.items())
            bonus = f", +{r.on_time_bonus} when resolved on time" if r.on_time_bonus else ""
            cap = (
                f"; at most {r.year_cap} a calendar year (points beyond it are not counted)"
                if r.year_cap
                else ""
            )
            return f"{name}: {per}{bonus}{cap}"

        return [
            "a case counts for the party member or volunteer who took it (offer_case, then "
            "claim) when it was archived as completed, they reported its last resolution, "
            "and the resident's last feedback accepted it as satisfied, very or basically "
            "satisfied; a case whose feedback went unanswered earns nothing",
            "a case counts in the month and year it was archived, cut at local midnight in "
            "the policy's timezone",
            role("party members (党员十二分制, toward the year's 12)", self.party_member),
            role(
                "volunteers (志愿积分, exchanged for the community's property services)",
                self.volunteer,
            ),
        ]


POINTS_2026_1 = PointsScheme(
    version="points-2026.1",
    # our assumption: one point per case toward the 12 of 十二分制, never more than 12
    party_member=RolePoints(case_points={Severity.MINOR: 1}, year_cap=12),
    # our assumption: 2 for a minor case, +1 on time; only minor cases are offered
    volunteer=RolePoints(case_points={Severity.MINOR: 2}, on_time_bonus=1),
)
CURRENT_SCHEME = POINTS_2026_1


class CaseEvents(Frozen):
    """One case's events as the points need them: its grid (from its opening) and its
    events in order (events of other types are ignored)."""

    case_id: str
    grid_id: OrgId
    events: list[Event]


class Credit(Frozen):
    """A completed case credited to the party member or volunteer who took it."""

    case_id: str
    grid_id: str
    member_id: str
    role: Role
    severity: Severity
    on_time: bool
    archived_at: datetime


def credit(case: CaseEvents) -> Credit | None:
    """Whom the case counts for, or None: not taken by a party member or volunteer who
    kept it to its resolution, not completed, or without the resident's content feedback."""
    taker: tuple[str, Role] | None = None
    severity: Severity | None = None
    resolved_by: tuple[str, Role] | None = None
    on_time = False
    content = False
    archived: CaseArchived | None = None
    for e in sorted(case.events, key=lambda e: e.seq):
        match e:
            case CaseDispatched():
                severity = e.severity
            case CaseClaimed():
                # the last claim says who holds the case: staff (no role) or a taker
                taker = (e.handler, e.role) if e.role is not None else None
            case ResolutionReported():
                resolved_by = (e.actor.id, e.actor.role) if e.actor else None
                on_time = e.on_time
            case FeedbackRecorded():
                content = e.accepted and e.satisfaction.content
            case FeedbackUnanswered():
                content = False
            case CaseArchived():
                archived = e
    if archived is None or archived.outcome is not Outcome.COMPLETED:
        return None
    if taker is None or severity is None or resolved_by != taker or not content:
        return None
    return Credit(
        case_id=case.case_id,
        grid_id=case.grid_id,
        member_id=taker[0],
        role=taker[1],
        severity=severity,
        on_time=on_time,
        archived_at=archived.occurred_at,
    )


class MemberPoints(Frozen):
    """One party member's or volunteer's month in their grid, and their year so far."""

    grid_id: str
    member_id: str
    role: Role
    completed: int  # cases credited in the month
    on_time: int  # of those, resolved on time
    points: int  # earned in the month (within the year's cap)
    year_completed: int  # cases credited from January through the month
    year_points: int  # points earned from January through the month
    year_cap: int | None  # the scheme's cap for the role (12 for party members)
    cases: list[str]  # the month's credited cases, in the order they were archived


def year_bounds(month: str, timezone: str) -> tuple[datetime, datetime, datetime]:
    """The start of the month's year, the month's start and its end, in `timezone`."""
    start, end = month_bounds(month, timezone)
    year_start, _ = month_bounds(f"{parse_month(month)[:4]}-01", timezone)
    return year_start, start, end


def tally(
    cases: Iterable[CaseEvents],
    grid_id: str,
    month: str,
    timezone: str,
    scheme: PointsScheme = CURRENT_SCHEME,
) -> list[MemberPoints]:
    """Each party member's and volunteer's points in `grid_id` for `month`, and for the
    year up to its end: every member with a case credited in the year so far, party
    members first, then by id. `cases` may hold other grids' and other times' cases:
    only those of the grid archived in the year up to the month's end count."""
    year_start, start, end = year_bounds(month, timezone)
    credits = [
        c
        for c in (credit(case) for case in cases)
        if c is not None and c.grid_id == grid_id and year_start <= c.archived_at < end
    ]
    credits.sort(key=lambda c: (c.archived_at, c.case_id))
    members: dict[tuple[Role, str], MemberPoints] = {}
    for c in credits:
        rule = scheme.for_role(c.role)
        key = (c.role, c.member_id)
        m = members.get(key) or MemberPoints(
            grid_id=grid_id,
            member_id=c.member_id,
            role=c.role,
            completed=0,
            on_time=0,
            points=0,
            year_completed=0,
            year_points=0,
            year_cap=rule.year_cap,
            cases=[],
        )
        earned = rule.earned(c.severity, c.on_time)
        if rule.year_cap is not None:
            earned = max(0, min(earned, rule.year_cap - m.year_points))
        this_month = c.archived_at >= start
        members[key] = replaced(
            m,
            {
                "year_completed": m.year_completed + 1,
                "year_points": m.year_points + earned,
                "completed": m.completed + int(this_month),
                "on_time": m.on_time + int(this_month and c.on_time),
                "points": m.points + (earned if this_month else 0),
                "cases": [*m.cases, c.case_id] if this_month else m.cases,
            },
        )
    order = {Role.PARTY_MEMBER: 0, Role.VOLUNTEER: 1}
    return [members[k] for k in sorted(members, key=lambda k: (order[k[0]], k[1]))]


class PointsReport(Frozen):
    """What `casectl points` prints: a grid's party members and volunteers for a month,
    under a stamped scheme."""

    grid_id: str
    month: str
    timezone: str  # months are cut at local midnight here (the policy's timezone)
    year_start: datetime
    period_start: datetime
    period_end: datetime
    scheme: PointsScheme
    rules: list[str]
    members: list[MemberPoints]
    generated_at: datetime


def totals(members: Sequence[MemberPoints], role: Role) -> tuple[int, int]:
    """Cases and points of the month, over the members of `role`."""
    mine = [m for m in members if m.role is role]
    return sum(m.completed for m in mine), sum(m.points for m in mine)
