"""One Temporal Schedule per community, running its talk-day agenda (TalkDayAgenda) the day
before each talk day, kept in line with the configuration (CASE_TALK_DAYS).

    synced = await sync_schedules(client, settings.talk_days(), settings.task_queue)

Schedule id and the agenda runs' workflow id: `talk-day-agenda:<community_id>` (the
schedule appends the time of each run to the workflow id). Idempotent: a schedule is
created when missing, updated only when its calendar, policies or action differ from the
configuration (a pause set by an operator is kept), left alone otherwise; a schedule with
the prefix whose community is no longer configured is deleted, when it starts its runs
on this task queue (another deployment's schedules in the namespace are not touched).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import structlog
from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleDescription,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.client import ScheduleOverlapPolicy as Overlap
from temporalio.service import RPCError, RPCStatusCode

from activities.agenda_contract import WORKFLOW_TYPE, AgendaRequest
from domain.talkdays import TalkDayRule, TalkDays, Weekday, agenda_time

log = structlog.get_logger(__name__)

SCHEDULE_PREFIX = "talk-day-agenda:"
# A run missed while the Temporal server was down is still started within a day; a
# later one is not (the next talk day's agenda picks its cases up).
CATCHUP_WINDOW = timedelta(days=1)
# One agenda run ends within a day, so a run stuck on an outage never blocks the next
# talk day's (overlap policy SKIP).
RUN_TIMEOUT = timedelta(days=1)


def schedule_id(community_id: str) -> str:
    return SCHEDULE_PREFIX + community_id


def _temporal_day_of_week(day: Weekday) -> int:
    """Temporal's day of week: 0 is Sunday, 1 Monday … 6 Saturday."""
    return (day.number + 1) % 7


def agenda_request(rule: TalkDayRule, talk_days: TalkDays) -> dict[str, Any]:
    """The JSON a community's agenda run starts with."""
    request = AgendaRequest(timezone=talk_days.timezone, agenda_at=talk_days.agenda_at, rule=rule)
    return request.model_dump(mode="json", exclude_none=True)


def summary(rule: TalkDayRule) -> str:
    street = f" (street {rule.street_id})" if rule.street_id else ""
    return f"talk-day agenda of community {rule.community_id}{street}: {rule.describe()}"[:200]


def schedule_of(rule: TalkDayRule, talk_days: TalkDays, task_queue: str) -> Schedule:
    """The Schedule of one community: the day before each talk day at the agenda time, in
    the configuration's timezone, starting TalkDayAgenda with the community's rule."""
    at = agenda_time(rule, talk_days.agenda_at)
    calendar = ScheduleCalendarSpec(
        second=(ScheduleRange(0),),
        minute=(ScheduleRange(at.minute),),
        hour=(ScheduleRange(at.hour),),
        comment=f"the day before each talk day ({rule.describe()})"[:200],
    )
    if at.weekday is not None:
        calendar.day_of_week = (ScheduleRange(_temporal_day_of_week(at.weekday)),)
    else:
        assert at.day_of_month is not None
        calendar.day_of_month = (ScheduleRange(at.day_of_month),)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            WORKFLOW_TYPE,
            agenda_request(rule, talk_days),
            id=schedule_id(rule.community_id),
            task_queue=task_queue,
            execution_timeout=RUN_TIMEOUT,
            static_summary=summary(rule),
        ),
        spec=ScheduleSpec(calendars=[calendar], time_zone_name=talk_days.timezone),
        policy=SchedulePolicy(overlap=Overlap.SKIP, catchup_window=CATCHUP_WINDOW),
    )


async def sync_schedules(
    client: Client, talk_days: TalkDays, task_queue: str
) -> dict[str, list[str]]:
    """Bring the communities' schedules in line with `talk_days`; returns the community
    ids by what was done: created, updated, unchanged, deleted."""
    done: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": [], "deleted": []}
    for rule in talk_days.communities:
        outcome = await _sync_one(client, rule, talk_days, task_queue)
        done[outcome].append(rule.community_id)
    configured = {r.community_id for r in talk_days.communities}
    # The list is eventually consistent: a schedule created a moment ago may be missing
    # from it, which only matters for a community removed just as quickly.
    async for listed in await client.list_schedules():
        community_id = listed.id.removeprefix(SCHEDULE_PREFIX)
        if not listed.id.startswith(SCHEDULE_PREFIX) or community_id in configured:
            continue
        if await _delete_stale(client, listed.id, task_queue):
            done["deleted"].append(community_id)
    return done


