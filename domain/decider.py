"""The decider: `decide(state, command, now, policy) -> events` and `evolve(state, event)`.

`decide` refuses with a DomainError naming the command, the field or rule, and the reason;
it never looks at a clock of its own, so the workflow (and a test) passes `now`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar, assert_never

from domain import authz
from domain.commands import (
    AddNote,
    CheckDeadlines,
    CheckDepartment,
    CheckIn,
    Claim,
    Command,
    DecideExtension,
    Dispatch,
    MergedReport,
    MergeInto,
    OfferCase,
    OpenCase,
    RecordDeliberation,
    RecordDepartmentReport,
    RecordFeedback,
    RecordRevisit,
    ReportResolution,
    RequestExtension,
    ReturnCase,
    ReviewReturn,
    ScheduleDeliberation,
    SummonDepartments,
    UrgeCase,
    Withdraw,
)
from domain.errors import DomainError
from domain.events import (
    CaseArchived,
    CaseClaimed,
    CaseDispatched,
    CaseEscalated,
    CaseMerged,
    CaseOffered,
    CaseOpened,
    CaseReopened,
    CaseReturned,
    CaseUrged,
    CaseWithdrawn,
    DeadlineBreached,
    DeadlineStarted,
    DeadlineWarned,
    DeliberationRecorded,
    DeliberationScheduled,
    DepartmentEscalated,
    DepartmentReported,
    DepartmentsSummoned,
    DepartmentWarned,
    Event,
    ExtensionDecided,
    ExtensionRequested,
    FeedbackRecorded,
    FeedbackUnanswered,
    HandlerCheckedIn,
    NoteAdded,
    OverdueReminded,
    ReportMerged,
    ResolutionReported,
    ReturnRequested,
    ReturnReviewed,
    RevisitRecorded,
)
from domain.model import (
    CASE_ID_PATTERN,
    Flag,
    HandlingClass,
    Level,
    Loop,
    Outcome,
    Role,
    Severity,
    Step,
)
from domain.policy import (
    LADDER_CLOCKS,
    Clock,
    Deadline,
    DeadlineChanges,
    DeadlinePolicy,
    format_local,
)
from domain.state import (
    Breach,
    CaseChanges,
    CaseState,
    EvidenceRecord,
    PendingExtension,
    PendingReturn,
    evolve_fields,
)

C = TypeVar("C", bound=Command)
Decision = Callable[[CaseState, Any, datetime, DeadlinePolicy], list[Event]]
_DECISIONS: dict[type, Decision] = {}


def _decides(command_type: type[C]) -> Callable[[Decision], Decision]:
    def register(fn: Decision) -> Decision:
        _DECISIONS[command_type] = fn
        return fn

    return register


_CASE_ID = re.compile(CASE_ID_PATTERN)


def expected_case_id(case: OpenCase) -> str | None:
    """The id a source ticket's case must have, so a second report finds the first."""
    return f"case-{case.source.value}-{case.source_ref}" if case.source_ref else None


def open_case(case_id: str, case: OpenCase, now: datetime, policy: DeadlinePolicy) -> list[Event]:
    expected = expected_case_id(case)
    if expected is not None and case_id != expected:
        # the expected id is not quoted: a careless client may put a phone in source_ref
        raise DomainError(
            f"OpenCase: case id must be case-{case.source.value}-<source_ref> "
            "for a case with a source_ref"
        )
    if expected is None and not case_id.startswith(f"case-{case.source.value}-"):
        raise DomainError(f"OpenCase: case id must start with case-{case.source.value}-")
    if _CASE_ID.match(case_id) is None:
        # the workflow id comes from whoever started the workflow: refuse it here, never let
        # CaseOpened's own validation fail the workflow task
        raise DomainError(
            f"OpenCase: case id must match case-{case.source.value}-<id>, "
            "the id of 1 to 64 letters, digits, '.', '_' or '-'"
        )
    events: list[Event] = [
        CaseOpened(occurred_at=now, case_id=case_id, case=case, policy_version=policy.version)
    ]
    if policy.intake is not None:
        # the report must be dispatched in time: it never waits without a clock
        intake = policy.deadline(
            Clock.INTAKE, Level.COMMUNITY, Severity.MINOR, now, what="dispatch the report"
        )
        events.append(DeadlineStarted(occurred_at=now, reason="opened", deadline=intake))
    return events


def decide(
    state: CaseState,
    command: Command | CheckDeadlines | CheckDepartment | MergedReport,
    now: datetime,
    policy: DeadlinePolicy,
) -> list[Event]:
    if isinstance(command, CheckDeadlines):
        return _check_deadlines(state, now, policy)
    if isinstance(command, CheckDepartment):
        return _check_department(state, command.department, now)
    if isinstance(command, MergedReport):
        return _report_merged(state, command, now)
    if state.archived:
        raise DomainError(f"{command.kind}: the case is archived and accepts no more commands")
    return _DECISIONS[type(command)](state, command, now, policy)


def _step(state: CaseState, kind: str, *steps: Step) -> None:
    if state.step not in steps:
        allowed = " or ".join(s.value for s in steps)
        raise DomainError(f"{kind}: not allowed in step {state.step.value} (only in {allowed})")


