"""Domain events: what happened to a case (past-tense names).

Every event carries its envelope: `seq` (1, 2, … per case, assigned when the workflow
records it), `occurred_at` (workflow time), the `actor` who caused it (none for a timer)
and the `command_id` (the update id) that caused it. The payload stored in PostgreSQL is
the event's JSON without `seq`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal, Self

from pydantic import Field, TypeAdapter

from domain.commands import OpenCase
from domain.model import (
    Actor,
    CaseId,
    EvidenceList,
    Flag,
    Frozen,
    HandlingClass,
    Level,
    Loop,
    OrgId,
    Outcome,
    Reporter,
    RevisitChecklist,
    Role,
    Satisfaction,
    Severity,
    Source,
    replaced,
)
from domain.policy import Clock, Deadline


class EventBase(Frozen):
    seq: int = 0
    occurred_at: datetime
    actor: Actor | None = None
    command_id: str | None = None

    def stamped(self, seq: int, command_id: str | None) -> Self:
        """The event numbered in its case and tied to the command that caused it (as
        `apply_batch` records it)."""
        return replaced(self, {"seq": seq, "command_id": command_id})


class CaseOpened(EventBase):
    type: Literal["case_opened"] = "case_opened"
    case_id: CaseId
    case: OpenCase
    policy_version: str


class CaseDispatched(EventBase):
    type: Literal["case_dispatched"] = "case_dispatched"
    severity: Severity
    handling_class: HandlingClass
    level: Level
    assignee: str | None
    deadlines: list[Deadline]


class CaseClaimed(EventBase):
    type: Literal["case_claimed"] = "case_claimed"
    handler: str
    # a party member or volunteer who took an offered case (党员接单); None: staff
    role: Annotated[Role | None, Field(exclude_if=lambda v: v is None)] = None


class CaseOffered(EventBase):
    """组织建单: the case is offered to the party members and volunteers of its grid."""

    type: Literal["case_offered"] = "case_offered"
    grid_id: OrgId
    note: str | None = None


class HandlerCheckedIn(EventBase):
    type: Literal["handler_checked_in"] = "handler_checked_in"
    on_time: bool
    evidence: EvidenceList = []  # left out of the JSON when empty


class DeliberationRecorded(EventBase):
    type: Literal["deliberation_recorded"] = "deliberation_recorded"
    participants: list[str]
    decision: str
    handling_class: HandlingClass
    plan: str | None


class DeliberationScheduled(EventBase):
    """The community's agenda put the case on a talk day (周二说事日)."""

    type: Literal["deliberation_scheduled"] = "deliberation_scheduled"
    talk_day: date
    agenda_id: str
    deadline: Deadline  # the deliberation clock, now ending after the talk day


class DeadlineStarted(EventBase):
    """A clock that did not start at dispatch starts now: the resolve clock of a
    self-governance case once deliberated, or once its talk day has passed without it."""

    type: Literal["deadline_started"] = "deadline_started"
    reason: Literal["deliberated", "deliberation_missed", "opened"]
    deadline: Deadline


# Fields added to an existing event are left out of its JSON while empty, so events
# recorded before they existed keep their exact content (hash chain, audit replay).
class DepartmentsSummoned(EventBase):
    type: Literal["departments_summoned"] = "departments_summoned"
    departments: list[OrgId]
    reason: str
    # each department's clock, when the policy has department limits
    deadlines: Annotated[dict[OrgId, Deadline], Field(exclude_if=lambda v: not v)] = {}


class DepartmentReported(EventBase):
    type: Literal["department_reported"] = "department_reported"
    department: OrgId
    report: str
    # within its clock? (None: the department had no clock)
    on_time: Annotated[bool | None, Field(exclude_if=lambda v: v is None)] = None


class DepartmentWarned(EventBase):
    """A summoned department's part nears its deadline (its task's warning timer)."""

    type: Literal["department_warned"] = "department_warned"
    department: OrgId
    due_at: datetime
    policy_version: str


class DepartmentEscalated(EventBase):
    """A summoned department missed its deadline: its part goes to the supervisor of the
    summoning street (the district officer), and the case is flagged yellow."""

    type: Literal["department_escalated"] = "department_escalated"
    department: OrgId
    due_at: datetime
    to_level: Level
    policy_version: str


class ResolutionReported(EventBase):
    type: Literal["resolution_reported"] = "resolution_reported"
    summary: str
    on_time: bool
    # the feedback clock (policies with one)
    feedback: Annotated[Deadline | None, Field(exclude_if=lambda v: v is None)] = None
    evidence: EvidenceList = []  # left out of the JSON when empty


class FeedbackUnanswered(EventBase):
    """The resident did not answer within the feedback clock: recorded as not rated (never
    as satisfied), and the case goes on to the revisit, which asks them."""

    type: Literal["feedback_unanswered"] = "feedback_unanswered"
    due_at: datetime
    revisit: Deadline
    policy_version: str


class FeedbackRecorded(EventBase):
    type: Literal["feedback_recorded"] = "feedback_recorded"
    accepted: bool
    satisfaction: Satisfaction
    comment: str | None
    revisit: Deadline | None  # the revisit clock, when accepted


class RevisitRecorded(EventBase):
    type: Literal["revisit_recorded"] = "revisit_recorded"
    satisfaction: Satisfaction
    notes: str | None
    in_person: bool
    evidence: EvidenceList = []  # left out of the JSON when empty
    # the three questions' answers (三必问), when given
    checklist: Annotated[RevisitChecklist | None, Field(exclude_if=lambda v: v is None)] = None


