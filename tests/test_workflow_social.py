"""The social process on the time-skipping test server: departments summoned by the street
run as DepartmentTask child workflows with their own clocks in working days, and a
self-governance case that misses its talk day is flagged and put on the resolve clock."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from caseloop.client import CaseClient, CommandRefused
from domain.events import (
    CaseEscalated,
    DeadlineBreached,
    DeadlineStarted,
    DepartmentEscalated,
    DepartmentReported,
    DepartmentsSummoned,
    DepartmentWarned,
)
from domain.model import Flag, Level, Step
from domain.policy import Clock
from instants import INSTANTS, Instant, place, skip_to
from policies import NOTHING_RAISED, POLICY_2026_2
from support import (
    COMMUNITY,
    COMMUNITY_ADMIN,
    DISTRICT_OFFICER,
    GRID_WORKER,
    KEYRING,
    LIFECYCLE,
    POLICY,
    STREET_OFFICER,
    actor,
    report,
)
from worker import build_worker
from workflows.department import DepartmentOutcome, task_id

MakeWorker = Callable[[Any], Worker]
DAY = timedelta(days=1)
WATER = actor("department", "water", "water-duty")
POLICE = actor("department", "police", "police-duty")


# When the police's three working days run out (local midnight after the third working
# day after the summons), for a summons at each fixed instant: tests/instants.py.
POLICE_DUE = {
    "monday": "2026-11-20",
    "tuesday": "2026-11-21",
    "wednesday": "2026-11-24",
    "thursday": "2026-11-25",
    "friday": "2026-11-26",
    "saturday": "2026-11-26",
    "sunday": "2026-11-26",
    "spring-festival-eve": "2026-02-27",
    "national-day-eve": "2026-10-11",
    "before-make-up-saturday": "2026-10-14",
    "new-years-eve": "2026-01-07",
}


@pytest.mark.parametrize("instant", INSTANTS, ids=str)
async def test_departments_run_their_own_clocks_and_the_late_one_is_escalated(
    instant: Instant,
    ts_env: WorkflowEnvironment,
    ts_client: CaseClient,
    pool: asyncpg.Pool,
    task_queue: str,
) -> None:
    """Run from fixed instants (each weekday, holiday eves, before a make-up Saturday):
    the departments' clocks count working days of the calendar, and the case's own clock
    runs beside them: where it runs out first, the case is escalated as well."""
    client = ts_client
    placed = place(instant, await ts_env.get_current_time(), POLICY)
    worker = build_worker(
        ts_env.client, pool, placed.policy, task_queue, keyring=KEYRING, fail_fast=True
    )
    tasks: list[str] = []
    try:
        async with worker:
            await skip_to(ts_env, placed)
            opened = await client.open_case(report())
            case = opened.case_id
            await client.send(
                case,
                "dispatch",
                {"actor": COMMUNITY_ADMIN, "severity": "hard", "handling_class": "joint"},
            )
            await client.send(case, "claim", {"actor": STREET_OFFICER})
            deliberation = {"participants": ["街道", "水务", "派出所"], "decision": "联合处置"}
            await client.send(
                case, "record_deliberation", {"actor": STREET_OFFICER, **deliberation}
            )
            await client.send(
                case,
                "summon_departments",
                {"actor": STREET_OFFICER, "departments": ["water", "police"], "reason": "管网"},
            )
            tasks = [task_id(case, "water"), task_id(case, "police")]
            state = await client.state(case)
            due = state.department_deadlines["police"].due_at
            # water reports at once; police lets its clock run out
            await client.send(case, "record_department_report", {"actor": WATER, "report": "ok"})
            water = await ts_env.client.get_workflow_handle(
                tasks[0], result_type=DepartmentOutcome
            ).result()
            await ts_env.sleep(due - state.updated_at + timedelta(hours=1))
            late = await client.state(case)
            police = ts_env.client.get_workflow_handle(tasks[1], result_type=DepartmentOutcome)
            running = (await police.describe()).status
            await client.send(case, "record_department_report", {"actor": POLICE, "report": "ok"})
            police_outcome = await police.result()
            events = await client.events(case)
            # whoever holds the case now reports the resolution
            resolver = STREET_OFFICER if late.level is Level.STREET else DISTRICT_OFFICER
            await client.send(case, "report_resolution", {"actor": resolver, "summary": "修复"})
            resolved = await client.state(case)
    finally:
        for task in tasks:
            with contextlib.suppress(RPCError):  # closed already
                await ts_env.client.get_workflow_handle(task).terminate("test finished")

    [summoned] = [e for e in events if isinstance(e, DepartmentsSummoned)]
    assert set(summoned.deadlines) == {"water", "police"}
    # three working days of the calendar, ending at local midnight (Asia/Shanghai)
    expected = placed.shift(datetime.fromisoformat(POLICE_DUE[instant.name] + "T00:00+08:00"))
    assert summoned.deadlines["police"].due_at == expected
    assert "3 working days" in summoned.deadlines["police"].label
    # the task's timers reached the case: a warning, then the escalation
    warned = [e for e in events if isinstance(e, DepartmentWarned)]
    escalated = [e for e in events if isinstance(e, DepartmentEscalated)]
    assert [e.department for e in warned] == ["police"]
    assert [e.department for e in escalated] == ["police"] and escalated[0].due_at == due
    assert escalated[0].occurred_at >= due
    assert late.late_departments == ["police"] and late.flag is not Flag.GREEN
    assert running is WorkflowExecutionStatus.RUNNING  # the escalated part stays open
    reports = {e.department: e.on_time for e in events if isinstance(e, DepartmentReported)}
    assert reports == {"water": True, "police": False}
    # each task's own result says the same
    assert water.on_time is True and not water.warned and not water.escalated
    assert police_outcome.on_time is False and police_outcome.warned and police_outcome.escalated
    # the case's own clock (hard matter at the street: 5 days) ran beside the departments'
    case_due = state.deadlines[Clock.RESOLVE].due_at
    case_escalations = [e for e in events if isinstance(e, CaseEscalated)]
    if case_due > due + timedelta(hours=1):
        assert late.level is Level.STREET and case_escalations == []
        assert late.flag is Flag.YELLOW
    else:
        assert late.level is Level.DISTRICT and len(case_escalations) == 1
    assert resolved.step is Step.FEEDBACK


async def test_a_self_governance_case_that_misses_its_talk_day_goes_on_the_resolve_clock(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    client = ts_client
    async with case_worker(ts_env.client):
        opened = await client.open_case(report())
        case = opened.case_id
        await client.send(
            case,
            "dispatch",
            {"actor": COMMUNITY_ADMIN, "severity": "major", "handling_class": "self_governance"},
        )
        await client.send(case, "claim", {"actor": GRID_WORKER})
        await client.send(case, "check_in", {"actor": GRID_WORKER})
        waiting = await client.state(case)
        today = waiting.updated_at.astimezone(ZoneInfo("Asia/Shanghai")).date()
        talk_day = today + timedelta(days=2)
        agenda = actor("system", COMMUNITY, "talk-day-agenda")
        await client.send(
            case,
            "schedule_deliberation",
            {"actor": agenda, "talk_day": talk_day.isoformat(), "agenda_id": f"C-01/{talk_day}"},
        )
        scheduled = await client.state(case)
        await ts_env.sleep(scheduled.deadlines[Clock.DELIBERATE].due_at - waiting.updated_at + DAY)
        after = await client.state(case)
        events = await client.events(case)

    assert Clock.RESOLVE not in waiting.deadlines and Clock.DELIBERATE in waiting.deadlines
    assert scheduled.talk_day == talk_day
    [missed] = [e for e in events if isinstance(e, DeadlineBreached)]
    assert missed.clock is Clock.DELIBERATE and missed.flag is Flag.YELLOW
    [started] = [
        e for e in events if isinstance(e, DeadlineStarted) and e.reason != "opened"
    ]  # (the other one is the intake clock)
    assert started.reason == "deliberation_missed"
    assert started.deadline.started_at == scheduled.deadlines[Clock.DELIBERATE].due_at
    assert after.deadlines[Clock.RESOLVE] == started.deadline
    assert after.flag is Flag.YELLOW and Clock.DELIBERATE not in after.deadlines


async def test_an_extension_moves_the_deadline_only_when_approved(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    """Two cases dispatched alike ask for two more days; one is refused (it escalates at
    its original time), the other approved (it escalates two days later)."""
    client = ts_client
    dispatch = {"actor": COMMUNITY_ADMIN, "severity": "major", "handling_class": "joint"}
    ask = {"actor": GRID_WORKER, "extra": "P2D", "reason": "等待配件到货"}
    async with case_worker(ts_env.client):
        cases = []
        for approved in (False, True):
            case = (await client.open_case(report())).case_id
            for name, payload in [
                ("dispatch", dispatch),
                ("claim", {"actor": GRID_WORKER}),
                ("check_in", {"actor": GRID_WORKER}),
                ("request_extension", ask),
                ("decide_extension", {"actor": STREET_OFFICER, "approved": approved}),
            ]:
                await client.send(case, name, payload)
            cases.append(case)
        await ts_env.sleep(5 * DAY + timedelta(hours=1))
        histories = [await client.events(case) for case in cases]

    escalations = []
    for events in histories:
        dispatched = next(e for e in events if e.type == "case_dispatched")
        decided = next(e for e in events if e.type == "extension_decided")
        escalated = next(e for e in events if e.type == "case_escalated")
        escalations.append(escalated.occurred_at - dispatched.occurred_at)
        assert decided.actor is not None and decided.actor.id == STREET_OFFICER["id"]
    refused, approved_ = escalations
    assert abs(refused - 3 * DAY) < timedelta(minutes=1)
    assert abs(approved_ - 5 * DAY) < timedelta(minutes=1)


async def test_a_returned_case_goes_back_to_dispatch_with_no_clock_running(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    """Under a policy before 2026.3 (reviewed returns: tests/test_workflow_rules.py)."""
    client = ts_client
    async with case_worker(ts_env.client, POLICY_2026_2):
        case = (await client.open_case(report())).case_id
        await client.send(
            case,
            "dispatch",
            {"actor": COMMUNITY_ADMIN, "severity": "minor", "handling_class": "immediate"},
        )
        await client.send(case, "claim", {"actor": GRID_WORKER})
        await client.send(case, "return_case", {"actor": GRID_WORKER, "reason": "不属于本网格"})
        returned = await client.state(case)
        await ts_env.sleep(3 * DAY)
        later = await client.state(case)

    assert returned.step.value == "collect" and returned.return_count == 1
    assert returned.deadlines == {} and returned.level is None
    assert later.version == returned.version  # nothing escalated a case nobody holds


async def test_a_resident_who_must_be_visited_in_person_cannot_be_revisited_by_phone(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    client = ts_client
    reporter = {
        "name": "李大爷",
        "phone": "13800000001",
        "resident_id": "res-1",
        "categories": ["elderly_living_alone"],
    }
    async with case_worker(ts_env.client):
        case = (await client.open_case(report(reporter=reporter))).case_id
        for name, payload in LIFECYCLE[:6]:
            await client.send(case, name, payload)
        revisiting = await client.state(case)
        by_phone = {
            "actor": GRID_WORKER,
            "satisfaction": "satisfied",
            "in_person": False,
            "checklist": NOTHING_RAISED,
        }
        with pytest.raises(CommandRefused, match="must be visited in person") as refusal:
            await client.send(case, "record_revisit", by_phone)
        await client.send(case, "record_revisit", {**by_phone, "in_person": True})
        record = await client.result(case)

    clock = revisiting.deadlines[Clock.REVISIT]
    assert clock.due_at - clock.started_at == 3 * DAY and "in person" in clock.label
    assert "elderly" not in str(refusal.value) and "李" not in str(refusal.value)
    assert record.outcome.value == "completed"
