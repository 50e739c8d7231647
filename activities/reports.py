"""The report queries: the monthly measures of grids, communities and streets, for the
red/yellow flag ranking (domain/ranking.py), and a scope's trend over months.

Two ways to the same counts (migration 002):

- `summary`: `report_months`, one row per grid and month kept by triggers on `ledger`
  and `cases` in the transaction that writes them; months cut in the timezone of
  `report_settings`. A month of a level reads one row per grid.
- `ledger`: the ledger (台账) itself, aggregated over the month's rows (and `cases` for
  the cases received): what an auditor recomputes, and the way when the office's
  timezone is not the summary's.

Either way one query per month and level; cases overdue at district level during the
month (red) always come from `cases` (flag red: a case's flag never goes back) and the
time of their red `deadline_breached` event in `case_events`. Months are cut at local
midnight in the timezone given (the policy's, Asia/Shanghai by default).
Measured at 1,000,000 archived cases: benchmarks/report_queries.py.
"""

from __future__ import annotations

from typing import Any, Literal

import asyncpg

from domain.formulas import SATISFIED, CohortCounts, CohortMeasures, RateFormula
from domain.ranking import RankLevel, TrendPoint, UnitMeasures, month_bounds, months_back

Source = Literal["summary", "ledger"]

# The columns naming a unit of each level, top down (fixed strings, never user input).
_KEYS: dict[RankLevel, tuple[str, ...]] = {
    RankLevel.STREET: ("district_id", "street_id"),
    RankLevel.COMMUNITY: ("district_id", "street_id", "community_id"),
    RankLevel.GRID: ("district_id", "street_id", "community_id", "grid_id"),
}
# The column of each kind of scope a trend can be drawn for.
_SCOPES = {
    "district": "district_id",
    "street": "street_id",
    "community": "community_id",
    "grid": "grid_id",
}
_SUMMED = (
    "received",
    "archived",
    "completed",
    "completed_on_time",
    "escalated",
    "reopened",
    "returned",
    "rated",
    "satisfied",
    "resolved",
    "resolve_seconds",
)
_COUNTS = (*_SUMMED, "red_cases")

# The ledger's measures of the cases archived in a range: the definitions of
# report_count_archived() in migration 002, as aggregates.
_LEDGER_MEASURES = """
    count(*) AS archived,
    count(*) FILTER (WHERE outcome = 'completed') AS completed,
    count(*) FILTER (WHERE outcome = 'completed' AND on_time) AS completed_on_time,
    count(*) FILTER (WHERE escalation_count > 0) AS escalated,
    count(*) FILTER (WHERE reopen_count > 0) AS reopened,
    count(*) FILTER (WHERE return_count > 0) AS returned,
    count(satisfaction) AS rated,
    count(*) FILTER (WHERE report_satisfied(satisfaction)) AS satisfied,
    count(resolved_at) FILTER (WHERE outcome = 'completed') AS resolved,
    coalesce(sum(round(extract(epoch FROM resolved_at - opened_at)))
             FILTER (WHERE outcome = 'completed'), 0)::bigint AS resolve_seconds"""


def _red(keys: str) -> str:
    """The CTEs counting red cases per unit: $1, $2 the month's bounds."""
    return f"""
        maybe_red AS MATERIALIZED (
            -- red (the flag never goes back), not archived before the month began and
            -- opened before it ended: few rows, from the partial index cases_red (the
            -- planner cannot tell how few, hence MATERIALIZED)
            SELECT case_id, {keys} FROM cases
            WHERE flag = 'red' AND archived_at IS NULL AND opened_at < $2
            UNION ALL
            SELECT case_id, {keys} FROM cases
            WHERE flag = 'red' AND archived_at >= $1 AND opened_at < $2
        ), red AS (
            -- … of those, the ones that went red before the month ended
            SELECT {keys}, count(*) AS red_cases
            FROM maybe_red AS c
            WHERE EXISTS (SELECT FROM case_events AS e
                          WHERE e.case_id = c.case_id AND e.type = 'deadline_breached'
                            AND e.payload ->> 'flag' = 'red' AND e.occurred_at < $2)
            GROUP BY {keys}
        )"""


def monthly_sql(level: RankLevel, source: Source) -> str:
    """The one query of a month at `level`: $1, $2 the month's bounds; from the summary
    also $3 the month (YYYY-MM)."""
    keys = ", ".join(_KEYS[level])
    counts = ", ".join(f"coalesce({c}, 0) AS {c}" for c in _COUNTS)
    if source == "summary":
        sums = ", ".join(f"sum({c})::bigint AS {c}" for c in _SUMMED)
        return f"""
            WITH counted AS (
                SELECT {keys}, {sums}
                FROM report_months
                WHERE month = $3
                GROUP BY {keys}
            ), {_red(keys)}
            SELECT {keys}, {counts}
            FROM counted
            FULL JOIN red USING ({keys})"""
    return f"""
        WITH archived AS (
            SELECT {keys}, {_LEDGER_MEASURES}
            FROM ledger
            WHERE archived_at >= $1 AND archived_at < $2
            GROUP BY {keys}
        ), received AS (
            SELECT {keys}, count(*) AS received
            FROM cases
            WHERE opened_at >= $1 AND opened_at < $2
            GROUP BY {keys}
        ), {_red(keys)}
        SELECT {keys}, {counts}
        FROM archived
        FULL JOIN received USING ({keys})
        FULL JOIN red USING ({keys})"""


