"""组织建单、党员接单: the community offers a minor case to its grid's party members and
volunteers (`offer_case`), one of them takes it (`claim`) and handles it as the grid's
worker would, while it is theirs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from domain.commands import (
    AddNote,
    CheckIn,
    Claim,
    Command,
    Dispatch,
    OfferCase,
    RecordDeliberation,
    RecordFeedback,
    RecordRevisit,
    ReportResolution,
    RequestExtension,
    ReturnCase,
    ReviewReturn,
    parse_command,
)
from domain.errors import DomainError
from domain.events import EVENTS, CaseClaimed, CaseOffered, event_payload
from domain.model import Actor, HandlingClass, Level, Role, Satisfaction, Severity, Step
from domain.policy import DEFAULT_POLICY, Clock
from policies import NOTHING_RAISED

if TYPE_CHECKING:
    from conftest import Actors, Story

NewStory = Callable[..., "Story"]
HOUR = timedelta(hours=1)


def refused(story: Story, command: Command, now: datetime, match: str) -> None:
    version = story.state.version
    with pytest.raises(DomainError, match=match):
        story.decide(command, now)
    assert story.state.version == version


def offered(story: NewStory, actors: Actors, **kwargs: object) -> Story:
    """A minor community case, dispatched to nobody in particular and offered to G-01."""
    s = story(**kwargs)
    s.dispatch()
    s.run(OfferCase(actor=actors.community_admin, note="楼道灯，党员志愿者可接"), s.CLAIM_AT)
    return s


def taken(story: NewStory, actors: Actors, taker: Actor, **kwargs: object) -> Story:
    s = offered(story, actors, **kwargs)
    s.run(Claim(actor=taker), s.CLAIM_AT)
    return s


# ------------------------------------------------------------------ offer_case


@pytest.mark.parametrize("who", ["community_admin", "street_officer", "district_officer"])
def test_the_community_or_an_officer_above_offers_a_minor_case_to_its_grid(
    story: NewStory, actors: Actors, who: str
) -> None:
    s = story()
    s.dispatch()
    assert not s.state.offered
    [event] = s.run(OfferCase(actor=getattr(actors, who), note="微心愿"), s.CLAIM_AT)
    assert isinstance(event, CaseOffered)
    assert (event.grid_id, event.note, event.actor) == ("G-01", "微心愿", getattr(actors, who))
    assert s.state.offered and s.state.step is Step.COLLECT and not s.state.claimed
    # the command as another system sends it, and the event through its JSON
    command = parse_command("offer_case", {"actor": getattr(actors, who).model_dump()})
    assert isinstance(command, OfferCase) and command.note is None
    assert EVENTS.validate_json(EVENTS.dump_json(event)) == event


@pytest.mark.parametrize(
    "who",
    [
        "grid_worker",
        "other_community_admin",
        "other_street_officer",
        "resident",
        "party_member",
        "volunteer",
        "system",
    ],
)
def test_nobody_else_offers_a_case(story: NewStory, actors: Actors, who: str) -> None:
    s = story()
    s.dispatch()
    refused(
        s,
        OfferCase(actor=getattr(actors, who)),
        s.CLAIM_AT,
        "^offer_case: actor .* may not offer the case: only the case's community admin",
    )


def test_only_a_dispatched_unclaimed_minor_community_case_unassigned_is_offered(
    story: NewStory, actors: Actors
) -> None:
    admin = OfferCase(actor=actors.community_admin)
    s = story()
    refused(s, admin, s.CLAIM_AT, "^offer_case: the case is not dispatched yet$")
    s.dispatch()
    s.run(admin, s.CLAIM_AT)
    refused(s, admin, s.CLAIM_AT, "^offer_case: the case is offered to its grid already$")

    major = story(severity=Severity.MAJOR)
    major.dispatch()
    refused(major, admin, major.CLAIM_AT, "^offer_case: only a minor case at community level")
    # a hard matter goes to the street
    hard = story(severity=Severity.HARD, handling_class=HandlingClass.JOINT)
    hard.dispatch()
    assert hard.state.level is Level.STREET
    street = OfferCase(actor=actors.street_officer)
    refused(hard, street, hard.CLAIM_AT, "^offer_case: only a minor case at community level")

    named = story()
    named.dispatch(assignee="gw-2")
    refused(named, admin, named.CLAIM_AT, "^offer_case: the case is assigned to gw-2$")

    claimed = story()
    claimed.dispatch()
    claimed.run(Claim(actor=actors.grid_worker), claimed.CLAIM_AT)
    refused(claimed, admin, claimed.CLAIM_AT, r"^offer_case: not allowed in step deliberate")


# ------------------------------------------------------------------ taking it


@pytest.mark.parametrize(
    ("who", "role"), [("party_member", "party_member"), ("volunteer", "volunteer")]
)
def test_a_party_member_or_volunteer_of_the_grid_takes_an_offered_case(
    story: NewStory, actors: Actors, who: str, role: str
) -> None:
    taker = getattr(actors, who)
    s = offered(story, actors)
    [event] = s.run(Claim(actor=taker), s.CLAIM_AT)
    assert isinstance(event, CaseClaimed)
    assert (event.handler, event.role) == (taker.id, Role(role))
    assert event_payload(event)["role"] == role
    assert s.state.assignee == taker.id and s.state.claimed
    assert s.state.taken_by_role is Role(role) and s.state.step is Step.DELIBERATE
    # nobody else takes it now
    other = Actor(id="vol-2", role=Role.VOLUNTEER, org="G-01")
    refused(s, Claim(actor=other), s.CLAIM_AT, r"^claim: not allowed in step deliberate")


def test_a_staff_claim_keeps_the_event_s_old_content(story: NewStory, actors: Actors) -> None:
    """No `role` in the JSON of a staff member's claim: claims recorded before the field
    existed keep their bytes (the hash chain and the audit compare them)."""
    s = offered(story, actors)
    [event] = s.run(Claim(actor=actors.grid_worker), s.CLAIM_AT)
    assert isinstance(event, CaseClaimed) and event.role is None
    payload = event_payload(event)
    assert "role" not in payload
    assert set(payload) == {"occurred_at", "actor", "command_id", "type", "handler"}
    assert s.state.taken_by_role is None and s.state.assignee == "gw-1"
    # the grid worker holds it: the volunteers of the grid have no part in it
    refused(s, CheckIn(actor=actors.volunteer), s.CHECK_IN_AT, "^check_in: actor vol-1")


@pytest.mark.parametrize("who", ["other_party_member", "party_member", "volunteer"])
def test_a_case_not_offered_or_of_another_grid_is_not_taken(
    story: NewStory, actors: Actors, who: str
) -> None:
    taker = getattr(actors, who)
    message = (
        "^claim: actor .* may not take the case: a party member or volunteer takes only a "
        "minor case at community level that was offered to their own grid"
    )
    s = story()
    s.dispatch()
    refused(s, Claim(actor=taker), s.CLAIM_AT, message)  # not offered
    if who == "other_party_member":
        s.run(OfferCase(actor=actors.community_admin), s.CLAIM_AT)
        refused(s, Claim(actor=taker), s.CLAIM_AT, message)  # offered to G-01, not G-02


def test_a_case_named_to_a_handler_after_a_reviewed_return_is_not_taken(
    story: NewStory, actors: Actors
) -> None:
    """Under reviewed returns (2026.3) an approved return may name the next handler: then
    the offer no longer lets the grid's volunteers take it."""
    s = taken(story, actors, actors.volunteer, policy=DEFAULT_POLICY)
    s.run(ReturnCase(actor=actors.volunteer, reason="需要专业电工"), s.CHECK_IN_AT)
    assert s.state.pending_return is not None
    s.run(ReviewReturn(actor=actors.community_admin, approved=True, assignee="gw-2"), s.CHECK_IN_AT)
    assert s.state.step is Step.COLLECT and s.state.taken_by_role is None and s.state.offered
    refused(
        s, Claim(actor=actors.party_member), s.CHECK_IN_AT, "^claim: actor pm-1 .* may not take"
    )
    s.run(Claim(actor=actors.grid_worker_2), s.CHECK_IN_AT)
    assert s.state.assignee == "gw-2" and s.state.taken_by_role is None


