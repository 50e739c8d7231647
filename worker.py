"""The worker: settings, logging, the pool, migrations, search attributes, the Worker.

    DATABASE_URL=postgresql://… python worker.py [--processes N]

Stops gracefully on SIGTERM or SIGINT: running activities finish, then it exits.

One Python process runs its workflow code under one GIL, so it uses about one core.
`--processes N` (default: `CASE_WORKER_PROCESSES`, else 1) runs N worker processes on the
same task queue: the parent applies the migrations and registers the search attributes
once, starts N children (each a full Worker with its own pool) and logs their pids,
passes SIGTERM/SIGINT on to them and exits 0 once they have all stopped cleanly. If a
child dies on its own, the parent stops the others and exits 1, so the service manager
restarts the lot. A child stops when its parent dies, even by SIGKILL (Linux). About one
process per core the worker may use; beyond one machine, run more machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from datetime import date, timedelta
from pathlib import Path

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

from activities.agenda import AgendaActivities
from activities.db import create_pool, migrate
from activities.store import CaseActivities
from caseloop import logs
from caseloop.calendars import calendar_gap
from caseloop.client import connect
from caseloop.crypto import Keyring
from caseloop.settings import DEFAULT_WORKER_CACHE, Settings, SettingsError
from caseloop.talkday_schedules import sync_schedules
from domain.policy import DeadlinePolicy
from workflows.agenda import TalkDayAgenda
from workflows.case import CaseWorkflow
from workflows.department import DepartmentTaskWorkflow
from workflows.sandbox import SANDBOX
from workflows.search import ALL_KEYS

log = structlog.get_logger("worker")

GRACEFUL_SHUTDOWN = timedelta(seconds=10)
# How long the parent waits for its children to stop before it kills them.
_CHILDREN_STOP_TIMEOUT = GRACEFUL_SHUTDOWN.total_seconds() + 20
_SCRIPT = str(Path(__file__).resolve())


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
) -> Worker:
    """The worker of CaseWorkflow, the department tasks and the talk-day agendas, and
    their activities. In production a bug in workflow code fails the workflow *task*,
    which retries until fixed code is deployed: the case waits, it is not lost.
    `fail_fast` (tests) fails the workflow instead, so a bug shows at once."""
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
            agenda.collect_agenda,
            agenda.schedule_case_deliberation,
        ],
        workflow_runner=SANDBOX,
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


async def run(settings: Settings, *, prepared: bool = False) -> None:
    """One worker process. `prepared`: the parent has applied the migrations and
    registered the search attributes already."""
    database_url = _database_url(settings)
    policy = settings.policy()
    client = await connect(settings)
    pool = await create_pool(database_url)
    try:
        done = {} if prepared else await prepare(client, pool, settings)
        log.info(
            "worker starting",
            task_queue=settings.task_queue,
            policy=policy.version,
            pid=os.getpid(),
            **done,
            encryption_keys=settings.keyring.key_ids if settings.keyring else [],
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
        )
        stop = asyncio.Event()
        _stop_on_signals(stop)
        async with worker:
            await stop.wait()
            log.info("worker stopping")
    finally:
        await pool.close()
    log.info("worker stopped")


async def supervise(settings: Settings, processes: int) -> int:
    """The parent of `processes` worker processes; returns the exit code."""
    database_url = _database_url(settings)
    settings.policy()  # a bad CASE_POLICY stops the parent, not N children
    client = await connect(settings)
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        done = await prepare(client, pool, settings)
    finally:
        await pool.close()
    log.info(
        "worker processes starting",
        processes=processes,
        task_queue=settings.task_queue,
        pid=os.getpid(),
        **done,
    )
    stop = asyncio.Event()
    _stop_on_signals(stop)
    children: list[asyncio.subprocess.Process] = []
    for index in range(processes):
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            _SCRIPT,
            "--child",
            str(index),
            "--parent",
            str(os.getpid()),
        )
        children.append(child)
        log.info("worker process started", index=index, pid=child.pid)
    exits = {asyncio.ensure_future(c.wait()): (i, c) for i, c in enumerate(children)}
    stopping = asyncio.ensure_future(stop.wait())
    finished, _ = await asyncio.wait([*exits, stopping], return_when=asyncio.FIRST_COMPLETED)
    failed = not stop.is_set()
    if failed:
        for task in finished:
            index, child = exits[task]
            log.error(
                "worker process exited unexpectedly",
                index=index,
                pid=child.pid,
                exit_code=child.returncode,
            )
    log.info("worker processes stopping")
    for child in children:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.gather(*exits), _CHILDREN_STOP_TIMEOUT)
    except TimeoutError:
        for child in children:
            if child.returncode is None:
                log.error("worker process did not stop: killed", pid=child.pid)
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
        await asyncio.gather(*exits)
        failed = True
    stopping.cancel()
    codes = {c.pid: c.returncode for c in children}
    failed = failed or any(code != 0 for code in codes.values())
    log.info("worker processes stopped", exit_codes=codes)
    return 1 if failed else 0


def _stop_with_parent(parent: int | None) -> None:
    """A child is sent SIGTERM when its parent dies, even by SIGKILL (Linux)."""
    if sys.platform == "linux":
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if parent is not None and os.getppid() != parent:  # it died before we asked
        sys.exit(f"worker: parent process {parent} is gone")


def _processes(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {value!r}")
    return n


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="worker.py", description="The case worker (configured by the environment)."
    )
    parser.add_argument(
        "--processes",
        type=_processes,
        default=None,
        help="worker processes on the task queue (default: CASE_WORKER_PROCESSES, else 1)",
    )
    # set by the parent on the children it starts
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--parent", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.processes is None:
        value = os.environ.get("CASE_WORKER_PROCESSES") or "1"
        try:
            args.processes = _processes(value)
        except argparse.ArgumentTypeError as exc:
            raise SettingsError(f"CASE_WORKER_PROCESSES: {exc}") from None
    return args


def main(argv: list[str] | None = None) -> None:
    try:
        settings = Settings.from_env()
        args = parse_args(argv)
    except SettingsError as exc:
        sys.exit(f"worker: {exc}")
    logs.configure(settings.log_level, settings.log_format)
    if args.child is not None:
        _stop_with_parent(args.parent)
        structlog.contextvars.bind_contextvars(worker_process=args.child, pid=os.getpid())
    try:
        if args.child is None and args.processes > 1:
            sys.exit(asyncio.run(supervise(settings, args.processes)))
        asyncio.run(run(settings, prepared=args.child is not None))
        # Stopped cleanly: leave without interpreter finalization, which the Temporal
        # bridge's threads can abort ("PyGILState_Release", exit -6 after "worker stopped",
        # once in six SIGTERM stops; temporalio/sdk-python#300), as casectl does.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    except SettingsError as exc:
        sys.exit(f"worker: {exc}")
    except (OSError, RuntimeError) as exc:
        sys.exit(f"worker: cannot start: {exc}")


if __name__ == "__main__":
    main()
