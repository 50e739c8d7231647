"""worker.py as operators run it: a process configured by the environment that migrates,
registers its search attributes, serves cases, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from caseloop.client import CaseClient
from support import LIFECYCLE, report, worker_env

ROOT = Path(__file__).resolve().parent.parent


async def test_worker_serves_cases_and_stops_on_sigterm(
    dev_env: WorkflowEnvironment, pg_url: str, task_queue: str
) -> None:
    env = worker_env(dev_env, pg_url, task_queue)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "worker.py"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        started = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        while started.get("event") != "worker starting":
            started = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        assert started["task_queue"] == task_queue and started["level"] == "info"
        assert started["encryption_keys"] == ["test-2", "test-1"]
        client = CaseClient(dev_env.client, task_queue)
        opened = await client.open_case(report())
        for name, payload in LIFECYCLE:
            await client.send(opened.case_id, name, payload)
        record = await client.result(opened.case_id)
        assert record.outcome.value == "completed"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    rest = (await proc.stdout.read()).decode()
    assert code == 0, rest
    assert '"worker stopped"' in rest


async def test_worker_without_database_url_says_so() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "worker.py"), env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "DATABASE_URL" in err.decode()


async def test_worker_takes_no_options() -> None:
    """Several copies are the service manager's to run (deploy/README.md), not an option."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "worker.py"), "--processes", "2", stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "unrecognized arguments: --processes 2" in err.decode()