@_decides(Dispatch)
def _dispatch(
    state: CaseState, cmd: Dispatch, now: datetime, policy: DeadlinePolicy
) -> list[Event]:
    _step(state, cmd.kind, Step.COLLECT)
    if state.dispatched_at is not None:
        raise DomainError("dispatch: the case is already dispatched; return it first")
    # an intake clock that ran out passed the dispatch up (state.level: who holds it now)
    holder = state.level or Level.COMMUNITY
    authz.require(
        authz.is_officer_at_or_above(cmd.actor, state, holder) or cmd.actor.role is Role.SYSTEM,
        cmd.kind,
        cmd.actor,
        "may not dispatch: only the case's community admin, street or district officer"
        if holder is Level.COMMUNITY
        else f"may not dispatch: the report passed to the {holder.value} level when its "
        "intake clock ran out",
    )
    escalate = cmd.handling_class is HandlingClass.ESCALATE
    up = cmd.severity is Severity.HARD or escalate
    level = Level.STREET if up else Level.COMMUNITY
    loop = Loop.first(cmd.severity, escalate)
    # a self-governance case first waits for its community's talk day; its resolve clock
    # starts once deliberated (or once the wait has run out)
    waits = cmd.handling_class is HandlingClass.SELF_GOVERNANCE and policy.deliberation
    first = Clock.DELIBERATE if waits else Clock.RESOLVE
    deadlines = [policy.deadline(first, level, cmd.severity, now, loop=loop)]
    visit = policy.on_site_for is None or cmd.handling_class in policy.on_site_for
    if level is Level.COMMUNITY and visit:
        deadlines.append(policy.deadline(Clock.ON_SITE, level, cmd.severity, now))
    if policy.claim is not None:
        deadlines.append(
            policy.deadline(Clock.CLAIM, level, cmd.severity, now, what="claim the case")
        )
    return [
        CaseDispatched(
            occurred_at=now,
            actor=cmd.actor,
            severity=cmd.severity,
            handling_class=cmd.handling_class,
            level=level,
            assignee=cmd.assignee,
            deadlines=deadlines,
        )
    ]


@_decides(Claim)
def _claim(state: CaseState, cmd: Claim, now: datetime, policy: DeadlinePolicy) -> list[Event]:
    _step(state, cmd.kind, Step.COLLECT)
    if state.dispatched_at is None:
        raise DomainError("claim: the case is not dispatched yet")
    if cmd.actor.role in authz.TAKER_ROLES:
        # 党员接单: a party member or volunteer takes a case offered to their grid
        authz.require(
            authz.may_take(cmd.actor, state),
            cmd.kind,
            cmd.actor,
            "may not take the case: a party member or volunteer takes only a minor case at "
            "community level that was offered to their own grid (offer_case) and that "
            "nobody has claimed",
        )
        return [
            CaseClaimed(
                occurred_at=now, actor=cmd.actor, handler=cmd.actor.id, role=cmd.actor.role
            )
        ]
    authz.require(
        authz.is_handler(cmd.actor, state),
        cmd.kind,
        cmd.actor,
        "may not claim: not a handler of this case at its level"
        + (" (it is assigned to someone else)" if state.assignee else ""),
    )
    return [CaseClaimed(occurred_at=now, actor=cmd.actor, handler=cmd.actor.id)]


@_decides(OfferCase)
def _offer(state: CaseState, cmd: OfferCase, now: datetime, policy: DeadlinePolicy) -> list[Event]:
    """组织建单: a minor case at community level, dispatched and not yet claimed nor named
    to anyone, offered to the party members and volunteers of its grid."""
    _step(state, cmd.kind, Step.COLLECT)
    if state.dispatched_at is None:
        raise DomainError("offer_case: the case is not dispatched yet")
    authz.require(
        authz.is_officer_at_or_above(cmd.actor, state, Level.COMMUNITY),
        cmd.kind,
        cmd.actor,
        "may not offer the case: only the case's community admin, street or district officer",
    )
    if state.offered:
        raise DomainError("offer_case: the case is offered to its grid already")
    if state.severity is not Severity.MINOR or state.level is not Level.COMMUNITY:
        raise DomainError(
            "offer_case: only a minor case at community level is offered to the grid's "
            "party members and volunteers"
        )
    if state.assignee is not None:
        raise DomainError(f"offer_case: the case is assigned to {state.assignee}")
    return [
        CaseOffered(
            occurred_at=now,
            actor=cmd.actor,
            grid_id=state.case.location.grid_id,
            note=cmd.note,
        )
    ]


@_decides(CheckIn)
def _check_in(state: CaseState, cmd: CheckIn, now: datetime, policy: DeadlinePolicy) -> list[Event]:
    _step(state, cmd.kind, Step.DELIBERATE, Step.RESOLVE)
    if state.checked_in_at is not None:
        raise DomainError("check_in: the handler is already checked in")
    authz.require(
        cmd.actor.id == state.assignee
        and (authz.covers(cmd.actor, state) or authz.is_taker(cmd.actor, state)),
        cmd.kind,
        cmd.actor,
        "is not the handler who claimed it",
    )
    on_site = state.deadlines.get(Clock.ON_SITE)
    if policy.on_site_for is None:
        # no on-site clock at street level; at community level a missing clock has run out
        on_time = state.level is not Level.COMMUNITY or (
            on_site is not None and now < on_site.due_at
        )
    else:  # the clock runs only where a visit is needed: late only if it ran out
        on_time = Clock.ON_SITE not in state.late and (on_site is None or now < on_site.due_at)
    return [
        HandlerCheckedIn(occurred_at=now, actor=cmd.actor, on_time=on_time, evidence=cmd.evidence)
    ]


@_decides(RecordDeliberation)
def _deliberate(
    state: CaseState, cmd: RecordDeliberation, now: datetime, policy: DeadlinePolicy
) -> list[Event]:
    _step(state, cmd.kind, Step.DELIBERATE)
    authz.require(authz.is_handler(cmd.actor, state), cmd.kind, cmd.actor, "is not a handler")
    assert state.handling_class is not None and state.level and state.severity
    events: list[Event] = [
        DeliberationRecorded(
            occurred_at=now,
            actor=cmd.actor,
            participants=list(cmd.participants),
            decision=cmd.decision,
            handling_class=cmd.handling_class or state.handling_class,
            plan=cmd.plan,
        )
    ]
    if Clock.DELIBERATE in state.deadlines:
        resolve = policy.deadline(Clock.RESOLVE, state.level, state.severity, now, loop=state.loop)
        events.append(
            DeadlineStarted(
                occurred_at=now, actor=cmd.actor, reason="deliberated", deadline=resolve
            )
        )
    return events


