"""The event store activities against a real (embedded) PostgreSQL: idempotent append,
gap refusal, the hash chain, the read model and the ledger, migrations."""

from __future__ import annotations

import itertools
from datetime import timedelta

import asyncpg
import pytest
from temporalio.exceptions import ApplicationError

from activities.contract import CHAIN_CONFLICT, EventBatch
from activities.db import migrate, migration_files
from activities.store import GENESIS, append, first_broken_link
from policies import POLICY_2026_2
from support import REPORTED_AT, lifecycle_batches


async def stored(pool: asyncpg.Pool, case_id: str) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM case_events WHERE case_id = $1 ORDER BY seq", case_id)


async def test_append_is_idempotent(pool: asyncpg.Pool) -> None:
    batches = lifecycle_batches()
    first = await append(pool, batches[0])
    again = await append(pool, batches[0])
    assert (first.inserted, again.inserted) == (1, 0)
    assert first.head_hash == again.head_hash
    second = await append(pool, batches[1])
    # a retry of an older batch after a newer one is still a no-op
    late_retry = await append(pool, batches[0])
    assert late_retry.inserted == 0 and late_retry.head_seq == second.head_seq == 2
    assert len(await stored(pool, batches[0].case_id)) == 2


async def test_gap_is_refused(pool: asyncpg.Pool) -> None:
    batches = lifecycle_batches()
    await append(pool, batches[0])
    with pytest.raises(ApplicationError) as refused:
        await append(pool, batches[2])  # seq 3 while 2 is missing
    assert refused.value.type == CHAIN_CONFLICT and refused.value.non_retryable
    assert "gap" in refused.value.message
    assert len(await stored(pool, batches[0].case_id)) == 1


async def test_a_different_event_under_a_stored_seq_is_refused(pool: asyncpg.Pool) -> None:
    batches = lifecycle_batches()
    await append(pool, batches[0])
    await append(pool, batches[1])
    event = batches[1].events[0]
    forged = batches[1].model_copy(
        update={
            "events": [event.model_copy(update={"occurred_at": REPORTED_AT + timedelta(hours=9)})]
        }
    )
    with pytest.raises(ApplicationError, match="stored with other content"):
        await append(pool, forged)
    rows = await stored(pool, batches[0].case_id)
    assert rows[1]["occurred_at"] == event.occurred_at


async def test_batch_with_non_consecutive_seqs_is_refused(pool: asyncpg.Pool) -> None:
    batch = lifecycle_batches()[0]
    bad = batch.model_copy(
        update={"events": [batch.events[0], batch.events[0].model_copy(update={"seq": 3})]}
    )
    with pytest.raises(ApplicationError, match="not consecutive"):
        await append(pool, bad)


async def test_hash_chain_links_every_event_and_detects_tampering(pool: asyncpg.Pool) -> None:
    batches = lifecycle_batches()
    for batch in batches:
        await append(pool, batch)
    rows = await stored(pool, batches[0].case_id)
    assert len(rows) == sum(len(b.events) for b in batches) == 9
    assert rows[0]["prev_hash"] == GENESIS
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(rows))
    assert first_broken_link(rows) is None
    # change one word of one stored event, or drop an event: the chain names that seq
    tampered = [dict(r) for r in rows]
    tampered[4]["payload"] = dict(tampered[4]["payload"], decision="另作决定")
    assert first_broken_link(tampered) == 5
    assert first_broken_link(rows[:3] + rows[4:]) == 5
    assert first_broken_link([{**rows[0], "hash": "f" * 64}, *rows[1:]]) == 1


async def test_read_model_and_ledger_follow_the_events(pool: asyncpg.Pool) -> None:
    batches = lifecycle_batches()
    case_id = batches[0].case_id
    for batch in batches[:3]:
        await append(pool, batch)
    row = await pool.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
    state = batches[2].state
    assert (row["version"], row["step"], row["level"], row["assignee"]) == (
        3,
        "deliberate",
        "community",
        "gw-1",
    )
    assert row["due_at"] == state.due_at and row["flag"] == "green"
    assert row["state"]["case_id"] == case_id and "reporter" not in row["state"]["case"]
    # the personal fields are left out with or without keys (this append has none)
    location = row["state"]["case"]["location"]
    assert "address" not in location and location["grid_id"] == state.case.location.grid_id
    assert await pool.fetchval("SELECT count(*) FROM ledger WHERE case_id = $1", case_id) == 0
    # a retried older batch never rolls the read model back
    await append(pool, batches[1])
    assert await pool.fetchval("SELECT version FROM cases WHERE case_id = $1", case_id) == 3
    for batch in batches[3:]:
        await append(pool, batch)
    row = await pool.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
    assert (row["step"], row["outcome"], row["version"]) == ("archive", "completed", 9)
    ledger = await pool.fetchrow("SELECT * FROM ledger WHERE case_id = $1", case_id)
    final = batches[-1].record
    assert final is not None
    assert ledger["outcome"] == "completed" and ledger["on_time"] is True
    assert ledger["archived_at"] == final.archived_at and ledger["severity"] == "minor"
    assert ledger["policy_version"] == POLICY_2026_2.version  # lifecycle_batches' policy


