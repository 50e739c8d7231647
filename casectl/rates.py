"""`casectl report monthly --formula contest|beijing-12345`: a cohort formula's monthly
ranking (domain/formulas.py) as a table, CSV, JSON and an HTML page with each unit's rates
per month. Every output names the formula and its version and carries the counts each
rate is computed from."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from rich import box
from rich.console import JustifyMethod
from rich.table import Table

from activities import reports
from casectl.common import (
    CannotRun,
    database,
    policy_timezone,
    run,
    settings,
    write_outputs,
)
from casectl.report import _PLURAL, _pages, out, pct
from domain.formulas import (
    RatedUnit,
    RateFormula,
    RatesReport,
    UnitMonth,
    assess_rates,
    within_rated,
)
from domain.ranking import RankLevel, month_bounds, months_back


@dataclass(frozen=True)
class RateColumn:
    key: str  # the CSV's field
    header: str | None  # None: the CSV's alone
    value: Callable[[RatedUnit, RatesReport], object]
    shown: Callable[[RatedUnit], str] | None = None
    left: bool = False
    wrap: bool = False
    html_only: bool = False  # the HTML page shows it, the terminal table does not

    def text(self, r: RatedUnit) -> str:
        """The cell shown in the table and on the page."""
        return self.shown(r) if self.shown is not None else ""


# the counts the terminal leaves to the CSV and the page (a table that fits 200 columns)
_WIDE = {"merged", "withdrawn", "contacted", "returns_approved"}


def _count(name: str, header: str | None = None) -> RateColumn:
    return RateColumn(
        name,
        header,
        lambda r, _: getattr(r.unit, name),
        lambda r: str(getattr(r.unit, name)),
        html_only=name in _WIDE,
    )


def columns(formula: RateFormula) -> list[RateColumn]:
    """The CSV's columns, in order; those with a header are the table's and the page's."""
    counts = ["opened", "merged", "withdrawn", "received"]
    if any(r.numerator == "responded" for r in formula.rates):
        counts += ["contacted", "responded"]
    counts += ["completed", "rated", "satisfied", "breaches", "returns", "returns_approved"]
    counts += ["urgings"]
    short = {"returns_approved": "ret. approved"}
    rate_columns = [
        RateColumn(
            f"{rate.key}_rate",
            rate.label.split()[0],
            lambda r, _, key=rate.key: "" if r.rates[key] is None else float(r.rates[key]),  # type: ignore[misc]
            lambda r, key=rate.key: pct(None if r.rates[key] is None else float(r.rates[key])),  # type: ignore[misc]
        )
        for rate in formula.rates
    ]
    return [
        RateColumn("month", None, lambda _, rep: rep.month),
        RateColumn("level", None, lambda _, rep: rep.level.value),
        RateColumn(
            "parent_id",
            "parent",
            lambda r, _: r.parent_id,
            lambda r: r.parent_id,
            left=True,
            html_only=True,
        ),
        RateColumn("org_id", "unit", lambda r, _: r.org_id, lambda r: r.org_id, left=True),
        *(
            RateColumn(k, None, lambda r, _, k=k: getattr(r.unit, k) or "")  # type: ignore[misc]
            for k in ("district_id", "street_id", "community_id", "grid_id")
        ),
        RateColumn(
            "rank",
            "rank",
            lambda r, _: r.rank or "",
            lambda r: f"{r.rank}/{r.peers}" if r.rank else "–",
        ),
        RateColumn("peers", None, lambda r, _: r.peers),
        *(_count(name, short.get(name, name)) for name in counts),
        *rate_columns,
        RateColumn(
            "score",
            "score",
            lambda r, _: "" if r.score is None else str(r.score),
            lambda r: "–" if r.score is None else str(r.score),
        ),
        RateColumn(
            "flag",
            "flag",
            lambda r, _: r.banner.value if r.banner else "",
            lambda r: r.banner.label if r.banner else "",
            left=True,
        ),
        RateColumn(
            "reasons",
            "why",
            lambda r, _: "; ".join(r.reasons),
            lambda r: "; ".join(r.reasons),
            left=True,
            wrap=True,
        ),
        RateColumn("formula_name", None, lambda _, rep: rep.formula_name),
        RateColumn("formula_version", None, lambda _, rep: rep.formula.version),
    ]


