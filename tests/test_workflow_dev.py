"""CaseWorkflow on the Temporal dev server: updates, refusals, duplicates, visibility,
with the real activities writing to a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.store import first_broken_link
from caseloop.audit import compare, replay, stored_rows
from caseloop.client import CaseClient, CommandRefused, RecordingFailed
from domain.commands import COMMANDS, parse_command
from domain.model import Level, Outcome, Step
from support import (
    COMMUNITY_ADMIN,
    CONVERTER,
    GRID_WORKER,
    KEYRING,
    LIFECYCLE,
    RESIDENT,
    STREET,
    STREET_OFFICER,
    report,
)
from worker import SANDBOX
from workflows.case import CaseWorkflow

MakeWorker = Callable[[Any], Worker]


@pytest.fixture
def client(dev_env: WorkflowEnvironment, task_queue: str) -> CaseClient:
    return CaseClient(dev_env.client, task_queue)


async def drive(
    client: CaseClient, case_id: str, commands: list[tuple[str, dict[str, Any]]]
) -> None:
    for name, payload in commands:
        await client.send(case_id, name, payload)


async def until_opened(client: CaseClient, case_id: str) -> None:
    """Wait until the case has recorded its opening and its history is quiet again (no
    workflow task pending)."""
    pending = ("EVENT_TYPE_WORKFLOW_TASK_SCHEDULED", "EVENT_TYPE_WORKFLOW_TASK_STARTED")
    handle = client.client.get_workflow_handle(case_id)
    for _ in range(100):
        if await handle.query("state") is not None:
            types = await history_event_types(client, case_id)
            if types[-1] not in pending:
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the case did not open")


async def history_event_types(client: CaseClient, case_id: str) -> list[str]:
    history = await client.client.get_workflow_handle(case_id).fetch_history()
    return [EventType.Name(e.event_type) for e in history.events]


async def test_full_lifecycle_through_six_steps(
    client: CaseClient, case_worker: MakeWorker, pool: asyncpg.Pool
) -> None:
    async with case_worker(client.client):
        opened = await client.open_case(report())
        assert opened.created
        steps = []
        for name, payload in LIFECYCLE:
            result = await client.send(opened.case_id, name, payload)
            steps.append(result.step)
        assert steps == [
            Step.COLLECT,  # dispatched, waiting for a handler
            Step.DELIBERATE,  # claimed
            Step.DELIBERATE,  # checked in on site
            Step.RESOLVE,
            Step.FEEDBACK,
            Step.REVISIT,
            Step.ARCHIVE,
        ]
        record = await client.result(opened.case_id)
        events = await client.events(opened.case_id)
    assert record.outcome is Outcome.COMPLETED and record.on_time
    assert record.escalation_count == 0 and record.reopen_count == 0
    assert [e.type for e in events] == [
        "case_opened",
        "deadline_started",  # the intake clock
        "case_dispatched",
        "case_claimed",
        "handler_checked_in",
        "deliberation_recorded",
        "resolution_reported",
        "feedback_recorded",
        "revisit_recorded",
        "case_archived",
    ]
    assert [e.seq for e in events] == list(range(1, 11))

    # the ledger in PostgreSQL says the same, chained
    rows = await pool.fetch(
        "SELECT * FROM case_events WHERE case_id = $1 ORDER BY seq", opened.case_id
    )
    assert [r["type"] for r in rows] == [e.type for e in events]
    assert first_broken_link(rows) is None
    case = await pool.fetchrow("SELECT * FROM cases WHERE case_id = $1", opened.case_id)
    assert case["step"] == "archive" and case["version"] == 10 and case["outcome"] == "completed"
    assert "reporter" not in case["state"]["case"]
    ledger = await pool.fetchrow("SELECT * FROM ledger WHERE case_id = $1", opened.case_id)
    assert ledger["outcome"] == "completed" and ledger["on_time"] is True


async def test_rejected_feedback_reopens_the_case(
    client: CaseClient, case_worker: MakeWorker
) -> None:
    async with case_worker(client.client):
        opened = await client.open_case(report())
        await drive(client, opened.case_id, LIFECYCLE[:5])
        result = await client.send(
            opened.case_id,
            "record_feedback",
            {"actor": RESIDENT, "accepted": False, "satisfaction": "unsatisfied"},
        )
        assert result.step is Step.RESOLVE and result.reopen_count == 1
        state = await client.state(opened.case_id)
        assert state.resolved_at is None
        # resolved again, then accepted: the loop closes with the reopen counted
        await drive(client, opened.case_id, LIFECYCLE[4:])
        record = await client.result(opened.case_id)
    assert record.outcome is Outcome.COMPLETED and record.reopen_count == 1


@pytest.mark.parametrize(
    ("command", "payload", "message"),
    [
        (
            "dispatch",
            {"actor": COMMUNITY_ADMIN, "severity": "enormous", "handling_class": "joint"},
            "severity",
        ),
        (
            "dispatch",
            {"actor": COMMUNITY_ADMIN, "handling_class": "joint"},
            "severity: Field required",
        ),
        ("claim", {"actor": GRID_WORKER}, "not dispatched"),
        (
            "report_resolution",
            {"actor": GRID_WORKER, "summary": "done"},
            "not allowed in step collect",
        ),
        (
            "dispatch",
            {
                "actor": {**STREET_OFFICER, "org": "S-99"},
                "severity": "minor",
                "handling_class": "immediate",
            },
            "may not dispatch",
        ),
        ("add_note", {"actor": GRID_WORKER, "text": "x", "phone": "13800000000"}, "phone"),
    ],
)
async def test_bad_commands_are_refused_and_leave_no_trace(
    client: CaseClient,
    case_worker: MakeWorker,
    command: str,
    payload: dict[str, Any],
    message: str,
) -> None:
    async with case_worker(client.client):
        opened = await client.open_case(report())
        await until_opened(client, opened.case_id)
        before = await history_event_types(client, opened.case_id)
        handle = client.client.get_workflow_handle(opened.case_id)
        # straight to the server, past the client's own check, as another system would
        with pytest.raises(Exception) as refused:
            await handle.execute_update(command, payload, id=f"bad-{uuid.uuid4().hex}")
        cause = getattr(refused.value, "cause", None)
        assert isinstance(cause, ApplicationError), refused.value
        assert message in cause.message
        assert cause.type == "CommandRefused"
        assert "13800000000" not in cause.message
        after = await history_event_types(client, opened.case_id)
        assert after == before, (before, after)
        assert not any("UPDATE" in t or "TASK_FAILED" in t for t in after)
        # the case still works
        await client.send(opened.case_id, *LIFECYCLE[0])


async def test_client_refuses_bad_input_before_temporal(client: CaseClient) -> None:
    with pytest.raises(CommandRefused, match="severity"):
        await client.send("case-x-y", "dispatch", {"actor": COMMUNITY_ADMIN})
    claim = parse_command("claim", {"actor": GRID_WORKER})
    with pytest.raises(CommandRefused, match="check_in: the payload is a claim command"):
        await client.send("case-x-y", "check_in", claim)
    from domain.errors import DomainError

    with pytest.raises(DomainError, match="reported_at"):
        await client.open_case(report(reported_at="2026-11-23T09:30:00"))


async def test_duplicate_report_of_a_ticket_finds_the_existing_case(
    client: CaseClient, case_worker: MakeWorker
) -> None:
    ref = f"T{uuid.uuid4().hex[:10]}"
    async with case_worker(client.client):
        first = await client.open_case(report(ref))
        second = await client.open_case(report(ref, title="同一工单再次上报"))
        assert first == type(first)(f"case-hotline_12345-{ref}", created=True)
        assert second.case_id == first.case_id and not second.created
        await drive(client, first.case_id, LIFECYCLE)
        await client.result(first.case_id)
        # archived: a third report still finds it, and does not open a twin
        third = await client.open_case(report(ref))
        assert third.case_id == first.case_id and not third.created
        state = await client.state(first.case_id)
        assert state.step is Step.ARCHIVE


async def test_same_command_id_is_applied_once(client: CaseClient, case_worker: MakeWorker) -> None:
    async with case_worker(client.client):
        opened = await client.open_case(report())
        await client.send(opened.case_id, *LIFECYCLE[0], command_id="dispatch-1")
        again = await client.send(opened.case_id, *LIFECYCLE[0], command_id="dispatch-1")
        assert again.version == 3
        events = await client.events(opened.case_id)
    assert [e.type for e in events] == ["case_opened", "deadline_started", "case_dispatched"]
    assert events[2].command_id == "dispatch-1"


async def test_invalid_start_input_fails_at_once_naming_the_field(
    client: CaseClient, case_worker: MakeWorker, task_queue: str
) -> None:
    bad = report()
    bad["reporter"] = {"name": "王阿姨", "phone": "not a phone 13800000000"}
    async with case_worker(client.client):
        handle = await client.client.start_workflow(
            "CaseWorkflow", bad, id=f"case-hotline_12345-{uuid.uuid4().hex}", task_queue=task_queue
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidCaseInput"
    assert "reporter.phone" in cause.message and "13800000000" not in cause.message


async def test_search_attributes_find_a_street_case(
    client: CaseClient, case_worker: MakeWorker
) -> None:
    async with case_worker(client.client):
        opened = await client.open_case(report())
        await client.send(
            opened.case_id,
            "dispatch",
            {"actor": COMMUNITY_ADMIN, "severity": "hard", "handling_class": "joint"},
        )
        query = (
            f"WorkflowId = '{opened.case_id}' AND CaseOrgs = '{STREET}' "
            "AND CaseLevel = 'street' AND CaseStep = 'collect' AND CaseSeverity = 'hard'"
        )
        found: list[str] = []
        for _ in range(50):  # visibility is eventually consistent
            found = [w.id async for w in client.client.list_workflows(query)]
            if found:
                break
            await asyncio.sleep(0.2)
        assert found == [opened.case_id]
        state = await client.state(opened.case_id)
        assert state.level is Level.STREET


async def test_racing_commands_apply_once_and_the_loser_is_told(
    client: CaseClient, case_worker: MakeWorker
) -> None:
    """Two grid workers claim at once: both pass the validator, one handler wins under the
    lock, the other is refused by the decider's second look."""
    second_worker = {**GRID_WORKER, "id": "gw-2"}
    async with case_worker(client.client):
        opened = await client.open_case(report())
        await client.send(opened.case_id, *LIFECYCLE[0])
        results = await asyncio.gather(
            client.send(opened.case_id, "claim", {"actor": GRID_WORKER}),
            client.send(opened.case_id, "claim", {"actor": second_worker}),
            return_exceptions=True,
        )
        events = await client.events(opened.case_id)
    refused = [r for r in results if isinstance(r, CommandRefused)]
    assert len(refused) == 1, results
    assert "claim: not allowed in step deliberate" in str(refused[0])
    assert [e.type for e in events].count("case_claimed") == 1