@_decides(ScheduleDeliberation)
def _schedule_deliberation(
    state: CaseState, cmd: ScheduleDeliberation, now: datetime, policy: DeadlinePolicy
) -> list[Event]:
    _step(state, cmd.kind, Step.COLLECT, Step.DELIBERATE)
    authz.require(
        (cmd.actor.role is Role.SYSTEM and cmd.actor.org == state.case.location.community_id)
        or authz.is_officer_at_or_above(cmd.actor, state, Level.COMMUNITY),
        cmd.kind,
        cmd.actor,
        "may not schedule a deliberation: only the community's agenda or its officers",
    )
    waiting = state.deadlines.get(Clock.DELIBERATE)
    if waiting is None or state.level is None:
        raise DomainError(
            "schedule_deliberation: the case does not wait for a talk day (only a dispatched "
            "self-governance case does, until its talk day has passed)"
        )
    if cmd.talk_day < policy.local(now).date():
        raise DomainError("schedule_deliberation: talk_day: lies in the past")
    deadline = policy.talk_day_deadline(state.level, waiting.started_at, cmd.talk_day)
    return [
        DeliberationScheduled(
            occurred_at=now,
            actor=cmd.actor,
            talk_day=cmd.talk_day,
            agenda_id=cmd.agenda_id,
            deadline=deadline,
        )
    ]


@_decides(SummonDepartments)
def _summon(
    state: CaseState, cmd: SummonDepartments, now: datetime, policy: DeadlinePolicy
) -> list[Event]:
    _step(state, cmd.kind, Step.RESOLVE)
    joint = policy.handling_paths and state.handling_class is HandlingClass.JOINT
    authz.require(
        (state.level in (Level.STREET, Level.DISTRICT) or joint)
        and authz.is_officer_at_or_above(cmd.actor, state, Level.STREET),
        cmd.kind,
        cmd.actor,
        "may not summon departments: only a street or district officer, on a street or "
        "district level case (街道吹哨)",
    )
    again = sorted(set(cmd.departments) & set(state.summoned))
    if again:
        raise DomainError(f"summon_departments: departments already summoned: {', '.join(again)}")
    assert state.level is not None and state.severity is not None
    deadlines = {}
    if policy.department is not None:
        deadlines = {
            d: policy.deadline(
                Clock.DEPARTMENT, state.level, state.severity, now, what=f"department {d}"
            )
            for d in cmd.departments
        }
    return [
        DepartmentsSummoned(
            occurred_at=now,
            actor=cmd.actor,
            departments=list(cmd.departments),
            reason=cmd.reason,
            deadlines=deadlines,
        )
    ]


@_decides(RecordDepartmentReport)
def _department_report(
    state: CaseState, cmd: RecordDepartmentReport, now: datetime, policy: DeadlinePolicy
) -> list[Event]:
    _step(state, cmd.kind, Step.RESOLVE)
    authz.require(
        cmd.actor.role is Role.DEPARTMENT and cmd.actor.org in state.summoned,
        cmd.kind,
        cmd.actor,
        "is not a department summoned to this case",
    )
    if cmd.actor.org in state.reported:
        raise DomainError(f"record_department_report: department {cmd.actor.org} already reported")
    clock = state.department_deadlines.get(cmd.actor.org)
    return [
        DepartmentReported(
            occurred_at=now,
            actor=cmd.actor,
            department=cmd.actor.org,
            report=cmd.report,
            on_time=None if clock is None else now < clock.due_at,
        )
    ]


def _check_department(state: CaseState, department: str, now: datetime) -> list[Event]:
    """A department's task timer fired: warn or escalate if its clock says so (a signal
    that comes early or twice changes nothing)."""
    clock = state.department_deadlines.get(department)
    if state.archived or clock is None or department in state.reported or clock.breached:
        return []
    common: dict[str, Any] = {
        "occurred_at": now,
        "department": department,
        "due_at": clock.due_at,
        "policy_version": clock.policy_version,
    }
    if now >= clock.due_at:
        assert state.level is not None
        return [DepartmentEscalated(**common, to_level=state.level.above() or Level.DISTRICT)]
    if now >= clock.warn_at and not clock.warned:
        return [DepartmentWarned(**common)]
    return []


@_decides(ReportResolution)
def _report_resolution(
    state: CaseState, cmd: ReportResolution, now: datetime, policy: DeadlinePolicy
) -> list[Event]:
    _resolution_path(state, cmd, policy)
    authz.require(authz.is_handler(cmd.actor, state), cmd.kind, cmd.actor, "is not a handler")
    missing = [d for d in state.summoned if d not in state.reported]
    if missing:
        raise DomainError(
            f"report_resolution: summoned departments have not reported: {', '.join(missing)}"
        )
    resolve = state.deadlines.get(Clock.RESOLVE)
    on_time = state.on_time and (resolve is None or now < resolve.due_at)
    feedback = None
    if policy.feedback is not None:
        assert state.level is not None and state.severity is not None
        feedback = policy.deadline(
            Clock.FEEDBACK, state.level, state.severity, now, what="the resident's feedback"
        )
    return [
        ResolutionReported(
            occurred_at=now,
            actor=cmd.actor,
            summary=cmd.summary,
            on_time=on_time,
            feedback=feedback,
            evidence=cmd.evidence,
        )
    ]


