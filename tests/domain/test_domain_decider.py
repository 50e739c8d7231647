"""The decider: every transition of the six-step loop, and every refusal."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from domain.commands import (
    COMMANDS,
    AddNote,
    CheckDeadlines,
    CheckIn,
    Claim,
    Command,
    DecideExtension,
    Dispatch,
    MergeInto,
    OfferCase,
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
    parse_open_case,
)
from domain.decider import apply_batch, decide, expected_case_id, open_case
from domain.errors import DomainError
from domain.events import (
    CaseArchived,
    CaseClaimed,
    CaseDispatched,
    CaseMerged,
    CaseOpened,
    CaseReopened,
    CaseReturned,
    CaseWithdrawn,
    DeliberationRecorded,
    DepartmentReported,
    DepartmentsSummoned,
    ExtensionDecided,
    ExtensionRequested,
    FeedbackRecorded,
    HandlerCheckedIn,
    NoteAdded,
    ResolutionReported,
    RevisitRecorded,
)
from domain.model import (
    Actor,
    Flag,
    HandlingClass,
    Level,
    Outcome,
    Role,
    Satisfaction,
    Severity,
    Step,
)
from domain.policy import Clock
from policies import NOTHING_RAISED, POLICY_2026_2

if TYPE_CHECKING:  # the builders live in this directory's conftest.py (fixtures)
    from conftest import Actors, Story

NewStory = Callable[..., "Story"]
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def refused(story: Story, command: Command, now: datetime, match: str) -> DomainError:
    version = story.state.version
    with pytest.raises(DomainError, match=match) as info:
        story.decide(command, now)
    assert story.state.version == version
    return info.value


def street_case(story: NewStory, to: Step = Step.RESOLVE) -> Story:
    return story(severity=Severity.HARD, handling_class=HandlingClass.JOINT).advance(to)


# ------------------------------------------------------------------ open


def test_open_case(t0: datetime, open_payload_of: Callable[..., dict[str, object]]) -> None:
    case = parse_open_case(open_payload_of())
    assert expected_case_id(case) == "case-hotline_12345-T-0001"
    [event] = open_case("case-hotline_12345-T-0001", case, t0, POLICY_2026_2)
    assert isinstance(event, CaseOpened)
    assert event.case_id == "case-hotline_12345-T-0001"
    assert event.case == case
    assert event.policy_version == "7135-2026.2"
    assert event.occurred_at == t0 and event.actor is None
    state, _ = apply_batch(None, [event])
    assert state.case_id == "case-hotline_12345-T-0001"
    assert state.version == 1
    assert state.step is Step.COLLECT
    assert state.flag is Flag.GREEN and state.on_time
    assert state.opened_at == state.updated_at == t0
    assert state.deadlines == {} and state.next_wake() is None
    assert state.orgs == ["G-01", "C-01", "S-01", "D-01"]


@pytest.mark.parametrize(
    "case_id",
    ["case-hotline_12345-T-0002", "case-visit-T-0001", "case-hotline_12345-t-0001", "T-0001"],
)
def test_a_source_ticket_fixes_the_case_id(
    t0: datetime, open_payload_of: Callable[..., dict[str, object]], case_id: str
) -> None:
    case = parse_open_case(open_payload_of())
    with pytest.raises(
        DomainError, match=r"^OpenCase: case id must be case-hotline_12345-<source_ref> for a case"
    ):
        open_case(case_id, case, t0, POLICY_2026_2)


def test_without_a_source_ticket_the_id_starts_with_the_source(
    t0: datetime, open_payload_of: Callable[..., dict[str, object]]
) -> None:
    case = parse_open_case(open_payload_of(source="visit", source_ref=None))
    assert expected_case_id(case) is None
    case_id = "case-visit-0b6f3a2e-6f1e-4c1a-9a65-2b1f0c1d2e3f"
    [event] = open_case(case_id, case, t0, POLICY_2026_2)
    assert isinstance(event, CaseOpened) and event.case_id == case_id
    with pytest.raises(DomainError, match=r"^OpenCase: case id must start with case-visit-"):
        open_case("case-patrol-0b6f3a2e", case, t0, POLICY_2026_2)


@pytest.mark.parametrize(
    "case_id", ["case-visit-", "case-visit-a b", "case-visit-" + "x" * 65, "case-visit-x/y"]
)
def test_a_malformed_case_id_is_refused_not_a_crash(
    t0: datetime, open_payload_of: Callable[..., dict[str, object]], case_id: str
) -> None:
    case = parse_open_case(open_payload_of(source="visit", source_ref=None))
    with pytest.raises(DomainError, match=r"^OpenCase: case id must match"):
        open_case(case_id, case, t0, POLICY_2026_2)


# ------------------------------------------------------------------ dispatch


def test_dispatch_a_minor_matter_to_the_community(story: NewStory, actors: Actors) -> None:
    s = story()
    now = s.DISPATCH_AT
    [event] = s.run(
        Dispatch(
            actor=actors.community_admin,
            severity=Severity.MINOR,
            handling_class=HandlingClass.IMMEDIATE,
            assignee="gw-1",
        ),
        now,
    )
    assert isinstance(event, CaseDispatched)
    assert event.seq == 2 and event.actor == actors.community_admin
    assert event.level is Level.COMMUNITY
    assert event.assignee == "gw-1"
    assert [d.clock for d in event.deadlines] == [Clock.RESOLVE, Clock.ON_SITE]
    state = s.state
    assert state.step is Step.COLLECT  # still to be claimed
    assert state.level is Level.COMMUNITY and state.severity is Severity.MINOR
    assert state.handling_class is HandlingClass.IMMEDIATE
    assert state.dispatched_at == now and state.assignee == "gw-1" and not state.claimed
    assert state.deadlines[Clock.RESOLVE].due_at == now + DAY
    assert state.deadlines[Clock.ON_SITE].due_at == now + timedelta(minutes=7)
    assert state.due_at == now + DAY
    assert all(d.policy_version == "7135-2026.2" for d in state.deadlines.values())


def test_dispatch_a_major_matter(story: NewStory) -> None:
    s = story(severity=Severity.MAJOR, handling_class=HandlingClass.JOINT)
    s.dispatch()
    assert s.state.level is Level.COMMUNITY
    assert s.state.deadlines[Clock.RESOLVE].due_at == s.DISPATCH_AT + 3 * DAY


@pytest.mark.parametrize(
    ("severity", "handling_class"),
    [
        (Severity.HARD, HandlingClass.JOINT),
        (Severity.HARD, HandlingClass.IMMEDIATE),
        (Severity.MINOR, HandlingClass.ESCALATE),
    ],
)
def test_hard_or_escalated_matters_go_to_the_street(
    story: NewStory, severity: Severity, handling_class: HandlingClass
) -> None:
    s = story(severity=severity, handling_class=handling_class)
    [event] = s.dispatch()
    assert isinstance(event, CaseDispatched) and event.level is Level.STREET
    assert list(s.state.deadlines) == [Clock.RESOLVE]  # no on-site clock at street level
    resolve = s.state.deadlines[Clock.RESOLVE]
    assert resolve.level is Level.STREET
    assert resolve.due_at == s.DISPATCH_AT + 5 * DAY


@pytest.mark.parametrize("who", ["street_officer", "district_officer", "system"])
def test_officers_above_and_the_intake_system_may_dispatch(
    story: NewStory, actors: Actors, who: str
) -> None:
    s = story()
    command = Dispatch(
        actor=getattr(actors, who), severity=Severity.MINOR, handling_class=HandlingClass.IMMEDIATE
    )
    [event] = s.run(command, s.DISPATCH_AT)
    assert isinstance(event, CaseDispatched)


@pytest.mark.parametrize(
    "who",
    [
        "grid_worker",
        "resident",
        "water",
        "other_community_admin",
        "other_street_officer",
        "other_district_officer",
    ],
)
def test_others_may_not_dispatch(story: NewStory, actors: Actors, who: str) -> None:
    s = story()
    actor = getattr(actors, who)
    command = Dispatch(actor=actor, severity=Severity.MINOR, handling_class=HandlingClass.JOINT)
    error = refused(s, command, s.DISPATCH_AT, "^dispatch: actor .* may not dispatch")
    expected = "actor (resident)" if actor.role is Role.RESIDENT else f"actor {actor.id} ("
    assert expected in str(error)


def test_a_dispatched_case_is_not_dispatched_again(story: NewStory, actors: Actors) -> None:
    s = story()
    s.dispatch()
    command = Dispatch(
        actor=actors.community_admin, severity=Severity.MAJOR, handling_class=HandlingClass.JOINT
    )
    refused(s, command, s.CLAIM_AT, "^dispatch: the case is already dispatched; return it first")


def test_dispatch_only_in_collect(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.DELIBERATE)
    command = Dispatch(
        actor=actors.community_admin, severity=Severity.MAJOR, handling_class=HandlingClass.JOINT
    )
    refused(
        s,
        command,
        s.DELIBERATE_AT,
        r"^dispatch: not allowed in step deliberate \(only in collect\)",
    )


# ------------------------------------------------------------------ claim and check in


def test_claim(story: NewStory, actors: Actors) -> None:
    s = story()
    s.dispatch()
    [event] = s.run(Claim(actor=actors.grid_worker), s.CLAIM_AT)
    assert isinstance(event, CaseClaimed) and event.handler == "gw-1"
    assert s.state.step is Step.DELIBERATE
    assert s.state.assignee == "gw-1" and s.state.claimed


def test_claim_before_dispatch_is_refused(story: NewStory, actors: Actors) -> None:
    s = story()
    refused(
        s, Claim(actor=actors.grid_worker), s.CLAIM_AT, "^claim: the case is not dispatched yet"
    )


@pytest.mark.parametrize(
    "who", ["community_admin", "street_officer", "district_officer", "grid_worker_2"]
)
def test_handlers_of_the_community_case_may_claim(
    story: NewStory, actors: Actors, who: str
) -> None:
    s = story()
    s.dispatch()
    s.run(Claim(actor=getattr(actors, who)), s.CLAIM_AT)
    assert s.state.assignee == getattr(actors, who).id


@pytest.mark.parametrize(
    "who", ["other_grid_worker", "other_community_admin", "resident", "water", "system"]
)
def test_others_may_not_claim(story: NewStory, actors: Actors, who: str) -> None:
    s = story()
    s.dispatch()
    refused(s, Claim(actor=getattr(actors, who)), s.CLAIM_AT, "^claim: actor .* may not claim")


def test_a_named_assignee_is_the_only_grid_worker_who_may_claim(
    story: NewStory, actors: Actors
) -> None:
    s = story()
    s.dispatch(assignee="gw-2")
    error = refused(s, Claim(actor=actors.grid_worker), s.CLAIM_AT, "^claim: ")
    assert "(it is assigned to someone else)" in str(error)
    s.run(Claim(actor=actors.grid_worker_2), s.CLAIM_AT)
    assert s.state.assignee == "gw-2"


def test_a_community_admin_may_claim_a_case_assigned_to_a_grid_worker(
    story: NewStory, actors: Actors
) -> None:
    s = story()
    s.dispatch(assignee="gw-2")
    s.run(Claim(actor=actors.community_admin), s.CLAIM_AT)
    assert s.state.assignee == "ca-1"


def test_a_street_case_is_claimed_by_the_street(story: NewStory, actors: Actors) -> None:
    s = story(severity=Severity.HARD, handling_class=HandlingClass.JOINT)
    s.dispatch()
    for who in (actors.grid_worker, actors.community_admin, actors.other_street_officer):
        refused(s, Claim(actor=who), s.CLAIM_AT, "^claim: actor .* may not claim")
    s.run(Claim(actor=actors.street_officer), s.CLAIM_AT)
    assert s.state.assignee == "so-1" and s.state.step is Step.DELIBERATE


def test_claim_only_once(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.DELIBERATE)
    refused(
        s,
        Claim(actor=actors.grid_worker),
        s.DELIBERATE_AT,
        "^claim: not allowed in step deliberate",
    )


def test_check_in_on_time(story: NewStory, actors: Actors) -> None:
    s = story()
    s.dispatch()
    s.run(Claim(actor=actors.grid_worker), s.CLAIM_AT)
    now = s.DISPATCH_AT + timedelta(minutes=6, seconds=59)
    [event] = s.run(CheckIn(actor=actors.grid_worker), now)
    assert isinstance(event, HandlerCheckedIn) and event.on_time
    assert s.state.checked_in_at == now
    assert Clock.ON_SITE not in s.state.deadlines
    assert Clock.RESOLVE in s.state.deadlines


def test_check_in_at_seven_minutes_is_late(story: NewStory, actors: Actors) -> None:
    s = story()
    s.dispatch()
    s.run(Claim(actor=actors.grid_worker), s.CLAIM_AT)
    [event] = s.run(CheckIn(actor=actors.grid_worker), s.DISPATCH_AT + timedelta(minutes=7))
    assert isinstance(event, HandlerCheckedIn) and not event.on_time


def test_check_in_after_the_on_site_clock_ran_out_is_late(story: NewStory, actors: Actors) -> None:
    s = story()
    s.dispatch()
    s.run(Claim(actor=actors.grid_worker), s.CLAIM_AT)
    s.tick(s.DISPATCH_AT + timedelta(minutes=8))
    assert Clock.ON_SITE not in s.state.deadlines
    [event] = s.run(CheckIn(actor=actors.grid_worker), s.DISPATCH_AT + timedelta(minutes=9))
    assert isinstance(event, HandlerCheckedIn) and not event.on_time


def test_check_in_at_street_level_is_on_time(story: NewStory, actors: Actors) -> None:
    s = street_case(story, Step.DELIBERATE)
    # the standard path checked the street officer in, days after dispatch: no on-site clock
    checked = [e for e in s.events if isinstance(e, HandlerCheckedIn)]
    assert len(checked) == 1 and checked[0].on_time


def test_check_in_only_by_the_handler_who_claimed(story: NewStory, actors: Actors) -> None:
    s = story()
    s.dispatch()
    s.run(Claim(actor=actors.grid_worker), s.CLAIM_AT)
    for who in (actors.grid_worker_2, actors.community_admin, actors.resident):
        refused(s, CheckIn(actor=who), s.CHECK_IN_AT, "^check_in: actor .* is not the handler")


def test_check_in_by_a_namesake_of_another_grid_is_refused(story: NewStory, actors: Actors) -> None:
    s = story()
    s.dispatch()
    s.run(Claim(actor=actors.grid_worker), s.CLAIM_AT)
    namesake = Actor(id="gw-1", role=Role.GRID_WORKER, org="G-02")
    refused(
        s, CheckIn(actor=namesake), s.CHECK_IN_AT, "^check_in: actor gw-1 .* is not the handler"
    )


def test_check_in_once(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.DELIBERATE)
    refused(
        s,
        CheckIn(actor=actors.grid_worker),
        s.DELIBERATE_AT,
        "^check_in: the handler is already checked in",
    )


def test_check_in_only_once_claimed(story: NewStory, actors: Actors) -> None:
    s = story()
    s.dispatch()
    refused(
        s,
        CheckIn(actor=actors.grid_worker),
        s.CHECK_IN_AT,
        "^check_in: not allowed in step collect",
    )


def test_check_in_may_come_during_resolve(story: NewStory, actors: Actors) -> None:
    s = story()
    s.dispatch()
    s.run(Claim(actor=actors.grid_worker), s.CLAIM_AT)
    s.run(
        RecordDeliberation(actor=actors.grid_worker, participants=["gw-1"], decision="go"),
        s.CHECK_IN_AT,
    )
    assert s.state.step is Step.RESOLVE
    [event] = s.run(CheckIn(actor=actors.grid_worker), s.CHECK_IN_AT + timedelta(minutes=1))
    assert isinstance(event, HandlerCheckedIn) and event.on_time


# ------------------------------------------------------------------ deliberate


def test_record_deliberation(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.DELIBERATE)
    [event] = s.run(
        RecordDeliberation(
            actor=actors.grid_worker,
            participants=["王阿姨", "物业经理"],
            decision="the property company replaces the lamp",
            handling_class=HandlingClass.SELF_GOVERNANCE,
            plan="Thursday morning",
        ),
        s.DELIBERATE_AT,
    )
    assert isinstance(event, DeliberationRecorded)
    assert event.participants == ["王阿姨", "物业经理"]
    assert (
        event.handling_class is HandlingClass.SELF_GOVERNANCE and event.plan == "Thursday morning"
    )
    assert s.state.step is Step.RESOLVE
    assert s.state.handling_class is HandlingClass.SELF_GOVERNANCE


def test_deliberation_keeps_the_handling_class_when_none_is_given(
    story: NewStory, actors: Actors
) -> None:
    s = story(handling_class=HandlingClass.EXPLANATION).advance(Step.RESOLVE)
    [event] = [e for e in s.events if isinstance(e, DeliberationRecorded)]
    assert event.handling_class is HandlingClass.EXPLANATION
    assert s.state.handling_class is HandlingClass.EXPLANATION


def test_deliberation_only_in_deliberate(story: NewStory, actors: Actors) -> None:
    command = RecordDeliberation(actor=actors.grid_worker, participants=["a"], decision="d")
    s = story()
    s.dispatch()
    refused(s, command, s.CLAIM_AT, "^record_deliberation: not allowed in step collect")
    s.advance(Step.RESOLVE)
    refused(s, command, s.RESOLVE_AT, "^record_deliberation: not allowed in step resolve")


@pytest.mark.parametrize("who", ["other_grid_worker", "resident", "water", "other_community_admin"])
def test_deliberation_only_by_a_handler(story: NewStory, actors: Actors, who: str) -> None:
    s = story().advance(Step.DELIBERATE)
    command = RecordDeliberation(actor=getattr(actors, who), participants=["a"], decision="d")
    refused(s, command, s.DELIBERATE_AT, "^record_deliberation: actor .* is not a handler")


def test_another_grid_worker_may_not_act_once_the_case_is_claimed(
    story: NewStory, actors: Actors
) -> None:
    s = story().advance(Step.DELIBERATE)
    command = RecordDeliberation(actor=actors.grid_worker_2, participants=["a"], decision="d")
    refused(s, command, s.DELIBERATE_AT, "^record_deliberation: actor gw-2 .* is not a handler")


# ------------------------------------------------------------------ summon departments


def summon(actor: Actor, *departments: str) -> SummonDepartments:
    return SummonDepartments(actor=actor, departments=list(departments), reason="burst main")


def test_the_street_summons_departments(story: NewStory, actors: Actors) -> None:
    s = street_case(story)
    now = s.RESOLVE_AT
    [event] = s.run(summon(actors.street_officer, "water", "police"), now)
    assert isinstance(event, DepartmentsSummoned)
    assert event.departments == ["water", "police"] and event.reason == "burst main"
    assert s.state.summoned == ["water", "police"] and s.state.reported == []


def test_the_district_may_summon_too(story: NewStory, actors: Actors) -> None:
    s = street_case(story)
    s.run(summon(actors.district_officer, "water"), s.RESOLVE_AT)
    assert s.state.summoned == ["water"]


def test_a_community_case_does_not_summon(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.RESOLVE)
    for who in (actors.community_admin, actors.street_officer):
        refused(
            s, summon(who, "water"), s.RESOLVE_AT, "^summon_departments: actor .* may not summon"
        )


@pytest.mark.parametrize(
    "who",
    ["community_admin", "grid_worker", "other_street_officer", "other_district_officer", "water"],
)
def test_only_the_street_or_district_summons(story: NewStory, actors: Actors, who: str) -> None:
    s = street_case(story)
    refused(
        s,
        summon(getattr(actors, who), "water"),
        s.RESOLVE_AT,
        "^summon_departments: actor .* may not summon",
    )


def test_summon_only_in_resolve(story: NewStory, actors: Actors) -> None:
    s = street_case(story, Step.DELIBERATE)
    refused(
        s,
        summon(actors.street_officer, "water"),
        s.DELIBERATE_AT,
        "^summon_departments: not allowed in step deliberate",
    )


def test_a_department_is_summoned_once(story: NewStory, actors: Actors) -> None:
    s = street_case(story)
    s.run(summon(actors.street_officer, "water"), s.RESOLVE_AT)
    refused(
        s,
        summon(actors.street_officer, "police", "water"),
        s.RESOLVE_AT + HOUR,
        "^summon_departments: departments already summoned: water$",
    )
    s.run(summon(actors.street_officer, "police"), s.RESOLVE_AT + HOUR)
    assert s.state.summoned == ["water", "police"]


def test_departments_report_and_then_the_case_may_be_resolved(
    story: NewStory, actors: Actors
) -> None:
    s = street_case(story)
    t = s.RESOLVE_AT
    s.run(summon(actors.street_officer, "water", "police"), t)
    resolve = ReportResolution(actor=actors.street_officer, summary="main repaired")
    refused(
        s,
        resolve,
        t + HOUR,
        "^report_resolution: summoned departments have not reported: water, police$",
    )
    [event] = s.run(RecordDepartmentReport(actor=actors.water, report="valve shut"), t + HOUR)
    assert isinstance(event, DepartmentReported) and event.department == "water"
    assert s.state.reported == ["water"]
    refused(
        s,
        resolve,
        t + 2 * HOUR,
        "^report_resolution: summoned departments have not reported: police$",
    )
    s.run(RecordDepartmentReport(actor=actors.police, report="traffic diverted"), t + 2 * HOUR)
    [resolved] = s.run(resolve, t + 3 * HOUR)
    assert isinstance(resolved, ResolutionReported)
    assert s.state.step is Step.FEEDBACK


def test_a_department_not_summoned_may_not_report(story: NewStory, actors: Actors) -> None:
    s = street_case(story)
    s.run(summon(actors.street_officer, "water"), s.RESOLVE_AT)
    command = RecordDepartmentReport(actor=actors.police, report="here")
    refused(
        s,
        command,
        s.RESOLVE_AT,
        "^record_department_report: actor police-duty .* is not a department summoned",
    )


def test_only_departments_report(story: NewStory, actors: Actors) -> None:
    s = street_case(story)
    s.run(summon(actors.street_officer, "water"), s.RESOLVE_AT)
    posing = Actor(id="so-1", role=Role.STREET_OFFICER, org="water")
    refused(
        s,
        RecordDepartmentReport(actor=posing, report="x"),
        s.RESOLVE_AT,
        "^record_department_report: actor so-1 .* is not a department summoned",
    )


def test_a_department_reports_once(story: NewStory, actors: Actors) -> None:
    s = street_case(story)
    s.run(summon(actors.street_officer, "water", "police"), s.RESOLVE_AT)
    s.run(RecordDepartmentReport(actor=actors.water, report="done"), s.RESOLVE_AT + HOUR)
    refused(
        s,
        RecordDepartmentReport(actor=actors.water, report="done again"),
        s.RESOLVE_AT + 2 * HOUR,
        "^record_department_report: department water already reported$",
    )


# ------------------------------------------------------------------ resolve


def test_report_resolution_on_time(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.RESOLVE)
    [event] = s.run(
        ReportResolution(actor=actors.grid_worker, summary="lamp replaced"), s.RESOLVE_AT
    )
    assert isinstance(event, ResolutionReported)
    assert event.summary == "lamp replaced" and event.on_time
    state = s.state
    assert state.step is Step.FEEDBACK
    assert state.resolved_at == s.RESOLVE_AT
    assert state.on_time
    assert state.deadlines == {} and state.next_wake() is None
    assert state.due_at is None


def test_report_resolution_at_the_due_time_is_late(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.RESOLVE)
    due = s.state.deadlines[Clock.RESOLVE].due_at
    [early] = s.decide(
        ReportResolution(actor=actors.grid_worker, summary="x"), due - timedelta(seconds=1)
    )
    assert isinstance(early, ResolutionReported) and early.on_time
    [late] = s.run(ReportResolution(actor=actors.grid_worker, summary="x"), due)
    assert isinstance(late, ResolutionReported) and not late.on_time
    assert not s.state.on_time


def test_report_resolution_only_in_resolve(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.DELIBERATE)
    command = ReportResolution(actor=actors.grid_worker, summary="x")
    refused(s, command, s.DELIBERATE_AT, "^report_resolution: not allowed in step deliberate")
    s.advance(Step.FEEDBACK)
    refused(s, command, s.FEEDBACK_AT, "^report_resolution: not allowed in step feedback")


@pytest.mark.parametrize("who", ["other_grid_worker", "grid_worker_2", "resident", "water"])
def test_report_resolution_only_by_a_handler(story: NewStory, actors: Actors, who: str) -> None:
    s = story().advance(Step.RESOLVE)
    command = ReportResolution(actor=getattr(actors, who), summary="x")
    refused(s, command, s.RESOLVE_AT, "^report_resolution: actor .* is not a handler")


# ------------------------------------------------------------------ feedback and revisit


def feedback(actor: Actor, accepted: bool = True) -> RecordFeedback:
    satisfaction = Satisfaction.SATISFIED if accepted else Satisfaction.UNSATISFIED
    return RecordFeedback(actor=actor, accepted=accepted, satisfaction=satisfaction)


def test_feedback_accepted_starts_the_revisit_clock(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.FEEDBACK)
    now = s.FEEDBACK_AT
    [event] = s.run(
        RecordFeedback(
            actor=actors.resident,
            accepted=True,
            satisfaction=Satisfaction.VERY_SATISFIED,
            comment="谢谢",
        ),
        now,
    )
    assert isinstance(event, FeedbackRecorded)
    assert event.accepted and event.comment == "谢谢"
    assert event.revisit is not None and event.revisit.clock is Clock.REVISIT
    assert event.revisit.due_at == now + 7 * DAY
    assert s.state.step is Step.REVISIT
    assert s.state.satisfaction is Satisfaction.VERY_SATISFIED
    assert list(s.state.deadlines) == [Clock.REVISIT]
    assert s.state.due_at == now + 7 * DAY


@pytest.mark.parametrize(
    "who", ["resident", "grid_worker", "grid_worker_2", "community_admin", "street_officer"]
)
def test_who_may_record_feedback(story: NewStory, actors: Actors, who: str) -> None:
    s = story().advance(Step.FEEDBACK)
    [event] = s.run(feedback(getattr(actors, who)), s.FEEDBACK_AT)
    assert isinstance(event, FeedbackRecorded)


@pytest.mark.parametrize(
    "who", ["other_resident", "other_grid_worker", "other_community_admin", "water", "system"]
)
def test_who_may_not_record_feedback(story: NewStory, actors: Actors, who: str) -> None:
    s = story().advance(Step.FEEDBACK)
    refused(
        s,
        feedback(getattr(actors, who)),
        s.FEEDBACK_AT,
        "^record_feedback: actor .* may not record feedback",
    )


def test_an_anonymous_report_has_no_resident_to_give_feedback(
    story: NewStory, actors: Actors
) -> None:
    s = story(reporter={"name": "匿名"}).advance(Step.FEEDBACK)
    refused(s, feedback(actors.resident), s.FEEDBACK_AT, "^record_feedback: actor \\(resident\\) ")


def test_feedback_only_in_feedback(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.RESOLVE)
    refused(
        s, feedback(actors.resident), s.RESOLVE_AT, "^record_feedback: not allowed in step resolve"
    )
    s.advance(Step.REVISIT)
    refused(
        s, feedback(actors.resident), s.REVISIT_AT, "^record_feedback: not allowed in step revisit"
    )


def test_feedback_rejected_reopens_the_case_with_a_fresh_clock(
    story: NewStory, actors: Actors
) -> None:
    s = story().advance(Step.FEEDBACK)
    now = s.FEEDBACK_AT
    recorded, reopened = s.run(feedback(actors.resident, accepted=False), now)
    assert isinstance(recorded, FeedbackRecorded) and recorded.revisit is None
    assert isinstance(reopened, CaseReopened) and reopened.reason == "feedback_rejected"
    assert reopened.seq == recorded.seq + 1
    assert reopened.deadline.clock is Clock.RESOLVE
    assert reopened.deadline.started_at == now
    assert reopened.deadline.due_at == now + DAY
    assert reopened.deadline.policy_version == "7135-2026.2"
    state = s.state
    assert state.step is Step.RESOLVE
    assert state.reopen_count == 1
    assert state.resolved_at is None
    assert state.satisfaction is Satisfaction.UNSATISFIED
    assert list(state.deadlines) == [Clock.RESOLVE]
    # the loop runs again
    s.run(ReportResolution(actor=actors.grid_worker, summary="new lamp"), now + HOUR)
    s.run(feedback(actors.resident, accepted=False), now + 2 * HOUR)
    assert s.state.reopen_count == 2 and s.state.step is Step.RESOLVE


def test_revisit_satisfied_archives_the_case(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.REVISIT)
    now = s.REVISIT_AT
    revisit, archived = s.run(
        RecordRevisit(
            checklist=NOTHING_RAISED,
            actor=actors.grid_worker,
            satisfaction=Satisfaction.BASICALLY_SATISFIED,
            notes="still lit",
            in_person=False,
        ),
        now,
    )
    assert isinstance(revisit, RevisitRecorded)
    assert revisit.notes == "still lit" and not revisit.in_person
    assert isinstance(archived, CaseArchived) and archived.outcome is Outcome.COMPLETED
    state = s.state
    assert state.archived and state.step is Step.ARCHIVE
    assert state.outcome is Outcome.COMPLETED and state.archived_at == now
    assert state.satisfaction is Satisfaction.BASICALLY_SATISFIED
    assert state.deadlines == {} and state.next_wake() is None


def test_revisit_unsatisfied_reopens_the_case(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.REVISIT)
    now = s.REVISIT_AT
    _, reopened = s.run(
        RecordRevisit(
            checklist=NOTHING_RAISED,
            actor=actors.community_admin,
            satisfaction=Satisfaction.UNSATISFIED,
        ),
        now,
    )
    assert isinstance(reopened, CaseReopened) and reopened.reason == "revisit_unsatisfied"
    assert reopened.deadline.started_at == now and reopened.deadline.due_at == now + DAY
    state = s.state
    assert state.step is Step.RESOLVE and state.reopen_count == 1
    assert list(state.deadlines) == [Clock.RESOLVE]
    assert not state.archived and state.outcome is None


@pytest.mark.parametrize(
    "who", ["resident", "other_grid_worker", "other_street_officer", "water", "system"]
)
def test_who_may_not_record_a_revisit(story: NewStory, actors: Actors, who: str) -> None:
    s = story().advance(Step.REVISIT)
    command = RecordRevisit(
        checklist=NOTHING_RAISED, actor=getattr(actors, who), satisfaction=Satisfaction.SATISFIED
    )
    refused(s, command, s.REVISIT_AT, "^record_revisit: actor .* may not record a revisit")


def test_revisit_only_in_revisit(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.FEEDBACK)
    command = RecordRevisit(
        checklist=NOTHING_RAISED, actor=actors.grid_worker, satisfaction=Satisfaction.SATISFIED
    )
    refused(s, command, s.FEEDBACK_AT, "^record_revisit: not allowed in step feedback")


# ------------------------------------------------------------------ ending early


def test_the_resident_withdraws(story: NewStory, actors: Actors, t0: datetime) -> None:
    s = story()
    withdrawn, archived = s.run(
        Withdraw(actor=actors.resident, reason="fixed it myself"), t0 + HOUR
    )
    assert isinstance(withdrawn, CaseWithdrawn) and withdrawn.reason == "fixed it myself"
    assert isinstance(archived, CaseArchived) and archived.outcome is Outcome.WITHDRAWN
    assert s.state.archived and s.state.outcome is Outcome.WITHDRAWN
    assert s.state.archived_at == t0 + HOUR


@pytest.mark.parametrize("who", ["community_admin", "street_officer", "district_officer"])
def test_officers_withdraw_a_running_case(story: NewStory, actors: Actors, who: str) -> None:
    s = story().advance(Step.RESOLVE)
    s.run(Withdraw(actor=getattr(actors, who), reason="duplicate of a 12345 ticket"), s.RESOLVE_AT)
    assert s.state.outcome is Outcome.WITHDRAWN and s.state.deadlines == {}


@pytest.mark.parametrize(
    "who", ["grid_worker", "other_resident", "other_community_admin", "water", "system"]
)
def test_who_may_not_withdraw(story: NewStory, actors: Actors, who: str) -> None:
    s = story().advance(Step.RESOLVE)
    refused(
        s,
        Withdraw(actor=getattr(actors, who), reason="r"),
        s.RESOLVE_AT,
        "^withdraw: actor .* may not withdraw",
    )


def test_merge_into_another_case(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.DELIBERATE)
    target = "case-mini_program-M-77"
    merged, archived = s.run(
        MergeInto(actor=actors.community_admin, target_case_id=target), s.DELIBERATE_AT
    )
    assert isinstance(merged, CaseMerged) and merged.target_case_id == target
    assert isinstance(archived, CaseArchived) and archived.outcome is Outcome.MERGED
    assert s.state.archived and s.state.merged_into == target
    assert s.state.outcome is Outcome.MERGED


def test_the_intake_system_merges_duplicates(story: NewStory, actors: Actors, t0: datetime) -> None:
    s = story()
    s.run(MergeInto(actor=actors.system, target_case_id="case-wechat_qr-Q-1"), t0 + HOUR)
    assert s.state.outcome is Outcome.MERGED


def test_a_case_is_not_merged_into_itself(story: NewStory, actors: Actors, t0: datetime) -> None:
    s = story()
    command = MergeInto(actor=actors.community_admin, target_case_id=s.state.case_id)
    refused(
        s, command, t0 + HOUR, "^merge_into: target_case_id: a case cannot be merged into itself$"
    )


@pytest.mark.parametrize("who", ["grid_worker", "resident", "water", "other_community_admin"])
def test_who_may_not_merge(story: NewStory, actors: Actors, who: str, t0: datetime) -> None:
    s = story()
    command = MergeInto(actor=getattr(actors, who), target_case_id="case-visit-V-1")
    refused(s, command, t0 + HOUR, "^merge_into: actor .* may not merge")


# ------------------------------------------------------------------ return


def test_return_case_goes_back_to_collect(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.RESOLVE)
    s.run(RequestExtension(actor=actors.grid_worker, extra=DAY, reason="parts"), s.RESOLVE_AT)
    [event] = s.run(
        ReturnCase(actor=actors.grid_worker, reason="belongs to grid G-02"), s.RESOLVE_AT + HOUR
    )
    assert isinstance(event, CaseReturned) and event.reason == "belongs to grid G-02"
    state = s.state
    assert state.step is Step.COLLECT
    assert state.return_count == 1
    assert state.deadlines == {} and state.next_wake() is None
    assert state.dispatched_at is None and state.level is None and state.severity is None
    assert state.assignee is None and not state.claimed and state.checked_in_at is None
    assert state.pending_extension is None
    # and it is dispatched afresh, with fresh clocks
    again = s.RESOLVE_AT + 2 * HOUR
    s.run(
        Dispatch(
            actor=actors.community_admin,
            severity=Severity.MAJOR,
            handling_class=HandlingClass.JOINT,
        ),
        again,
    )
    assert s.state.deadlines[Clock.RESOLVE].due_at == again + 3 * DAY
    assert s.state.deadlines[Clock.ON_SITE].due_at == again + timedelta(minutes=7)


def test_return_case_before_claim(story: NewStory, actors: Actors) -> None:
    s = story()
    s.dispatch()
    s.run(ReturnCase(actor=actors.community_admin, reason="not a government matter"), s.CLAIM_AT)
    assert s.state.step is Step.COLLECT and s.state.dispatched_at is None


def test_an_undispatched_case_cannot_be_returned(
    story: NewStory, actors: Actors, t0: datetime
) -> None:
    s = story()
    refused(
        s,
        ReturnCase(actor=actors.community_admin, reason="r"),
        t0 + HOUR,
        "^return_case: the case is not dispatched",
    )


def test_a_resolved_case_cannot_be_returned(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.FEEDBACK)
    refused(
        s,
        ReturnCase(actor=actors.grid_worker, reason="r"),
        s.FEEDBACK_AT,
        "^return_case: not allowed in step feedback",
    )


@pytest.mark.parametrize("who", ["resident", "other_grid_worker", "grid_worker_2", "water"])
def test_return_case_only_by_a_handler(story: NewStory, actors: Actors, who: str) -> None:
    s = story().advance(Step.RESOLVE)
    refused(
        s,
        ReturnCase(actor=getattr(actors, who), reason="r"),
        s.RESOLVE_AT,
        "^return_case: actor .* is not a handler",
    )


# ------------------------------------------------------------------ extensions


def test_request_an_extension(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.RESOLVE)
    [event] = s.run(
        RequestExtension(
            actor=actors.grid_worker, extra=timedelta(days=2), reason="parts on order"
        ),
        s.RESOLVE_AT,
    )
    assert isinstance(event, ExtensionRequested)
    assert event.extra_seconds == 2 * 86400 and event.reason == "parts on order"
    pending = s.state.pending_extension
    assert pending is not None
    assert pending.requested_by == "gw-1" and pending.requested_at == s.RESOLVE_AT
    assert pending.extra == timedelta(days=2)


def test_an_extension_may_be_requested_while_deliberating(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.DELIBERATE)
    s.run(RequestExtension(actor=actors.grid_worker, extra=HOUR, reason="r"), s.DELIBERATE_AT)
    assert s.state.pending_extension is not None


def test_one_extension_request_at_a_time(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.RESOLVE)
    s.run(RequestExtension(actor=actors.grid_worker, extra=DAY, reason="r"), s.RESOLVE_AT)
    refused(
        s,
        RequestExtension(actor=actors.grid_worker, extra=DAY, reason="again"),
        s.RESOLVE_AT + HOUR,
        "^request_extension: an extension request is already waiting for decision$",
    )


@pytest.mark.parametrize("who", ["resident", "other_grid_worker", "water"])
def test_an_extension_is_requested_by_a_handler(story: NewStory, actors: Actors, who: str) -> None:
    s = story().advance(Step.RESOLVE)
    command = RequestExtension(actor=getattr(actors, who), extra=DAY, reason="r")
    refused(s, command, s.RESOLVE_AT, "^request_extension: actor .* is not a handler")


def test_no_extension_outside_deliberate_and_resolve(story: NewStory, actors: Actors) -> None:
    s = story()
    s.dispatch()
    command = RequestExtension(actor=actors.grid_worker, extra=DAY, reason="r")
    refused(s, command, s.CLAIM_AT, "^request_extension: not allowed in step collect")
    s.advance(Step.FEEDBACK)
    refused(s, command, s.FEEDBACK_AT, "^request_extension: not allowed in step feedback")


def test_an_approved_extension_moves_the_resolve_deadline(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.RESOLVE)
    before = s.state.deadlines[Clock.RESOLVE]
    s.run(
        RequestExtension(actor=actors.grid_worker, extra=timedelta(days=2), reason="r"),
        s.RESOLVE_AT,
    )
    [event] = s.run(
        DecideExtension(actor=actors.street_officer, approved=True, comment="ok"),
        s.RESOLVE_AT + HOUR,
    )
    assert isinstance(event, ExtensionDecided) and event.approved
    assert event.actor == actors.street_officer  # recorded with who approved it
    assert event.deadline is not None
    assert event.deadline.due_at == before.due_at + timedelta(days=2)
    moved = s.state.deadlines[Clock.RESOLVE]
    assert moved.due_at == before.due_at + timedelta(days=2)
    assert moved.started_at == before.started_at
    assert moved.warn_at == before.started_at + timedelta(days=3) * 0.8
    assert s.state.due_at == moved.due_at
    assert s.state.pending_extension is None


def test_a_refused_extension_leaves_the_deadline(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.RESOLVE)
    before = s.state.deadlines[Clock.RESOLVE]
    s.run(RequestExtension(actor=actors.grid_worker, extra=DAY, reason="r"), s.RESOLVE_AT)
    [event] = s.run(
        DecideExtension(actor=actors.street_officer, approved=False, comment="no"),
        s.RESOLVE_AT + HOUR,
    )
    assert isinstance(event, ExtensionDecided) and not event.approved and event.deadline is None
    assert s.state.deadlines[Clock.RESOLVE] == before
    assert s.state.pending_extension is None
    # a new request may follow
    s.run(
        RequestExtension(actor=actors.grid_worker, extra=HOUR, reason="r"), s.RESOLVE_AT + 2 * HOUR
    )


@pytest.mark.parametrize(
    "who",
    [
        "grid_worker",
        "community_admin",
        "district_officer",  # above the supervisor, but not the supervisor's role
        "other_street_officer",
        "resident",
        "system",
    ],
)
def test_a_community_case_extension_is_decided_by_its_street_officer(
    story: NewStory, actors: Actors, who: str
) -> None:
    s = story().advance(Step.RESOLVE)
    s.run(RequestExtension(actor=actors.grid_worker, extra=DAY, reason="r"), s.RESOLVE_AT)
    error = refused(
        s,
        DecideExtension(actor=getattr(actors, who), approved=True),
        s.RESOLVE_AT + HOUR,
        "^decide_extension: actor .* may not decide",
    )
    assert "a community case's extension is decided by its street_officer" in str(error)


def test_a_street_case_extension_is_decided_by_the_district(
    story: NewStory, actors: Actors
) -> None:
    s = street_case(story)
    s.run(RequestExtension(actor=actors.street_officer, extra=DAY, reason="r"), s.RESOLVE_AT)
    for who in (actors.street_officer, actors.other_district_officer):
        refused(
            s,
            DecideExtension(actor=who, approved=True),
            s.RESOLVE_AT,
            "^decide_extension: actor .* a street case's extension is decided by its "
            "district_officer",
        )
    s.run(DecideExtension(actor=actors.district_officer, approved=True), s.RESOLVE_AT)
    assert s.state.deadlines[Clock.RESOLVE].due_at == s.DISPATCH_AT + 6 * DAY


def test_no_decision_without_a_request(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.RESOLVE)
    command = DecideExtension(actor=actors.street_officer, approved=True)
    refused(s, command, s.RESOLVE_AT, "^decide_extension: no extension request is waiting$")


def test_resolution_drops_a_pending_extension(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.RESOLVE)
    s.run(RequestExtension(actor=actors.grid_worker, extra=DAY, reason="r"), s.RESOLVE_AT - HOUR)
    s.advance(Step.FEEDBACK)
    assert s.state.pending_extension is None
    refused(
        s,
        DecideExtension(actor=actors.street_officer, approved=True),
        s.FEEDBACK_AT,
        "^decide_extension: no extension request",
    )


# ------------------------------------------------------------------ notes


@pytest.mark.parametrize(
    "who", ["grid_worker", "resident", "community_admin", "district_officer", "system"]
)
def test_the_people_of_the_case_add_notes(
    story: NewStory, actors: Actors, who: str, t0: datetime
) -> None:
    s = story()
    [event] = s.run(
        AddNote(actor=getattr(actors, who), text="called the property company"), t0 + HOUR
    )
    assert isinstance(event, NoteAdded) and event.text == "called the property company"
    assert s.state.note_count == 1
    assert s.state.step is Step.COLLECT


def test_a_summoned_department_adds_notes(story: NewStory, actors: Actors) -> None:
    s = street_case(story)
    refused(
        s,
        AddNote(actor=actors.water, text="x"),
        s.RESOLVE_AT,
        "^add_note: actor water-duty .* has no part in this case$",
    )
    s.run(summon(actors.street_officer, "water"), s.RESOLVE_AT)
    s.run(AddNote(actor=actors.water, text="crew on the way"), s.RESOLVE_AT)
    assert s.state.note_count == 1


@pytest.mark.parametrize(
    "who", ["other_resident", "other_grid_worker", "other_community_admin", "police"]
)
def test_outsiders_add_no_notes(story: NewStory, actors: Actors, who: str, t0: datetime) -> None:
    s = story()
    refused(
        s,
        AddNote(actor=getattr(actors, who), text="x"),
        t0 + HOUR,
        "^add_note: actor .* has no part in this case$",
    )


# ------------------------------------------------------------------ archived


def test_an_archived_case_accepts_nothing(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.ARCHIVE)
    later = s.REVISIT_AT + HOUR
    commands: list[Command] = [
        Dispatch(
            actor=actors.community_admin,
            severity=Severity.MINOR,
            handling_class=HandlingClass.JOINT,
        ),
        Claim(actor=actors.grid_worker),
        CheckIn(actor=actors.grid_worker),
        RecordDeliberation(actor=actors.grid_worker, participants=["a"], decision="d"),
        ScheduleDeliberation(actor=actors.system, talk_day=date(2027, 1, 5), agenda_id="C-01/x"),
        summon(actors.street_officer, "water"),
        RecordDepartmentReport(actor=actors.water, report="r"),
        ReportResolution(actor=actors.grid_worker, summary="s"),
        feedback(actors.resident),
        RecordRevisit(
            checklist=NOTHING_RAISED, actor=actors.grid_worker, satisfaction=Satisfaction.SATISFIED
        ),
        RequestExtension(actor=actors.grid_worker, extra=DAY, reason="r"),
        DecideExtension(actor=actors.street_officer, approved=True),
        ReturnCase(actor=actors.grid_worker, reason="r"),
        ReviewReturn(actor=actors.community_admin, approved=True),
        AddNote(actor=actors.resident, text="thanks"),
        Withdraw(actor=actors.resident, reason="r"),
        MergeInto(actor=actors.system, target_case_id="case-visit-V-1"),
        UrgeCase(actor=actors.street_officer, message="m"),
        OfferCase(actor=actors.community_admin),
    ]
    assert {c.kind for c in commands} == set(COMMANDS)
    for command in commands:
        refused(
            s,
            command,
            later,
            f"^{command.kind}: the case is archived and accepts no more commands$",
        )
    assert decide(s.state, CheckDeadlines(), later + 30 * DAY, POLICY_2026_2) == []


def test_a_withdrawn_case_accepts_nothing_either(
    story: NewStory, actors: Actors, t0: datetime
) -> None:
    s = story()
    s.run(Withdraw(actor=actors.resident, reason="r"), t0 + HOUR)
    refused(s, Withdraw(actor=actors.resident, reason="r"), t0 + 2 * HOUR, "archived")
    refused(s, AddNote(actor=actors.resident, text="r"), t0 + 2 * HOUR, "archived")


def test_nobody_decides_their_own_extension(story: NewStory, actors: Actors) -> None:
    s = story(severity=Severity.HARD, handling_class=HandlingClass.JOINT).advance(Step.RESOLVE)
    s.tick(s.state.deadlines[Clock.RESOLVE].due_at)  # escalated: a district case now
    assert s.state.level is Level.DISTRICT
    now = s.state.updated_at + HOUR
    s.run(RequestExtension(actor=actors.district_officer, extra=DAY, reason="材料未到"), now)
    refused(
        s,
        DecideExtension(actor=actors.district_officer, approved=True),
        now,
        "may not decide an extension they requested themselves",
    )
    s.run(DecideExtension(actor=actors.district_officer_2, approved=True), now)
    assert s.state.pending_extension is None


def test_refusals_never_quote_a_residents_account_id(story: NewStory, actors: Actors) -> None:
    s = story()
    s.dispatch()
    error = refused(s, Claim(actor=actors.resident), s.CLAIM_AT, "actor \\(resident\\)")
    assert actors.resident.id not in str(error)