async def test_history_replays_deterministically(
    client: CaseClient, case_worker: MakeWorker
) -> None:
    async with case_worker(client.client):
        opened = await client.open_case(report())
        await drive(client, opened.case_id, LIFECYCLE[:5])
        await client.send(
            opened.case_id,
            "record_feedback",
            {"actor": RESIDENT, "accepted": False, "satisfaction": "unsatisfied"},
        )
        await drive(client, opened.case_id, LIFECYCLE[4:])
        await client.result(opened.case_id)
    history = await client.client.get_workflow_handle(opened.case_id).fetch_history()
    replayer = Replayer(workflows=[CaseWorkflow], data_converter=CONVERTER, workflow_runner=SANDBOX)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None


async def test_a_bad_command_sent_while_the_case_opens_leaves_no_trace(
    client: CaseClient, case_worker: MakeWorker
) -> None:
    """A command that arrives before the case has recorded its opening is judged before
    it is accepted: refused, it leaves nothing in the history; a good one is applied."""
    wrong = {**STREET_OFFICER, "org": "S-99"}
    bad = {"actor": wrong, "severity": "minor", "handling_class": "immediate"}
    async with case_worker(client.client):
        cases = [(await client.open_case(report())).case_id for _ in range(5)]
        # straight to the server, as another system would, the moment each case starts
        refusals = await asyncio.gather(
            *(
                client.client.get_workflow_handle(case).execute_update(
                    "dispatch", bad, id=f"bad-{uuid.uuid4().hex}"
                )
                for case in cases
            ),
            return_exceptions=True,
        )
        # the Python client's command right after the start is applied
        good = (await client.open_case(report())).case_id
        await client.send(good, *LIFECYCLE[0])
        for case in cases:
            await until_opened(client, case)
        histories = [await history_event_types(client, case) for case in cases]
        dispatched = await client.state(good)

    for refused in refusals:
        cause = getattr(refused, "cause", None)
        assert isinstance(cause, ApplicationError), refused
        assert cause.type == "CommandRefused", cause.type
    for types in histories:
        assert not any("UPDATE" in t or "TASK_FAILED" in t for t in types), types
    assert dispatched.step is Step.COLLECT and dispatched.assignee is None
    assert dispatched.last_event == "case_dispatched"


