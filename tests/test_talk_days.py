"""Talk days on the Temporal dev server (the time-skipping server runs no schedules): the
schedules kept in line with the configuration, and the agenda a triggered schedule draws
up in PostgreSQL and tells the waiting cases."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
import pytest_asyncio
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    WorkflowFailureError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.agenda_contract import Agenda, ItemResult
from caseloop.client import CaseClient
from caseloop.talkday_schedules import CATCHUP_WINDOW, schedule_id, sync_schedules
from domain.talkdays import TalkDayRule, TalkDays, Weekday, next_agenda_at
from support import GRID_WORKER, actor, report

SHANGHAI = ZoneInfo("Asia/Shanghai")
MakeWorker = Callable[[Client], Worker]


def community() -> str:
    """A community of this test alone: the agenda sees no other test's cases."""
    return f"C-{uuid.uuid4().hex[:10]}"


def weekly(community_id: str, day: Weekday, time: str = "14:00", **more: Any) -> TalkDayRule:
    return TalkDayRule(community_id=community_id, weekday=day, time=time, **more)


@pytest_asyncio.fixture
async def schedules(dev_env: WorkflowEnvironment) -> AsyncIterator[list[str]]:
    """Ids of the schedules a test makes; deleted afterwards."""
    made: list[str] = []
    yield made
    for sid in made:
        try:
            await dev_env.client.get_schedule_handle(sid).delete()
        except RPCError as exc:
            if exc.status is not RPCStatusCode.NOT_FOUND:
                raise


async def listed(client: Client, sid: str) -> None:
    """Wait until the schedule shows in the (eventually consistent) list."""
    for _ in range(100):
        if sid in [s.id async for s in await client.list_schedules()]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{sid} never listed")


async def test_sync_creates_once_updates_on_change_and_deletes_removed_communities(
    dev_env: WorkflowEnvironment, task_queue: str, schedules: list[str]
) -> None:
    client = dev_env.client
    a, b, elsewhere = community(), community(), community()
    schedules.extend(schedule_id(c) for c in (a, b, elsewhere))
    tuesdays = weekly(a, Weekday.TUESDAY, street_id="S-01", place="社区议事厅")
    fifteenth = TalkDayRule(community_id=b, day_of_month=15, time="09:30")
    config = TalkDays(communities=[tuesdays, fifteenth])

    first = await sync_schedules(client, config, task_queue)
    assert first == {"created": [a, b], "updated": [], "unchanged": [], "deleted": []}
    again = await sync_schedules(client, config, task_queue)
    assert again == {"created": [], "updated": [], "unchanged": [a, b], "deleted": []}

    # the day before the talk day at 17:00 Shanghai time, for the next ten actions
    described = await client.get_schedule_handle(schedule_id(a)).describe()
    now = datetime.now(SHANGHAI)
    expected = []
    for _ in range(3):
        now = next_agenda_at(tuesdays, now)
        expected.append(now)
    times = described.info.next_action_times
    assert times[:3] == expected, times
    assert all(t.astimezone(SHANGHAI).strftime("%a %H:%M") == "Mon 17:00" for t in times)
    monthly = await client.get_schedule_handle(schedule_id(b)).describe()
    assert [t.astimezone(SHANGHAI).strftime("%d %H:%M") for t in monthly.info.next_action_times][
        :2
    ] == ["14 17:00", "14 17:00"]
    schedule = described.schedule
    assert schedule.spec.time_zone_name == "Asia/Shanghai"
    assert schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
    assert schedule.policy.catchup_window == CATCHUP_WINDOW
    action = schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.workflow, action.id, action.task_queue) == (
        "TalkDayAgenda",
        f"talk-day-agenda:{a}",
        task_queue,
    )
    assert await client.data_converter.decode(list(action.args)) == [
        {
            "timezone": "Asia/Shanghai",
            "agenda_at": "17:00",
            "rule": {
                "community_id": a,
                "street_id": "S-01",
                "weekday": "tuesday",
                "time": "14:00",
                "place": "社区议事厅",
            },
        }
    ]
    assert (await described.memo())["community_id"] == a

    # a changed rule updates that schedule only; an operator's pause is kept
    await client.get_schedule_handle(schedule_id(a)).pause(note="holiday week")
    moved = TalkDays(communities=[weekly(a, Weekday.WEDNESDAY, "09:00"), fifteenth])
    changed = await sync_schedules(client, moved, task_queue)
    assert changed == {"created": [], "updated": [a], "unchanged": [b], "deleted": []}
    handle_a = client.get_schedule_handle(schedule_id(a))
    described = await handle_a.describe()
    assert described.schedule.state.paused and described.schedule.state.note == "holiday week"
    await handle_a.unpause()
    next_times = (await handle_a.describe()).info.next_action_times
    assert next_times and all(
        t.astimezone(SHANGHAI).strftime("%a %H:%M") == "Tue 17:00" for t in next_times
    )
    assert (await sync_schedules(client, moved, task_queue))["unchanged"] == [a, b]

    # another deployment's schedule (another task queue) is never deleted by this one
    await sync_schedules(client, TalkDays(communities=[weekly(elsewhere, Weekday.FRIDAY)]), "q2")
    # a community no longer configured loses its schedule
    await listed(client, schedule_id(b))
    await listed(client, schedule_id(elsewhere))
    removed = await sync_schedules(client, TalkDays(communities=moved.communities[:1]), task_queue)
    assert removed == {"created": [], "updated": [], "unchanged": [a], "deleted": [b]}
    with pytest.raises(RPCError) as gone:
        await client.get_schedule_handle(schedule_id(b)).describe()
    assert gone.value.status is RPCStatusCode.NOT_FOUND
    await client.get_schedule_handle(schedule_id(elsewhere)).describe()


