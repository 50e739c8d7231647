"""The demo cases of `make run` (devstack/demo.py) against the domain: every command of
every demo case is accepted (a refused one would stop `make run`), and each case ends
where it is meant to show its path in the Temporal UI. Pure: no server."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from devstack import demo
from devstack.stack import EXAMPLE_TALK_DAYS
from domain.commands import parse_command, parse_open_case
from domain.decider import apply_batch, decide, open_case
from domain.model import HandlingClass, Level, Outcome, Role, Step
from domain.policy import DEFAULT_POLICY, Clock
from domain.state import CaseState
from domain.talkdays import TalkDays

START = datetime.fromisoformat("2026-11-24T09:00:00+08:00")  # a Tuesday


def play(case: demo.DemoCase) -> tuple[CaseState, CaseState | None]:
    """The case after all its commands, and before the last one (None without any)."""
    payload = demo.report(case.ticket, case.title, case.category, case.description, case.categories)
    opened = parse_open_case(payload)
    case_id = f"case-{opened.source.value}-{opened.source_ref}"
    state, _ = apply_batch(None, open_case(case_id, opened, START, DEFAULT_POLICY))
    before = None
    for index, (name, body) in enumerate(case.commands, start=1):
        before = state
        now = START + timedelta(minutes=index)
        state, _ = apply_batch(state, decide(state, parse_command(name, body), now, DEFAULT_POLICY))
    return state, before


CASES = {case.ticket: case for case in demo.DEMO_CASES}


def test_tickets_are_distinct_and_fixed() -> None:
    assert len(CASES) == len(demo.DEMO_CASES)
    assert demo.TALK_DAY_CASE in CASES


@pytest.mark.parametrize("ticket", sorted(CASES))
def test_every_command_is_accepted(ticket: str) -> None:
    play(CASES[ticket])  # decide raises DomainError on a refusal


def test_the_example_talk_days_configure_the_demo_community() -> None:
    talk_days = TalkDays.model_validate_json(EXAMPLE_TALK_DAYS.read_bytes())
    rules = {r.community_id: r for r in talk_days.communities}
    assert rules[demo.COMMUNITY].street_id == demo.STREET


def test_self_governance_case_waits_for_its_talk_day() -> None:
    state, _ = play(CASES[demo.TALK_DAY_CASE])
    assert state.handling_class is HandlingClass.SELF_GOVERNANCE
    assert state.step is Step.DELIBERATE and state.checked_in_at is not None
    assert Clock.DELIBERATE in state.deadlines and Clock.RESOLVE not in state.deadlines


def test_joint_case_has_one_department_reported_and_one_open() -> None:
    state, _ = play(CASES["DEMO-010"])
    assert state.level is Level.STREET and state.step is Step.RESOLVE
    assert state.summoned == ["water", "police"] and state.reported == ["police"]
    assert set(state.department_deadlines) == {"water", "police"}


def test_returned_case_waits_for_review_with_its_clocks_running() -> None:
    state, before = play(CASES["DEMO-011"])
    assert state.pending_return is not None and state.return_count == 1
    assert state.step is Step.DELIBERATE and state.level is Level.COMMUNITY
    assert before is not None and state.deadlines == before.deadlines


def test_immediate_case_is_resolved_without_a_deliberation() -> None:
    state, _ = play(CASES["DEMO-005"])
    assert state.step is Step.FEEDBACK and Clock.FEEDBACK in state.deadlines
    assert "record_deliberation" not in [name for name, _ in CASES["DEMO-005"].commands]


def test_explanation_needs_no_visit_and_waits_for_its_revisit() -> None:
    state, _ = play(CASES["DEMO-006"])
    assert state.handling_class is HandlingClass.EXPLANATION and state.checked_in_at is None
    assert state.step is Step.REVISIT and Clock.REVISIT in state.deadlines


def test_every_open_demo_case_has_a_running_clock() -> None:
    for case in demo.DEMO_CASES:
        state, _ = play(case)
        assert state.archived or state.next_wake() is not None, case.ticket


def test_extension_moves_the_resolve_deadline() -> None:
    state, before = play(CASES["DEMO-012"])
    assert before is not None and before.pending_extension is not None
    assert state.pending_extension is None
    moved = state.deadlines[Clock.RESOLVE].due_at - before.deadlines[Clock.RESOLVE].due_at
    assert moved == timedelta(days=2)


def test_household_in_difficulty_is_revisited_in_person_within_three_days() -> None:
    state, _ = play(CASES["DEMO-013"])
    assert state.step is Step.REVISIT
    revisit = state.deadlines[Clock.REVISIT]
    assert "in person, 3 days" in revisit.label
    assert revisit.due_at - revisit.started_at == timedelta(days=3)


def test_offered_case_is_taken_by_a_party_member_who_checks_in_with_a_photo() -> None:
    state, _ = play(CASES["DEMO-014"])
    assert state.offered and state.taken_by_role is Role.PARTY_MEMBER
    assert state.assignee == demo.PARTY_MEMBER["id"] and state.step is Step.DELIBERATE
    [photo] = state.evidence
    assert photo.event == "handler_checked_in" and photo.evidence.media_type == "image/jpeg"
    assert photo.evidence.sha256 == demo.SITE_PHOTO_SHA256


def test_a_second_report_of_the_street_light_is_merged_into_the_first() -> None:
    state, _ = play(CASES["DEMO-015"])
    assert state.step is Step.ARCHIVE and state.outcome is Outcome.MERGED
    target = next(body for name, body in CASES["DEMO-015"].commands if name == "merge_into")
    assert target["target_case_id"] == "case-mini_program-DEMO-001"
    assert "DEMO-001" in CASES


def test_the_street_s_hard_case_is_urged_by_the_district_without_moving_it() -> None:
    state, before = play(CASES["DEMO-004"])
    assert before is not None
    assert state.urge_count == 1 and state.last_urged_at is not None
    assert (state.level, state.assignee, state.deadlines) == (
        before.level,
        before.assignee,
        before.deadlines,
    )
