"""The social process around the six steps: the talk day (周二说事日), departments summoned
by the street (街道吹哨、部门报到) with their own clocks, deadlines in working days, and the
revisit policy by resident category (三必问四必访)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest

from domain.commands import (
    CheckDepartment,
    RecordDeliberation,
    RecordDepartmentReport,
    RecordRevisit,
    ScheduleDeliberation,
    SummonDepartments,
    parse_open_case,
)
from domain.errors import DomainError
from domain.events import (
    DeadlineBreached,
    DeadlineStarted,
    DeliberationScheduled,
    DepartmentEscalated,
    DepartmentReported,
    DepartmentsSummoned,
    DepartmentWarned,
    event_payload,
)
from domain.model import Actor, Flag, HandlingClass, Level, Role, Satisfaction, Severity, Step
from domain.policy import Clock, DeadlinePolicy, WorkingDays
from infra.calendars import library_calendar
from policies import POLICY_2026_2

if TYPE_CHECKING:
    from conftest import Actors, Story

NewStory = Callable[..., "Story"]
CST = timezone(timedelta(hours=8))
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
# the policy as the worker loads it: the built-in one with the library's calendar
POLICY = POLICY_2026_2.model_copy(update={"calendar": library_calendar(2026)})
# a policy recorded before these rules existed (version 2026.1): none of them applies
OLD_POLICY = DeadlinePolicy(version="7135-2026.1")
AGENDA = Actor(id="talk-day-agenda", role=Role.SYSTEM, org="C-01")


def local(y: int, m: int, d: int, h: int = 0, minute: int = 0) -> datetime:
    return datetime(y, m, d, h, minute, tzinfo=CST)


def self_governance(story: NewStory, policy: DeadlinePolicy = POLICY) -> Story:
    s = story(severity=Severity.MAJOR, handling_class=HandlingClass.SELF_GOVERNANCE, policy=policy)
    s.dispatch()
    return s


def schedule(talk_day: date, actor: Actor = AGENDA) -> ScheduleDeliberation:
    return ScheduleDeliberation(actor=actor, talk_day=talk_day, agenda_id=f"C-01/{talk_day}")


# ------------------------------------------------------------------ the talk day


def test_a_self_governance_case_waits_for_the_talk_day_not_on_the_resolve_clock(
    story: NewStory,
) -> None:
    s = self_governance(story)
    assert set(s.state.deadlines) == {Clock.DELIBERATE, Clock.ON_SITE}
    wait = s.state.deadlines[Clock.DELIBERATE]
    assert wait.due_at == s.DISPATCH_AT + 8 * DAY
    assert wait.label == "deliberate: major matter, community level, 8 days"
    assert s.state.due_at is None  # no resolve clock yet


def test_the_agenda_sets_the_talk_day_and_the_wait_ends_after_it(
    story: NewStory, actors: Actors
) -> None:
    s = self_governance(story).advance(Step.DELIBERATE)  # dispatched Tue 2026-11-24 09:01
    [event] = s.run(schedule(date(2026, 12, 1)), local(2026, 11, 30, 17))
    assert isinstance(event, DeliberationScheduled)
    assert event.talk_day == date(2026, 12, 1) and event.agenda_id == "C-01/2026-12-01"
    wait = s.state.deadlines[Clock.DELIBERATE]
    assert wait.due_at == local(2026, 12, 2)  # local midnight after the talk day
    assert wait.started_at == s.DISPATCH_AT
    assert wait.label == "deliberate: talk day 2026-12-01"
    assert s.state.talk_day == date(2026, 12, 1)
    # waiting for the talk day is expected: no warning before it, nothing on the day
    assert s.tick(local(2026, 12, 1, 23, 59)) == []
    assert s.state.flag is Flag.GREEN
    # a community officer may set the day too (e.g. moved to another week)
    [moved] = s.run(schedule(date(2026, 12, 8), actors.community_admin), local(2026, 12, 1, 9))
    assert moved.deadline.due_at == local(2026, 12, 9)


def test_deliberating_on_the_talk_day_starts_the_resolve_clock(
    story: NewStory, actors: Actors
) -> None:
    s = self_governance(story)
    s.advance(Step.DELIBERATE)
    s.run(schedule(date(2026, 12, 1)), local(2026, 11, 30, 17))
    talk = local(2026, 12, 1, 15)
    recorded, started = s.run(
        RecordDeliberation(
            actor=actors.grid_worker, participants=["楼长", "物业", "居民代表"], decision="共同出资"
        ),
        talk,
    )
    assert recorded.type == "deliberation_recorded"
    assert isinstance(started, DeadlineStarted) and started.reason == "deliberated"
    assert started.deadline.clock is Clock.RESOLVE and started.deadline.started_at == talk
    assert s.state.deadlines[Clock.RESOLVE].due_at == talk + 3 * DAY
    assert Clock.DELIBERATE not in s.state.deadlines
    assert s.state.step is Step.RESOLVE and s.state.due_at == talk + 3 * DAY


def test_a_missed_talk_day_flags_the_case_and_starts_the_resolve_clock(story: NewStory) -> None:
    s = self_governance(story).advance(Step.DELIBERATE)
    s.run(schedule(date(2026, 12, 1)), local(2026, 11, 30, 17))
    breached, started = s.tick(local(2026, 12, 2, 0, 5))
    assert isinstance(breached, DeadlineBreached) and breached.clock is Clock.DELIBERATE
    assert breached.flag is Flag.YELLOW and s.state.flag is Flag.YELLOW
    assert isinstance(started, DeadlineStarted) and started.reason == "deliberation_missed"
    # from the end of the wait, not from when the timer was served: the ladder holds
    assert started.deadline.started_at == local(2026, 12, 2)
    assert s.state.deadlines[Clock.RESOLVE].due_at == local(2026, 12, 5)
    assert s.state.level is Level.COMMUNITY
    # the case no longer waits for a talk day
    with pytest.raises(DomainError, match="does not wait for a talk day"):
        s.decide(schedule(date(2026, 12, 8)), local(2026, 12, 2, 9))


@pytest.mark.parametrize(
    ("command", "now", "match"),
    [
        (schedule(date(2026, 11, 23)), local(2026, 11, 24, 10), "talk_day: lies in the past"),
        (
            schedule(date(2026, 12, 1), Actor(id="agenda", role=Role.SYSTEM, org="C-02")),
            local(2026, 11, 24, 10),
            "only the community's agenda or its officers",
        ),
        (
            schedule(date(2026, 12, 1), Actor(id="gw-1", role=Role.GRID_WORKER, org="G-01")),
            local(2026, 11, 24, 10),
            "only the community's agenda or its officers",
        ),
    ],
)
def test_scheduling_a_deliberation_is_refused(
    story: NewStory, command: ScheduleDeliberation, now: datetime, match: str
) -> None:
    s = self_governance(story)
    with pytest.raises(DomainError, match=match):
        s.decide(command, now)


def test_an_immediate_case_skips_the_talk_day_but_records_its_decision(
    story: NewStory, actors: Actors
) -> None:
    s = story(policy=POLICY).advance(Step.DELIBERATE)  # immediate handling
    assert Clock.RESOLVE in s.state.deadlines and Clock.DELIBERATE not in s.state.deadlines
    with pytest.raises(DomainError, match="does not wait for a talk day"):
        s.decide(schedule(date(2026, 12, 1)), s.DELIBERATE_AT)
    [recorded] = s.run(
        RecordDeliberation(actor=actors.grid_worker, participants=["gw-1"], decision="当场修复"),
        s.DELIBERATE_AT,
    )
    assert recorded.type == "deliberation_recorded"  # no clock started: it runs already


def test_under_a_policy_without_deliberation_the_resolve_clock_starts_at_dispatch(
    story: NewStory,
) -> None:
    s = self_governance(story, OLD_POLICY)
    assert set(s.state.deadlines) == {Clock.RESOLVE, Clock.ON_SITE}


# ------------------------------------------------------------------ working days


def hard_case(story: NewStory, policy: DeadlinePolicy, at: datetime) -> Story:
    s = story(severity=Severity.HARD, handling_class=HandlingClass.JOINT, policy=policy)
    s.DISPATCH_AT = at  # type: ignore[misc]
    s.dispatch()
    return s


WORKING_STREET = POLICY.model_copy(update={"resolve_street": WorkingDays(working_days=5)})


def test_working_days_skip_national_day_and_count_the_make_up_saturday(story: NewStory) -> None:
    # Monday 2026-09-28: Tue 29, Wed 30, [1–7 October off], Thu 8, Fri 9, Sat 10 (调休)
    s = hard_case(story, WORKING_STREET, local(2026, 9, 28, 10))
    clock = s.state.deadlines[Clock.RESOLVE]
    assert clock.due_at == local(2026, 10, 11)
    assert clock.label == "resolve: hard matter, street level, 5 working days"
    # the warning at 80 % of the natural time to that end
    assert clock.warn_at == clock.started_at + (clock.due_at - clock.started_at) * 0.8


def test_working_days_beyond_the_calendar_count_weekends_only_and_say_so(story: NewStory) -> None:
    # Tuesday 2026-12-29: Wed 30, Thu 31, Fri 2027-01-01 (unknown: counted), Mon 4, Tue 5
    s = hard_case(story, WORKING_STREET, local(2026, 12, 29, 10))
    clock = s.state.deadlines[Clock.RESOLVE]
    assert clock.due_at == local(2027, 1, 6)
    assert clock.label.endswith(
        "5 working days (holidays of 2027 unknown to chinese-calendar 1.11.0: weekends only)"
    )


def test_working_days_without_a_calendar_count_weekends_only(story: NewStory) -> None:
    bare = WORKING_STREET.model_copy(update={"calendar": None})
    s = hard_case(story, bare, local(2026, 9, 28, 10))
    clock = s.state.deadlines[Clock.RESOLVE]
    assert clock.due_at == local(2026, 10, 6)  # National Day not known: Mon–Fri only
    assert "(holidays of 2026 unknown to no calendar: weekends only)" in clock.label


# ------------------------------------------------------------------ departments


def summoned(story: NewStory, actors: Actors, policy: DeadlinePolicy = POLICY) -> Story:
    s = story(severity=Severity.HARD, handling_class=HandlingClass.JOINT, policy=policy)
    s.advance(Step.RESOLVE)
    s.run(
        SummonDepartments(actor=actors.street_officer, departments=["water", "police"], reason="r"),
        local(2026, 11, 24, 14),  # Tuesday afternoon
    )
    return s


def test_each_summoned_department_gets_its_own_clock_in_working_days(
    story: NewStory, actors: Actors
) -> None:
    s = summoned(story, actors)
    event = s.events[-1]
    assert isinstance(event, DepartmentsSummoned)
    assert set(event.deadlines) == {"water", "police"}
    water = s.state.department_deadlines["water"]
    # Wed 25, Thu 26, Fri 27 → midnight after Friday
    assert water.clock is Clock.DEPARTMENT and water.due_at == local(2026, 11, 28)
    assert water.label == "department: department water, 3 working days"
    # department clocks are run by the departments' tasks, not by the case's own timer
    assert s.state.next_wake() is not None
    assert s.state.next_wake()[1].clock is Clock.RESOLVE  # type: ignore[index]


def test_a_late_department_is_warned_escalated_and_marked_late(
    story: NewStory, actors: Actors
) -> None:
    s = summoned(story, actors)
    water = s.state.department_deadlines["water"]
    assert s.run(CheckDepartment(department="water"), water.warn_at - HOUR) == []
    [warned] = s.run(CheckDepartment(department="water"), water.warn_at)
    assert isinstance(warned, DepartmentWarned) and warned.department == "water"
    assert s.state.flag is Flag.YELLOW
    assert s.run(CheckDepartment(department="water"), water.warn_at + HOUR) == []  # once
    [late] = s.run(CheckDepartment(department="water"), water.due_at)
    assert isinstance(late, DepartmentEscalated)
    assert late.to_level is Level.DISTRICT and late.due_at == water.due_at
    assert s.state.late_departments == ["water"]
    assert s.run(CheckDepartment(department="water"), water.due_at + DAY) == []
    # police reports in time, water late: the history says who was late
    [police] = s.run(RecordDepartmentReport(actor=actors.police, report="ok"), water.warn_at)
    [water_report] = s.run(
        RecordDepartmentReport(actor=actors.water, report="fixed"), water.due_at + DAY
    )
    assert isinstance(police, DepartmentReported) and police.on_time is True
    assert isinstance(water_report, DepartmentReported) and water_report.on_time is False
    # a department that has reported is not checked any more
    assert s.run(CheckDepartment(department="police"), water.due_at + 2 * DAY) == []


def test_without_department_limits_nothing_changes_in_the_events(
    story: NewStory, actors: Actors
) -> None:
    s = summoned(story, actors, OLD_POLICY)
    summons = s.events[-1]
    assert "deadlines" not in event_payload(summons)  # as recorded before clocks existed
    assert s.state.department_deadlines == {}
    [report] = s.run(RecordDepartmentReport(actor=actors.water, report="ok"), local(2026, 12, 1))
    assert "on_time" not in event_payload(report)
    assert s.run(CheckDepartment(department="water"), local(2026, 12, 30)) == []


# ------------------------------------------------------------------ revisit by category


def revisit_story(story: NewStory, categories: list[str]) -> Story:
    reporter = {"name": "王阿姨", "phone": "13800138000", "resident_id": "res-1"}
    if categories:
        reporter["categories"] = categories  # type: ignore[assignment]
    return story(policy=POLICY, reporter=reporter).advance(Step.REVISIT)


def test_a_household_in_difficulty_is_revisited_in_person_within_three_days(
    story: NewStory, actors: Actors
) -> None:
    s = revisit_story(story, ["household_in_difficulty"])
    clock = s.state.deadlines[Clock.REVISIT]
    assert clock.due_at == s.FEEDBACK_AT + 3 * DAY
    assert clock.label == "revisit: minor matter, community level, in person, 3 days"
    by_phone = RecordRevisit(
        actor=actors.grid_worker, satisfaction=Satisfaction.SATISFIED, in_person=False
    )
    with pytest.raises(DomainError) as refusal:
        s.decide(by_phone, s.REVISIT_AT)
    message = str(refusal.value)
    assert message.startswith("record_revisit: in_person: this resident must be visited in person")
    assert "difficulty" not in message  # the category is personal data
    events = s.run(by_phone.model_copy(update={"in_person": True}), s.REVISIT_AT)
    assert events[-1].type == "case_archived"


def test_an_old_party_member_is_visited_in_person_on_the_usual_interval(story: NewStory) -> None:
    s = revisit_story(story, ["old_party_member"])
    clock = s.state.deadlines[Clock.REVISIT]
    assert clock.due_at == s.FEEDBACK_AT + 7 * DAY and "in person" in clock.label


def test_other_residents_may_be_revisited_by_phone(story: NewStory, actors: Actors) -> None:
    s = revisit_story(story, [])
    assert s.state.deadlines[Clock.REVISIT].due_at == s.FEEDBACK_AT + 7 * DAY
    by_phone = RecordRevisit(
        actor=actors.grid_worker, satisfaction=Satisfaction.SATISFIED, in_person=False
    )
    assert s.run(by_phone, s.REVISIT_AT)[-1].type == "case_archived"


def test_the_strictest_rule_of_several_categories_applies() -> None:
    rule = POLICY.revisit_rule(["old_party_member", "elderly_living_alone"])  # type: ignore[list-item]
    assert rule.in_person and rule.within == 3 * DAY
    assert not POLICY.revisit_rule([]).in_person
    assert OLD_POLICY.revisit_rule(["household_in_difficulty"]).in_person is False  # type: ignore[list-item]


def test_a_report_without_categories_keeps_its_recorded_content(story: NewStory) -> None:
    payload = event_payload(story().events[0])
    assert "categories" not in payload["case"]["reporter"]  # type: ignore[index]


def test_a_category_named_twice_is_refused(
    open_payload_of: Callable[..., dict[str, object]],
) -> None:
    reporter = {"name": "王阿姨", "categories": ["repeat_petitioner", "repeat_petitioner"]}
    with pytest.raises(DomainError, match=r"reporter\.categories: .*same category twice"):
        parse_open_case(open_payload_of(reporter=reporter))
