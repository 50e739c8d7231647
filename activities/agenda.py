"""The talk-day agenda's activities: draw up a community's agenda in PostgreSQL, and tell
each case on it its talk day (the case's `schedule_deliberation` update).

Both are safe to retry and to run again for the same agenda: the agenda and its items are
keyed by (community, talk day[, case]); the update carries one command id per agenda, so
a case applies it once."""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager
from datetime import date, timedelta

import asyncpg
import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.agenda_contract import (
    AGENDA_ACTOR_ID,
    COLLECT_AGENDA,
    SCHEDULE_CASE_DELIBERATION,
    Agenda,
    AgendaItem,
    CollectAgenda,
    ItemResult,
    ScheduleDeliberations,
    command_id,
)
from activities.store import Connection
from domain.commands import ScheduleDeliberation
from infra.errors import CommandRefused
from infra.send import send_command

log = structlog.get_logger(__name__)

# Error type: the agenda to tell the cases of is not stored (it cannot appear by retrying).
AGENDA_MISSING = "AgendaMissing"
# One case's update; a case whose worker does not answer in time fails the attempt (the
# activity is retried and goes on where it stopped), it is not skipped.
UPDATE_TIMEOUT = timedelta(seconds=30)
_REASON_MAX = 500

# "Waiting for deliberation": a dispatched self-governance case of the community, in step
# collect or deliberate, not archived, not yet on this agenda; oldest first.
_WAITING = """
    SELECT c.case_id, c.state->'case'->>'title' AS title, c.category, c.step, c.opened_at
      FROM cases c
     WHERE c.community_id = $1
       AND c.archived_at IS NULL
       AND c.handling_class = 'self_governance'
       AND c.step IN ('collect', 'deliberate')
       AND c.level IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM talk_agenda_items i
                        WHERE i.community_id = $1 AND i.talk_day = $2
                          AND i.case_id = c.case_id)
     ORDER BY c.opened_at, c.case_id
"""


def _log_context(community_id: str, talk_day: date) -> AbstractContextManager[None]:
    """Every log line of an agenda activity names its community, talk day and attempt."""
    info = activity.info()
    return structlog.contextvars.bound_contextvars(
        community_id=community_id,
        talk_day=talk_day.isoformat(),
        workflow_id=info.workflow_id,
        attempt=info.attempt,
    )


class AgendaActivities:
    """Activities over the asyncpg pool and a Temporal client (to update the cases)."""

    def __init__(self, pool: asyncpg.Pool, client: Client, task_queue: str) -> None:
        self.pool = pool
        self.client = client

    @activity.defn(name=COLLECT_AGENDA)
    async def collect_agenda(self, request: CollectAgenda) -> Agenda:
        info = activity.info()
        with _log_context(request.community_id, request.talk_day):
            agenda, added = await collect(
                self.pool, request, info.workflow_id or "", info.workflow_run_id or ""
            )
            log.info("talk-day agenda drawn up", items=len(agenda.items), added=added)
            return agenda

    @activity.defn(name=SCHEDULE_CASE_DELIBERATION)
    async def schedule_case_deliberation(self, request: ScheduleDeliberations) -> Agenda:
        with _log_context(request.community_id, request.talk_day):
            agenda = await load(self.pool, request.community_id, request.talk_day)
            if agenda is None:
                raise ApplicationError(
                    f"no agenda of community {request.community_id} for "
                    f"{request.talk_day.isoformat()} is stored",
                    type=AGENDA_MISSING,
                    non_retryable=True,
                )
            for item in agenda.items:
                if item.result is ItemResult.SCHEDULED:
                    continue
                result, reason = await self._tell(agenda, item)
                await mark(self.pool, agenda, item.case_id, result, reason)
                activity.heartbeat(item.case_id)
            told = await load(self.pool, request.community_id, request.talk_day)
            assert told is not None
            log.info(
                "talk day told to the cases",
                scheduled=sum(i.result is ItemResult.SCHEDULED for i in told.items),
                skipped=sum(i.result is ItemResult.SKIPPED for i in told.items),
            )
            return told

    async def _tell(self, agenda: Agenda, item: AgendaItem) -> tuple[ItemResult, str | None]:
        """Send the case its talk day; (SCHEDULED, None), or (SKIPPED, why) when the case
        refuses or its workflow is gone. Anything else raises: the attempt is retried."""
        command = ScheduleDeliberation.model_validate(
            {
                "actor": {"id": AGENDA_ACTOR_ID, "role": "system", "org": agenda.community_id},
                "talk_day": agenda.talk_day,
                "agenda_id": agenda.agenda_id,
            }
        )
        try:
            await asyncio.wait_for(
                send_command(
                    self.client,
                    item.case_id,
                    command,
                    command_id(agenda.community_id, agenda.talk_day),
                ),
                UPDATE_TIMEOUT.total_seconds(),
            )
        except CommandRefused as exc:
            reason = str(exc)[:_REASON_MAX]
            log.warning(
                "case skipped: it refused its talk day", case_id=item.case_id, reason=reason
            )
            return ItemResult.SKIPPED, reason
        except RPCError as exc:
            if exc.status is not RPCStatusCode.NOT_FOUND:
                raise
            reason = "the case's workflow is not running (closed or unknown to Temporal)"
            log.warning("case skipped", case_id=item.case_id, reason=reason)
            return ItemResult.SKIPPED, reason
        return ItemResult.SCHEDULED, None


