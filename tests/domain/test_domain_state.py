"""evolve and fold: the state of a case is the fold of its events; summary and record."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, cast, get_type_hints

import mypy.api
import pytest
from pydantic import BaseModel, ValidationError

from domain.commands import (
    AddNote,
    DecideExtension,
    Dispatch,
    MergeInto,
    RecordFeedback,
    RecordRevisit,
    ReportResolution,
    RequestExtension,
    Withdraw,
)
from domain.decider import apply_batch, decide, evolve, fold
from domain.events import EVENT_LIST, EVENTS, CaseClaimed, Event, NoteAdded, event_payload
from domain.model import (
    Flag,
    HandlingClass,
    Level,
    Outcome,
    Satisfaction,
    Severity,
    Source,
    Step,
)
from domain.policy import Clock, Deadline, DeadlineChanges
from domain.state import (
    CaseChanges,
    CaseRecord,
    CaseState,
    evolve_fields,
    record,
    summary,
)
from policies import NOTHING_RAISED

if TYPE_CHECKING:  # the builders live in this directory's conftest.py (fixtures)
    from conftest import Actors, Story

NewStory = Callable[..., "Story"]
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def full_lifecycle(story: NewStory, actors: Actors) -> Story:
    """Everything a case can live through: warning, extension, note, escalation, a rejected
    feedback (reopen), an unsatisfied revisit (reopen), and at last a satisfied revisit."""
    s = story(severity=Severity.MAJOR, handling_class=HandlingClass.JOINT)
    s.advance(Step.RESOLVE)
    d = s.DISPATCH_AT
    s.run(AddNote(actor=actors.resident, text="the light flickers at night"), d + 2 * HOUR)
    s.run(RequestExtension(actor=actors.grid_worker, extra=DAY, reason="parts"), d + 3 * HOUR)
    s.run(DecideExtension(actor=actors.street_officer, approved=True), d + 4 * HOUR)
    assert s.tick(d + 3 * DAY + 5 * HOUR)[0].type == "deadline_warned"
    assert s.tick(d + 4 * DAY)[0].type == "case_escalated"
    s.run(ReportResolution(actor=actors.street_officer, summary="rewired"), d + 5 * DAY)
    s.run(
        RecordFeedback(
            actor=actors.resident, accepted=False, satisfaction=Satisfaction.UNSATISFIED
        ),
        d + 5 * DAY + HOUR,
    )
    s.run(ReportResolution(actor=actors.street_officer, summary="rewired again"), d + 6 * DAY)
    s.run(
        RecordFeedback(actor=actors.resident, accepted=True, satisfaction=Satisfaction.SATISFIED),
        d + 6 * DAY + HOUR,
    )
    s.run(
        RecordRevisit(
            checklist=NOTHING_RAISED,
            actor=actors.community_admin,
            satisfaction=Satisfaction.UNSATISFIED,
        ),
        d + 8 * DAY,
    )
    s.run(ReportResolution(actor=actors.street_officer, summary="new fitting"), d + 9 * DAY)
    s.run(
        RecordFeedback(
            actor=actors.resident, accepted=True, satisfaction=Satisfaction.VERY_SATISFIED
        ),
        d + 9 * DAY + HOUR,
    )
    s.run(
        RecordRevisit(
            checklist=NOTHING_RAISED, actor=actors.grid_worker, satisfaction=Satisfaction.SATISFIED
        ),
        d + 12 * DAY,
    )
    assert s.state.archived
    return s


def test_folding_the_events_gives_the_state_applied_step_by_step(
    story: NewStory, actors: Actors
) -> None:
    s = full_lifecycle(story, actors)
    assert [e.seq for e in s.events] == list(range(1, len(s.events) + 1))
    assert fold(s.events) == s.state
    # and so does folding them after a round trip through JSON (the event store)
    stored = EVENT_LIST.validate_json(EVENT_LIST.dump_json(s.events))
    assert stored == s.events
    assert fold(stored) == s.state
    # any prefix folds to the state as it stood then
    replay: CaseState | None = None
    for event in s.events:
        replay = evolve(replay, event)
        assert replay.version == event.seq
        assert replay.last_event == event.type
        assert replay.updated_at == event.occurred_at
    assert replay == s.state


def test_the_state_after_a_full_lifecycle(story: NewStory, actors: Actors) -> None:
    s = full_lifecycle(story, actors)
    state = s.state
    d = s.DISPATCH_AT
    assert state.step is Step.ARCHIVE and state.outcome is Outcome.COMPLETED
    assert state.version == len(s.events)
    assert state.last_event == "case_archived"
    assert state.level is Level.STREET
    assert state.reopen_count == 2
    assert state.escalation_count == 1
    assert state.note_count == 1
    assert state.return_count == 0
    assert state.flag is Flag.YELLOW
    assert not state.on_time
    assert state.satisfaction is Satisfaction.SATISFIED
    assert state.resolved_at == d + 9 * DAY
    assert state.archived_at == d + 12 * DAY
    assert state.deadlines == {} and state.pending_extension is None
    assert state.next_wake() is None


def test_the_record_of_an_archived_case(story: NewStory, actors: Actors) -> None:
    s = full_lifecycle(story, actors)
    r = record(s.state)
    assert isinstance(r, CaseRecord)
    assert r.case_id == "case-hotline_12345-T-0001"
    assert r.outcome is Outcome.COMPLETED
    assert r.source == "hotline_12345" and r.category == "public_lighting"
    assert (r.grid_id, r.community_id, r.street_id, r.district_id) == (
        "G-01",
        "C-01",
        "S-01",
        "D-01",
    )
    assert r.severity is Severity.MAJOR
    assert r.handling_class is HandlingClass.JOINT
    assert r.final_level is Level.STREET
    assert r.opened_at == s.state.opened_at
    assert r.dispatched_at == s.DISPATCH_AT
    assert r.resolved_at == s.DISPATCH_AT + 9 * DAY
    assert r.archived_at == s.DISPATCH_AT + 12 * DAY
    assert not r.on_time
    assert (r.escalation_count, r.reopen_count, r.return_count) == (1, 2, 0)
    assert r.satisfaction is Satisfaction.SATISFIED
    assert r.merged_into is None
    assert r.policy_version == "7135-2026.2"
    # the record carries no personal data of the resident
    dumped = r.model_dump_json()
    assert "13800138000" not in dumped and "王阿姨" not in dumped


def test_the_record_of_a_case_that_never_got_far(story: NewStory, actors: Actors) -> None:
    s = story(source="wechat_qr", source_ref="Q-9")
    s.run(MergeInto(actor=actors.system, target_case_id="case-hotline_12345-T-0001"), s.CLAIM_AT)
    r = record(s.state)
    assert r.case_id == "case-wechat_qr-Q-9"
    assert r.outcome is Outcome.MERGED
    assert r.merged_into == "case-hotline_12345-T-0001"
    assert r.severity is None and r.handling_class is None and r.final_level is None
    assert r.dispatched_at is None and r.resolved_at is None
    assert r.on_time and r.satisfaction is None


def test_a_running_case_has_no_record(story: NewStory) -> None:
    s = story().advance(Step.FEEDBACK)
    with pytest.raises(ValueError, match="only an archived case has a record"):
        record(s.state)


def test_a_withdrawn_case_has_a_record(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.RESOLVE)
    s.run(Withdraw(actor=actors.resident, reason="moved away"), s.RESOLVE_AT)
    r = record(s.state)
    assert r.outcome is Outcome.WITHDRAWN and r.archived_at == s.RESOLVE_AT
    assert r.final_level is Level.COMMUNITY and r.resolved_at is None


def test_the_summary(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.RESOLVE)
    got = summary(s.state)
    assert got.case_id == s.state.case_id
    assert got.version == s.state.version == len(s.events)
    assert got.step is Step.RESOLVE
    assert got.level is Level.COMMUNITY
    assert got.flag is Flag.GREEN
    assert got.assignee == "gw-1"
    assert got.due_at == s.DISPATCH_AT + DAY
    assert (got.reopen_count, got.escalation_count) == (0, 0)
    s.tick(s.DISPATCH_AT + DAY)
    got = summary(s.state)
    assert got.level is Level.STREET and got.flag is Flag.YELLOW
    assert got.assignee is None and got.escalation_count == 1
    assert got.due_at == s.DISPATCH_AT + 6 * DAY


def test_due_at_follows_the_resolve_then_the_revisit_clock(story: NewStory) -> None:
    s = story()
    assert s.state.due_at is None
    s.advance(Step.REVISIT)
    assert s.state.due_at == s.FEEDBACK_AT + 7 * DAY
    assert list(s.state.deadlines) == [Clock.REVISIT]


def test_events_come_after_case_opened(story: NewStory, actors: Actors, t0: datetime) -> None:
    claimed = CaseClaimed(seq=1, occurred_at=t0, actor=actors.grid_worker, handler="gw-1")
    with pytest.raises(ValueError, match=r"^case_claimed before case_opened$"):
        evolve(None, claimed)
    with pytest.raises(ValueError, match=r"^case_claimed before case_opened$"):
        fold([claimed])
    with pytest.raises(ValueError, match=r"^no events$"):
        fold([])


def test_case_opened_comes_once(story: NewStory) -> None:
    s = story()
    with pytest.raises(ValueError, match=r"^case_opened must be the first event$"):
        evolve(s.state, s.events[0])


def test_the_stored_payload_is_the_event_without_its_seq(story: NewStory) -> None:
    s = story().advance(Step.DELIBERATE)
    for event in s.events:
        payload = event_payload(event)
        assert "seq" not in payload
        assert payload["type"] == event.type
        assert EVENTS.validate_python({**payload, "seq": event.seq}) == event
    opened = event_payload(s.events[0])
    assert opened["case_id"] == "case-hotline_12345-T-0001"
    assert opened["occurred_at"] == "2026-11-24T09:00:00+08:00"


def test_the_state_round_trips_through_json(story: NewStory) -> None:
    s = story(severity=Severity.MAJOR).advance(Step.RESOLVE)
    s.tick(s.DISPATCH_AT + 3 * DAY)
    assert CaseState.model_validate_json(s.state.model_dump_json()) == s.state
    assert s.state.case.source is Source.HOTLINE_12345


def test_run_numbers_the_events_after_the_state_version(
    story: NewStory, actors: Actors, runner: Callable[..., tuple[CaseState, list[Event]]]
) -> None:
    s = story()
    log = list(s.events)
    dispatch = Dispatch(
        actor=actors.community_admin, severity=Severity.MINOR, handling_class=HandlingClass.JOINT
    )
    state, events = runner(s.state, dispatch, s.DISPATCH_AT)
    assert [e.seq for e in events] == [2] and state.version == 2
    log += events
    state, events = runner(state, Withdraw(actor=actors.resident, reason="r"), s.CLAIM_AT)
    assert [e.seq for e in events] == [3, 4] and state.version == 4
    assert [e.type for e in events] == ["case_withdrawn", "case_archived"]
    log += events
    assert fold(log) == state
    assert s.state.version == 1  # the story's own state is untouched


def test_a_batch_is_numbered_after_the_state_and_stamped_with_its_command(
    story: NewStory, actors: Actors
) -> None:
    s = story()
    withdraw = Withdraw(actor=actors.resident, reason="r")
    decided = decide(s.state, withdraw, s.DISPATCH_AT, s.policy)
    state, events = apply_batch(s.state, decided, "upd-7")
    assert [(e.seq, e.command_id) for e in events] == [(2, "upd-7"), (3, "upd-7")]
    assert [e.model_dump(exclude={"seq", "command_id"}) for e in events] == [
        e.model_dump(exclude={"seq", "command_id"}) for e in decided
    ]
    assert state == fold([*s.events, *events]) and state.version == 3
    with pytest.raises(ValueError, match=r"^no events$"):
        apply_batch(None, [])


def test_an_event_out_of_turn_is_refused(story: NewStory, actors: Actors, t0: datetime) -> None:
    s = story()  # at version 1
    note = NoteAdded(occurred_at=t0, actor=actors.grid_worker, text="n")
    for seq in (0, 1, 3):  # unnumbered, a repeat, a gap
        with pytest.raises(
            ValueError,
            match=rf"^note_added has seq {seq}, but the case is at version 1: "
            r"its next event has seq 2$",
        ):
            evolve(s.state, note.stamped(seq, None))
    with pytest.raises(ValueError, match=r"^note_added has seq 3, .* next event has seq 2$"):
        fold([*s.events, note.stamped(3, None)])
    assert evolve(s.state, note.stamped(2, None)).version == 2
    with pytest.raises(ValueError, match=r"^case_opened has seq 2, .* next event has seq 1$"):
        evolve(None, s.events[0].stamped(2, None))


def test_a_misspelt_or_mistyped_change_is_refused(story: NewStory) -> None:
    s = story(severity=Severity.MAJOR).advance(Step.RESOLVE)
    for changes in ({"stepp": Step.FEEDBACK}, {"case_id": "case-other-1"}):
        with pytest.raises(ValueError, match=r"^not a field an event may change: "):
            evolve_fields(s.state, cast(CaseChanges, changes))
    with pytest.raises(ValidationError, match=r"step\n  Input should be an instance of Step"):
        evolve_fields(s.state, cast(CaseChanges, {"step": "feedback"}))
    deadline = s.state.deadlines[Clock.RESOLVE]
    with pytest.raises(ValidationError, match=r"warnd\n  Extra inputs are not permitted"):
        deadline.changed(cast(DeadlineChanges, {"warnd": True}))
    with pytest.raises(ValidationError, match=r"warned\n  Input should be a valid boolean"):
        deadline.changed(cast(DeadlineChanges, {"warned": "yes"}))
    assert evolve_fields(s.state, {"note_count": 2}).note_count == 2
    assert deadline.changed({"warned": True}).warned


@pytest.mark.parametrize(
    ("changes", "model", "fixed"),
    [
        (CaseChanges, CaseState, {"case_id", "case", "policy_version", "opened_at"}),
        (
            DeadlineChanges,
            Deadline,
            {"clock", "level", "started_at", "label", "policy_version", "loop"},
        ),
    ],
)
def test_the_changes_are_the_models_own_fields_and_types(
    changes: type, model: type[BaseModel], fixed: set[str]
) -> None:
    """The TypedDicts name each field a second time (for mypy): this keeps them the same."""
    hints = get_type_hints(changes, include_extras=True)
    assert hints == {name: model.model_fields[name].annotation for name in hints}
    assert set(model.model_fields) - set(hints) == fixed


def test_mypy_refuses_a_misspelt_or_mistyped_change(tmp_path: Path) -> None:
    """A change is checked before it runs: mypy sees each name and type in a change."""
    snippet = tmp_path / "changes.py"
    snippet.write_text(
        "from domain.model import Step\n"
        "from domain.policy import Deadline\n"
        "from domain.state import CaseState, evolve_fields\n"
        "def moves(s: CaseState, d: Deadline) -> None:\n"
        "    evolve_fields(s, {'step': Step.RESOLVE, 'note_count': 1})\n"
        "    d.changed({'warned': True, 'remind_at': None})\n"
        "    evolve_fields(s, {'stepp': Step.RESOLVE})\n"  # line 7
        "    evolve_fields(s, {'step': 'resolve'})\n"
        "    evolve_fields(s, {'case_id': 'case-other-1'})\n"
        "    d.changed({'warnd': True})\n"
        "    d.changed({'warned': 'yes'})\n"  # line 11
    )
    root = Path(__file__).resolve().parents[2]
    out, err, status = mypy.api.run(
        [
            "--config-file",
            str(root / "pyproject.toml"),
            "--cache-dir",
            str(root / ".mypy_cache"),
            str(snippet),
        ]
    )
    flagged = {int(line.split(":")[1]) for line in out.splitlines() if ": error:" in line}
    assert status == 1 and flagged == {7, 8, 9, 10, 11}, out + err