async def test_migrations_apply_once_and_are_recorded(pool: asyncpg.Pool) -> None:
    assert await migrate(pool) == []
    names = [
        r["name"] for r in await pool.fetch("SELECT name FROM schema_migrations ORDER BY name")
    ]
    # every file, each once, in order (the list grows with each migration)
    assert names == [name for name, _ in migration_files()]
    assert {
        "001_event_store.sql",
        "002_reports.sql",
        "003_talk_days.sql",
        "004_superseded_events.sql",
        "005_uncount_superseded.sql",
        "006_points.sql",
        "007_cohort_rankings.sql",
        "009_notifications.sql",
    } <= set(names)


async def test_events_of_different_cases_do_not_interfere(pool: asyncpg.Pool) -> None:
    a, b = lifecycle_batches(), lifecycle_batches()
    for x, y in zip(a, b, strict=True):
        await append(pool, x)
        await append(pool, y)
    assert len(await stored(pool, a[0].case_id)) == len(await stored(pool, b[0].case_id)) == 9


async def test_events_of_a_lost_workflow_task_are_superseded_by_the_later_task(
    pool: asyncpg.Pool,
) -> None:
    """A local activity wrote seq 2 and 3, then the worker died before Temporal recorded
    the workflow task: the retried task decides again (later, in a longer history) and its
    events take their place; the lost ones are kept aside; an earlier task that still
    writes, another run, or a batch of a regular activity get a conflict."""
    batches = lifecycle_batches()
    case_id = batches[0].case_id

    def decided(batch: EventBatch, decided_in: int | None, hours: int = 0) -> EventBatch:
        events = [
            e.model_copy(update={"occurred_at": e.occurred_at + timedelta(hours=hours)})
            for e in batch.events
        ]
        return batch.model_copy(update={"events": events, "decided_in": decided_in})

    await append(pool, decided(batches[0], 5))
    await append(pool, decided(batches[1], 9))  # the lost task's events
    await append(pool, decided(batches[2], 9))
    again = await append(pool, decided(batches[1], 14, hours=1))
    rows = await stored(pool, case_id)
    lost = await pool.fetch(
        "SELECT seq, decided_in, superseded_in FROM superseded_events"
        " WHERE case_id = $1 ORDER BY seq",
        case_id,
    )
    version = await pool.fetchval("SELECT version FROM cases WHERE case_id = $1", case_id)

    assert again.inserted == 1 and [r["seq"] for r in rows] == [1, 2]
    assert rows[1]["occurred_at"] == batches[1].events[0].occurred_at + timedelta(hours=1)
    assert first_broken_link(rows) is None
    assert [tuple(r) for r in lost] == [(2, 9, 14), (3, 9, 14)]
    assert version == 2
    # the same batch again: a no-op, not a replacement
    assert (await append(pool, decided(batches[1], 14, hours=1))).inserted == 0
    for stale in (
        decided(batches[1], 12, hours=2),  # an earlier task still writing
        decided(batches[1], 20, hours=2).model_copy(update={"run_id": "run-2"}),
        decided(batches[1], None, hours=2),  # a regular activity's batch
    ):
        with pytest.raises(ApplicationError, match="stored with other content"):
            await append(pool, stale)
    assert [r["hash"] for r in await stored(pool, case_id)] == [r["hash"] for r in rows]


async def test_superseding_takes_back_what_the_lost_rows_counted(pool: asyncpg.Pool) -> None:
    """The monthly counts see a case once: a superseded opening or archiving batch takes
    back its count before the retried task's batch counts again."""
    batches = lifecycle_batches()
    case_id = batches[0].case_id
    grid = batches[0].state.case.location.grid_id

    def decided(batch: EventBatch, decided_in: int, minutes: int = 0) -> EventBatch:
        shift = timedelta(minutes=minutes)
        events = [e.model_copy(update={"occurred_at": e.occurred_at + shift}) for e in batch.events]
        state = batch.state.model_copy(update={"opened_at": batch.state.opened_at + shift})
        return batch.model_copy(update={"events": events, "state": state, "decided_in": decided_in})

    async def counts() -> tuple[int, int]:
        row = await pool.fetchrow(
            "SELECT coalesce(sum(received), 0) AS r, coalesce(sum(archived), 0) AS a"
            " FROM report_months WHERE grid_id = $1",
            grid,
        )
        return int(row["r"]), int(row["a"])

    before = await counts()
    await append(pool, decided(batches[0], 3))
    await append(pool, decided(batches[0], 5, minutes=1))  # the opening's task was lost
    for n, batch in enumerate(batches[1:], start=2):
        await append(pool, decided(batch, 10 * n))
    last = batches[-1]
    await append(pool, decided(last, 1000, minutes=1))  # the archiving task was lost
    after = await counts()
    opened_at = await pool.fetchval("SELECT opened_at FROM cases WHERE case_id = $1", case_id)
    ledger = await pool.fetchval("SELECT count(*) FROM ledger WHERE case_id = $1", case_id)
    lost = await pool.fetchval("SELECT count(*) FROM superseded_events WHERE case_id = $1", case_id)

    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    assert opened_at == batches[0].state.opened_at + timedelta(minutes=1)
    assert ledger == 1 and lost == 1 + len(last.events)
    assert first_broken_link(await stored(pool, case_id)) is None
