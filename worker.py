"""The worker: settings, logging, the pool, migrations, search attributes, the Worker.

    DATABASE_URL=postgresql://… python worker.py

Stops gracefully on SIGTERM or SIGINT: running activities finish, then it exits.

One worker is one process, and its workflow code runs under one GIL: about one core.
For more, run more copies on the same task queue (compose replicas, a Deployment's
replicas, systemd instances: deploy/README.md); each applies the migrations and
registers the search attributes idempotently at its start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from datetime import date, timedelta

import asyncpg
import structlog
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.agenda import AgendaActivities
from activities.db import create_pool, migrate
from activities.store import CaseActivities
from caseloop.client import connect
from caseloop.talkday_schedules import sync_schedules
from domain.policy import DeadlinePolicy
from infra import logs
from infra.calendars import calendar_gap
from infra.crypto import Keyring
from infra.process import leave
from infra.settings import DEFAULT_WORKER_CACHE, Settings, SettingsError
from workflows.agenda import TalkDayAgenda
from workflows.case import CaseWorkflow
from workflows.department import DepartmentTaskWorkflow
from workflows.sandbox import SANDBOX
from workflows.search import ALL_KEYS

log = structlog.get_logger("worker")

GRACEFUL_SHUTDOWN = timedelta(seconds=10)


async def register_search_attributes(client: Client, namespace: str) -> list[str]:
    """Add the custom search attributes this worker uses, once; returns those added.

    Tolerates a server that cannot list them (the time-skipping test server)."""
    wanted = {key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in ALL_KEYS}
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        missing = {n: t for n, t in wanted.items() if n not in listed.custom_attributes}
    except RPCError as exc:
        if exc.status is not RPCStatusCode.UNIMPLEMENTED:
            raise
        missing = wanted
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
            )
        except RPCError as exc:
            if exc.status is not RPCStatusCode.ALREADY_EXISTS:
                raise
    return sorted(missing)


def build_worker(
    client: Client,
    pool: asyncpg.Pool,
    policy: DeadlinePolicy,
    task_queue: str,
    *,
    keyring: Keyring | None = None,
    fail_fast: bool = False,
    max_cached_workflows: int = DEFAULT_WORKER_CACHE,
    sandboxed: bool = True,
) -> Worker:
    """The worker of CaseWorkflow, the department tasks and the talk-day agendas, and
    their activities. In production a bug in workflow code fails the workflow *task*,
    which retries until fixed code is deployed: the case waits, it is not lost.
    `fail_fast` (tests) fails the workflow instead, so a bug shows at once. `sandboxed`
    runs the workflows in the SDK's sandbox, which refuses a non-deterministic call at
    run time; the tests and every replay of the golden histories use it, so such a call
    fails the suite, and a production worker may run without it (CASE_WORKFLOW_SANDBOX)."""
    activities = CaseActivities(pool, policy, keyring)
    # talk days (docs/talk-days.md): the agenda updates the cases through the client
    agenda = AgendaActivities(pool, client, task_queue)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[CaseWorkflow, DepartmentTaskWorkflow, TalkDayAgenda],
        activities=[
            activities.load_policy,
            activities.record_events,
            activities.merge_recorded,
            agenda.collect_agenda,
            agenda.schedule_case_deliberation,
        ],
        workflow_runner=SANDBOX if sandboxed else UnsandboxedWorkflowRunner(),
        max_cached_workflows=max_cached_workflows,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        workflow_failure_exception_types=[Exception] if fail_fast else [],
    )


async def prepare(client: Client, pool: asyncpg.Pool, settings: Settings) -> dict[str, list[str]]:
    """What is done once per start, before serving: migrations and search attributes
    (both idempotent; migrations take an advisory lock), and the talk days' schedules
    when CASE_TALK_DAYS is set (left alone when it is not)."""
    done = {
        "migrations_applied": await migrate(pool),
        "search_attributes_added": await register_search_attributes(
            client, settings.temporal_namespace
        ),
    }
    if settings.talk_days_file is not None:
        synced = await sync_schedules(client, settings.talk_days(), settings.task_queue)
        done.update({f"talk_day_schedules_{k}": v for k, v in synced.items()})
    return done


def _database_url(settings: Settings) -> str:
    if settings.database_url is None:
        raise SettingsError("DATABASE_URL: not set (`make run` starts an embedded PostgreSQL)")
    return settings.database_url


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def run(settings: Settings) -> None:
    """The worker process: prepare, serve until SIGTERM or SIGINT, stop gracefully."""
    database_url = _database_url(settings)
    policy = settings.policy()
    client = await connect(settings)
    pool = await create_pool(database_url)
    try:
        done = await prepare(client, pool, settings)
        log.info(
            "worker starting",
            task_queue=settings.task_queue,
            policy=policy.version,
            pid=os.getpid(),
            **done,
            encryption_keys=settings.keyring.key_ids if settings.keyring else [],
            workflow_sandbox=settings.workflow_sandbox,
        )
        gap = calendar_gap(policy, date.today())
        if gap:
            log.warning(gap)
        if settings.keyring is None:
            log.warning(
                "CASE_ENCRYPTION_KEYS is not set: residents' personal data goes to Temporal "
                "and PostgreSQL in clear text"
            )
        worker = build_worker(
            client,
            pool,
            policy,
            settings.task_queue,
            keyring=settings.keyring,
            max_cached_workflows=settings.worker_cache,
            sandboxed=settings.workflow_sandbox,
        )
        stop = asyncio.Event()
        _stop_on_signals(stop)
        async with worker:
            await stop.wait()
            log.info("worker stopping")
    finally:
        await pool.close()
    log.info("worker stopped")


def main(argv: list[str] | None = None) -> None:
    # no options (an unknown one is refused): the environment configures the worker
    argparse.ArgumentParser(
        prog="worker.py", description="The case worker (configured by the environment)."
    ).parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"worker: {exc}")
    logs.configure(settings.log_level, settings.log_format)
    try:
        asyncio.run(run(settings))
        leave(0)  # stopped cleanly (finalization aborted once in six SIGTERM stops)
    except SettingsError as exc:
        sys.exit(f"worker: {exc}")
    except (OSError, RuntimeError) as exc:
        sys.exit(f"worker: cannot start: {exc}")


if __name__ == "__main__":
    main()