def _resolution_path(state: CaseState, cmd: ReportResolution, policy: DeadlinePolicy) -> None:
    """Where the case's way of handling lets a resolution be reported: after the
    deliberation (step resolve); with the five ways of handling, an immediate case once
    its handler is on site and an explanation at once (neither is deliberated), and a
    joint case only once the street has summoned departments."""
    kind = state.handling_class
    if not policy.handling_paths:
        _step(state, cmd.kind, Step.RESOLVE)
        return
    if kind is HandlingClass.EXPLANATION:
        _step(state, cmd.kind, Step.DELIBERATE, Step.RESOLVE)
        if not state.claimed and state.step is Step.DELIBERATE:
            raise DomainError("report_resolution: the case is not claimed yet")
        return
    if kind is HandlingClass.IMMEDIATE:
        _step(state, cmd.kind, Step.DELIBERATE, Step.RESOLVE)
        visit = policy.on_site_for is None or kind in policy.on_site_for
        if state.level is Level.COMMUNITY and visit and state.checked_in_at is None:
            raise DomainError(
                "report_resolution: an immediate case is resolved on site: check in first"
            )
        return
    _step(state, cmd.kind, Step.RESOLVE)
    if kind is HandlingClass.JOINT and not state.summoned:
        raise DomainError(
            "report_resolution: a joint case is resolved with the departments the street "
            "summons (街道吹哨): summon_departments first"
        )


def _reopened(
    state: CaseState,
    cmd: Command,
    now: datetime,
    policy: DeadlinePolicy,
    reason: Literal["feedback_rejected", "revisit_unsatisfied"],
) -> CaseReopened:
    """Back to resolve, with a fresh resolve clock at the case's level."""
    assert state.level is not None and state.severity is not None
    deadline = policy.deadline(Clock.RESOLVE, state.level, state.severity, now, loop=state.loop)
    return CaseReopened(occurred_at=now, actor=cmd.actor, reason=reason, deadline=deadline)


@_decides(RecordFeedback)
def _feedback(
    state: CaseState, cmd: RecordFeedback, now: datetime, policy: DeadlinePolicy
) -> list[Event]:
    _step(state, cmd.kind, Step.FEEDBACK)
    authz.require(
        authz.is_reporter(cmd.actor, state)
        or authz.is_officer_at_or_above(cmd.actor, state, Level.COMMUNITY)
        or (cmd.actor.role is Role.GRID_WORKER and authz.covers(cmd.actor, state)),
        cmd.kind,
        cmd.actor,
        "may not record feedback: only the reporting resident or the case's grid staff",
    )
    assert state.level is not None and state.severity is not None
    revisit = _revisit_clock(state, now, policy) if cmd.accepted else None
    events: list[Event] = [
        FeedbackRecorded(
            occurred_at=now,
            actor=cmd.actor,
            accepted=cmd.accepted,
            satisfaction=cmd.satisfaction,
            comment=cmd.comment,
            revisit=revisit,
        )
    ]
    if not cmd.accepted:
        events.append(_reopened(state, cmd, now, policy, "feedback_rejected"))
    return events


@_decides(RecordRevisit)
def _revisit(
    state: CaseState, cmd: RecordRevisit, now: datetime, policy: DeadlinePolicy
) -> list[Event]:
    _step(state, cmd.kind, Step.REVISIT)
    authz.require(
        cmd.actor.role is not Role.RESIDENT and authz.covers(cmd.actor, state),
        cmd.kind,
        cmd.actor,
        "may not record a revisit: only the case's grid, community, street or district staff",
    )
    revisit = state.deadlines.get(Clock.REVISIT)
    if policy.revisit_earliest is not None and revisit is not None:
        earliest, _ = policy.end(revisit.started_at, policy.revisit_earliest)
        if now < earliest:
            raise DomainError(
                "record_revisit: too early: a revisit checks that the matter stayed solved, "
                f"from {format_local(earliest, policy.timezone)} on ({policy.timezone})"
            )
    if not cmd.in_person and policy.revisit_rule(state.case.reporter.categories).in_person:
        # 三必问四必访; the category itself is personal data and not named
        raise DomainError(
            "record_revisit: in_person: this resident must be visited in person "
            "(their category requires it)"
        )
    if policy.revisit_checklist and cmd.checklist is None:
        raise DomainError(
            "record_revisit: checklist: required by the case's policy: the three questions "
            "(三必问: contradictions, dissatisfaction, concerns; null where nothing was raised)"
        )
    events: list[Event] = [
        RevisitRecorded(
            occurred_at=now,
            actor=cmd.actor,
            satisfaction=cmd.satisfaction,
            notes=cmd.notes,
            in_person=cmd.in_person,
            evidence=cmd.evidence,
            checklist=cmd.checklist,
        )
    ]
    if cmd.satisfaction.content:
        events.append(CaseArchived(occurred_at=now, actor=cmd.actor, outcome=Outcome.COMPLETED))
    else:
        events.append(_reopened(state, cmd, now, policy, "revisit_unsatisfied"))
    return events


@_decides(RequestExtension)
def _request_extension(
    state: CaseState, cmd: RequestExtension, now: datetime, policy: DeadlinePolicy
) -> list[Event]:
    _step(state, cmd.kind, Step.DELIBERATE, Step.RESOLVE)
    authz.require(authz.is_handler(cmd.actor, state), cmd.kind, cmd.actor, "is not a handler")
    if state.pending_extension is not None:
        raise DomainError("request_extension: an extension request is already waiting for decision")
    return [
        ExtensionRequested(
            occurred_at=now,
            actor=cmd.actor,
            extra_seconds=int(cmd.extra.total_seconds()),
            reason=cmd.reason,
        )
    ]