def test_a_grid_worker_still_claims_an_offered_case(story: NewStory, actors: Actors) -> None:
    s = offered(story, actors)
    s.run(Claim(actor=actors.grid_worker_2), s.CLAIM_AT)
    assert s.state.assignee == "gw-2" and s.state.taken_by_role is None


# ------------------------------------------------------------------ handling it


def test_the_taker_handles_the_case_as_the_grid_worker_would(
    story: NewStory, actors: Actors
) -> None:
    s = taken(story, actors, actors.volunteer)
    other = Actor(id="vol-2", role=Role.VOLUNTEER, org="G-01")
    member = actors.party_member  # of the same grid, but not the taker
    for outsider in (other, member):
        refused(s, CheckIn(actor=outsider), s.CHECK_IN_AT, "^check_in: actor .* is not the handler")
    s.run(CheckIn(actor=actors.volunteer), s.CHECK_IN_AT)
    assert s.state.checked_in_at == s.CHECK_IN_AT and Clock.ON_SITE not in s.state.deadlines
    s.run(AddNote(actor=actors.volunteer, text="已买好灯泡"), s.CHECK_IN_AT)
    refused(s, AddNote(actor=other, text="x"), s.CHECK_IN_AT, "^add_note: .* has no part")
    deliberation = RecordDeliberation(
        actor=actors.volunteer, participants=["志愿者"], decision="换灯"
    )
    refused(
        s,
        RecordDeliberation(actor=member, participants=["党员"], decision="换灯"),
        s.DELIBERATE_AT,
        "^record_deliberation: actor pm-1 .* is not a handler",
    )
    s.run(deliberation, s.DELIBERATE_AT)
    s.run(RequestExtension(actor=actors.volunteer, extra=HOUR, reason="等配件"), s.DELIBERATE_AT)
    s.run(ReportResolution(actor=actors.volunteer, summary="灯已换好"), s.RESOLVE_AT)
    assert s.state.step is Step.FEEDBACK and s.state.note_count == 1
    # feedback and revisit stay with the resident and the staff
    refused(
        s,
        RecordFeedback(actor=actors.volunteer, accepted=True, satisfaction=Satisfaction.SATISFIED),
        s.FEEDBACK_AT,
        "^record_feedback: actor vol-1 .* may not record feedback",
    )
    s.advance(Step.REVISIT)
    refused(
        s,
        RecordRevisit(
            checklist=NOTHING_RAISED, actor=actors.volunteer, satisfaction=Satisfaction.SATISFIED
        ),
        s.REVISIT_AT,
        "^record_revisit: actor vol-1 .* may not record a revisit",
    )
    s.advance(Step.ARCHIVE)
    assert s.state.taken_by_role is Role.VOLUNTEER and s.state.assignee == "vol-1"


