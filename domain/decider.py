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
    MergeInto,
    OpenCase,
    RecordDeliberation,
    RecordDepartmentReport,
    RecordFeedback,
    RecordRevisit,
    ReportResolution,
    RequestExtension,
    ReturnCase,
    ScheduleDeliberation,
    SummonDepartments,
    Withdraw,
)
from domain.errors import DomainError
from domain.events import (
    CaseArchived,
    CaseClaimed,
    CaseDispatched,
    CaseEscalated,
    CaseMerged,
    CaseOpened,
    CaseReopened,
    CaseReturned,
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
    HandlerCheckedIn,
    NoteAdded,
    OverdueReminded,
    ResolutionReported,
    RevisitRecorded,
)
from domain.model import (
    CASE_ID_PATTERN,
    Flag,
    HandlingClass,
    Level,
    Outcome,
    Role,
    Severity,
    Step,
)
from domain.policy import Clock, Deadline, DeadlineChanges, DeadlinePolicy
from domain.state import CaseChanges, CaseState, PendingExtension, evolve_fields

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
    return [CaseOpened(occurred_at=now, case_id=case_id, case=case, policy_version=policy.version)]


def decide(
    state: CaseState,
    command: Command | CheckDeadlines | CheckDepartment,
    now: datetime,
    policy: DeadlinePolicy,
) -> list[Event]:
    if isinstance(command, CheckDeadlines):
        return _check_deadlines(state, now, policy)
    if isinstance(command, CheckDepartment):
        return _check_department(state, command.department, now)
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
    authz.require(
        authz.is_officer_at_or_above(cmd.actor, state, Level.COMMUNITY)
        or cmd.actor.role is Role.SYSTEM,
        cmd.kind,
        cmd.actor,
        "may not dispatch: only the case's community admin, street or district officer",
    )
    up = cmd.severity is Severity.HARD or cmd.handling_class is HandlingClass.ESCALATE
    level = Level.STREET if up else Level.COMMUNITY
    # a self-governance case first waits for its community's talk day; its resolve clock
    # starts once deliberated (or once the wait has run out)
    waits = cmd.handling_class is HandlingClass.SELF_GOVERNANCE and policy.deliberation
    first = Clock.DELIBERATE if waits else Clock.RESOLVE
    deadlines = [policy.deadline(first, level, cmd.severity, now)]
    if level is Level.COMMUNITY:
        deadlines.append(policy.deadline(Clock.ON_SITE, level, cmd.severity, now))
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
    authz.require(
        authz.is_handler(cmd.actor, state),
        cmd.kind,
        cmd.actor,
        "may not claim: not a handler of this case at its level"
        + (" (it is assigned to someone else)" if state.assignee else ""),
    )
    return [CaseClaimed(occurred_at=now, actor=cmd.actor, handler=cmd.actor.id)]