async def run_once(handle: ScheduleHandle, client: Client) -> tuple[str, str, Agenda]:
    """Trigger the schedule and wait for the agenda run it starts: its workflow id (the
    schedule appends the time, to the second), run id and result."""
    before = (await handle.describe()).info.num_actions
    await handle.trigger()
    for _ in range(200):
        info = (await handle.describe()).info
        if info.num_actions > before and info.recent_actions:
            started = info.recent_actions[-1].action
            assert isinstance(started, ScheduleActionExecutionStartWorkflow)
            run = client.get_workflow_handle(
                started.workflow_id, run_id=started.first_execution_run_id, result_type=Agenda
            )
            return started.workflow_id, started.first_execution_run_id, await run.result()
        await asyncio.sleep(0.05)
    raise AssertionError("the schedule started no run")


async def open_dispatched(
    cases: CaseClient, community_id: str, handling_class: str, *, claim: bool = False
) -> str:
    location = {
        "grid_id": "G-01",
        "community_id": community_id,
        "street_id": "S-01",
        "district_id": "D-01",
        "address": "3号楼2单元",
    }
    opened = await cases.open_case(report(location=location, title=f"议题 {handling_class}"))
    await cases.send(
        opened.case_id,
        "dispatch",
        {
            "actor": actor("community_admin", community_id, "ca-1"),
            "severity": "minor",
            "handling_class": handling_class,
        },
    )
    if claim:
        await cases.send(opened.case_id, "claim", {"actor": GRID_WORKER})
    return opened.case_id


