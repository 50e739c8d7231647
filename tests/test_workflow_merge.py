"""Duplicates on the time-skipping test server: a case merged into another tells that case
of its report and reporter (signal `merged_report`), which records `report_merged` once;
a merge into a case that does not exist still archives the merged case; runs that merged
before the signal existed replay without it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
import temporalio.workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.store import unsealed_payload
from caseloop.client import CaseClient
from domain.events import ReportMerged
from domain.model import Outcome
from domain.state import CaseState
from support import COMMUNITY_ADMIN, CONVERTER, KEYRING, RESIDENT, report
from workflows.case import MERGED_SIGNAL, PATCH_MERGE_LINKS, CaseWorkflow
from workflows.sandbox import SANDBOX

MakeWorker = Callable[..., Worker]
# the duplicate's reporter: another resident than the first report's
NAME, PHONE = "欧阳建国", "13955554444"


def duplicate() -> dict[str, Any]:
    case = report(source="wechat_qr")
    case["reporter"] = {"name": NAME, "phone": PHONE, "resident_id": "res-2"}
    return case


def merge(target: str) -> dict[str, Any]:
    return {"actor": COMMUNITY_ADMIN, "target_case_id": target, "reason": "同一楼道灯"}


async def settled(client: CaseClient, case_id: str, done: Callable[[CaseState], bool]) -> CaseState:
    """The case's state once `done` holds (a signal is handled in the case's next task)."""
    for _ in range(100):
        state = await client.state(case_id)
        if done(state):
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"{case_id} did not get there: at {state.last_event}")


async def stored(pool: asyncpg.Pool, case_id: str, type_: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT payload FROM case_events WHERE case_id = $1 AND type = $2 ORDER BY seq",
        case_id,
        type_,
    )
    return [row["payload"] for row in rows]


async def test_a_merged_report_is_recorded_on_the_case_it_was_merged_into(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker, pool: asyncpg.Pool
) -> None:
    client = ts_client
    async with case_worker(ts_env.client):
        first = (await client.open_case(report())).case_id
        second = (await client.open_case(duplicate())).case_id
        await client.send(second, "merge_into", merge(first))
        record = await client.result(second)
        state = await settled(client, first, lambda s: bool(s.merged_reports))
        events = await client.events(first)
        # the same report told again (a retried signal, a forged one) records nothing
        signal = {
            "merged_case_id": second,
            "source": "wechat_qr",
            "source_ref": second.rsplit("-", 1)[1],
            "reporter": {"name": "someone else"},
        }
        handle = ts_env.client.get_workflow_handle(first)
        await handle.signal(MERGED_SIGNAL, signal)
        await handle.signal(MERGED_SIGNAL, {"merged_case_id": "not a case id"})  # ignored
        await client.send(first, "add_note", {"actor": RESIDENT, "text": "谢谢"})
        after = await client.state(first)
        rows = await stored(pool, first, "report_merged")

    assert record.outcome is Outcome.MERGED and record.merged_into == first
    [merged] = [e for e in events if isinstance(e, ReportMerged)]
    assert merged.merged_case_id == second and merged.source.value == "wechat_qr"
    assert merged.source_ref == second.removeprefix("case-wechat_qr-")
    assert merged.reporter.name == NAME and merged.reporter.phone == PHONE
    assert merged.actor is None and merged.command_id is None
    assert state.merged_reports == [second] and state.step.value == "collect"
    # the repeated signal and the bad one recorded nothing; the note came after
    assert after.merged_reports == [second] and after.last_event == "note_added"
    assert after.version == state.version + 1
    # the reporter is sealed in the event store like the opening's, and opens with the key
    [row] = rows
    assert set(row["reporter"]) == {"sealed"}
    assert NAME not in str(row) and PHONE not in str(row)
    opened = unsealed_payload(row, first, KEYRING)
    assert opened["reporter"] == {"name": NAME, "phone": PHONE, "resident_id": "res-2"}


async def test_a_merge_into_a_missing_case_still_archives_the_merged_one(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    client = ts_client
    missing = f"case-hotline_12345-gone-{uuid.uuid4().hex[:8]}"
    async with case_worker(ts_env.client):
        case = (await client.open_case(duplicate())).case_id
        summary = await client.send(case, "merge_into", merge(missing))
        record = await client.result(case)
        history = await ts_env.client.get_workflow_handle(case).fetch_history()
    assert summary.step.value == "archive"
    assert record.outcome is Outcome.MERGED and record.merged_into == missing
    failed = [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED
    ]
    assert len(failed) == 1  # the signal was sent, failed, and the case went on


async def test_a_merge_into_a_closed_case_archives_the_merged_one_and_leaves_it_closed(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    """A target already archived and closed cannot be told (the signal fails); the merged
    case is archived all the same. (An archived target that still runs records nothing:
    tests/domain/test_social_side.py.)"""
    client = ts_client
    async with case_worker(ts_env.client):
        first = (await client.open_case(report())).case_id
        await client.send(first, "withdraw", {"actor": RESIDENT, "reason": "已自行解决"})
        await client.result(first)
        second = (await client.open_case(duplicate())).case_id
        await client.send(second, "merge_into", merge(first))
        record = await client.result(second)
        events = await client.events(first)
    assert record.outcome is Outcome.MERGED
    assert "report_merged" not in [e.type for e in events]


def without_merge_links(monkeypatch: pytest.MonkeyPatch) -> None:
    """Code from before the signal: the patch is never taken."""
    real = temporalio.workflow.patched
    monkeypatch.setattr(
        temporalio.workflow, "patched", lambda id, **kw: id != PATCH_MERGE_LINKS and real(id)
    )


async def replay(handle: WorkflowHandle[Any, Any]) -> str | None:
    """The replay failure of the case's history under the code as it stands, if any."""
    replayer = Replayer(workflows=[CaseWorkflow], data_converter=CONVERTER, workflow_runner=SANDBOX)
    result = await replayer.replay_workflow(
        await handle.fetch_history(), raise_on_replay_failure=False
    )
    return None if result.replay_failure is None else str(result.replay_failure)


