"""The social side of a case: urging by the street and district (督办/催办), evidence by
reference, the three questions of every revisit (三必问), the residents' representative
among those always visited (四必访), and the reports merged into a case."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from domain.commands import UrgeCase
from domain.errors import DomainError
from domain.events import CaseUrged, event_payload
from domain.model import Actor, Level, Step
from domain.policy import Clock

if TYPE_CHECKING:
    from conftest import Actors, Story

NewStory = Callable[..., "Story"]
HOUR = timedelta(hours=1)


def refused(s: Story, command: object, at: object, pattern: str) -> str:
    with pytest.raises(DomainError, match=pattern) as refusal:
        s.decide(command, at)  # type: ignore[arg-type]
    return str(refusal.value)


# ------------------------------------------------------------------ 督办/催办


def urge(actor: Actor, message: str = "请尽快处理 (please hurry)") -> UrgeCase:
    return UrgeCase(actor=actor, message=message)


@pytest.mark.parametrize("who", ["street_officer", "district_officer"])
def test_an_officer_of_the_street_or_district_urges_a_case_in_any_step(
    story: NewStory, actors: Actors, who: str
) -> None:
    officer = getattr(actors, who)
    s = story()
    # before the dispatch: recorded, with no level yet
    [before] = s.run(urge(officer), s.DISPATCH_AT - timedelta(seconds=30))
    assert isinstance(before, CaseUrged) and before.level is None
    assert before.actor == officer and before.message == "请尽快处理 (please hurry)"
    for step in (Step.COLLECT, Step.DELIBERATE, Step.RESOLVE, Step.FEEDBACK, Step.REVISIT):
        s.advance(step)
        at = s.state.updated_at + timedelta(minutes=1)
        [urged] = s.run(urge(officer), at)
        assert isinstance(urged, CaseUrged) and urged.level is Level.COMMUNITY
        assert s.state.last_urged_at == at
    assert s.state.urge_count == 6


def test_urging_moves_no_handler_level_or_clock(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.RESOLVE)
    before = s.state
    s.run(urge(actors.district_officer), s.RESOLVE_AT - HOUR)
    after = s.state
    assert (after.assignee, after.level, after.loop, after.step, after.deadlines) == (
        before.assignee,
        before.level,
        before.loop,
        before.step,
        before.deadlines,
    )
    assert (after.flag, after.on_time, after.escalation_count) == (
        before.flag,
        before.on_time,
        before.escalation_count,
    )
    assert after.urge_count == 1 and after.last_urged_at == s.RESOLVE_AT - HOUR
    assert after.version == before.version + 1 and after.last_event == "case_urged"
    # a timer after it sees the same clocks it would have seen without it
    assert Clock.RESOLVE in after.deadlines


def test_the_event_records_the_level_at_the_time(story: NewStory, actors: Actors) -> None:
    s = story()
    s.dispatch()
    [urged] = s.run(urge(actors.street_officer), s.DISPATCH_AT + HOUR)
    payload = event_payload(urged)
    assert payload["type"] == "case_urged" and payload["level"] == "community"
    assert payload["actor"] == {"id": "so-1", "role": "street_officer", "org": "S-01"}


@pytest.mark.parametrize(
    "who",
    [
        "grid_worker",
        "community_admin",
        "resident",
        "other_resident",
        "water",
        "system",
        "other_street_officer",
        "other_district_officer",
    ],
)
def test_urging_is_refused_to_anyone_but_the_cases_street_and_district(
    story: NewStory, actors: Actors, who: str
) -> None:
    s = story()
    s.dispatch()
    message = refused(
        s, urge(getattr(actors, who)), s.DISPATCH_AT + HOUR, r"^urge_case: actor .* may not urge"
    )
    assert "only a street officer of the case's street or a district officer of its district" in (
        message
    )
    assert s.state.urge_count == 0


def test_an_archived_case_is_not_urged(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.REVISIT)
    s.advance(Step.ARCHIVE)
    refused(s, urge(actors.street_officer), s.REVISIT_AT + HOUR, "^urge_case: the case is archived")


def test_an_empty_message_is_refused_naming_the_field(actors: Actors) -> None:
    from domain.commands import parse_command

    with pytest.raises(DomainError, match=r"^urge_case refused: message: "):
        parse_command(
            "urge_case", {"actor": actors.street_officer.model_dump(mode="json"), "message": " "}
        )
