"""The worker: settings, logging, the pool, migrations, search attributes, the Worker.

    DATABASE_URL=postgresql://… python worker.py

Stops gracefully on SIGTERM or SIGINT: running activities finish, then it exits.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import timedelta

import asyncpg
import structlog
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.db import create_pool, migrate
from activities.store import CaseActivities
from caseloop import logs
from caseloop.client import connect
from caseloop.crypto import Keyring
from caseloop.settings import Settings, SettingsError
from domain.policy import DeadlinePolicy
from workflows.case import CaseWorkflow
from workflows.search import ALL_KEYS

log = structlog.get_logger("worker")

# The domain is pure and deterministic: loaded once, not once per workflow run.
SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "domain", "activities.contract", "rfc8785"
    )
)


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
) -> Worker:
    """The worker of CaseWorkflow and its activities. In production a bug in workflow code
    fails the workflow *task*, which retries until fixed code is deployed: the case waits,
    it is not lost. `fail_fast` (tests) fails the workflow instead, so a bug shows at once."""
    activities = CaseActivities(pool, policy, keyring)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[CaseWorkflow],
        activities=[activities.load_policy, activities.record_events],
        workflow_runner=SANDBOX,
        graceful_shutdown_timeout=timedelta(seconds=10),
        workflow_failure_exception_types=[Exception] if fail_fast else [],
    )


async def run(settings: Settings) -> None:
    if settings.database_url is None:
        raise SettingsError("DATABASE_URL: not set (`make run` starts an embedded PostgreSQL)")
    policy = settings.policy()
    client = await connect(settings)
    pool = await create_pool(settings.database_url)
    try:
        applied = await migrate(pool)
        added = await register_search_attributes(client, settings.temporal_namespace)
        log.info(
            "worker starting",
            task_queue=settings.task_queue,
            policy=policy.version,
            migrations_applied=applied,
            search_attributes_added=added,
            encryption_keys=settings.keyring.key_ids if settings.keyring else [],
        )
        if settings.keyring is None:
            log.warning(
                "CASE_ENCRYPTION_KEYS is not set: residents' personal data goes to Temporal "
                "and PostgreSQL in clear text"
            )
        worker = build_worker(client, pool, policy, settings.task_queue, keyring=settings.keyring)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with worker:
            await stop.wait()
            log.info("worker stopping")
    finally:
        await pool.close()
    log.info("worker stopped")


def main() -> None:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"worker: {exc}")
    logs.configure(settings.log_level, settings.log_format)
    try:
        asyncio.run(run(settings))
    except SettingsError as exc:
        sys.exit(f"worker: {exc}")
    except (OSError, RuntimeError) as exc:
        sys.exit(f"worker: cannot start: {exc}")


if __name__ == "__main__":
    main()