def monthly_args(month: str, timezone: str, source: Source) -> list[Any]:
    start, end = month_bounds(month, timezone)
    return [start, end, month] if source == "summary" else [start, end]


def trend_sql(scope: str | None, source: Source) -> str:
    """Counts per month of a scope (every case when None); red cases are counted for the
    ranked month only. From the summary: $1 the months (YYYY-MM), $2 the scope's id.
    From the ledger: $1 the months, $2 and $3 their starts and ends, $4 the scope's id:
    one index range scan per month (a month computed per row costs more)."""
    if source == "summary":
        where = f" AND {_SCOPES[scope]} = $2" if scope else ""
        sums = ", ".join(f"sum({c})::bigint AS {c}" for c in _SUMMED)
        return f"""
            SELECT month, {sums}
            FROM report_months
            WHERE month = ANY($1::text[]){where}
            GROUP BY month"""
    where = f" AND {_SCOPES[scope]} = $4" if scope else ""
    months = "unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS m(month, since, until)"
    return f"""
        WITH archived AS (
            SELECT m.month, {_LEDGER_MEASURES}
            FROM {months}
            JOIN ledger ON archived_at >= m.since AND archived_at < m.until{where}
            GROUP BY m.month
        ), received AS (
            SELECT m.month, count(*) AS received
            FROM {months}
            JOIN cases ON opened_at >= m.since AND opened_at < m.until{where}
            GROUP BY m.month
        )
        SELECT month, {", ".join(f"coalesce({c}, 0) AS {c}" for c in _SUMMED)}
        FROM archived FULL JOIN received USING (month)"""


def trend_args(
    month: str, months: int, timezone: str, source: Source, org: str | None = None
) -> list[Any]:
    """The arguments of trend_sql for the `months` months ending with `month`."""
    names = months_back(month, months)
    args: list[Any] = [names]
    if source == "ledger":
        bounds = [month_bounds(name, timezone) for name in names]
        args += [[b[0] for b in bounds], [b[1] for b in bounds]]
    return args if org is None else [*args, org]


async def summary_timezone(pool: asyncpg.Pool) -> str:
    """The timezone report_months cuts its months in."""
    zone: str = await pool.fetchval("SELECT timezone FROM report_settings")
    return zone


async def choose_source(pool: asyncpg.Pool, timezone: str, from_ledger: bool) -> Source:
    """The summary when it counts months in `timezone` and the ledger is not asked for."""
    if from_ledger or await summary_timezone(pool) != timezone:
        return "ledger"
    return "summary"


async def monthly_measures(
    pool: asyncpg.Pool, level: RankLevel, month: str, timezone: str, source: Source
) -> list[UnitMeasures]:
    """Every unit of `level` with a case received, archived or red in `month`."""
    sql = monthly_sql(level, source)
    rows = await pool.fetch(sql, *monthly_args(month, timezone, source))
    return [UnitMeasures(level=level, **dict(r)) for r in rows]


async def trend(
    pool: asyncpg.Pool,
    month: str,
    months: int,
    timezone: str,
    source: Source,
    scope: tuple[str, str] | None = None,
) -> list[TrendPoint]:
    """The `months` months ending with `month`, oldest first, each with its counts (zero
    for a month without cases). `scope` is (kind, org id), kind one of grid, community,
    street, district; None: every case."""
    kind, org = scope if scope is not None else (None, None)
    args = trend_args(month, months, timezone, source, org)
    rows = {r["month"]: r for r in await pool.fetch(trend_sql(kind, source), *args)}
    points = []
    for name in months_back(month, months):
        row = rows.get(name)
        counts = {k: v for k, v in dict(row).items() if k != "month"} if row else {}
        points.append(TrendPoint(month=name, **counts))
    return points


# ---------------------------------------------------------------------------- cohorts
# The cohort formulas (domain/formulas.py): the cases opened in the month as they stand at
# its end, from `cases` and `ledger`; breaches, returns and urgings from `case_events`,
# each counted against the unit that held the case.

# The events counted against the unit that held the case (domain.formulas.holder).
ATTRIBUTED = (
    "deadline_breached",
    "case_escalated",
    "return_requested",
    "return_reviewed",
    "case_urged",
)
# The depth of the unit holding the case, from the level and loop (domain.formulas.holder:
# grid 0, community 1, street 2, district 3; a test keeps the two equal).
_DEPTH = """
    CASE WHEN loop IN ('micro_grid', 'grid') THEN 0
         WHEN loop = 'street' THEN 2
         WHEN loop = 'district' THEN 3
         WHEN level = 'community' THEN 1
         WHEN level = 'street' THEN 2
         WHEN level = 'district' THEN 3 END"""