@_decides(DecideExtension)
def _decide_extension(
    state: CaseState, cmd: DecideExtension, now: datetime, policy: DeadlinePolicy
) -> list[Event]:
    pending = state.pending_extension
    if pending is None:
        raise DomainError("decide_extension: no extension request is waiting")
    assert state.level is not None
    role = authz.supervisor_role(state.level)
    authz.require(
        cmd.actor.role is role and authz.covers(cmd.actor, state),
        cmd.kind,
        cmd.actor,
        f"may not decide: a {state.level.value} case's extension is decided by its {role.value}",
    )
    authz.require(
        cmd.actor.id != pending.requested_by,
        cmd.kind,
        cmd.actor,
        "may not decide an extension they requested themselves",
    )
    resolve = state.deadlines.get(Clock.RESOLVE)
    moved = None
    if cmd.approved and resolve is not None:
        moved = resolve.moved(resolve.due_at + pending.extra, policy, now)
    return [
        ExtensionDecided(
            occurred_at=now,
            actor=cmd.actor,
            approved=cmd.approved,
            comment=cmd.comment,
            deadline=moved,
        )
    ]


@_decides(ReturnCase)
def _return(
    state: CaseState, cmd: ReturnCase, now: datetime, policy: DeadlinePolicy
) -> list[Event]:
    _step(state, cmd.kind, Step.COLLECT, Step.DELIBERATE, Step.RESOLVE)
    if state.dispatched_at is None:
        raise DomainError("return_case: the case is not dispatched; there is nothing to return")
    authz.require(authz.is_handler(cmd.actor, state), cmd.kind, cmd.actor, "is not a handler")
    if not policy.reviewed_returns:
        return [CaseReturned(occurred_at=now, actor=cmd.actor, reason=cmd.reason)]
    if state.pending_return is not None:
        raise DomainError("return_case: a return is already waiting for review")
    assert state.level is not None
    return [
        ReturnRequested(
            occurred_at=now, actor=cmd.actor, reason=cmd.reason, level=state.level, loop=state.loop
        )
    ]


@_decides(ReviewReturn)
def _review_return(
    state: CaseState, cmd: ReviewReturn, now: datetime, policy: DeadlinePolicy
) -> list[Event]:
    pending = state.pending_return
    if pending is None:
        raise DomainError("review_return: no return is waiting for review")
    assert state.level is not None and state.severity is not None
    authz.require(
        authz.is_officer_at_or_above(cmd.actor, state, state.level)
        or (cmd.actor.role is Role.COMMUNITY_ADMIN and authz.covers(cmd.actor, state)),
        cmd.kind,
        cmd.actor,
        "may not review a return: only the dispatcher (the case's community admin, or an "
        "officer of its level or above)",
    )
    authz.require(
        cmd.actor.id != pending.requested_by,
        cmd.kind,
        cmd.actor,
        "may not review a return they asked for themselves",
    )
    if not cmd.approved and cmd.assignee is not None:
        raise DomainError("review_return: assignee: only an approved return names a new handler")
    if cmd.approved and cmd.assignee is not None and cmd.assignee == pending.requested_by:
        raise DomainError("review_return: assignee: the handler who returned it")
    claim = None
    if cmd.approved and policy.claim is not None:
        claim = policy.deadline(
            Clock.CLAIM, state.level, state.severity, now, what="claim the case"
        )
    return [
        ReturnReviewed(
            occurred_at=now,
            actor=cmd.actor,
            approved=cmd.approved,
            assignee=cmd.assignee if cmd.approved else None,
            comment=cmd.comment,
            claim=claim,
        )
    ]


def _involved(state: CaseState, cmd: Command) -> bool:
    actor = cmd.actor
    return (
        authz.covers(actor, state)
        or authz.is_reporter(actor, state)
        or (actor.role is Role.DEPARTMENT and actor.org in state.summoned)
        or actor.role is Role.SYSTEM
        or authz.is_taker(actor, state)
    )


@_decides(AddNote)
def _note(state: CaseState, cmd: AddNote, now: datetime, policy: DeadlinePolicy) -> list[Event]:
    authz.require(_involved(state, cmd), cmd.kind, cmd.actor, "has no part in this case")
    return [NoteAdded(occurred_at=now, actor=cmd.actor, text=cmd.text)]


@_decides(Withdraw)
def _withdraw(
    state: CaseState, cmd: Withdraw, now: datetime, policy: DeadlinePolicy
) -> list[Event]:
    authz.require(
        authz.is_reporter(cmd.actor, state)
        or authz.is_officer_at_or_above(cmd.actor, state, Level.COMMUNITY),
        cmd.kind,
        cmd.actor,
        "may not withdraw: only the reporting resident or the case's community admin or officers",
    )
    return [
        CaseWithdrawn(occurred_at=now, actor=cmd.actor, reason=cmd.reason),
        CaseArchived(occurred_at=now, actor=cmd.actor, outcome=Outcome.WITHDRAWN),
    ]


@_decides(MergeInto)
def _merge(state: CaseState, cmd: MergeInto, now: datetime, policy: DeadlinePolicy) -> list[Event]:
    if cmd.target_case_id == state.case_id:
        raise DomainError("merge_into: target_case_id: a case cannot be merged into itself")
    authz.require(
        authz.is_officer_at_or_above(cmd.actor, state, Level.COMMUNITY)
        or cmd.actor.role is Role.SYSTEM,
        cmd.kind,
        cmd.actor,
        "may not merge: only the case's community admin or officers, or an intake system",
    )
    return [
        CaseMerged(
            occurred_at=now, actor=cmd.actor, target_case_id=cmd.target_case_id, reason=cmd.reason
        ),
        CaseArchived(occurred_at=now, actor=cmd.actor, outcome=Outcome.MERGED),
    ]


@_decides(UrgeCase)
def _urge(state: CaseState, cmd: UrgeCase, now: datetime, policy: DeadlinePolicy) -> list[Event]:
    """督办/催办: in any step of an open case; recorded and counted, nothing else moves."""
    authz.require(
        authz.is_supervising_officer(cmd.actor, state),
        cmd.kind,
        cmd.actor,
        "may not urge: only a street officer of the case's street or a district officer of "
        "its district urges a case on (督办)",
    )
    return [CaseUrged(occurred_at=now, actor=cmd.actor, message=cmd.message, level=state.level)]