class CaseReopened(EventBase):
    type: Literal["case_reopened"] = "case_reopened"
    reason: Literal["feedback_rejected", "revisit_unsatisfied"]
    deadline: Deadline


class ExtensionRequested(EventBase):
    type: Literal["extension_requested"] = "extension_requested"
    extra_seconds: int
    reason: str


class ExtensionDecided(EventBase):
    type: Literal["extension_decided"] = "extension_decided"
    approved: bool
    comment: str | None
    deadline: Deadline | None  # the moved resolve clock, when approved


class CaseReturned(EventBase):
    """Policies before reviewed returns: the case went back to dispatch, clocks reset."""

    type: Literal["case_returned"] = "case_returned"
    reason: str


class ReturnRequested(EventBase):
    """退单: the handler asks to give the case back (wrong grid, wrong level, not a
    government matter); the dispatcher reviews it, and the clocks keep running."""

    type: Literal["return_requested"] = "return_requested"
    reason: str
    level: Level  # the level that held the case: returns are counted per unit
    loop: Annotated[Loop | None, Field(exclude_if=lambda v: v is None)] = None


class ReturnReviewed(EventBase):
    """The dispatcher's decision on a return: approved (the case goes to another handler,
    who claims it again) or refused (back to the handler who asked)."""

    type: Literal["return_reviewed"] = "return_reviewed"
    approved: bool
    assignee: str | None  # the new handler, when approved and named
    comment: str | None
    claim: Annotated[Deadline | None, Field(exclude_if=lambda v: v is None)] = None


class NoteAdded(EventBase):
    type: Literal["note_added"] = "note_added"
    text: str


class CaseWithdrawn(EventBase):
    type: Literal["case_withdrawn"] = "case_withdrawn"
    reason: str


class CaseMerged(EventBase):
    type: Literal["case_merged"] = "case_merged"
    target_case_id: CaseId
    reason: str | None


class ReportMerged(EventBase):
    """Another report of the same matter was merged into this case (its case archived as
    merged): which one, and its reporter, whom the outcome is owed as well."""

    type: Literal["report_merged"] = "report_merged"
    merged_case_id: CaseId
    source: Source
    source_ref: str | None
    reporter: Reporter  # personal data: sealed (PERSONAL_FIELDS)


class DeadlineWarned(EventBase):
    type: Literal["deadline_warned"] = "deadline_warned"
    clock: Clock
    level: Level
    due_at: datetime
    policy_version: str


class DeadlineBreached(EventBase):
    type: Literal["deadline_breached"] = "deadline_breached"
    clock: Clock
    level: Level
    due_at: datetime
    policy_version: str
    flag: Flag
    remind_at: datetime | None  # first daily reminder, when the district deadline ran out


class CaseEscalated(EventBase):
    type: Literal["case_escalated"] = "case_escalated"
    from_level: Level
    to_level: Level
    deadline: Deadline
    policy_version: str
    # the loops of 7135 (policies with loops); a loop change may keep the level
    from_loop: Annotated[Loop | None, Field(exclude_if=lambda v: v is None)] = None
    to_loop: Annotated[Loop | None, Field(exclude_if=lambda v: v is None)] = None


class OverdueReminded(EventBase):
    """A case past its district deadline stays on the district's list, warned daily."""

    type: Literal["overdue_reminded"] = "overdue_reminded"
    level: Level
    due_at: datetime
    overdue_days: int
    next_remind_at: datetime
    policy_version: str
    # the overdue clock; None: the resolve clock (all that reminded before 2026.3)
    clock: Annotated[Clock | None, Field(exclude_if=lambda v: v is None)] = None


class CaseUrged(EventBase):
    """督办/催办: an officer of the case's street or district urged it on."""

    type: Literal["case_urged"] = "case_urged"
    message: str
    level: Level | None  # the level that held the case (None: not dispatched yet)


class CaseArchived(EventBase):
    type: Literal["case_archived"] = "case_archived"
    outcome: Outcome


Event = Annotated[
    CaseOpened
    | CaseDispatched
    | CaseClaimed
    | CaseOffered
    | HandlerCheckedIn
    | DeliberationRecorded
    | DeliberationScheduled
    | DeadlineStarted
    | DepartmentsSummoned
    | DepartmentReported
    | DepartmentWarned
    | DepartmentEscalated
    | ResolutionReported
    | FeedbackRecorded
    | RevisitRecorded
    | CaseReopened
    | ExtensionRequested
    | ExtensionDecided
    | CaseReturned
    | ReturnRequested
    | ReturnReviewed
    | FeedbackUnanswered
    | NoteAdded
    | CaseWithdrawn
    | CaseMerged
    | DeadlineWarned
    | DeadlineBreached
    | CaseEscalated
    | OverdueReminded
    | CaseUrged
    | ReportMerged
    | CaseArchived,
    Field(discriminator="type"),
]

EVENTS: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_LIST: TypeAdapter[list[Event]] = TypeAdapter(list[Event])


# Where residents' personal data sits in event payloads: sealed (encrypted) before an
# event is written to PostgreSQL; reports never need these fields.
PERSONAL_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "case_opened": (
        ("case", "reporter"),
        ("case", "location", "address"),
        ("case", "location", "coordinates"),
    ),
    "report_merged": (("reporter",),),
}
# A case's state carries the report as its `case_opened` event does, under `case`: the
# read model (`cases.state`) leaves these same fields out.
STATE_PERSONAL_FIELDS = PERSONAL_FIELDS["case_opened"]


def event_payload(event: EventBase) -> dict[str, object]:
    """The JSON stored in `case_events.payload` and hashed into the chain."""
    return event.model_dump(mode="json", exclude={"seq"})