async def collect(
    pool: asyncpg.Pool, request: CollectAgenda, workflow_id: str, run_id: str
) -> tuple[Agenda, int]:
    """Store the agenda of a community's talk day with the cases waiting for deliberation,
    in one transaction; returns it with the number of cases added. Run again, it keeps
    what is stored (first run's workflow id, items and their results) and appends the
    cases that joined since, after the others; time and place follow the latest rule."""
    async with pool.acquire() as conn, conn.transaction():
        # the row lock serializes two runs drawing up the same agenda
        await conn.execute(
            """INSERT INTO talk_agendas AS a (community_id, talk_day, time, place,
                                              workflow_id, run_id)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (community_id, talk_day) DO UPDATE
                   SET time = EXCLUDED.time, place = EXCLUDED.place, updated_at = now()""",
            request.community_id,
            request.talk_day,
            request.time,
            request.place,
            workflow_id,
            run_id,
        )
        last = await conn.fetchval(
            """SELECT coalesce(max(position), 0) FROM talk_agenda_items
                WHERE community_id = $1 AND talk_day = $2""",
            request.community_id,
            request.talk_day,
        )
        waiting = await conn.fetch(_WAITING, request.community_id, request.talk_day)
        if waiting:
            await conn.executemany(
                """INSERT INTO talk_agenda_items (community_id, talk_day, case_id, position,
                                                  title, category, step, opened_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                [
                    (
                        request.community_id,
                        request.talk_day,
                        row["case_id"],
                        last + n,
                        row["title"] or "",
                        row["category"],
                        row["step"],
                        row["opened_at"],
                    )
                    for n, row in enumerate(waiting, start=1)
                ],
            )
            await conn.execute(
                """UPDATE talk_agendas SET item_count = $3
                    WHERE community_id = $1 AND talk_day = $2""",
                request.community_id,
                request.talk_day,
                last + len(waiting),
            )
        agenda = await _load(conn, request.community_id, request.talk_day)
    assert agenda is not None
    return agenda, len(waiting)


async def mark(
    pool: asyncpg.Pool, agenda: Agenda, case_id: str, result: ItemResult, reason: str | None
) -> None:
    """Record what a case answered; a case scheduled once stays scheduled."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """UPDATE talk_agenda_items
                  SET result = $4, reason = $5, resulted_at = now()
                WHERE community_id = $1 AND talk_day = $2 AND case_id = $3
                  AND result <> 'scheduled'""",
            agenda.community_id,
            agenda.talk_day,
            case_id,
            result.value,
            reason,
        )
        await conn.execute(
            """UPDATE talk_agendas SET updated_at = now()
                WHERE community_id = $1 AND talk_day = $2""",
            agenda.community_id,
            agenda.talk_day,
        )


async def load(pool: asyncpg.Pool, community_id: str, talk_day: date) -> Agenda | None:
    """The stored agenda of a community's talk day, items in order, or None."""
    async with pool.acquire() as conn:
        return await _load(conn, community_id, talk_day)


async def _load(conn: Connection, community_id: str, talk_day: date) -> Agenda | None:
    head = await conn.fetchrow(
        "SELECT * FROM talk_agendas WHERE community_id = $1 AND talk_day = $2",
        community_id,
        talk_day,
    )
    if head is None:
        return None
    rows = await conn.fetch(
        """SELECT case_id, position, title, category, step, opened_at, result, reason
             FROM talk_agenda_items
            WHERE community_id = $1 AND talk_day = $2
            ORDER BY position""",
        community_id,
        talk_day,
    )
    return Agenda(
        community_id=head["community_id"],
        talk_day=head["talk_day"],
        time=head["time"],
        place=head["place"],
        workflow_id=head["workflow_id"],
        created_at=head["created_at"],
        items=[AgendaItem.model_validate(dict(row)) for row in rows],
    )