_DEPTHS = {RankLevel.GRID: 0, RankLevel.COMMUNITY: 1, RankLevel.STREET: 2}
COHORT_COUNTS = tuple(CohortCounts.model_fields)


def cohort_sql(level: RankLevel) -> str:
    """The one query of a month's cohort and attributed events at `level`: $1, $2 the
    month's bounds, $3 the response time in seconds, $4 the satisfied values, $5 the
    deepest holder counted (the level's depth)."""
    keys = _KEYS[level]
    cols = ", ".join(keys)
    c_cols = ", ".join(f"c.{k}" for k in keys)
    counts = ", ".join(f"coalesce({name}, 0)::bigint AS {name}" for name in COHORT_COUNTS)
    return f"""
        WITH cohort AS (
            SELECT {c_cols},
                   count(*) AS opened,
                   count(*) FILTER (WHERE l.outcome = 'merged') AS merged,
                   count(*) FILTER (WHERE l.outcome = 'withdrawn') AS withdrawn,
                   count(*) FILTER (WHERE kept) AS received,
                   count(*) FILTER (WHERE kept AND c.first_contact_at < $2) AS contacted,
                   count(*) FILTER (WHERE kept AND c.first_contact_at < $2
                       AND c.first_contact_at <= c.opened_at + make_interval(secs => $3))
                       AS responded,
                   count(*) FILTER (WHERE l.outcome = 'completed') AS completed,
                   count(l.satisfaction) FILTER (WHERE l.outcome = 'completed') AS rated,
                   count(*) FILTER (WHERE l.outcome = 'completed'
                                      AND l.satisfaction = ANY($4::text[])) AS satisfied
            FROM cases AS c
            -- the ledger row has the case's opened_at: its range scan (ledger_opened,
            -- migration 007), not the whole ledger
            LEFT JOIN ledger AS l ON l.case_id = c.case_id AND l.archived_at < $2
                AND l.opened_at >= $1 AND l.opened_at < $2
            CROSS JOIN LATERAL (
                SELECT l.outcome IS NULL OR l.outcome NOT IN ('merged', 'withdrawn') AS kept
            ) AS k
            WHERE c.opened_at >= $1 AND c.opened_at < $2
            GROUP BY {c_cols}
        ), happened AS (
            SELECT e.case_id, e.type,
                   CASE e.type WHEN 'case_escalated' THEN e.payload ->> 'from_level'
                               WHEN 'return_reviewed' THEN asked.payload ->> 'level'
                               ELSE e.payload ->> 'level' END AS level,
                   CASE e.type WHEN 'case_escalated' THEN e.payload ->> 'from_loop'
                               WHEN 'return_reviewed' THEN asked.payload ->> 'loop'
                               ELSE e.payload ->> 'loop' END AS loop,
                   e.type = 'return_reviewed' AND (e.payload ->> 'approved')::boolean
                       AS approved
            FROM case_events AS e
            LEFT JOIN LATERAL (
                -- the return a review decides: the case's last request before it
                SELECT q.payload FROM case_events AS q
                WHERE e.type = 'return_reviewed' AND q.case_id = e.case_id
                  AND q.type = 'return_requested' AND q.seq < e.seq
                ORDER BY q.seq DESC LIMIT 1
            ) AS asked ON true
            WHERE e.type = ANY($6::text[]) AND e.occurred_at >= $1 AND e.occurred_at < $2
        ), attributed AS (
            SELECT {c_cols},
                   count(*) FILTER (WHERE h.type IN ('deadline_breached', 'case_escalated'))
                       AS breaches,
                   count(*) FILTER (WHERE h.type = 'return_requested') AS returns,
                   count(*) FILTER (WHERE h.approved) AS returns_approved,
                   count(*) FILTER (WHERE h.type = 'case_urged') AS urgings
            FROM (SELECT *, {_DEPTH} AS depth FROM happened) AS h
            JOIN cases AS c USING (case_id)
            WHERE h.depth <= $5
            GROUP BY {c_cols}
        )
        SELECT {cols}, {counts}
        FROM cohort
        FULL JOIN attributed USING ({cols})"""


async def cohort_measures(
    pool: asyncpg.Pool, level: RankLevel, month: str, timezone: str, formula: RateFormula
) -> list[CohortMeasures]:
    """Every unit of `level` with a case opened in `month`, or a breach, return or urging
    it held in the month."""
    start, end = month_bounds(month, timezone)
    rows = await pool.fetch(
        cohort_sql(level),
        start,
        end,
        float(formula.response_hours * 3600),
        list(SATISFIED),
        _DEPTHS[level],
        list(ATTRIBUTED),
    )
    return [CohortMeasures(level=level, **dict(r)) for r in rows]