@_decides(CheckIn)
def _check_in(state: CaseState, cmd: CheckIn, now: datetime, policy: DeadlinePolicy) -> list[Event]:
    _step(state, cmd.kind, Step.DELIBERATE, Step.RESOLVE)
    if state.checked_in_at is not None:
        raise DomainError("check_in: the handler is already checked in")
    authz.require(
        cmd.actor.id == state.assignee and authz.covers(cmd.actor, state),
        cmd.kind,
        cmd.actor,
        "is not the handler who claimed it",
    )
    on_site = state.deadlines.get(Clock.ON_SITE)
    # no on-site clock at street level; at community level a missing clock has run out
    on_time = state.level is not Level.COMMUNITY or (on_site is not None and now < on_site.due_at)
    return [HandlerCheckedIn(occurred_at=now, actor=cmd.actor, on_time=on_time)]


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
        resolve = policy.deadline(Clock.RESOLVE, state.level, state.severity, now)
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
    authz.require(
        state.level in (Level.STREET, Level.DISTRICT)
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
    _step(state, cmd.kind, Step.RESOLVE)
    authz.require(authz.is_handler(cmd.actor, state), cmd.kind, cmd.actor, "is not a handler")
    missing = [d for d in state.summoned if d not in state.reported]
    if missing:
        raise DomainError(
            f"report_resolution: summoned departments have not reported: {', '.join(missing)}"
        )
    resolve = state.deadlines.get(Clock.RESOLVE)
    on_time = state.on_time and (resolve is None or now < resolve.due_at)
    return [
        ResolutionReported(occurred_at=now, actor=cmd.actor, summary=cmd.summary, on_time=on_time)
    ]


def _reopened(
    state: CaseState,
    cmd: Command,
    now: datetime,
    policy: DeadlinePolicy,
    reason: Literal["feedback_rejected", "revisit_unsatisfied"],
) -> CaseReopened:
    """Back to resolve, with a fresh resolve clock at the case's level."""
    assert state.level is not None and state.severity is not None
    deadline = policy.deadline(Clock.RESOLVE, state.level, state.severity, now)
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
    revisit = None
    if cmd.accepted:
        rule = policy.revisit_rule(state.case.reporter.categories)
        revisit = policy.deadline(
            Clock.REVISIT,
            state.level,
            state.severity,
            now,
            span=rule.within,
            what=f"{state.severity.value} matter, {state.level.value} level"
            + (", in person" if rule.in_person else ""),
        )
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
    if not cmd.in_person and policy.revisit_rule(state.case.reporter.categories).in_person:
        # 三必问四必访; the category itself is personal data and not named
        raise DomainError(
            "record_revisit: in_person: this resident must be visited in person "
            "(their category requires it)"
        )
    events: list[Event] = [
        RevisitRecorded(
            occurred_at=now,
            actor=cmd.actor,
            satisfaction=cmd.satisfaction,
            notes=cmd.notes,
            in_person=cmd.in_person,
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
    return [CaseReturned(occurred_at=now, actor=cmd.actor, reason=cmd.reason)]


def _involved(state: CaseState, cmd: Command) -> bool:
    actor = cmd.actor
    return (
        authz.covers(actor, state)
        or authz.is_reporter(actor, state)
        or (actor.role is Role.DEPARTMENT and actor.org in state.summoned)
        or actor.role is Role.SYSTEM
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
            next_at = d.remind_at
            while next_at <= now:
                next_at += policy.district_reminder
            yield OverdueReminded(
                **common,
                level=d.level,
                due_at=d.due_at,
                overdue_days=(now - d.due_at).days,
                next_remind_at=next_at,
            )
        return
    if now < d.due_at:
        if not d.warned and now >= d.warn_at:
            yield DeadlineWarned(**common, clock=d.clock, level=d.level, due_at=d.due_at)
        return
    above = d.level.above()
    if d.clock is Clock.RESOLVE and above is not None:
        assert state.severity is not None
        # The new level's clock starts when the old one ran out, not when the timer was
        # served, so a late worker never stretches the ladder.
        yield CaseEscalated(
            **common,
            from_level=d.level,
            to_level=above,
            deadline=policy.deadline(Clock.RESOLVE, above, state.severity, d.due_at),
        )
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
            deadline=policy.deadline(Clock.RESOLVE, state.level, state.severity, d.due_at),
        )
        return
    red = d.clock is Clock.RESOLVE
    yield DeadlineBreached(
        **common,
        clock=d.clock,
        level=d.level,
        due_at=d.due_at,
        flag=Flag.RED if red else Flag.YELLOW,
        remind_at=d.due_at + policy.district_reminder if red else None,
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
                "assignee": e.assignee,
                "dispatched_at": e.occurred_at,
                "deadlines": {d.clock: d for d in e.deadlines},
            }
        case CaseClaimed():
            return {"assignee": e.handler, "claimed": True, "step": Step.DELIBERATE}
        case HandlerCheckedIn():
            return {"checked_in_at": e.occurred_at, "deadlines": _without(s, Clock.ON_SITE)}
        case DeliberationRecorded():
            return {"handling_class": e.handling_class, "step": Step.RESOLVE}
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
            return {
                "step": Step.FEEDBACK,
                "resolved_at": e.occurred_at,
                "on_time": e.on_time,
                "deadlines": _without(s, Clock.RESOLVE, Clock.ON_SITE),
                "pending_extension": None,
            }
        case FeedbackRecorded():
            return {
                "satisfaction": e.satisfaction,
                "step": Step.REVISIT if e.accepted else s.step,
                "deadlines": _with_deadline(s, e.revisit) if e.revisit else s.deadlines,
            }
        case RevisitRecorded():
            return {"satisfaction": e.satisfaction, "deadlines": _without(s, Clock.REVISIT)}
        case CaseReopened():
            return {
                "step": Step.RESOLVE,
                "reopen_count": s.reopen_count + 1,
                "resolved_at": None,
                "deadlines": {**_without(s, Clock.REVISIT), Clock.RESOLVE: e.deadline},
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
            return {
                "level": e.to_level,
                "deadlines": _with_deadline(s, e.deadline),
                "escalation_count": s.escalation_count + 1,
                "on_time": False,
                "flag": s.flag.worst(Flag.YELLOW),
                # the named community handler no longer holds a street case
                "assignee": None,
            }
        case OverdueReminded():
            reminded = s.deadlines[Clock.RESOLVE].changed({"remind_at": e.next_remind_at})
            return {"deadlines": _with_deadline(s, reminded)}
        case CaseArchived():
            return {
                "step": Step.ARCHIVE,
                "outcome": e.outcome,
                "archived_at": e.occurred_at,
                "deadlines": {},
                "pending_extension": None,
            }
        case _:
            assert_never(e)


def _breached(s: CaseState, e: DeadlineBreached) -> CaseChanges:
    flag = s.flag.worst(e.flag)
    if e.clock in (Clock.ON_SITE, Clock.DELIBERATE):
        return {"flag": flag, "deadlines": _without(s, e.clock)}
    breached = s.deadlines[e.clock].changed({"breached": True, "remind_at": e.remind_at})
    changes: CaseChanges = {"flag": flag, "deadlines": _with_deadline(s, breached)}
    if e.clock is Clock.RESOLVE:
        changes["on_time"] = False
    return changes