async def _sync_one(client: Client, rule: TalkDayRule, talk_days: TalkDays, task_queue: str) -> str:
    wanted = schedule_of(rule, talk_days, task_queue)
    sid = schedule_id(rule.community_id)
    handle = client.get_schedule_handle(sid)
    try:
        current = await handle.describe()
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:
            raise
        try:
            await client.create_schedule(
                sid, wanted, memo={"community_id": rule.community_id, "purpose": "talk day"}
            )
            log.info("talk-day schedule created", schedule_id=sid, rule=rule.describe())
            return "created"
        except ScheduleAlreadyRunningError:  # another worker created it meanwhile
            current = await handle.describe()
    if await _same(client, current, wanted):
        return "unchanged"

    def keep_state(update: ScheduleUpdateInput) -> ScheduleUpdate:
        # an operator's pause (and its note) survives a change of the rule
        return ScheduleUpdate(
            schedule=dataclasses.replace(wanted, state=update.description.schedule.state)
        )

    await handle.update(keep_state)
    log.info("talk-day schedule updated", schedule_id=sid, rule=rule.describe())
    return "updated"


async def _delete_stale(client: Client, sid: str, task_queue: str) -> bool:
    handle = client.get_schedule_handle(sid)
    try:
        current = await handle.describe()
        action = current.schedule.action
        if not isinstance(action, ScheduleActionStartWorkflow) or action.task_queue != task_queue:
            return False
        await handle.delete()
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:  # listed, but deleted meanwhile
            return False
        raise
    log.warning(
        "talk-day schedule deleted: its community is no longer configured in CASE_TALK_DAYS",
        schedule_id=sid,
    )
    return True


# ---------------------------------------------------------------------- comparison


def _values(ranges: Sequence[ScheduleRange]) -> tuple[int, ...]:
    """The values a list of ranges matches (the server may spell a range differently)."""
    out: set[int] = set()
    for r in ranges:
        end = max(r.end, r.start)
        out.update(range(r.start, end + 1, r.step or 1))
    return tuple(sorted(out))


def _calendar_key(c: ScheduleCalendarSpec) -> tuple[tuple[int, ...], ...]:
    return tuple(
        _values(ranges)
        for ranges in (c.second, c.minute, c.hour, c.day_of_month, c.month, c.year, c.day_of_week)
    )


def _spec_key(spec: ScheduleSpec) -> tuple[Any, ...]:
    return (
        sorted(_calendar_key(c) for c in spec.calendars),
        sorted(_calendar_key(c) for c in spec.skip),
        [(i.every, i.offset) for i in spec.intervals],
        list(spec.cron_expressions),
        spec.start_at,
        spec.end_at,
        spec.jitter,
        spec.time_zone_name or None,
    )


async def _decoded(client: Client, values: Sequence[Any]) -> list[Any]:
    """Arguments or a summary as given (described schedules hold them encoded)."""
    if values and all(isinstance(v, Payload) for v in values):
        return await client.data_converter.decode(list(values))
    return list(values)


async def _action_key(client: Client, action: ScheduleActionStartWorkflow) -> tuple[Any, ...]:
    summary_value = [] if action.static_summary is None else [action.static_summary]
    return (
        action.workflow,
        action.id,
        action.task_queue,
        action.execution_timeout,
        action.run_timeout,
        await _decoded(client, action.args),
        await _decoded(client, summary_value),
    )


async def _same(client: Client, current: ScheduleDescription, wanted: Schedule) -> bool:
    have, want = current.schedule, wanted
    if not isinstance(have.action, ScheduleActionStartWorkflow):
        return False
    assert isinstance(want.action, ScheduleActionStartWorkflow)
    return (
        _spec_key(have.spec) == _spec_key(want.spec)
        and (have.policy.overlap, have.policy.catchup_window)
        == (want.policy.overlap, want.policy.catchup_window)
        and await _action_key(client, have.action) == await _action_key(client, want.action)
    )