def cohort_report(
    formula: RateFormula,
    month: str,
    level: RankLevel,
    org: str | None,
    months: int,
    csv_file: Path | None,
    json_file: Path | None,
    html_file: Path | None,
) -> None:
    s = settings()
    timezone = policy_timezone(s)

    async def month_of(pool: asyncpg.Pool, name: str) -> list[RatedUnit]:
        units = await reports.cohort_measures(pool, level, name, timezone, formula)
        return within_rated(assess_rates(units, formula), org)

    async def work() -> RatesReport:
        pool = await database(s)
        try:
            units = await month_of(pool, month)
            history: list[UnitMonth] = []
            listed = {r.org_id for r in units}
            for name in months_back(month, months)[:-1]:
                history += [
                    UnitMonth(
                        month=name, org_id=r.org_id, rates=r.rates, score=r.score, banner=r.banner
                    )
                    for r in await month_of(pool, name)
                    if r.org_id in listed
                ]
        except asyncpg.UndefinedColumnError:
            raise CannotRun(
                "the database lacks the first-contact column (migration 007): start the "
                "worker once, it applies the migrations"
            ) from None
        except asyncpg.PostgresError as exc:
            raise CannotRun(f"PostgreSQL refused the report query: {exc}") from None
        finally:
            await pool.close()
        start, end = month_bounds(month, timezone)
        return RatesReport(
            month=month,
            level=level,
            scope=org,
            timezone=timezone,
            period_start=start,
            period_end=end,
            formula_name=formula.name,
            formula=formula,
            rules=formula.rules(),
            units=units,
            history=history,
            generated_at=datetime.now(UTC).astimezone(start.tzinfo),
        )

    result = run(work)
    if result.units:
        print_rates(result)
    else:
        where = f" at or under {org}" if org else ""
        out.print(
            f"no {_PLURAL[level]}{where} with cases opened, breaches, returns or urgings in "
            f"{month} ({timezone}): nothing to rank; formula {formula.name}, version "
            f"{formula.version}"
        )
    write_outputs(
        result,
        (
            (csv_file, rates_csv, "--csv"),
            (json_file, rates_json, "--json"),
            (html_file, rates_html, "--html"),
        ),
        out.print,
    )


def print_rates(result: RatesReport) -> None:
    f = result.formula
    scope = f", under {result.scope}" if result.scope else ""
    table = Table(
        title=(
            f"{result.month} {_PLURAL[result.level]}{scope} — formula {result.formula_name}, "
            f"version {f.version} (cohort cut in {result.timezone})"
        ),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    shown = [c for c in columns(f) if c.header and not c.html_only]
    for c in shown:
        justify: JustifyMethod = "left" if c.left else "right"
        table.add_column(c.header or "", justify=justify, no_wrap=not c.wrap)
    for r in result.units:
        table.add_row(*(c.text(r) for c in shown))
    out.print(table)
    red = sum(r.banner is not None and r.banner.value == "red" for r in result.units)
    yellow = sum(r.banner is not None and r.banner.value == "yellow" for r in result.units)
    out.print(f"{len(result.units)} {_PLURAL[result.level]}: {red} 红旗, {yellow} 黄旗")
    out.print(f"formula {result.formula_name}, version {f.version}:")
    for rule in result.rules:
        out.print(f"  - {rule}")


def rates_csv(result: RatesReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    cols = columns(result.formula)
    writer.writerow(c.key for c in cols)
    writer.writerows([c.value(r, result) for c in cols] for r in result.units)
    return buffer.getvalue()


def rates_json(result: RatesReport) -> str:
    return json.dumps(result.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n"


def rates_html(result: RatesReport) -> str:
    months = sorted({h.month for h in result.history} | {result.month})
    grid: dict[str, dict[str, UnitMonth]] = {}
    for r in result.units:
        grid.setdefault(r.org_id, {})[result.month] = UnitMonth(
            month=result.month, org_id=r.org_id, rates=r.rates, score=r.score, banner=r.banner
        )
    for h in result.history:
        grid.setdefault(h.org_id, {})[h.month] = h

    def percent(value: object) -> str:
        return pct(None if value is None else float(value))  # type: ignore[arg-type]

    return _pages.get_template("rates.html").render(
        report=result,
        level=_PLURAL[result.level],
        columns=[c for c in columns(result.formula) if c.header],
        months=months,
        grid=list(grid.items()),
        pct=percent,
    )