async def test_the_signal_is_behind_its_patch(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    client = ts_client
    async with case_worker(ts_env.client):
        target = (await client.open_case(report())).case_id
        # merged by code from before the signal: the target is not told
        with pytest.MonkeyPatch.context() as old_code:
            without_merge_links(old_code)
            before = (await client.open_case(duplicate())).case_id
            await client.send(before, "merge_into", merge(target))
            await client.result(before)
        untold = await client.state(target)
        # merged by today's code: told
        after = (await client.open_case(duplicate())).case_id
        await client.send(after, "merge_into", merge(target))
        await client.result(after)
        told = await settled(client, target, lambda s: bool(s.merged_reports))
        old_history = ts_env.client.get_workflow_handle(before)
        new_history = ts_env.client.get_workflow_handle(after)
        # today's code replays both
        assert await replay(old_history) is None
        assert await replay(new_history) is None
        # code without the branch cannot replay the run that took it
        with pytest.MonkeyPatch.context() as old_code:
            without_merge_links(old_code)
            failure = await replay(new_history)
    assert untold.merged_reports == [] and told.merged_reports == [after]
    assert failure is not None and "Nondeterminism" in failure


async def test_a_forged_merged_report_signal_records_nothing(
    ts_env: WorkflowEnvironment,
    ts_client: CaseClient,
    case_worker: MakeWorker,
    pool: asyncpg.Pool,
) -> None:
    """A signal carries no actor: the case believes a merged report only when the event
    store holds the merged case's merge into it. A signal naming a case that was never
    merged, or merged elsewhere, records nothing; the real merge that follows is told."""
    client = ts_client
    async with case_worker(ts_env.client):
        target = (await client.open_case(report())).case_id
        elsewhere = (await client.open_case(report())).case_id
        open_one = (await client.open_case(duplicate())).case_id
        merged_elsewhere = (await client.open_case(duplicate())).case_id
        await client.send(merged_elsewhere, "merge_into", merge(elsewhere))
        handle = ts_env.client.get_workflow_handle(target)
        for claimed in (open_one, merged_elsewhere, f"case-wechat_qr-{uuid.uuid4().hex}"):
            forged = {
                "merged_case_id": claimed,
                "source": "wechat_qr",
                "source_ref": "FORGED-1",
                "reporter": {"name": NAME, "phone": PHONE, "resident_id": "res-2"},
            }
            await handle.signal(MERGED_SIGNAL, forged)
        # the genuine merge, signalled after the forged ones, is handled after them
        await client.send(open_one, "merge_into", merge(target))
        told = await settled(client, target, lambda s: bool(s.merged_reports))
        await client.result(open_one)
    assert told.merged_reports == [open_one]
    [recorded] = await stored(pool, target, "report_merged")
    assert recorded["merged_case_id"] == open_one and recorded["source_ref"] != "FORGED-1"
