"""`make run` (devstack.stack): how it is stopped, and what its banner says."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from devstack.stack import policy_banner
from domain.policy import DEFAULT_POLICY
from infra.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

# The stack's own signal handling around a stand-in for its services, whose cleanup (like
# the stack's: stop the children, then PostgreSQL) must run when the process is stopped.
STAND_IN = """
import asyncio
from devstack.stack import how_to_stop, run_until_stopped

async def services():
    try:
        print("running;", how_to_stop(), flush=True)
        await asyncio.sleep(60)
    finally:
        await asyncio.sleep(0.1)
        print("cleaned up", flush=True)

run_until_stopped(services())
print("exited", flush=True)
"""


def ignore_sigint() -> None:
    """What a shell does for a job started with `&` without job control."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


async def test_sigterm_stops_it_cleanly_where_sigint_is_ignored() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        STAND_IN,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        preexec_fn=ignore_sigint,
    )
    assert proc.stdout is not None
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert first.startswith("running;"), first
        # it says how to stop it: SIGTERM to its pid, Ctrl-C being ignored
        assert f"kill {proc.pid}  (SIGTERM)" in first
        assert "SIGINT (Ctrl-C) is ignored" in first
        proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.5)
        assert proc.returncode is None  # ignored, as the banner says
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    rest = (await proc.stdout.read()).decode()
    assert code == 0, rest
    assert rest.splitlines() == ["cleaned up", "exited"]


def test_banner_names_the_deadline_policy_and_its_source() -> None:
    assert policy_banner(Settings.from_env({})) == f"{DEFAULT_POLICY.version} (built-in)"
    fast = ROOT / "examples" / "fast-policy.json"
    assert (
        policy_banner(Settings.from_env({"CASE_POLICY": str(fast)}))
        == f"7135-demo-fast (CASE_POLICY {fast})"
    )