async def test_queries_during_opening_do_not_change_what_the_audit_sees(
    client: CaseClient, case_worker: MakeWorker, pool: asyncpg.Pool
) -> None:
    """A case queried while it opens records the same opening time the replay derives."""

    async def open_and_watch() -> str:
        case = (await client.open_case(report())).case_id
        handle = client.client.get_workflow_handle(case)
        for _ in range(200):
            if await handle.query("state") is not None:
                break
        return case

    async with case_worker(client.client):
        cases = await asyncio.gather(*(open_and_watch() for _ in range(12)))
        for case in cases:
            await until_opened(client, case)
    histories = [
        (case, await client.client.get_workflow_handle(case).fetch_history()) for case in cases
    ]
    mismatches = []
    async with pool.acquire() as conn:
        async for replayed in replay(histories, CONVERTER):
            assert replayed.failure is None, replayed.failure
            rows = await stored_rows(conn, replayed.workflow_id)
            found = compare(replayed.workflow_id, replayed.events, rows, KEYRING, complete=False)
            if found is not None:
                mismatches.append(found)
    assert mismatches == []


async def test_events_that_cannot_be_recorded_are_not_reported_as_a_refusal(
    client: CaseClient, case_worker: MakeWorker, pool: asyncpg.Pool
) -> None:
    """A stored chain that disagrees with the case (here a row 3 written by someone else)
    fails the command as RecordingFailed, not as a refusal of the command."""
    async with case_worker(client.client):
        opened = await client.open_case(report())
        await until_opened(client, opened.case_id)
        async with pool.acquire() as conn:
            await conn.execute(
                """INSERT INTO case_events (case_id, seq, type, payload, occurred_at, run_id,
                                            command_id, prev_hash, hash)
                   SELECT case_id, 3, 'note_added', payload, occurred_at, run_id, NULL,
                          hash, repeat('f', 64)
                     FROM case_events WHERE case_id = $1 AND seq = 2""",
                opened.case_id,
            )
        with pytest.raises(RecordingFailed, match="could not be recorded") as failed:
            await client.send(opened.case_id, *LIFECYCLE[0])
    assert not isinstance(failed.value, CommandRefused)


