"""The deadline ladder (7135): warnings, escalation, the district's red flag and its daily
reminders, driven through `decide(state, CheckDeadlines(), now, policy)`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from domain.commands import (
    CheckDeadlines,
    CheckIn,
    Claim,
    DecideExtension,
    RecordFeedback,
    RecordRevisit,
    ReportResolution,
    RequestExtension,
)
from domain.decider import decide
from domain.errors import DomainError
from domain.events import (
    CaseEscalated,
    DeadlineBreached,
    DeadlineWarned,
    Event,
    OverdueReminded,
    ResolutionReported,
)
from domain.model import Flag, HandlingClass, Level, Outcome, Satisfaction, Severity, Step
from domain.policy import Clock, DeadlinePolicy
from policies import NOTHING_RAISED, POLICY_2026_2

if TYPE_CHECKING:  # the builders live in this directory's conftest.py (fixtures)
    from conftest import Actors, Story

NewStory = Callable[..., "Story"]
SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
VERSION = "7135-2026.2"


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


def resolving(story: NewStory, **kw: object) -> Story:
    """A minor community case, claimed, checked in and deliberated: only the resolve clock
    runs, due one day after dispatch."""
    s = story(**kw).advance(Step.RESOLVE)
    assert list(s.state.deadlines) == [Clock.RESOLVE]
    return s


def at_district(story: NewStory) -> tuple[Story, datetime]:
    """A case escalated twice: community (1 day) then street (5 days); returns the district's
    due time (5 more days)."""
    s = resolving(story)
    community_due = s.DISPATCH_AT + DAY
    s.tick(community_due)
    s.tick(community_due + 5 * DAY)
    assert s.state.level is Level.DISTRICT
    return s, community_due + 10 * DAY


# ------------------------------------------------------------------ warnings


def test_nothing_is_due_before_dispatch(story: NewStory, t0: datetime) -> None:
    s = story()
    assert s.tick(t0 + 30 * DAY) == []
    assert s.state.next_wake() is None


def test_the_on_site_warning_comes_at_80_percent_and_not_before(story: NewStory) -> None:
    s = story()
    s.dispatch()
    warn_at = s.DISPATCH_AT + timedelta(minutes=5, seconds=36)  # 80 % of 7 minutes
    assert s.state.next_wake() == (warn_at, s.state.deadlines[Clock.ON_SITE])
    assert s.tick(warn_at - SECOND) == []
    assert s.state.flag is Flag.GREEN
    [event] = s.tick(warn_at)
    assert isinstance(event, DeadlineWarned)
    assert event.clock is Clock.ON_SITE and event.level is Level.COMMUNITY
    assert event.due_at == s.DISPATCH_AT + timedelta(minutes=7)
    assert event.policy_version == VERSION
    assert event.actor is None and event.occurred_at == warn_at
    assert s.state.flag is Flag.YELLOW
    assert s.state.deadlines[Clock.ON_SITE].warned
    # warned once only; the clock next wakes at its end
    assert s.tick(warn_at + SECOND) == []
    assert s.state.next_wake() == (event.due_at, s.state.deadlines[Clock.ON_SITE])


def test_the_resolve_warning_comes_at_80_percent_and_not_before(story: NewStory) -> None:
    s = resolving(story)
    warn_at = s.DISPATCH_AT + timedelta(hours=19, minutes=12)  # 80 % of one day
    assert s.state.next_wake() == (warn_at, s.state.deadlines[Clock.RESOLVE])
    assert s.tick(warn_at - SECOND) == []
    [event] = s.tick(warn_at)
    assert isinstance(event, DeadlineWarned)
    assert event.clock is Clock.RESOLVE and event.due_at == s.DISPATCH_AT + DAY
    assert s.state.flag is Flag.YELLOW
    assert s.state.on_time  # a warning is not a breach
    assert s.state.level is Level.COMMUNITY


def test_a_late_timer_skips_the_warning_and_escalates(story: NewStory) -> None:
    s = resolving(story)
    assert types(s.tick(s.DISPATCH_AT + DAY)) == ["case_escalated"]


# ------------------------------------------------------------------ escalation


def test_no_escalation_one_second_before_the_due_time(story: NewStory) -> None:
    s = resolving(story)
    due = s.DISPATCH_AT + DAY
    s.tick(due - 2 * HOUR)  # the warning
    assert s.tick(due - SECOND) == []
    assert s.state.level is Level.COMMUNITY and s.state.on_time


def test_escalation_to_the_street_exactly_at_the_due_time(story: NewStory) -> None:
    s = resolving(story, severity=Severity.MINOR)
    due = s.DISPATCH_AT + DAY
    [event] = s.tick(due)
    assert isinstance(event, CaseEscalated)
    assert event.from_level is Level.COMMUNITY and event.to_level is Level.STREET
    assert event.policy_version == VERSION
    assert event.occurred_at == due and event.actor is None
    clock = event.deadline
    assert clock.clock is Clock.RESOLVE and clock.level is Level.STREET
    assert clock.started_at == due
    assert clock.due_at == due + 5 * DAY
    assert clock.warn_at == due + 4 * DAY
    assert clock.policy_version == VERSION
    assert clock.label == "resolve: minor matter, street level, 5 days"
    assert not clock.warned and not clock.breached
    state = s.state
    assert state.level is Level.STREET
    assert state.escalation_count == 1
    assert state.flag is Flag.YELLOW
    assert not state.on_time
    assert state.assignee is None  # the community handler no longer holds it
    assert state.step is Step.RESOLVE
    assert state.deadlines[Clock.RESOLVE] == clock
    assert state.due_at == due + 5 * DAY
    # escalated once: the same moment again changes nothing
    assert s.tick(due) == []


def test_a_late_timer_does_not_stretch_the_ladder(story: NewStory) -> None:
    s = resolving(story)
    due = s.DISPATCH_AT + DAY
    [event] = s.tick(due + 3 * HOUR)
    assert isinstance(event, CaseEscalated)
    assert event.occurred_at == due + 3 * HOUR
    assert event.deadline.started_at == due
    assert event.deadline.due_at == due + 5 * DAY


def test_a_very_late_timer_climbs_the_ladder_one_rung_per_check(story: NewStory) -> None:
    s = resolving(story)
    now = s.DISPATCH_AT + 12 * DAY  # past the community, street and district ends
    [first] = s.tick(now)
    assert isinstance(first, CaseEscalated) and first.to_level is Level.STREET
    [second] = s.tick(now)
    assert isinstance(second, CaseEscalated) and second.to_level is Level.DISTRICT
    assert second.deadline.started_at == s.DISPATCH_AT + 6 * DAY
    [third] = s.tick(now)
    assert isinstance(third, DeadlineBreached) and third.flag is Flag.RED
    assert third.due_at == s.DISPATCH_AT + 11 * DAY


def test_a_major_matter_escalates_after_three_days(story: NewStory) -> None:
    s = resolving(story, severity=Severity.MAJOR)
    due = s.DISPATCH_AT + 3 * DAY
    assert types(s.tick(due - SECOND)) == ["deadline_warned"]
    assert s.state.level is Level.COMMUNITY
    [event] = s.tick(due)
    assert isinstance(event, CaseEscalated)
    assert event.deadline.label == "resolve: major matter, street level, 5 days"


def test_escalation_from_street_to_district(story: NewStory) -> None:
    s = resolving(story)
    street_due = s.DISPATCH_AT + 6 * DAY
    s.tick(s.DISPATCH_AT + DAY)
    [warning] = s.tick(street_due - DAY)  # 80 % of 5 days
    assert isinstance(warning, DeadlineWarned) and warning.level is Level.STREET
    assert s.tick(street_due - SECOND) == []
    [event] = s.tick(street_due)
    assert isinstance(event, CaseEscalated)
    assert event.from_level is Level.STREET and event.to_level is Level.DISTRICT
    assert event.deadline.started_at == street_due
    assert event.deadline.due_at == street_due + 5 * DAY
    assert event.deadline.level is Level.DISTRICT
    assert s.state.level is Level.DISTRICT
    assert s.state.escalation_count == 2


def test_an_escalated_case_is_handled_by_the_new_level(story: NewStory, actors: Actors) -> None:
    s = resolving(story)
    s.tick(s.DISPATCH_AT + DAY)
    now = s.DISPATCH_AT + 2 * DAY
    resolve = ReportResolution(actor=actors.grid_worker, summary="done")
    with pytest.raises(DomainError, match="is not a handler"):
        s.decide(resolve, now)
    [event] = s.run(ReportResolution(actor=actors.street_officer, summary="done"), now)
    assert isinstance(event, ResolutionReported) and not event.on_time
    assert not s.state.on_time


def test_an_unclaimed_case_escalates_too(story: NewStory, actors: Actors) -> None:
    s = story()
    s.dispatch(assignee="gw-1")
    s.tick(s.DISPATCH_AT + timedelta(minutes=7))  # on-site clock ran out
    [event] = s.tick(s.DISPATCH_AT + DAY)
    assert isinstance(event, CaseEscalated)
    assert s.state.step is Step.COLLECT and s.state.assignee is None
    s.run(Claim(actor=actors.street_officer), s.DISPATCH_AT + DAY + HOUR)
    assert s.state.assignee == "so-1" and s.state.step is Step.DELIBERATE


# ------------------------------------------------------------------ the district


def test_at_the_district_the_breach_is_red_and_reminded_daily(story: NewStory) -> None:
    s, due = at_district(story)
    assert types(s.tick(due - SECOND)) == ["deadline_warned"]
    assert not s.state.deadlines[Clock.RESOLVE].breached
    [event] = s.tick(due)
    assert isinstance(event, DeadlineBreached)
    assert event.clock is Clock.RESOLVE and event.level is Level.DISTRICT
    assert event.flag is Flag.RED
    assert event.due_at == due
    assert event.remind_at == due + DAY
    assert event.policy_version == VERSION
    state = s.state
    assert state.flag is Flag.RED
    assert not state.on_time
    assert state.level is Level.DISTRICT  # stays on the district's list
    assert state.escalation_count == 2
    clock = state.deadlines[Clock.RESOLVE]
    assert clock.breached and clock.remind_at == due + DAY
    assert state.next_wake() == (due + DAY, clock)
    # nothing more until the reminder
    assert s.tick(due + 12 * HOUR) == []
    [reminder] = s.tick(due + DAY)
    assert isinstance(reminder, OverdueReminded)
    assert reminder.level is Level.DISTRICT and reminder.due_at == due
    assert reminder.overdue_days == 1
    assert reminder.next_remind_at == due + 2 * DAY
    assert reminder.policy_version == VERSION
    assert s.state.deadlines[Clock.RESOLVE].remind_at == due + 2 * DAY
    [reminder] = s.tick(due + 2 * DAY)
    assert isinstance(reminder, OverdueReminded) and reminder.overdue_days == 2
    assert s.state.flag is Flag.RED


def test_a_late_reminder_is_given_once_and_the_next_lies_ahead(story: NewStory) -> None:
    s, due = at_district(story)
    s.tick(due)
    late = due + 3 * DAY + 5 * HOUR  # the worker was down for days
    [reminder] = s.tick(late)
    assert isinstance(reminder, OverdueReminded)
    assert reminder.overdue_days == 3
    assert reminder.next_remind_at == due + 4 * DAY
    assert reminder.next_remind_at > late
    assert s.tick(late) == []


def test_a_breach_served_late_still_sets_the_first_reminder_from_the_due_time(
    story: NewStory,
) -> None:
    s, due = at_district(story)
    late = due + 2 * DAY + HOUR
    [breach] = s.tick(late)
    assert isinstance(breach, DeadlineBreached) and breach.remind_at == due + DAY
    [reminder] = s.tick(late)
    assert isinstance(reminder, OverdueReminded)
    assert reminder.overdue_days == 2 and reminder.next_remind_at == due + 3 * DAY


def test_a_red_case_may_still_be_resolved(story: NewStory, actors: Actors) -> None:
    s, due = at_district(story)
    s.tick(due)
    [event] = s.run(ReportResolution(actor=actors.district_officer, summary="done"), due + HOUR)
    assert isinstance(event, ResolutionReported) and not event.on_time
    assert s.state.deadlines == {} and s.state.flag is Flag.RED
    assert s.tick(due + 10 * DAY) == []


def test_an_extension_after_the_district_breach_makes_the_clock_run_again(
    story: NewStory, actors: Actors
) -> None:
    s, due = at_district(story)
    s.tick(due)
    s.run(
        RequestExtension(actor=actors.district_officer, extra=3 * DAY, reason="contractor"),
        due + HOUR,
    )
    s.run(DecideExtension(actor=actors.district_officer_2, approved=True), due + 2 * HOUR)
    clock = s.state.deadlines[Clock.RESOLVE]
    assert clock.due_at == due + 3 * DAY
    assert not clock.breached and clock.remind_at is None
    assert s.state.flag is Flag.RED and not s.state.on_time  # what happened stays recorded
    # no "overdue" reminder while the new end lies ahead; a warning again before it
    assert s.tick(due + DAY) == []
    assert s.state.next_wake() == (clock.warn_at, clock)
    assert clock.warn_at == clock.started_at + 8 * DAY * 0.8
    assert types(s.tick(due + 3 * DAY - SECOND)) == ["deadline_warned"]
    [breach] = s.tick(due + 3 * DAY)
    assert isinstance(breach, DeadlineBreached) and breach.due_at == due + 3 * DAY
    assert breach.remind_at == due + 4 * DAY
    [reminder] = s.tick(due + 4 * DAY)
    assert isinstance(reminder, OverdueReminded) and reminder.overdue_days == 1


def test_a_too_short_extension_after_the_breach_keeps_the_reminders(
    story: NewStory, actors: Actors
) -> None:
    s, due = at_district(story)
    s.tick(due)
    s.tick(due + DAY)
    s.tick(due + 2 * DAY)
    s.run(RequestExtension(actor=actors.district_officer, extra=DAY, reason="r"), due + 50 * HOUR)
    s.run(DecideExtension(actor=actors.district_officer_2, approved=True), due + 50 * HOUR)
    clock = s.state.deadlines[Clock.RESOLVE]
    assert clock.due_at == due + DAY and clock.breached
    [reminder] = s.tick(due + 3 * DAY)
    assert isinstance(reminder, OverdueReminded) and reminder.overdue_days == 2


# ------------------------------------------------------------------ on site and revisit


def test_the_on_site_breach_flags_yellow_without_changing_level(story: NewStory) -> None:
    s = story()
    s.dispatch()
    due = s.DISPATCH_AT + timedelta(minutes=7)
    assert types(s.tick(due - timedelta(minutes=1))) == ["deadline_warned"]
    assert s.tick(due - SECOND) == []
    [event] = s.tick(due)
    assert isinstance(event, DeadlineBreached)
    assert event.clock is Clock.ON_SITE and event.level is Level.COMMUNITY
    assert event.flag is Flag.YELLOW and event.remind_at is None
    assert event.due_at == due and event.policy_version == VERSION
    state = s.state
    assert state.flag is Flag.YELLOW
    assert state.level is Level.COMMUNITY and state.escalation_count == 0
    assert Clock.ON_SITE not in state.deadlines  # the clock is gone
    assert list(state.deadlines) == [Clock.RESOLVE]
    assert state.on_time  # the resolve clock still runs
    assert s.tick(due + HOUR) == []


def test_a_check_in_stops_the_on_site_clock(story: NewStory, actors: Actors) -> None:
    s = story()
    s.dispatch()
    s.run(Claim(actor=actors.grid_worker), s.CLAIM_AT)
    s.run(CheckIn(actor=actors.grid_worker), s.CHECK_IN_AT)
    assert s.tick(s.DISPATCH_AT + timedelta(minutes=8)) == []
    assert s.state.flag is Flag.GREEN


def test_a_late_timer_breaches_every_clock_that_ran_out(story: NewStory) -> None:
    s = story()
    s.dispatch()
    events = s.tick(s.DISPATCH_AT + DAY + HOUR)
    assert sorted(types(events)) == ["case_escalated", "deadline_breached"]
    assert list(s.state.deadlines) == [Clock.RESOLVE]
    assert s.state.level is Level.STREET


def test_the_revisit_clock(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.REVISIT)
    due = s.FEEDBACK_AT + 7 * DAY
    clock = s.state.deadlines[Clock.REVISIT]
    assert clock.due_at == due and clock.level is Level.COMMUNITY
    assert s.state.next_wake() == (s.FEEDBACK_AT + timedelta(days=5, hours=14, minutes=24), clock)
    [warning] = s.tick(s.FEEDBACK_AT + timedelta(days=5, hours=14, minutes=24))
    assert isinstance(warning, DeadlineWarned) and warning.clock is Clock.REVISIT
    assert s.tick(due - SECOND) == []
    [event] = s.tick(due)
    assert isinstance(event, DeadlineBreached)
    assert event.clock is Clock.REVISIT and event.flag is Flag.YELLOW
    assert event.remind_at is None
    state = s.state
    assert state.flag is Flag.YELLOW
    assert state.on_time  # resolved in time; only the revisit is late
    assert state.deadlines[Clock.REVISIT].breached
    assert state.next_wake() is None
    assert s.tick(due + 10 * DAY) == []
    # the revisit may still be recorded
    s.run(
        RecordRevisit(
            checklist=NOTHING_RAISED, actor=actors.grid_worker, satisfaction=Satisfaction.SATISFIED
        ),
        due + DAY,
    )
    assert s.state.outcome is Outcome.COMPLETED


# ------------------------------------------------------------------ hard matters, reopen


def test_a_hard_matter_is_dispatched_to_the_street_and_climbs_to_the_district(
    story: NewStory,
) -> None:
    s = story(severity=Severity.HARD, handling_class=HandlingClass.JOINT)
    s.dispatch()
    assert s.state.level is Level.STREET and s.state.escalation_count == 0
    due = s.DISPATCH_AT + 5 * DAY
    assert s.state.deadlines[Clock.RESOLVE].label == "resolve: hard matter, street level, 5 days"
    assert types(s.tick(due - SECOND)) == ["deadline_warned"]
    [event] = s.tick(due)
    assert isinstance(event, CaseEscalated)
    assert event.from_level is Level.STREET and event.to_level is Level.DISTRICT
    assert event.deadline.due_at == due + 5 * DAY
    [breach] = s.tick(due + 5 * DAY)
    assert isinstance(breach, DeadlineBreached) and breach.flag is Flag.RED


def test_a_case_resolved_in_time_has_no_resolve_clock(story: NewStory) -> None:
    s = story().advance(Step.FEEDBACK)
    assert Clock.RESOLVE not in s.state.deadlines
    assert s.state.next_wake() is None
    assert s.tick(s.DISPATCH_AT + DAY) == []
    assert s.tick(s.DISPATCH_AT + 30 * DAY) == []
    assert s.state.level is Level.COMMUNITY and s.state.flag is Flag.GREEN
    assert s.state.on_time


def test_a_reopened_case_gets_a_fresh_clock_at_its_level(story: NewStory, actors: Actors) -> None:
    s = resolving(story)
    s.tick(s.DISPATCH_AT + DAY)  # escalated to the street
    t = s.DISPATCH_AT + 2 * DAY
    s.run(ReportResolution(actor=actors.street_officer, summary="done"), t)
    reject = RecordFeedback(
        actor=actors.resident, accepted=False, satisfaction=Satisfaction.UNSATISFIED
    )
    s.run(reject, t + HOUR)
    clock = s.state.deadlines[Clock.RESOLVE]
    assert clock.level is Level.STREET
    assert clock.started_at == t + HOUR and clock.due_at == t + HOUR + 5 * DAY
    [event] = s.tick(t + HOUR + 5 * DAY)
    assert isinstance(event, CaseEscalated) and event.to_level is Level.DISTRICT


def test_an_approved_extension_delays_the_escalation(story: NewStory, actors: Actors) -> None:
    s = resolving(story)
    due = s.DISPATCH_AT + DAY
    s.run(RequestExtension(actor=actors.grid_worker, extra=DAY, reason="r"), s.RESOLVE_AT)
    s.run(DecideExtension(actor=actors.street_officer, approved=True), s.RESOLVE_AT + HOUR)
    assert s.tick(due) == []  # 80 % of two days is later than one day
    assert s.state.level is Level.COMMUNITY
    assert types(s.tick(due + DAY - SECOND)) == ["deadline_warned"]
    [event] = s.tick(due + DAY)
    assert isinstance(event, CaseEscalated) and event.deadline.started_at == due + DAY


# ------------------------------------------------------------------ policy and next wake


def test_the_policy_of_the_case_is_stamped(story: NewStory) -> None:
    policy = DeadlinePolicy(version="pilot-2", warn_ratio=0.5, on_site=timedelta(minutes=10))
    s = story(policy=policy)
    assert s.state.policy_version == "pilot-2"
    s.dispatch()
    assert all(d.policy_version == "pilot-2" for d in s.state.deadlines.values())
    [warning] = s.tick(s.DISPATCH_AT + timedelta(minutes=5))
    assert isinstance(warning, DeadlineWarned) and warning.policy_version == "pilot-2"
    [escalation, breach] = sorted(s.tick(s.DISPATCH_AT + DAY), key=lambda e: e.type)
    assert isinstance(escalation, CaseEscalated) and escalation.policy_version == "pilot-2"
    assert escalation.deadline.policy_version == "pilot-2"
    assert isinstance(breach, DeadlineBreached) and breach.policy_version == "pilot-2"


def test_next_wake_is_the_earliest_clock(story: NewStory, actors: Actors) -> None:
    s = story()
    s.dispatch()
    on_site = s.state.deadlines[Clock.ON_SITE]
    resolve = s.state.deadlines[Clock.RESOLVE]
    assert s.state.next_wake() == (on_site.warn_at, on_site)
    s.tick(on_site.warn_at)
    assert s.state.next_wake() == (on_site.due_at, s.state.deadlines[Clock.ON_SITE])
    s.run(Claim(actor=actors.grid_worker), on_site.warn_at + SECOND)
    s.run(CheckIn(actor=actors.grid_worker), on_site.warn_at + 2 * SECOND)
    assert s.state.next_wake() == (resolve.warn_at, resolve)
    s.tick(resolve.warn_at)
    assert s.state.next_wake() == (resolve.due_at, s.state.deadlines[Clock.RESOLVE])


def test_check_deadlines_is_pure(story: NewStory) -> None:
    s = resolving(story)
    before = s.state
    events = decide(before, CheckDeadlines(), s.DISPATCH_AT + DAY, POLICY_2026_2)
    assert types(events) == ["case_escalated"]
    assert s.state is before and before.level is Level.COMMUNITY
