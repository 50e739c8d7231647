"""The state of one case, folded from its events, and the views derived from it."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, TypedDict

from pydantic import ConfigDict, Field

from domain.commands import OpenCase
from domain.model import (
    Evidence,
    Flag,
    Frozen,
    HandlingClass,
    Level,
    Loop,
    OrgId,
    Outcome,
    Role,
    Satisfaction,
    Severity,
    Step,
    replaced,
)
from domain.policy import LADDER_CLOCKS, Clock, Deadline


class PendingExtension(Frozen):
    requested_by: str
    requested_at: datetime
    extra: timedelta
    reason: str


class PendingReturn(Frozen):
    requested_by: str
    requested_at: datetime
    reason: str


class Breach(Frozen):
    """One clock that ran out: the case's record (rankings count these, never warnings)."""

    clock: Clock
    level: Level  # the level that held the case when the clock ran out
    loop: Loop | None = None
    due_at: datetime
    recorded_at: datetime


class EvidenceRecord(Frozen):
    """One piece of evidence of the case, and where it came from."""

    evidence: Evidence
    step: Step  # the step the case stood in
    event: str  # the event that carried it (handler_checked_in, resolution_reported, ...)
    seq: int
    recorded_at: datetime
    by: str | None  # the actor's id


class CaseState(Frozen):
    case_id: str
    version: int  # seq of the last event folded in
    case: OpenCase
    policy_version: str
    step: Step = Step.COLLECT
    opened_at: datetime
    updated_at: datetime
    last_event: str = "case_opened"
    severity: Severity | None = None
    handling_class: HandlingClass | None = None
    level: Level | None = None  # set by dispatch
    dispatched_at: datetime | None = None
    assignee: str | None = None  # named at dispatch, or whoever claimed
    claimed: bool = False
    checked_in_at: datetime | None = None
    deadlines: dict[Clock, Deadline] = {}
    flag: Flag = Flag.GREEN
    on_time: bool = True  # no resolve deadline breached so far
    summoned: list[OrgId] = []
    reported: list[OrgId] = []
    # each summoned department's clock (its task workflow runs the timers)
    department_deadlines: dict[OrgId, Deadline] = {}
    late_departments: list[OrgId] = []  # escalated for missing their deadline
    talk_day: date | None = None  # the talk day the community's agenda set
    pending_extension: PendingExtension | None = None
    resolved_at: datetime | None = None
    satisfaction: Satisfaction | None = None
    reopen_count: int = 0
    escalation_count: int = 0
    return_count: int = 0
    note_count: int = 0
    outcome: Outcome | None = None
    merged_into: str | None = None
    archived_at: datetime | None = None
    # policies of 2026.3 on (docs/rules.md)
    loop: Loop | None = None  # the 7135 loop that holds the case
    pending_return: PendingReturn | None = None
    # clocks other than the resolve clock that ran out and are not made good yet (the
    # on-site clock until the check-in, the claim clock until the claim, ...)
    late: list[Clock] = []
    breaches: list[Breach] = []
    feedback_unanswered: bool = False  # the resident did not answer: not rated
    # The fields below are left out of the JSON while empty, so the state a run carries
    # into the next (continue-as-new) reads as it did before they existed.
    # 督办: how often an officer of the street or district urged the case on, and when last
    urge_count: Annotated[int, Field(exclude_if=lambda v: not v)] = 0
    last_urged_at: Annotated[datetime | None, Field(exclude_if=lambda v: v is None)] = None
    # every reference to evidence the case's commands carried, oldest first
    evidence: Annotated[list[EvidenceRecord], Field(exclude_if=lambda v: not v)] = []
    # the cases merged into this one (their reports are this case's too), oldest first
    merged_reports: Annotated[list[str], Field(exclude_if=lambda v: not v)] = []
    # 组织建单、党员接单: offered to the grid's party members and volunteers since its
    # dispatch; the role of the party member or volunteer who claimed it (None: staff)
    offered: Annotated[bool, Field(exclude_if=lambda v: not v)] = False
    taken_by_role: Annotated[Role | None, Field(exclude_if=lambda v: v is None)] = None

    @property
    def light(self) -> Flag:
        """The case's light now: red while a clock is overdue at the district; yellow while
        a clock is in its warning band or overdue below the district, or another clock ran
        out and is not made good; green otherwise (a case finished in time is green)."""
        running = list(self.deadlines.values())
        if any(
            d.breached and d.level is Level.DISTRICT and d.clock in LADDER_CLOCKS for d in running
        ):
            return Flag.RED
        departments = [
            c
            for name, c in self.department_deadlines.items()
            if name not in self.reported and (c.warned or c.breached)
        ]
        if any(d.warned or d.breached for d in running) or self.late or departments:
            return Flag.YELLOW
        return Flag.GREEN

    @property
    def archived(self) -> bool:
        return self.step is Step.ARCHIVE

    @property
    def orgs(self) -> list[str]:
        return self.case.location.orgs

    def next_wake(self) -> tuple[datetime, Deadline] | None:
        """The earliest moment a running clock needs attention, with that clock."""
        pending = [(d.next_wake(), d) for d in self.deadlines.values()]
        due = [(at, d) for at, d in pending if at is not None]
        return min(due, key=lambda pair: pair[0]) if due else None

    @property
    def due_at(self) -> datetime | None:
        """The due time of the step's main clock: resolve, revisit, feedback or intake."""
        for clock in (Clock.RESOLVE, Clock.REVISIT, Clock.FEEDBACK, Clock.INTAKE):
            if clock in self.deadlines:
                return self.deadlines[clock].due_at
        return None


