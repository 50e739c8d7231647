"""`worker.py --processes 2`: a parent and two worker children on one task queue. Both
children take work (their pids are in the histories' worker identities), SIGTERM stops
them all cleanly, and a child that dies takes the parent down with a non-zero exit."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from caseloop.client import CaseClient
from support import LIFECYCLE, report, worker_env

ROOT = Path(__file__).resolve().parent.parent


class Workers:
    """The parent process, its JSON log lines, and the pids of its children."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self.children: set[int] = set()

    async def read_until(self, wanted: str, count: int = 1) -> None:
        assert self.proc.stdout is not None
        seen = sum(1 for line in self.lines if line.get("event") == wanted)
        while seen < count:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), 30)
            assert raw, f"the worker exited before {wanted!r}: {self.lines}"
            line = json.loads(raw)
            self.lines.append(line)
            if line.get("event") == "worker process started":
                self.children.add(line["pid"])
            seen += line.get("event") == wanted

    async def rest(self) -> str:
        assert self.proc.stdout is not None
        return (await self.proc.stdout.read()).decode()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest_asyncio.fixture
async def workers(
    dev_env: WorkflowEnvironment, pg_url: str, task_queue: str
) -> AsyncIterator[Workers]:
    # CASE_WORKER_PROCESSES 3: the option wins over the environment
    env = worker_env(dev_env, pg_url, task_queue, CASE_WORKER_PROCESSES="3")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "worker.py"),
        "--processes",
        "2",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    workers = Workers(proc)
    try:
        await workers.read_until("worker starting", 2)  # logged by each child
        yield workers
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for pid in workers.children:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


async def lifecycle(client: CaseClient) -> str:
    opened = await client.open_case(report())
    for name, payload in LIFECYCLE:
        await client.send(opened.case_id, name, payload)
    await client.result(opened.case_id)
    return opened.case_id


async def worker_pids(dev_env: WorkflowEnvironment, case_id: str) -> set[int]:
    """The pids in the identities (`pid@host`) of the workers that took this case's tasks."""
    history = await dev_env.client.get_workflow_handle(case_id).fetch_history()
    pids = set()
    for event in history.events:
        for attributes in (
            event.workflow_task_started_event_attributes,
            event.activity_task_started_event_attributes,
        ):
            if attributes.identity:
                pids.add(int(attributes.identity.split("@")[0]))
    return pids


async def test_two_processes_share_the_work_and_stop_on_sigterm(
    workers: Workers, dev_env: WorkflowEnvironment, task_queue: str
) -> None:
    starting = [line for line in workers.lines if line.get("event") == "worker starting"]
    assert {line["pid"] for line in starting} == workers.children
    assert len(workers.children) == 2
    parent = next(line for line in workers.lines if line["event"] == "worker processes starting")
    assert parent["processes"] == 2 and parent["pid"] == workers.proc.pid
    client = CaseClient(dev_env.client, task_queue)
    used: set[int] = set()
    # A case's first workflow task goes to either child (later ones stick to it): batches
    # of cases until both have worked, bounded.
    for _ in range(5):
        case_ids = await asyncio.gather(*(lifecycle(client) for _ in range(6)))
        for case_id in case_ids:
            used |= await worker_pids(dev_env, case_id)
        if used == workers.children:
            break
    assert used == workers.children

    workers.proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(workers.proc.wait(), 15)
    rest = await workers.rest()
    assert code == 0, rest
    assert rest.count('"worker stopped"') == 2
    assert all(gone(pid) for pid in workers.children)


async def test_a_child_that_dies_stops_the_parent_with_an_error(workers: Workers) -> None:
    victim = min(workers.children)
    os.kill(victim, signal.SIGKILL)
    code = await asyncio.wait_for(workers.proc.wait(), 15)
    rest = await workers.rest()
    assert code == 1, rest
    assert '"worker process exited unexpectedly"' in rest
    assert all(gone(pid) for pid in workers.children)