def merged_report(state: CaseState) -> MergedReport:
    """What a case merged into another tells that case (signal `merged_report`): its id,
    source and ticket, and its reporter."""
    if state.merged_into is None:
        raise ValueError(f"{state.case_id} is not merged into another case")
    return MergedReport(
        merged_case_id=state.case_id,
        source=state.case.source,
        source_ref=state.case.source_ref,
        reporter=state.case.reporter,
    )


def _report_merged(state: CaseState, report: MergedReport, now: datetime) -> list[Event]:
    """A case merged into this one told of its report: recorded once. A repeated signal, or
    one from this case itself, records nothing, nor does an archived case (its outcome is
    settled)."""
    if (
        state.archived
        or report.merged_case_id == state.case_id
        or report.merged_case_id in state.merged_reports
    ):
        return []
    return [
        ReportMerged(
            occurred_at=now,
            merged_case_id=report.merged_case_id,
            source=report.source,
            source_ref=report.source_ref,
            reporter=report.reporter,
        )
    ]


def _check_deadlines(state: CaseState, now: datetime, policy: DeadlinePolicy) -> list[Event]:
    """A timer fired: warn, breach, escalate or remind for every clock that is due."""
    if state.archived:
        return []
    events: list[Event] = []
    for deadline in state.deadlines.values():
        events.extend(_deadline_events(state, deadline, now, policy))
    return events


def _deadline_events(
    state: CaseState, d: Deadline, now: datetime, policy: DeadlinePolicy
) -> Iterable[Event]:
    common: dict[str, Any] = {"occurred_at": now, "policy_version": d.policy_version}
    if d.breached:
        if d.remind_at is not None and now >= d.remind_at:
            # one reminder however late the timer is served, then the next one in the future
            every = policy.district_reminder
            if d.clock is Clock.REVISIT and policy.revisit_reminder is not None:
                every = policy.revisit_reminder
            next_at = d.remind_at
            while next_at <= now:
                next_at += every
            yield OverdueReminded(
                **common,
                level=d.level,
                due_at=d.due_at,
                overdue_days=(now - d.due_at).days,
                next_remind_at=next_at,
                clock=None if d.clock is Clock.RESOLVE else d.clock,
            )
        return
    if now < d.due_at:
        if not d.warned and now >= d.warn_at:
            yield DeadlineWarned(**common, clock=d.clock, level=d.level, due_at=d.due_at)
        return
    # The next clock starts when the old one ran out, not when the timer was served, so a
    # late worker never stretches the ladder.
    if d.clock is Clock.RESOLVE and d.loop is not None:
        above_loop = d.loop.above()
        if above_loop is not None:
            assert state.severity is not None
            yield CaseEscalated(
                **common,
                from_level=d.level,
                to_level=above_loop.level,
                deadline=policy.deadline(
                    Clock.RESOLVE, above_loop.level, state.severity, d.due_at, loop=above_loop
                ),
                from_loop=d.loop,
                to_loop=above_loop,
            )
            return
    elif d.clock in LADDER_CLOCKS and d.level.above() is not None:
        above = d.level.above()
        assert above is not None
        if d.clock is Clock.INTAKE:
            deadline = policy.deadline(
                Clock.INTAKE, above, Severity.MINOR, d.due_at, what="dispatch the report"
            )
        else:
            assert state.severity is not None
            deadline = policy.deadline(Clock.RESOLVE, above, state.severity, d.due_at)
        yield CaseEscalated(**common, from_level=d.level, to_level=above, deadline=deadline)
        return
    if d.clock is Clock.DELIBERATE:
        # the talk day passed without a deliberation: flagged, and the resolve clock runs
        # from the end of the wait, so the ladder still applies
        assert state.level is not None and state.severity is not None
        yield DeadlineBreached(
            **common,
            clock=d.clock,
            level=d.level,
            due_at=d.due_at,
            flag=Flag.YELLOW,
            remind_at=None,
        )
        yield DeadlineStarted(
            occurred_at=now,
            reason="deliberation_missed",
            deadline=policy.deadline(
                Clock.RESOLVE, state.level, state.severity, d.due_at, loop=state.loop
            ),
        )
        return
    if d.clock is Clock.FEEDBACK:
        # no answer: not rated, and on to the revisit (which asks the resident)
        yield FeedbackUnanswered(
            **common, due_at=d.due_at, revisit=_revisit_clock(state, d.due_at, policy)
        )
        return
    red = d.clock in LADDER_CLOCKS
    remind_at = None
    if red:
        remind_at = d.due_at + policy.district_reminder
    elif d.clock is Clock.REVISIT and policy.revisit_reminder is not None:
        remind_at = d.due_at + policy.revisit_reminder
    yield DeadlineBreached(
        **common,
        clock=d.clock,
        level=d.level,
        due_at=d.due_at,
        flag=Flag.RED if red else Flag.YELLOW,
        remind_at=remind_at,
    )


def _revisit_clock(state: CaseState, start: datetime, policy: DeadlinePolicy) -> Deadline:
    """The revisit clock from `start`: the policy's limit, or the reporter's stricter one."""
    assert state.level is not None and state.severity is not None
    rule = policy.revisit_rule(state.case.reporter.categories)
    return policy.deadline(
        Clock.REVISIT,
        state.level,
        state.severity,
        start,
        span=rule.within,
        what=f"{state.severity.value} matter, {state.level.value} level"
        + (", in person" if rule.in_person else ""),
    )


# ---------------------------------------------------------------------------- evolve


