"""The rules of policy 7135-2026.3 on the time-skipping test server (docs/rules.md): no
open case without a running clock, the three loops of 7135, the five ways of handling,
reviewed returns, the light apart from the record."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from caseloop.client import CaseClient, CommandRefused
from domain.events import CaseEscalated, DeadlineBreached, Event
from domain.model import Flag, Level, Loop, Satisfaction, Step
from domain.policy import Clock
from domain.state import CaseState
from policies import NOTHING_RAISED
from support import (
    BUILT_IN,
    COMMUNITY_ADMIN,
    DISTRICT_OFFICER,
    GRID_WORKER,
    RESIDENT,
    STREET_OFFICER,
    actor,
    report,
)

MakeWorker = Callable[..., Worker]
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
P = BUILT_IN
GRID_WORKER_2 = actor("grid_worker", "G-01", "gw-2")
WATER = actor("department", "water", "water-duty")


def dispatch(severity: str = "minor", handling_class: str = "immediate") -> tuple[str, Any]:
    return (
        "dispatch",
        {"actor": COMMUNITY_ADMIN, "severity": severity, "handling_class": handling_class},
    )


CLAIM = ("claim", {"actor": GRID_WORKER})
CHECK_IN = ("check_in", {"actor": GRID_WORKER})
DELIBERATE = (
    "record_deliberation",
    {"actor": GRID_WORKER, "participants": ["网格员", "物业"], "decision": "换灯"},
)
RESOLVE = ("report_resolution", {"actor": GRID_WORKER, "summary": "已更换灯泡"})
ACCEPT = ("record_feedback", {"actor": RESIDENT, "accepted": True, "satisfaction": "satisfied"})


async def drive(client: CaseClient, case_id: str, *steps: tuple[str, Any]) -> None:
    for name, body in steps:
        await client.send(case_id, name, body)


def seconds(value: timedelta) -> int:
    return round(value.total_seconds())


def timeline(events: list[Event], since: datetime, *types: str) -> list[tuple[Any, ...]]:
    """(type, what, seconds since `since`) of the events of `types`: what a warning's or a
    reminder's level, a breach's clock, an escalation's (clock, loop or level it went to)."""
    out: list[tuple[Any, ...]] = []
    for e in events:
        if e.type not in types:
            continue
        what: Any
        if isinstance(e, CaseEscalated):
            what = (e.deadline.clock.value, (e.to_loop or e.to_level).value)
        elif isinstance(e, DeadlineBreached):
            what = e.clock.value
        else:
            what = e.level.value  # type: ignore[union-attr]
        out.append((e.type, what, seconds(e.occurred_at - since)))
    return out