def test_the_taker_loses_the_case_when_it_goes_up_to_the_street(
    story: NewStory, actors: Actors
) -> None:
    s = taken(story, actors, actors.party_member)
    s.run(CheckIn(actor=actors.party_member), s.CHECK_IN_AT)
    due = s.state.deadlines[Clock.RESOLVE].due_at
    s.tick(due + timedelta(seconds=1))
    assert s.state.level is Level.STREET and s.state.assignee is None
    assert s.state.taken_by_role is None
    refused(
        s,
        RecordDeliberation(actor=actors.party_member, participants=["党员"], decision="x"),
        due + HOUR,
        "^record_deliberation: actor pm-1 .* is not a handler",
    )


def test_the_taker_keeps_the_case_through_the_micro_grid_s_loop_running_out(
    story: NewStory, actors: Actors
) -> None:
    """Under the loops of 7135 a minor case that misses its day goes to the grid's loop,
    still at community level: the taker keeps it (and it is no longer on time)."""
    s = taken(story, actors, actors.volunteer, policy=DEFAULT_POLICY)
    s.run(CheckIn(actor=actors.volunteer), s.CHECK_IN_AT)
    due = s.state.deadlines[Clock.RESOLVE].due_at
    s.tick(due + timedelta(seconds=1))
    assert s.state.level is Level.COMMUNITY and s.state.escalation_count == 1
    assert s.state.taken_by_role is Role.VOLUNTEER and not s.state.on_time
    s.run(ReportResolution(actor=actors.volunteer, summary="修好了"), due + HOUR)
    assert s.state.step is Step.FEEDBACK


def test_a_return_and_a_new_dispatch_start_without_the_offer(
    story: NewStory, actors: Actors
) -> None:
    """Before reviewed returns, a return sends the case back to dispatch: the next
    dispatch (of any severity) is not offered until it is offered again."""
    s = taken(story, actors, actors.volunteer)
    s.run(ReturnCase(actor=actors.volunteer, reason="不是本网格的事"), s.CHECK_IN_AT)
    assert s.state.taken_by_role is None and s.state.step is Step.COLLECT
    s.run(
        Dispatch(
            actor=actors.community_admin,
            severity=Severity.MINOR,
            handling_class=HandlingClass.IMMEDIATE,
        ),
        s.CHECK_IN_AT,
    )
    assert not s.state.offered
    refused(
        s, Claim(actor=actors.party_member), s.CHECK_IN_AT, "^claim: actor pm-1 .* may not take"
    )