def evolve(state: CaseState | None, event: Event) -> CaseState:
    """The state after `event`, which must be the case's next: `case_opened` first, and
    each event numbered `state.version + 1`."""
    if isinstance(event, CaseOpened):
        if state is not None:
            raise ValueError("case_opened must be the first event")
        _require_next(event, 0)
        return CaseState(
            case_id=event.case_id,
            version=event.seq,
            case=event.case,
            policy_version=event.policy_version,
            opened_at=event.occurred_at,
            updated_at=event.occurred_at,
        )
    if state is None:
        raise ValueError(f"{event.type} before case_opened")
    _require_next(event, state.version)
    return evolve_fields(
        state,
        {
            **_changes(state, event),
            **_taking(event),
            "version": event.seq,
            "updated_at": event.occurred_at,
            "last_event": event.type,
        },
    )


def _require_next(event: Event, version: int) -> None:
    if event.seq != version + 1:
        raise ValueError(
            f"{event.type} has seq {event.seq}, but the case is at version {version}: "
            f"its next event has seq {version + 1}"
        )


def fold(events: Iterable[Event]) -> CaseState:
    state: CaseState | None = None
    for event in events:
        state = evolve(state, event)
    if state is None:
        raise ValueError("no events")
    return state


def apply_batch(
    state: CaseState | None, events: Iterable[Event], command_id: str | None = None
) -> tuple[CaseState, list[Event]]:
    """Number `events` after `state` (seq version + 1, + 2, …), stamp each with the command
    that caused them (the update id; None for a timer or the opening) and fold them in:
    the new state and the events as they are recorded."""
    stamped: list[Event] = []
    for event in events:
        event = event.stamped((state.version if state else 0) + 1, command_id)
        state = evolve(state, event)
        stamped.append(event)
    if state is None:
        raise ValueError("no events")
    return state, stamped


def _with_deadline(state: CaseState, deadline: Deadline) -> dict[Clock, Deadline]:
    return {**state.deadlines, deadline.clock: deadline}


def _without(state: CaseState, *clocks: Clock) -> dict[Clock, Deadline]:
    return {c: d for c, d in state.deadlines.items() if c not in clocks}


def _department(s: CaseState, department: str, changes: DeadlineChanges) -> dict[str, Deadline]:
    return {
        **s.department_deadlines,
        department: s.department_deadlines[department].changed(changes),
    }


def _changes(s: CaseState, e: Event) -> CaseChanges:
    """What `e` changes in `s`, besides the envelope `evolve` sets (version, time, type)."""
    match e:
        case CaseOpened():
            raise ValueError("case_opened must be the first event")
        case CaseDispatched():
            return {
                "severity": e.severity,
                "handling_class": e.handling_class,
                "level": e.level,
                "loop": next((d.loop for d in e.deadlines if d.loop is not None), None),
                "assignee": e.assignee,
                "dispatched_at": e.occurred_at,
                "deadlines": {d.clock: d for d in e.deadlines},
                "late": _made_good(s, Clock.INTAKE),
            }
        case CaseOffered():
            return {"offered": True}
        case CaseClaimed():
            return {
                "assignee": e.handler,
                "claimed": True,
                "step": Step.DELIBERATE,
                "deadlines": _without(s, Clock.CLAIM),
                "late": _made_good(s, Clock.CLAIM),
            }
        case HandlerCheckedIn():
            return {
                "evidence": _with_evidence(s, e),
                "checked_in_at": e.occurred_at,
                "deadlines": _without(s, Clock.ON_SITE),
                "late": _made_good(s, Clock.ON_SITE),
            }
        case DeliberationRecorded():
            return {
                "handling_class": e.handling_class,
                "step": Step.RESOLVE,
                "late": _made_good(s, Clock.DELIBERATE),
            }
        case DeliberationScheduled():
            return {"talk_day": e.talk_day, "deadlines": _with_deadline(s, e.deadline)}
        case DeadlineStarted():
            return {"deadlines": {**_without(s, Clock.DELIBERATE), e.deadline.clock: e.deadline}}
        case DepartmentsSummoned():
            return {
                "summoned": [*s.summoned, *e.departments],
                "department_deadlines": {**s.department_deadlines, **e.deadlines},
            }
        case DepartmentReported():
            return {"reported": [*s.reported, e.department]}
        case DepartmentWarned():
            return {
                "department_deadlines": _department(s, e.department, {"warned": True}),
                "flag": s.flag.worst(Flag.YELLOW),
            }
        case DepartmentEscalated():
            return {
                "department_deadlines": _department(s, e.department, {"breached": True}),
                "late_departments": [*s.late_departments, e.department],
                "flag": s.flag.worst(Flag.YELLOW),
            }
        case ResolutionReported():
            running = _without(s, Clock.RESOLVE, Clock.ON_SITE, Clock.CLAIM)
            return {
                "evidence": _with_evidence(s, e),
                "step": Step.FEEDBACK,
                "resolved_at": e.occurred_at,
                "on_time": e.on_time,
                "deadlines": {**running, Clock.FEEDBACK: e.feedback} if e.feedback else running,
                "pending_extension": None,
                "pending_return": None,
                "late": [],
            }
        case FeedbackRecorded():
            answered = _without(s, Clock.FEEDBACK)
            return {
                "satisfaction": e.satisfaction,
                "step": Step.REVISIT if e.accepted else s.step,
                "deadlines": {**answered, Clock.REVISIT: e.revisit} if e.revisit else answered,
            }
        case FeedbackUnanswered():
            return {
                "satisfaction": None,
                "feedback_unanswered": True,
                "step": Step.REVISIT,
                "deadlines": {**_without(s, Clock.FEEDBACK), Clock.REVISIT: e.revisit},
            }
        case RevisitRecorded():
            return {
                "evidence": _with_evidence(s, e),
                "satisfaction": e.satisfaction,
                "deadlines": _without(s, Clock.REVISIT),
                "late": _made_good(s, Clock.REVISIT),
            }
        case CaseReopened():
            return {
                "step": Step.RESOLVE,
                "reopen_count": s.reopen_count + 1,
                "resolved_at": None,
                "deadlines": {
                    **_without(s, Clock.REVISIT, Clock.FEEDBACK),
                    Clock.RESOLVE: e.deadline,
                },
                "loop": e.deadline.loop or s.loop,
            }
        case ExtensionRequested():
            extension = PendingExtension(
                requested_by=e.actor.id if e.actor else "",
                requested_at=e.occurred_at,
                extra=timedelta(seconds=e.extra_seconds),
                reason=e.reason,
            )
            return {"pending_extension": extension}
        case ExtensionDecided():
            return {
                "pending_extension": None,
                "deadlines": _with_deadline(s, e.deadline) if e.deadline else s.deadlines,
            }
        case CaseReturned():
            return {
                "step": Step.COLLECT,
                "return_count": s.return_count + 1,
                "dispatched_at": None,
                "level": None,
                "severity": None,
                "assignee": None,
                "claimed": False,
                "checked_in_at": None,
                "deadlines": {},
                "pending_extension": None,
                "late": [],
            }
        case ReturnRequested():
            pending = PendingReturn(
                requested_by=e.actor.id if e.actor else "",
                requested_at=e.occurred_at,
                reason=e.reason,
            )
            return {"pending_return": pending, "return_count": s.return_count + 1}
        case ReturnReviewed():
            if not e.approved:
                return {"pending_return": None}
            return {
                "pending_return": None,
                "step": Step.COLLECT,
                "assignee": e.assignee,
                "claimed": False,
                "checked_in_at": None,
                "deadlines": _with_deadline(s, e.claim) if e.claim else s.deadlines,
            }
        case NoteAdded():
            return {"note_count": s.note_count + 1}
        case CaseWithdrawn():
            return {}
        case CaseMerged():
            return {"merged_into": e.target_case_id}
        case DeadlineWarned():
            warned = s.deadlines[e.clock].changed({"warned": True})
            return {"deadlines": _with_deadline(s, warned), "flag": s.flag.worst(Flag.YELLOW)}
        case DeadlineBreached():
            return _breached(s, e)
        case CaseEscalated():
            clock = e.deadline.clock
            breach = Breach(
                clock=clock,
                level=e.from_level,
                loop=e.from_loop,
                due_at=e.deadline.started_at,
                recorded_at=e.occurred_at,
            )
            return {
                "level": e.to_level,
                "loop": e.to_loop or s.loop,
                "deadlines": _with_deadline(s, e.deadline),
                "escalation_count": s.escalation_count + 1,
                "on_time": s.on_time if clock is Clock.INTAKE else False,
                "flag": s.flag.worst(Flag.YELLOW),
                # the named community handler no longer holds a street case
                "assignee": None if e.to_level is not e.from_level else s.assignee,
                "breaches": [*s.breaches, breach],
                "late": [*_made_good(s, Clock.INTAKE), Clock.INTAKE]
                if clock is Clock.INTAKE
                else s.late,
            }
        case OverdueReminded():
            clock = e.clock or Clock.RESOLVE
            reminded = s.deadlines[clock].changed({"remind_at": e.next_remind_at})
            return {"deadlines": _with_deadline(s, reminded)}
        case ReportMerged():
            return {"merged_reports": [*s.merged_reports, e.merged_case_id]}
        case CaseUrged():
            return {"urge_count": s.urge_count + 1, "last_urged_at": e.occurred_at}
        case CaseArchived():
            return {
                "step": Step.ARCHIVE,
                "outcome": e.outcome,
                "archived_at": e.occurred_at,
                "deadlines": {},
                "pending_extension": None,
                "pending_return": None,
                "late": [],
            }
        case _:
            assert_never(e)