async def test_a_report_never_dispatched_passes_up_to_the_street_the_district_then_red(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    client = ts_client
    async with case_worker(ts_env.client, P):
        opened = await client.open_case(report())
        await ts_env.sleep(2 * HOUR + MINUTE)
        # the community's intake clock ran out: the street dispatches now
        with pytest.raises(CommandRefused, match="passed to the street level"):
            await drive(client, opened.case_id, dispatch())
        at_street = await client.state(opened.case_id)
        await ts_env.sleep(4 * HOUR + 2 * DAY)
        state = await client.state(opened.case_id)
        events = await client.events(opened.case_id)
        # the district's officer still can: the case never waits without a clock
        await client.send(
            opened.case_id,
            "dispatch",
            {"actor": DISTRICT_OFFICER, "severity": "minor", "handling_class": "immediate"},
        )
        dispatched = await client.state(opened.case_id)
    t0 = events[0].occurred_at
    warn, intake = seconds(P.intake * P.warn_ratio), seconds(P.intake)  # type: ignore[operator]
    assert timeline(
        events,
        t0,
        "deadline_warned",
        "case_escalated",
        "deadline_breached",
        "overdue_reminded",
    ) == [
        ("deadline_warned", "community", warn),
        ("case_escalated", ("intake", "street"), intake),
        ("deadline_warned", "street", intake + warn),
        ("case_escalated", ("intake", "district"), 2 * intake),
        ("deadline_warned", "district", 2 * intake + warn),
        ("deadline_breached", "intake", 3 * intake),
        ("overdue_reminded", "district", 3 * intake + seconds(DAY)),
        ("overdue_reminded", "district", 3 * intake + seconds(2 * DAY)),
    ]
    assert at_street.level is Level.STREET and at_street.light is Flag.YELLOW
    assert state.light is Flag.RED and state.step is Step.COLLECT
    assert [(b.clock, b.level) for b in state.breaches] == [
        (Clock.INTAKE, Level.COMMUNITY),
        (Clock.INTAKE, Level.STREET),
        (Clock.INTAKE, Level.DISTRICT),
    ]
    # dispatched at last: the intake clock ends, the matter's own clocks run
    assert Clock.INTAKE not in dispatched.deadlines and Clock.RESOLVE in dispatched.deadlines
    assert dispatched.light is Flag.GREEN and len(dispatched.breaches) == 3


@pytest.mark.parametrize(
    ("severity", "handling_class", "loops"),
    [
        ("minor", "immediate", [Loop.MICRO_GRID, Loop.GRID, Loop.STREET, Loop.DISTRICT]),
        ("major", "immediate", [Loop.GRID, Loop.STREET, Loop.DISTRICT]),
        ("hard", "joint", [Loop.STREET, Loop.DISTRICT]),
        ("minor", "escalate", [Loop.STREET, Loop.DISTRICT]),
    ],
)
async def test_each_loop_of_7135_passes_the_case_to_the_next_when_its_clock_runs_out(
    ts_env: WorkflowEnvironment,
    ts_client: CaseClient,
    case_worker: MakeWorker,
    severity: str,
    handling_class: str,
    loops: list[Loop],
) -> None:
    """A minor matter: micro-grid 1 day, grid 3, street 5, district 5; a major one starts
    in the grid's loop, a hard one (or one handled by escalation) in the street's."""
    client = ts_client
    assert P.loops is not None
    async with case_worker(ts_env.client, P):
        opened = await client.open_case(report())
        await drive(client, opened.case_id, dispatch(severity, handling_class))
        first = await client.state(opened.case_id)
        total = sum((P.loops.of(loop) for loop in loops), timedelta())  # type: ignore[misc]
        await ts_env.sleep(total + HOUR)
        state = await client.state(opened.case_id)
        events = await client.events(opened.case_id)
    t0 = first.dispatched_at
    assert t0 is not None and first.loop is loops[0] and first.level is loops[0].level
    ends = []
    elapsed = timedelta()
    for loop in loops:
        elapsed += P.loops.of(loop)  # type: ignore[operator]
        ends.append(seconds(elapsed))
    moves = [(e[1], e[2]) for e in timeline(events, t0, "case_escalated")]
    assert moves == [(("resolve", b.value), end) for b, end in zip(loops[1:], ends, strict=False)]
    red = [e for e in timeline(events, t0, "deadline_breached") if e[1] == "resolve"]
    assert red == [("deadline_breached", "resolve", ends[-1])]
    assert state.loop is Loop.DISTRICT and state.level is Level.DISTRICT
    assert state.light is Flag.RED
    assert [b.loop for b in state.breaches if b.clock is Clock.RESOLVE] == loops


async def test_a_warning_followed_by_a_check_in_in_time_leaves_the_case_green(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    client = ts_client
    async with case_worker(ts_env.client, P):
        opened = await client.open_case(report())
        await drive(client, opened.case_id, dispatch(), CLAIM)
        await ts_env.sleep(6 * MINUTE)  # past the on-site warning at 80 % of 7 minutes
        warned = await client.state(opened.case_id)
        await drive(client, opened.case_id, CHECK_IN, RESOLVE)
        resolved = await client.state(opened.case_id)
        await drive(client, opened.case_id, ACCEPT)
        await ts_env.sleep(DAY + MINUTE)
        await client.send(
            opened.case_id,
            "record_revisit",
            {"actor": GRID_WORKER, "satisfaction": "satisfied", "checklist": NOTHING_RAISED},
        )
        record = await client.result(opened.case_id)
    assert warned.light is Flag.YELLOW and warned.flag is Flag.YELLOW
    # the light is green again once the warned clock is done; the worst colour stays
    assert resolved.light is Flag.GREEN and resolved.flag is Flag.YELLOW
    assert resolved.breaches == [] and resolved.step is Step.FEEDBACK
    assert record.on_time and record.escalation_count == 0


async def test_a_resident_who_never_answers_is_not_rated_and_the_revisit_follows(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    client = ts_client
    async with case_worker(ts_env.client, P):
        opened = await client.open_case(report())
        await drive(client, opened.case_id, dispatch(), CLAIM, CHECK_IN, RESOLVE)
        await ts_env.sleep(P.feedback + MINUTE)  # type: ignore[operator]
        state = await client.state(opened.case_id)
        with pytest.raises(CommandRefused, match="only in feedback"):
            await drive(client, opened.case_id, ACCEPT)
    assert state.step is Step.REVISIT and state.feedback_unanswered
    assert state.satisfaction is None and Clock.REVISIT in state.deadlines
    assert Clock.FEEDBACK not in state.deadlines


async def test_a_missed_revisit_keeps_reminding_until_it_is_done_and_not_before_its_time(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    client = ts_client
    revisit = {"actor": GRID_WORKER, "satisfaction": "satisfied", "checklist": NOTHING_RAISED}
    async with case_worker(ts_env.client, P):
        opened = await client.open_case(report())
        await drive(client, opened.case_id, dispatch(), CLAIM, CHECK_IN, RESOLVE, ACCEPT)
        # a revisit the moment the feedback arrives is not a revisit
        with pytest.raises(CommandRefused, match="too early"):
            await client.send(opened.case_id, "record_revisit", revisit)
        accepted = await client.state(opened.case_id)
        await ts_env.sleep(P.revisit + 3 * DAY + HOUR)  # type: ignore[operator]
        state = await client.state(opened.case_id)
        events = await client.events(opened.case_id)
        await client.send(opened.case_id, "record_revisit", revisit)
        record = await client.result(opened.case_id)
    t0 = accepted.deadlines[Clock.REVISIT].started_at
    overdue = timeline(events, t0, "deadline_breached", "overdue_reminded")
    due = seconds(P.revisit)  # type: ignore[arg-type]
    assert overdue == [
        ("deadline_breached", "revisit", due),
        ("overdue_reminded", "community", due + seconds(DAY)),
        ("overdue_reminded", "community", due + seconds(2 * DAY)),
        ("overdue_reminded", "community", due + seconds(3 * DAY)),
    ]
    assert state.light is Flag.YELLOW and state.next_wake() is not None
    assert record.satisfaction is Satisfaction.SATISFIED


@pytest.mark.parametrize(
    "step",
    ["collect", "dispatched", "deliberate", "resolve", "feedback", "revisit", "return"],
)
async def test_a_case_left_alone_in_any_step_always_has_a_clock(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker, step: str
) -> None:
    """Nobody acts for 40 days: the case's clocks keep firing, and it still has a next wake
    time at the end (the invariant the property tests check over random lives)."""
    client = ts_client
    path: dict[str, list[tuple[str, Any]]] = {
        "collect": [],
        "dispatched": [dispatch("major", "joint")],
        "deliberate": [dispatch(), CLAIM],
        "resolve": [dispatch(), CLAIM, CHECK_IN, DELIBERATE],
        "feedback": [dispatch(), CLAIM, CHECK_IN, RESOLVE],
        "revisit": [dispatch(), CLAIM, CHECK_IN, RESOLVE, ACCEPT],
        "return": [
            dispatch(),
            CLAIM,
            ("return_case", {"actor": GRID_WORKER, "reason": "不属于本网格"}),
        ],
    }
    async with case_worker(ts_env.client, P):
        opened = await client.open_case(report())
        await drive(client, opened.case_id, *path[step])
        before: CaseState | None = None
        while before is None:  # (a case just started may not have recorded its opening)
            before = await client.state(opened.case_id)
            await ts_env.sleep(timedelta(seconds=1))
        await ts_env.sleep(40 * DAY)
        after = await client.state(opened.case_id)
        events = await client.events(opened.case_id)
    assert not after.archived and after.next_wake() is not None, after.deadlines
    fired = [e for e in events if e.seq > before.version and e.actor is None]
    assert fired, "no clock fired in 40 days"


# ------------------------------------------------------------------ the five ways


async def test_immediate_is_resolved_on_site_without_a_deliberation(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    client = ts_client
    async with case_worker(ts_env.client, P):
        opened = await client.open_case(report())
        await drive(client, opened.case_id, dispatch(), CLAIM)
        with pytest.raises(CommandRefused, match="check in first"):
            await drive(client, opened.case_id, RESOLVE)
        await drive(client, opened.case_id, CHECK_IN, RESOLVE)
        state = await client.state(opened.case_id)
    assert state.step is Step.FEEDBACK and Clock.FEEDBACK in state.deadlines


async def test_explanation_needs_no_visit_and_goes_straight_to_feedback(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    client = ts_client
    async with case_worker(ts_env.client, P):
        opened = await client.open_case(report())
        await drive(client, opened.case_id, dispatch("minor", "explanation"))
        dispatched = await client.state(opened.case_id)
        explain = {"actor": GRID_WORKER, "summary": "已向居民解释：该路灯属市政管理，已转报"}
        await drive(client, opened.case_id, CLAIM, ("report_resolution", explain))
        state = await client.state(opened.case_id)
    assert Clock.ON_SITE not in dispatched.deadlines and Clock.RESOLVE in dispatched.deadlines
    assert state.step is Step.FEEDBACK and state.checked_in_at is None


async def test_self_governance_waits_for_its_talk_day_without_an_on_site_clock(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    client = ts_client
    async with case_worker(ts_env.client, P):
        opened = await client.open_case(report())
        await drive(client, opened.case_id, dispatch("major", "self_governance"), CLAIM)
        waiting = await client.state(opened.case_id)
        with pytest.raises(CommandRefused, match="only in resolve"):
            await drive(client, opened.case_id, RESOLVE)
        await drive(client, opened.case_id, DELIBERATE)
        deliberated = await client.state(opened.case_id)
    assert set(waiting.deadlines) == {Clock.DELIBERATE}
    assert deliberated.step is Step.RESOLVE and Clock.RESOLVE in deliberated.deadlines
    assert deliberated.deadlines[Clock.RESOLVE].loop is Loop.GRID


async def test_joint_needs_the_departments_the_street_summons_before_the_resolution(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    client = ts_client
    summon = {"actor": STREET_OFFICER, "departments": ["water"], "reason": "管网维修"}
    async with case_worker(ts_env.client, P):
        opened = await client.open_case(report())
        await drive(client, opened.case_id, dispatch("major", "joint"), CLAIM, CHECK_IN, DELIBERATE)
        with pytest.raises(CommandRefused, match="summon_departments first"):
            await drive(client, opened.case_id, RESOLVE)
        # the street summons for a community-level joint case (街道吹哨)
        await drive(client, opened.case_id, ("summon_departments", summon))
        await drive(
            client,
            opened.case_id,
            ("record_department_report", {"actor": WATER, "report": "已修复"}),
        )
        await drive(client, opened.case_id, RESOLVE)
        state = await client.state(opened.case_id)
    assert state.level is Level.COMMUNITY and state.step is Step.FEEDBACK
    assert state.summoned == ["water"] and state.reported == ["water"]


async def test_escalate_goes_to_the_street_loop_at_once_with_the_hard_matter_clock(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    client = ts_client
    async with case_worker(ts_env.client, P):
        opened = await client.open_case(report())
        await drive(client, opened.case_id, dispatch("minor", "escalate"))
        state = await client.state(opened.case_id)
    assert state.level is Level.STREET and state.loop is Loop.STREET
    resolve = state.deadlines[Clock.RESOLVE]
    assert P.loops is not None
    assert resolve.due_at - resolve.started_at == P.loops.street
    assert Clock.ON_SITE not in state.deadlines


# ------------------------------------------------------------------ returns


@pytest.mark.parametrize("approved", [False, True])
async def test_a_reviewed_return_does_not_stop_the_resolve_clock(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker, approved: bool
) -> None:
    """退单: the handler asks, the dispatcher decides; the resolve clock runs through it
    and the case escalates at its first due time either way."""
    client = ts_client
    ask = {"actor": GRID_WORKER, "reason": "不属于本网格"}
    review: dict[str, Any] = {"actor": COMMUNITY_ADMIN, "approved": approved}
    if approved:
        review["assignee"] = GRID_WORKER_2["id"]
    async with case_worker(ts_env.client, P):
        opened = await client.open_case(report())
        await drive(client, opened.case_id, dispatch(), CLAIM, CHECK_IN)
        dispatched = await client.state(opened.case_id)
        await drive(client, opened.case_id, ("return_case", ask))
        asked = await client.state(opened.case_id)
        with pytest.raises(CommandRefused, match="already waiting for review"):
            await drive(client, opened.case_id, ("return_case", ask))
        await drive(client, opened.case_id, ("review_return", review))
        reviewed = await client.state(opened.case_id)
        if approved:
            await drive(client, opened.case_id, ("claim", {"actor": GRID_WORKER_2}))
        await ts_env.sleep(DAY + MINUTE)
        late = await client.state(opened.case_id)
    due = dispatched.deadlines[Clock.RESOLVE].due_at
    assert asked.pending_return is not None and asked.step is Step.DELIBERATE
    assert asked.deadlines[Clock.RESOLVE].due_at == due and asked.return_count == 1
    assert reviewed.pending_return is None
    assert reviewed.deadlines[Clock.RESOLVE].due_at == due
    if approved:
        assert reviewed.step is Step.COLLECT and reviewed.assignee == GRID_WORKER_2["id"]
        assert not reviewed.claimed and Clock.CLAIM in reviewed.deadlines
    else:
        assert reviewed.step is Step.DELIBERATE and reviewed.assignee == GRID_WORKER["id"]
    # the clock ran on: at its first due time the case went to the grid's loop
    assert late.loop is Loop.GRID and late.escalation_count == 1
