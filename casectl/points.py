"""`casectl points`: a grid's party members and volunteers for a month, with the points
they earned for the cases they took (党员接单), recomputed from `case_events` under the
current points scheme (domain/points.py), whose version and rules every output carries."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime

import asyncpg
import click
from rich import box
from rich.console import Console
from rich.table import Table

from activities.points import taken_cases
from casectl.common import (
    CannotRun,
    checked_month,
    database,
    policy_timezone,
    run,
    settings,
)
from domain.model import Role
from domain.points import CURRENT_SCHEME, MemberPoints, PointsReport, tally, totals, year_bounds

out = Console(
    highlight=False, markup=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200
)
err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)

_ORG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")  # domain.model.OrgId
_ROLE = {Role.PARTY_MEMBER: "党员 party member", Role.VOLUNTEER: "志愿者 volunteer"}


@click.command("points")
@click.option("--grid", required=True, help="the grid's id (the takers' org)")
@click.option("--month", required=True, help="the month, YYYY-MM, cut in the policy's timezone")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
def points(grid: str, month: str, fmt: str) -> None:
    """The points of a grid's party members (十二分制) and volunteers (志愿积分) for a
    month, and for its year so far: the cases each took (党员接单) that were completed
    with the resident content, under the current points scheme."""
    if _ORG.match(grid) is None:
        raise CannotRun("--grid: expected a grid id (letters, digits, '.', '_', ':', '-')")
    checked_month(month)
    s = settings()
    timezone = policy_timezone(s)

    async def work() -> PointsReport:
        pool = await database(s)
        try:
            year_start, start, end = year_bounds(month, timezone)
            cases = await taken_cases(pool, grid, year_start, end)
        except asyncpg.UndefinedTableError:
            raise CannotRun(
                "the database has no event store (migration 001): start the worker once, it "
                "applies the migrations"
            ) from None
        except asyncpg.PostgresError as exc:
            raise CannotRun(f"PostgreSQL refused the points query: {exc}") from None
        finally:
            await pool.close()
        return PointsReport(
            grid_id=grid,
            month=month,
            timezone=timezone,
            year_start=year_start,
            period_start=start,
            period_end=end,
            scheme=CURRENT_SCHEME,
            rules=CURRENT_SCHEME.rules(),
            members=tally(cases, grid, month, timezone, CURRENT_SCHEME),
            generated_at=datetime.now(UTC).astimezone(start.tzinfo),
        )

    result = run(work)
    if fmt == "json":
        out.print(json.dumps(result.model_dump(mode="json"), ensure_ascii=False, indent=2))
        return
    print_table(result)


def _year(m: MemberPoints) -> str:
    return f"{m.year_points}/{m.year_cap}" if m.year_cap else str(m.year_points)


def print_table(result: PointsReport) -> None:
    version = result.scheme.version
    if not result.members:
        out.print(
            f"no party member or volunteer of grid {result.grid_id} completed a case it took "
            f"from {result.year_start:%Y-%m} to {result.month} ({result.timezone}); "
            f"points scheme {version}"
        )
    else:
        table = Table(
            title=f"{result.month} grid {result.grid_id} — points {version} "
            f"(months in {result.timezone})",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        for header, left in (
            ("member", True),
            ("role", True),
            ("completed", False),
            ("on time", False),
            ("points", False),
            ("year completed", False),
            ("year points", False),
            ("cases", True),
        ):
            table.add_column(header, justify="left" if left else "right")
        for m in result.members:
            table.add_row(
                m.member_id,
                _ROLE[m.role],
                str(m.completed),
                str(m.on_time),
                str(m.points),
                str(m.year_completed),
                _year(m),
                " ".join(m.cases),
            )
        out.print(table)
        for role in (Role.PARTY_MEMBER, Role.VOLUNTEER):
            cases, earned = totals(result.members, role)
            month = result.month
            out.print(f"{_ROLE[role]}: {cases} case(s) completed in {month}, {earned} points")
    out.print(f"points scheme {version}:")
    for rule in result.rules:
        out.print(f"  - {rule}")