def _taking(e: Event) -> CaseChanges:
    """组织建单、党员接单: who holds a taken case. A claim records the taker's role (None for
    staff); the case leaves the taker with a return or a move to another level, and a
    dispatch (again, after a return) starts without an offer."""
    match e:
        case CaseDispatched():
            return {"offered": False, "taken_by_role": None}
        case CaseClaimed():
            return {"taken_by_role": e.role}
        case CaseReturned() | ReturnReviewed(approved=True):
            return {"taken_by_role": None}
        case CaseEscalated() if e.to_level is not e.from_level:
            return {"taken_by_role": None}
    return {}


def _breached(s: CaseState, e: DeadlineBreached) -> CaseChanges:
    flag = s.flag.worst(e.flag)
    breach = Breach(
        clock=e.clock,
        level=e.level,
        loop=s.deadlines[e.clock].loop if e.clock in s.deadlines else None,
        due_at=e.due_at,
        recorded_at=e.occurred_at,
    )
    breaches = [*s.breaches, breach]
    if e.clock in (Clock.ON_SITE, Clock.DELIBERATE, Clock.CLAIM):
        # the clock ends; the case stays yellow until it is made good
        late = [*_made_good(s, e.clock), e.clock]
        return {"flag": flag, "deadlines": _without(s, e.clock), "breaches": breaches, "late": late}
    breached = s.deadlines[e.clock].changed({"breached": True, "remind_at": e.remind_at})
    changes: CaseChanges = {
        "flag": flag,
        "deadlines": _with_deadline(s, breached),
        "breaches": breaches,
    }
    if e.clock is Clock.RESOLVE:
        changes["on_time"] = False
    return changes


def _with_evidence(
    s: CaseState, e: HandlerCheckedIn | ResolutionReported | RevisitRecorded
) -> list[EvidenceRecord]:
    """The case's evidence with what `e` carried, each piece with the step and event."""
    by = e.actor.id if e.actor else None
    return [
        *s.evidence,
        *(
            EvidenceRecord(
                evidence=item,
                step=s.step,
                event=e.type,
                seq=e.seq,
                recorded_at=e.occurred_at,
                by=by,
            )
            for item in e.evidence
        ),
    ]


def _made_good(s: CaseState, clock: Clock) -> list[Clock]:
    """The clocks still late once `clock`'s duty is done."""
    return [c for c in s.late if c is not clock]