async def test_the_running_case_offers_every_command_as_an_update_with_a_validator(
    client: CaseClient, case_worker: MakeWorker
) -> None:
    """What another system sees of a case (Temporal's built-in metadata query): one update
    per command, the two queries; and every update refuses bad input in its validator,
    before anything reaches the history."""
    async with case_worker(client.client):
        case = (await client.open_case(report())).case_id
        await until_opened(client, case)
        handle = client.client.get_workflow_handle(case)
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        before = await history_event_types(client, case)
        for name in COMMANDS:
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(name, {}, id=f"empty-{name}")
            assert isinstance(refused.value.cause, ApplicationError)
            assert refused.value.cause.type == "CommandRefused"
        after = await history_event_types(client, case)

    definition = metadata.definition
    assert definition.type == "CaseWorkflow"
    assert {u.name for u in definition.update_definitions} == set(COMMANDS)
    assert {q.name for q in definition.query_definitions} >= {"state", "events"}
    assert after == before


async def test_open_and_dispatch_in_one_call(client: CaseClient, case_worker: MakeWorker) -> None:
    """Update-with-start: the dispatch arrives with the start and is judged against the
    state the opening will have; a refused one leaves only the opened case."""
    wrong = {**STREET_OFFICER, "org": "S-99"}
    async with case_worker(client.client):
        case_id, summary = await client.open_and_dispatch(report(), LIFECYCLE[0][1])
        ref = uuid.uuid4().hex[:12]
        with pytest.raises(CommandRefused, match="may not dispatch"):
            await client.open_and_dispatch(
                report(ref), {"actor": wrong, "severity": "minor", "handling_class": "immediate"}
            )
        refused = f"case-hotline_12345-{ref}"
        await until_opened(client, refused)
        history = await history_event_types(client, refused)
        opened_only = await client.state(refused)
        events = await client.events(case_id)

    assert summary.version == 3 and summary.level is Level.COMMUNITY
    assert [e.type for e in events] == ["case_opened", "deadline_started", "case_dispatched"]
    assert opened_only.version == 2 and opened_only.dispatched_at is None
    assert not any("UPDATE" in t or "TASK_FAILED" in t for t in history), history