class CaseChanges(TypedDict, total=False):
    """What an event may change in a CaseState, by name and type (all but the report, its
    ids and its opening), so that mypy checks every change `evolve` makes; a test keeps
    these the model's own fields and types."""

    version: int
    updated_at: datetime
    last_event: str
    step: Step
    severity: Severity | None
    handling_class: HandlingClass | None
    level: Level | None
    dispatched_at: datetime | None
    assignee: str | None
    claimed: bool
    checked_in_at: datetime | None
    deadlines: dict[Clock, Deadline]
    flag: Flag
    on_time: bool
    summoned: list[OrgId]
    reported: list[OrgId]
    department_deadlines: dict[OrgId, Deadline]
    late_departments: list[OrgId]
    talk_day: date | None
    pending_extension: PendingExtension | None
    resolved_at: datetime | None
    satisfaction: Satisfaction | None
    reopen_count: int
    escalation_count: int
    return_count: int
    note_count: int
    outcome: Outcome | None
    merged_into: str | None
    archived_at: datetime | None
    loop: Loop | None
    pending_return: PendingReturn | None
    late: list[Clock]
    breaches: list[Breach]
    feedback_unanswered: bool
    urge_count: int
    last_urged_at: datetime | None
    evidence: list[EvidenceRecord]
    merged_reports: list[str]
    offered: bool
    taken_by_role: Role | None


def evolve_fields(state: CaseState, changes: CaseChanges) -> CaseState:
    """`state` with `changes`, checked at run time too (for a caller that casts its way
    past mypy): a name that is not in CaseChanges, or a value of the wrong type, raises."""
    unknown = changes.keys() - CaseChanges.__optional_keys__
    if unknown:
        raise ValueError(f"not a field an event may change: {', '.join(sorted(unknown))}")
    return replaced(state, changes)


class CaseSummary(Frozen):
    """What an update returns: where the case stands after the command.

    A reader ignores fields it does not know (a client older than the worker keeps
    working), and the fields added since 2026.3 are left out where the case's policy does
    not have them, so a case under an older policy answers exactly as before."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_max_length=4000)

    case_id: str
    version: int
    step: Step
    level: Level | None
    flag: Flag
    assignee: str | None
    due_at: datetime | None
    reopen_count: int
    escalation_count: int
    # the light now (flag: the worst colour so far), under a policy with `flag_is_light`
    light: Annotated[Flag | None, Field(exclude_if=lambda v: v is None)] = None
    loop: Annotated[Loop | None, Field(exclude_if=lambda v: v is None)] = None
    pending_return: Annotated[bool, Field(exclude_if=lambda v: not v)] = False


class CaseRecord(Frozen):
    """The archived case: the workflow's result and the ledger (台账) row."""

    case_id: str
    outcome: Outcome
    source: str
    category: str
    grid_id: str
    community_id: str
    street_id: str
    district_id: str
    severity: Severity | None
    handling_class: HandlingClass | None
    final_level: Level | None
    opened_at: datetime
    dispatched_at: datetime | None
    resolved_at: datetime | None
    archived_at: datetime
    on_time: bool
    escalation_count: int
    reopen_count: int
    return_count: int
    satisfaction: Satisfaction | None
    merged_into: str | None
    policy_version: str


def summary(state: CaseState, *, light: bool = True) -> CaseSummary:
    """`light`: whether the case's policy shows the light (`flag_is_light`)."""
    return CaseSummary(
        case_id=state.case_id,
        version=state.version,
        step=state.step,
        level=state.level,
        flag=state.flag,
        assignee=state.assignee,
        due_at=state.due_at,
        reopen_count=state.reopen_count,
        escalation_count=state.escalation_count,
        light=state.light if light else None,
        loop=state.loop,
        pending_return=state.pending_return is not None,
    )


def record(state: CaseState) -> CaseRecord:
    if state.outcome is None or state.archived_at is None:
        raise ValueError("only an archived case has a record")
    location = state.case.location
    return CaseRecord(
        case_id=state.case_id,
        outcome=state.outcome,
        source=state.case.source.value,
        category=state.case.category,
        grid_id=location.grid_id,
        community_id=location.community_id,
        street_id=location.street_id,
        district_id=location.district_id,
        severity=state.severity,
        handling_class=state.handling_class,
        final_level=state.level,
        opened_at=state.opened_at,
        dispatched_at=state.dispatched_at,
        resolved_at=state.resolved_at,
        archived_at=state.archived_at,
        on_time=state.on_time,
        escalation_count=state.escalation_count,
        reopen_count=state.reopen_count,
        return_count=state.return_count,
        satisfaction=state.satisfaction,
        merged_into=state.merged_into,
        policy_version=state.policy_version,
    )
