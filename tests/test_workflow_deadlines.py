"""Deadline timers on the time-skipping test server: warnings, the escalation ladder
community → street → district at the policy's times, and no escalation for a case
resolved in time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from caseloop.client import CaseClient
from domain.events import CaseDispatched, CaseEscalated, DeadlineBreached, DeadlineWarned
from domain.model import Flag, Level, Step
from domain.policy import DEFAULT_POLICY, Clock
from support import COMMUNITY_ADMIN, GRID_WORKER, LIFECYCLE, report

MakeWorker = Callable[[Any], Worker]
DAY = timedelta(days=1)
P = DEFAULT_POLICY


def seconds(value: timedelta) -> int:
    return round(value.total_seconds())


async def test_unresolved_case_escalates_up_the_ladder_with_warnings_first(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    client = ts_client
    async with case_worker(ts_env.client):
        opened = await client.open_case(report())
        await client.send(
            opened.case_id,
            "dispatch",
            {"actor": COMMUNITY_ADMIN, "severity": "major", "handling_class": "joint"},
        )
        await client.send(opened.case_id, "claim", {"actor": GRID_WORKER})
        await client.send(opened.case_id, "check_in", {"actor": GRID_WORKER})
        # community: 3 days; street: 5 days; district: 5 days, then red and daily reminders
        await ts_env.sleep(3 * DAY + 5 * DAY + 5 * DAY + DAY + timedelta(hours=1))
        state = await client.state(opened.case_id)
        events = await client.events(opened.case_id)

    dispatched = next(e for e in events if isinstance(e, CaseDispatched))
    t0 = dispatched.occurred_at
    # timers fire when due, give or take the server's scheduling (milliseconds)
    ladder = [
        (
            e.type,
            getattr(e, "to_level", None) or getattr(e, "level", None),
            seconds(e.occurred_at - t0),
        )
        for e in events
        if e.type in ("deadline_warned", "case_escalated", "deadline_breached", "overdue_reminded")
    ]
    assert ladder == [
        ("deadline_warned", Level.COMMUNITY, seconds(3 * DAY * 0.8)),
        ("case_escalated", Level.STREET, seconds(3 * DAY)),
        ("deadline_warned", Level.STREET, seconds(3 * DAY + 5 * DAY * 0.8)),
        ("case_escalated", Level.DISTRICT, seconds(8 * DAY)),
        ("deadline_warned", Level.DISTRICT, seconds(8 * DAY + 5 * DAY * 0.8)),
        ("deadline_breached", Level.DISTRICT, seconds(13 * DAY)),
        ("overdue_reminded", Level.DISTRICT, seconds(14 * DAY)),
    ]
    escalations = [e for e in events if isinstance(e, CaseEscalated)]
    assert all(e.policy_version == P.version for e in escalations)
    assert [e.deadline.due_at - t0 for e in escalations] == [8 * DAY, 13 * DAY]
    warned = [e for e in events if isinstance(e, DeadlineWarned)]
    assert all(e.policy_version == P.version and e.clock is Clock.RESOLVE for e in warned)
    breach = next(e for e in events if isinstance(e, DeadlineBreached))
    assert breach.flag is Flag.RED
    assert state.level is Level.DISTRICT and state.flag is Flag.RED
    assert state.escalation_count == 2 and not state.on_time
    assert state.step is Step.DELIBERATE  # still open, on the district's list


async def test_on_site_clock_breach_flags_yellow_without_escalating(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    client = ts_client
    async with case_worker(ts_env.client):
        opened = await client.open_case(report())
        await client.send(opened.case_id, *LIFECYCLE[0])  # minor: 1 day, on site 7 minutes
        await ts_env.sleep(timedelta(minutes=8))
        state = await client.state(opened.case_id)
        events = await client.events(opened.case_id)
    breach = [e for e in events if isinstance(e, DeadlineBreached)]
    assert [(b.clock, b.flag) for b in breach] == [(Clock.ON_SITE, Flag.YELLOW)]
    assert seconds(breach[0].occurred_at - events[1].occurred_at) == seconds(P.on_site)
    assert state.level is Level.COMMUNITY and state.flag is Flag.YELLOW
    assert Clock.ON_SITE not in state.deadlines


async def test_case_resolved_in_time_never_escalates(
    ts_env: WorkflowEnvironment, ts_client: CaseClient, case_worker: MakeWorker
) -> None:
    client = ts_client
    async with case_worker(ts_env.client):
        opened = await client.open_case(report())
        for name, payload in LIFECYCLE[:6]:  # up to the feedback, minutes after dispatch
            await client.send(opened.case_id, name, payload)
        await ts_env.sleep(20 * DAY)  # far past every resolve deadline
        state = await client.state(opened.case_id)
        await client.send(opened.case_id, *LIFECYCLE[6])
        record = await client.result(opened.case_id)
    assert state.step is Step.REVISIT and state.escalation_count == 0
    # only the revisit is late (missed, reminded daily): the resolve clock never ran out
    assert set(state.deadlines) == {Clock.REVISIT} and state.deadlines[Clock.REVISIT].breached
    assert [b.clock for b in state.breaches] == [Clock.REVISIT]
    assert record.on_time and record.escalation_count == 0 and record.final_level is Level.COMMUNITY


def test_timer_summaries_name_the_wake_and_the_local_due_time() -> None:
    from datetime import UTC, datetime

    from domain.model import Severity
    from workflows.details import timer_summary

    start = datetime(2026, 11, 23, 1, 30, tzinfo=UTC)  # 09:30 in Asia/Shanghai
    d = P.deadline(Clock.RESOLVE, Level.COMMUNITY, Severity.MAJOR, start)
    label = "resolve: major matter, community level, 3 days"
    assert (
        timer_summary(d.warn_at, d, P) == f"warning before deadline {label}, due 2026-11-26 09:30"
    )
    assert timer_summary(d.due_at, d, P) == f"deadline {label}, due 2026-11-26 09:30"
    breached = d.model_copy(update={"breached": True, "remind_at": d.due_at + DAY})
    assert timer_summary(d.due_at + DAY, breached, P) == (
        f"reminder: deadline {label}, overdue since 2026-11-26 09:30"
    )