async def test_a_triggered_schedule_draws_up_the_agenda_and_tells_the_waiting_cases(
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    case_worker: MakeWorker,
    task_queue: str,
    schedules: list[str],
) -> None:
    client = dev_env.client
    cases = CaseClient(client, task_queue)
    here, there = community(), community()
    schedules.append(schedule_id(here))
    # the talk day two days from today (Shanghai): no meeting boundary near the test
    talk_day = datetime.now(SHANGHAI).date() + timedelta(days=2)
    rule = weekly(here, Weekday.of(talk_day), "14:00", street_id="S-01", place="社区议事厅")
    async with case_worker(client):
        waiting = await open_dispatched(cases, here, "self_governance")
        claimed = await open_dispatched(cases, here, "self_governance", claim=True)
        immediate = await open_dispatched(cases, here, "immediate")
        await open_dispatched(cases, there, "self_governance")
        undispatched = await cases.open_case(
            report(location={**report()["location"], "community_id": here})
        )
        gone = await open_dispatched(cases, here, "self_governance")
        await client.get_workflow_handle(gone).terminate("test: the case's workflow is gone")

        await sync_schedules(client, TalkDays(communities=[rule]), task_queue)
        handle = client.get_schedule_handle(schedule_id(here))
        workflow_id, run_id, agenda = await run_once(handle, client)

        assert workflow_id.startswith(f"talk-day-agenda:{here}-")
        assert (agenda.community_id, agenda.talk_day, agenda.time, agenda.place) == (
            here,
            talk_day,
            "14:00",
            "社区议事厅",
        )
        # the waiting self-governance cases, oldest first; not the immediate one, not the
        # other community's, not the one still undispatched
        assert [i.case_id for i in agenda.items] == [waiting, claimed, gone]
        assert undispatched.case_id not in [i.case_id for i in agenda.items]
        assert [(i.position, i.step.value) for i in agenda.items] == [
            (1, "collect"),
            (2, "deliberate"),
            (3, "collect"),
        ]
        assert agenda.items[0].title == "议题 self_governance"
        results = {i.case_id: i for i in agenda.items}
        # a case whose workflow is gone is skipped with the reason, not a failed agenda
        assert results[gone].result is ItemResult.SKIPPED
        assert "not running" in (results[gone].reason or "")
        for case_id in (waiting, claimed):
            assert results[case_id].result is ItemResult.SCHEDULED, results[case_id]

        # stored in PostgreSQL, without personal data
        head = await pool.fetchrow(
            "SELECT * FROM talk_agendas WHERE community_id = $1 AND talk_day = $2",
            here,
            talk_day,
        )
        assert head["item_count"] == 3 and head["workflow_id"] == workflow_id
        rows = await pool.fetch(
            "SELECT * FROM talk_agenda_items WHERE community_id = $1 ORDER BY position", here
        )
        assert [r["result"] for r in rows] == ["scheduled", "scheduled", "skipped"]
        assert not any("王阿姨" in str(dict(r)) or "13800000000" in str(dict(r)) for r in rows)

        # each waiting case was told once, with its talk day and the agenda's id
        for case_id in (waiting, claimed):
            told = [e for e in await cases.events(case_id) if e.type == "deliberation_scheduled"]
            assert len(told) == 1, told
            payload = told[0].model_dump(mode="json")
            assert payload["talk_day"] == talk_day.isoformat()
            assert payload["agenda_id"] == f"{here}/{talk_day.isoformat()}"
            # the deliberation clock ends at local midnight after the talk day
            due = datetime.fromisoformat(payload["deadline"]["due_at"])
            assert due == datetime.combine(talk_day + timedelta(days=1), time(0), SHANGHAI)
            assert told[0].command_id == f"agenda:{here}:{talk_day.isoformat()}"

        # the operators' view in the UI: the agenda as the run's current details
        metadata = await client.get_workflow_handle(workflow_id).query(
            "__temporal_workflow_metadata", result_type=WorkflowMetadata
        )
        shown = metadata.current_details
        assert f"**Talk day {talk_day.isoformat()}" in shown and "社区议事厅" in shown
        assert f"1. `{waiting}`" in shown and "议题 self\\_governance" in shown
        assert "王阿姨" not in shown

        # run again: a case that joined since is added after the others, nothing doubles;
        # a case that moved on after it was put on the agenda (staged here: an item of the
        # immediate case) refuses and is skipped with the case's reason
        late = await open_dispatched(cases, here, "self_governance")
        await pool.execute(
            """INSERT INTO talk_agenda_items (community_id, talk_day, case_id, position, title,
                                              category, step, opened_at)
               VALUES ($1, $2, $3, 99, 'moved on', 'other', 'collect', now())""",
            here,
            talk_day,
            immediate,
        )
        _, second_run, again = await run_once(handle, client)
        assert second_run != run_id
        assert [i.case_id for i in again.items] == [waiting, claimed, gone, immediate, late]
        assert again.items[-1].position == 100 and again.items[-1].result is ItemResult.SCHEDULED
        refused = again.items[3]
        assert refused.result is ItemResult.SKIPPED and refused.reason, refused
        assert "not running" not in refused.reason
        assert again.workflow_id == workflow_id  # drawn up by the first run
        count = await pool.fetchval(
            "SELECT count(*) FROM talk_agenda_items WHERE community_id = $1", here
        )
        assert count == 5
        immediate_events = [e.type for e in await cases.events(immediate)]
        assert "deliberation_scheduled" not in immediate_events
        for case_id in (waiting, claimed, late):
            told = [e for e in await cases.events(case_id) if e.type == "deliberation_scheduled"]
            assert len(told) == 1, (case_id, told)


async def test_bad_input_fails_the_agenda_at_once_naming_the_field(
    dev_env: WorkflowEnvironment, case_worker: MakeWorker, task_queue: str
) -> None:
    bad: dict[str, Any] = {
        "timezone": "Asia/Shanghai",
        "rule": {"community_id": community(), "weekday": "tuesday", "time": "25:00"},
    }
    async with case_worker(dev_env.client):
        handle = await dev_env.client.start_workflow(
            "TalkDayAgenda",
            bad,
            id=f"talk-day-agenda:bad-{uuid.uuid4().hex}",
            task_queue=task_queue,
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidAgendaInput"
    assert "rule.time" in cause.message
