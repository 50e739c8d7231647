"""The points of party members and volunteers (domain/points.py), from the events of cases
taken through the decider: who a case counts for, the scheme's numbers, the twelve-point
cap over a year, months cut in the office's timezone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from domain.commands import (
    CheckIn,
    Claim,
    OfferCase,
    RecordDeliberation,
    RecordFeedback,
    RecordRevisit,
    ReportResolution,
    Withdraw,
)
from domain.events import Event
from domain.model import Actor, Role, Satisfaction, Severity, Step, replaced
from domain.points import (
    CURRENT_SCHEME,
    POINTS_2026_1,
    CaseEvents,
    PointsScheme,
    RolePoints,
    credit,
    tally,
    year_bounds,
)
from domain.policy import DEFAULT_POLICY, Clock
from policies import NOTHING_RAISED

if TYPE_CHECKING:
    from conftest import Actors, Story

NewStory = Callable[..., "Story"]
SHANGHAI = "Asia/Shanghai"
# the story's revisit (archiving) time: 2026-11-27 09:00 +08:00
MONTH = "2026-11"


def lifecycle(
    s: Story,
    actors: Actors,
    taker: Actor | None,
    *,
    late: bool = False,
    rejected_first: bool = False,
    resolver: Actor | None = None,
    satisfaction: Satisfaction = Satisfaction.SATISFIED,
) -> Story:
    """Dispatch, offer, take (or a grid worker claims), resolve, feedback, revisit."""
    s.dispatch()
    s.run(OfferCase(actor=actors.community_admin), s.CLAIM_AT)
    handler = taker or actors.grid_worker
    s.run(Claim(actor=handler), s.CLAIM_AT)
    s.run(CheckIn(actor=handler), s.CHECK_IN_AT)
    s.run(
        RecordDeliberation(actor=handler, participants=["党员"], decision="换灯"), s.DELIBERATE_AT
    )
    resolve_at = s.RESOLVE_AT
    if late:  # the micro-grid's day runs out: the grid's loop, still the community's
        due = s.state.deadlines[Clock.RESOLVE].due_at
        s.tick(due + timedelta(seconds=1))
        resolve_at = due + timedelta(hours=1)
    feedback_at = resolve_at + timedelta(hours=1)
    if rejected_first:
        s.run(ReportResolution(actor=resolver or handler, summary="换了"), resolve_at)
        s.run(
            RecordFeedback(
                actor=actors.resident, accepted=False, satisfaction=Satisfaction.UNSATISFIED
            ),
            feedback_at,
        )
        resolve_at += timedelta(hours=2)
        feedback_at += timedelta(hours=2)
    s.run(ReportResolution(actor=resolver or handler, summary="灯已换好"), resolve_at)
    s.run(
        RecordFeedback(actor=actors.resident, accepted=True, satisfaction=satisfaction),
        feedback_at,
    )
    s.run(
        RecordRevisit(
            checklist=NOTHING_RAISED,
            actor=actors.grid_worker,
            satisfaction=Satisfaction.VERY_SATISFIED,
        ),
        s.REVISIT_AT,
    )
    assert s.state.step is Step.ARCHIVE
    return s


def case_of(s: Story, case_id: str | None = None, shift: timedelta = timedelta(0)) -> CaseEvents:
    """The case's events after its opening (as activities/points.py reads them), moved in
    time by `shift` and under another id when given."""
    events: list[Event] = [
        replaced(e, {"occurred_at": e.occurred_at + shift}) for e in s.events[1:]
    ]
    return CaseEvents(
        case_id=case_id or s.state.case_id, grid_id=s.state.case.location.grid_id, events=events
    )


def test_the_scheme_is_versioned_data_with_its_rules_in_words() -> None:
    assert CURRENT_SCHEME is POINTS_2026_1 and POINTS_2026_1.version == "points-2026.1"
    assert POINTS_2026_1.party_member.year_cap == 12
    assert POINTS_2026_1.party_member.earned(Severity.MINOR, on_time=True) == 1
    assert POINTS_2026_1.volunteer.earned(Severity.MINOR, on_time=True) == 3
    assert POINTS_2026_1.volunteer.earned(Severity.MINOR, on_time=False) == 2
    assert POINTS_2026_1.volunteer.earned(Severity.MAJOR, on_time=True) == 1  # bonus only
    rules = POINTS_2026_1.rules()
    assert any("1 per minor case" in r and "at most 12 a calendar year" in r for r in rules)
    assert any("2 per minor case, +1 when resolved on time" in r for r in rules)
    again = PointsScheme.model_validate_json(POINTS_2026_1.model_dump_json())
    assert again == POINTS_2026_1
    with pytest.raises(ValueError, match="no points for the role grid_worker"):
        POINTS_2026_1.for_role(Role.GRID_WORKER)


def test_a_volunteer_s_case_on_time_earns_three_points(story: NewStory, actors: Actors) -> None:
    s = lifecycle(story(), actors, actors.volunteer)
    c = credit(case_of(s))
    assert c is not None
    assert (c.member_id, c.role, c.severity, c.on_time) == ("vol-1", Role.VOLUNTEER, "minor", True)
    assert c.archived_at == s.REVISIT_AT
    [m] = tally([case_of(s)], "G-01", MONTH, SHANGHAI)
    assert (m.member_id, m.role, m.completed, m.on_time, m.points) == (
        "vol-1",
        Role.VOLUNTEER,
        1,
        1,
        3,
    )
    assert (m.year_completed, m.year_points, m.year_cap, m.cases) == (1, 3, None, [s.state.case_id])


def test_a_late_case_earns_the_volunteer_no_bonus(story: NewStory, actors: Actors) -> None:
    s = lifecycle(story(policy=DEFAULT_POLICY), actors, actors.volunteer, late=True)
    assert s.state.escalation_count == 1 and not s.state.on_time
    [m] = tally([case_of(s)], "G-01", MONTH, SHANGHAI)
    assert (m.completed, m.on_time, m.points) == (1, 0, 2)


def test_a_party_member_s_case_counts_one_point(story: NewStory, actors: Actors) -> None:
    s = lifecycle(story(), actors, actors.party_member, rejected_first=True)
    assert s.state.reopen_count == 1
    [m] = tally([case_of(s)], "G-01", MONTH, SHANGHAI)
    assert (m.role, m.completed, m.points, m.year_points, m.year_cap) == (
        Role.PARTY_MEMBER,
        1,
        1,
        1,
        12,
    )


def test_cases_that_earn_nothing(story: NewStory, actors: Actors) -> None:
    # a grid worker claimed the offered case
    staff = lifecycle(story(), actors, None)
    # the resident's last feedback was lukewarm but content: it counts
    basic = lifecycle(
        story(), actors, actors.volunteer, satisfaction=Satisfaction.BASICALLY_SATISFIED
    )
    assert credit(case_of(basic)) is not None
    # accepted, but the resident said unsatisfied: no content feedback
    unhappy = lifecycle(story(), actors, actors.volunteer, satisfaction=Satisfaction.UNSATISFIED)
    # the community admin reported the resolution, not the taker
    admin = lifecycle(story(), actors, actors.volunteer, resolver=actors.community_admin)
    # withdrawn after it was taken
    withdrawn = story()
    withdrawn.dispatch()
    withdrawn.run(OfferCase(actor=actors.community_admin), withdrawn.CLAIM_AT)
    withdrawn.run(Claim(actor=actors.volunteer), withdrawn.CLAIM_AT)
    withdrawn.run(Withdraw(actor=actors.resident, reason="已自行解决"), withdrawn.CHECK_IN_AT)
    # still open
    running = story()
    running.dispatch()
    running.run(OfferCase(actor=actors.community_admin), running.CLAIM_AT)
    running.run(Claim(actor=actors.volunteer), running.CLAIM_AT)
    for s in (staff, unhappy, admin, withdrawn, running):
        assert credit(case_of(s)) is None
    assert (
        tally(
            [case_of(s) for s in (staff, unhappy, admin, withdrawn, running)],
            "G-01",
            MONTH,
            SHANGHAI,
        )
        == []
    )


def test_feedback_unanswered_earns_nothing(story: NewStory, actors: Actors) -> None:
    """Under 2026.3 a resident who does not answer is not rated: no content feedback."""
    s = story(policy=DEFAULT_POLICY)
    s.dispatch()
    s.run(OfferCase(actor=actors.community_admin), s.CLAIM_AT)
    s.run(Claim(actor=actors.party_member), s.CLAIM_AT)
    s.run(CheckIn(actor=actors.party_member), s.CHECK_IN_AT)
    s.run(ReportResolution(actor=actors.party_member, summary="修好了"), s.RESOLVE_AT)
    due = s.state.deadlines[Clock.FEEDBACK].due_at
    s.tick(due + timedelta(seconds=1))
    assert s.state.feedback_unanswered and s.state.step is Step.REVISIT
    revisit_at = s.state.deadlines[Clock.REVISIT].due_at - timedelta(hours=1)
    s.run(
        RecordRevisit(
            checklist=NOTHING_RAISED, actor=actors.grid_worker, satisfaction=Satisfaction.SATISFIED
        ),
        revisit_at,
    )
    assert s.state.step is Step.ARCHIVE
    assert credit(case_of(s)) is None


def test_the_twelve_points_are_a_year_s_cap_and_months_cut_in_office_time(
    story: NewStory, actors: Actors
) -> None:
    """Fourteen cases of one party member archived from January to December 2027 (one a
    month, three in December): at most twelve points in the year; a case archived at
    00:30 on 1 January in Shanghai is January's there, December's in UTC."""
    s = lifecycle(story(), actors, actors.party_member)
    archived = s.state.archived_at
    assert archived is not None
    first = datetime.fromisoformat("2027-01-10T10:00:00+08:00")
    cases = [
        case_of(s, f"case-visit-m{k:02d}", first.replace(month=k) - archived) for k in range(1, 13)
    ]
    cases += [
        case_of(s, f"case-visit-d{k}", first.replace(month=12, day=20 + k) - archived)
        for k in (1, 2)
    ]
    # the year before, and the new year's first half hour
    cases.append(
        case_of(s, "case-visit-old", datetime.fromisoformat("2026-12-31T10:00+08:00") - archived)
    )
    new_year = datetime.fromisoformat("2028-01-01T00:30:00+08:00")
    cases.append(case_of(s, "case-visit-new", new_year - archived))

    def month(name: str, zone: str = SHANGHAI) -> tuple[int, int, int, int, list[str]]:
        [m] = tally(cases, "G-01", name, zone)
        return m.completed, m.points, m.year_completed, m.year_points, m.cases

    assert month("2027-01") == (1, 1, 1, 1, ["case-visit-m01"])
    assert month("2027-11") == (1, 1, 11, 11, ["case-visit-m11"])
    # December: three cases, one point left to reach twelve
    assert month("2027-12") == (3, 1, 14, 12, ["case-visit-m12", "case-visit-d1", "case-visit-d2"])
    assert month("2028-01") == (1, 1, 1, 1, ["case-visit-new"])
    # in UTC the new year's case is December 31st's: nothing more to earn that year
    assert month("2027-12", "UTC") == (
        4,
        1,
        15,
        12,
        ["case-visit-m12", "case-visit-d1", "case-visit-d2", "case-visit-new"],
    )
    # a month without cases: the member is listed with the year so far
    assert month("2028-02") == (0, 0, 1, 1, [])
    assert tally(cases, "G-01", "2026-11", SHANGHAI) == []  # before any of them
    assert tally(cases, "G-02", "2027-12", SHANGHAI) == []  # another grid's report


def test_members_are_listed_party_members_first(story: NewStory, actors: Actors) -> None:
    volunteer = lifecycle(story(), actors, actors.volunteer)
    member = lifecycle(story(), actors, actors.party_member)
    other = Actor(id="pm-0", role=Role.PARTY_MEMBER, org="G-01")
    third = lifecycle(story(), actors, other)
    cases = [
        case_of(volunteer, "case-visit-v"),
        case_of(member, "case-visit-p"),
        case_of(third, "case-visit-o"),
    ]
    listed = tally(cases, "G-01", MONTH, SHANGHAI)
    assert [(m.role.value, m.member_id, m.points) for m in listed] == [
        ("party_member", "pm-0", 1),
        ("party_member", "pm-1", 1),
        ("volunteer", "vol-1", 3),
    ]
    # another version of the scheme gives other figures from the same events
    generous = POINTS_2026_1.model_copy(
        update={"version": "test-2", "volunteer": RolePoints(case_points={Severity.MINOR: 5})}
    )
    assert [m.points for m in tally(cases, "G-01", MONTH, SHANGHAI, generous)] == [1, 1, 5]


def test_year_bounds() -> None:
    year, start, end = year_bounds("2027-03", SHANGHAI)
    assert year.isoformat() == "2027-01-01T00:00:00+08:00"
    assert (start.isoformat(), end.isoformat()) == (
        "2027-03-01T00:00:00+08:00",
        "2027-04-01T00:00:00+08:00",
    )
