"""`casectl report monthly`: the monthly red/yellow flag ranking (红黄旗) of grids,
communities or streets from the ledger, as a table, CSV, JSON and an HTML page a street
office opens offline (rendered from casectl/templates, its charts inline SVG: no script,
nothing fetched).

The flags follow a versioned formula (domain/ranking.py); every output carries its
version and thresholds, so the flags can be recomputed from the counts beside them."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
import click
import jinja2
from rich import box
from rich.console import Console, JustifyMethod
from rich.table import Table

from activities import reports
from casectl.common import (
    CannotRun,
    checked_month,
    database,
    policy_timezone,
    run,
    settings,
    write_outputs,
)
from domain.formulas import (
    FORMULAS,
    LATEST,
    RATE_FORMULAS,
    RatedUnit,
    RateFormula,
    assess_rates,
    formula_from_json,
    formula_named,
    within_rated,
)
from domain.ranking import (
    CURRENT_FORMULA,
    Banner,
    FlagFormula,
    MonthlyReport,
    Ranked,
    RankLevel,
    TrendPoint,
    assess,
    locate,
    month_bounds,
    within,
)

out = Console(
    highlight=False, markup=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200
)
err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)

_SOURCES = {
    "summary": "the monthly summary (report_months, kept with the ledger)",
    "ledger": "the ledger's rows",
}
_PLURAL = {RankLevel.GRID: "grids", RankLevel.COMMUNITY: "communities", RankLevel.STREET: "streets"}


@click.group()
def report() -> None:
    """Reports from the ledger (台账): the monthly red/yellow flag ranking (红黄旗)."""


@report.command("monthly")
@click.option("--month", required=True, help="the month, YYYY-MM, cut in the policy's timezone")
@click.option(
    "--level",
    type=click.Choice([level.value for level in RankLevel]),
    default=RankLevel.COMMUNITY.value,
    show_default=True,
    help="the units ranked (each among the units of its parent)",
)
@click.option("--org", help="only units that are, or lie under, this org (any level's id)")
@click.option(
    "--months",
    type=click.IntRange(1, 60),
    default=12,
    show_default=True,
    help="months in the trend, ending with --month",
)
@click.option(
    "--from-ledger",
    is_flag=True,
    help="count from the ledger's rows, not the monthly summary (an audit; slower)",
)
@click.option(
    "--formula",
    "formula_text",
    default=CURRENT_FORMULA.version,
    show_default=True,
    help="the formula, by version, by name (latest version) or a JSON file of a cohort "
    "formula (docs/rankings.md): " + ", ".join([*FORMULAS, *LATEST]),
)
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path))
def monthly(
    month: str,
    level: str,
    org: str | None,
    months: int,
    from_ledger: bool,
    formula_text: str,
    csv_file: Path | None,
    json_file: Path | None,
    html_file: Path | None,
) -> None:
    """Rank the units of a level for a month by a formula: flags-2026.1 (received,
    completed on time, escalated, reopened, returned, satisfaction, red cases), the
    红黄旗竞赛 contest (received, completed, satisfaction of the month's cohort) or
    Beijing 12345's three rates (response, resolution, satisfaction); the red flag
    (红旗, commended) and the yellow flag (黄旗, warned)."""
    checked_month(month)
    try:
        if formula_text.endswith(".json"):  # a cohort formula kept as data
            chosen: FlagFormula | RateFormula = formula_from_json(
                Path(formula_text).read_text(encoding="utf-8")
            )
        else:
            chosen = formula_named(formula_text)
    except OSError as exc:
        raise CannotRun(f"--formula: cannot read {formula_text}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CannotRun(f"--formula: {exc}") from None
    if isinstance(chosen, RateFormula):
        from casectl.rates import cohort_report  # it renders with this module's helpers

        if from_ledger:
            err.print(
                f"note: {chosen.version} always counts from cases, ledger and case_events "
                "(it has no summary): --from-ledger changes nothing"
            )

        cohort_report(chosen, month, RankLevel(level), org, months, csv_file, json_file, html_file)
        return
    s = settings()
    timezone = policy_timezone(s)
    rank_level = RankLevel(level)

    async def work() -> MonthlyReport:
        pool = await database(s)
        try:
            return await _report(pool)
        except asyncpg.UndefinedTableError:
            raise CannotRun(
                "the database has no report tables (migration 002): start the worker once, "
                "it applies the migrations"
            ) from None
        except asyncpg.PostgresError as exc:
            raise CannotRun(f"PostgreSQL refused the report query: {exc}") from None
        finally:
            await pool.close()

    cohorts: list[CohortTable] = []

    async def _report(pool: asyncpg.Pool) -> MonthlyReport:
        if html_file is not None:  # the page shows the cohort formulas' rates beside
            for f in RATE_FORMULAS:
                measured = await reports.cohort_measures(pool, rank_level, month, timezone, f)
                cohorts.append(cohort_table(f, within_rated(assess_rates(measured, f), org)))
        source = await reports.choose_source(pool, timezone, from_ledger)
        if source == "ledger" and not from_ledger:
            zone = await reports.summary_timezone(pool)
            err.print(
                f"note: the monthly summary counts months in {zone}, the policy in "
                f"{timezone}: counted from the ledger (slower); "
                f"SELECT report_rebuild('{timezone}') moves the summary"
            )
        units = await reports.monthly_measures(pool, rank_level, month, timezone, source)
        kind = locate(units, org) if org else None
        scope = (kind, org) if kind and org else None
        trend: list[TrendPoint] = []
        if org is None or scope is not None:
            trend = await reports.trend(pool, month, months, timezone, source, scope)
        start, end = month_bounds(month, timezone)
        return MonthlyReport(
            month=month,
            level=rank_level,
            scope=org,
            scope_level=kind,
            timezone=timezone,
            counted_from=source,
            period_start=start,
            period_end=end,
            formula=CURRENT_FORMULA,
            rules=CURRENT_FORMULA.rules(),
            units=within(assess(units, CURRENT_FORMULA), org),
            trend=trend,
            generated_at=datetime.now(UTC).astimezone(start.tzinfo),
        )

    result = run(work)
    if result.units:
        print_table(result)
    else:
        where = f" at or under {org}" if org else ""
        out.print(
            f"no {_PLURAL[rank_level]}{where} with cases received, archived or overdue at "
            f"district level in {month} ({timezone}): nothing to rank"
        )
    write_outputs(
        result,
        (
            (csv_file, to_csv, "--csv"),
            (json_file, to_json, "--json"),
            (html_file, lambda r: to_html(r, cohorts), "--html"),
        ),
        out.print,
    )


# ---------------------------------------------------------------------------- the columns


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


@dataclass(frozen=True)
class Column:
    """A column of the report: its field in the CSV, and for the terminal table and the
    HTML page (those with a header) its header and how a unit's cell reads there."""

    key: str  # the CSV's field
    header: str | None  # None: the CSV's alone; {parent} and {level}: the level's names
    value: Callable[[Ranked, MonthlyReport], object]  # the CSV's cell (None: empty)
    text: Callable[[Ranked], str] | None = None  # the cell shown (default: the value)
    exact: Callable[[Ranked], str] | None = None  # the HTML's cell where `text` rounds
    html_only: bool = False  # the HTML page shows it, the terminal table does not
    left: bool = False  # text, left-aligned (numbers are right-aligned)
    wrap: bool = False  # may wrap in the terminal

    def heading(self, level: RankLevel) -> str:
        return (self.header or "").format(parent=level.parent, level=level.value)

    def cell(self, r: Ranked, result: MonthlyReport, *, exact: bool = False) -> str:
        if exact and self.exact:
            return self.exact(r)
        return self.text(r) if self.text else str(self.value(r, result))


def _measure(
    key: str,
    header: str | None = None,
    text: Callable[[Any], str] = str,
    *,
    html_only: bool = False,
    left: bool = False,
) -> Column:
    """A column of the unit's own measures (UnitMeasures), by its field's name."""
    return Column(
        key,
        header,
        lambda r, _: getattr(r.unit, key),
        lambda r: text(getattr(r.unit, key)),
        html_only=html_only,
        left=left,
    )


def _formula_text(result: MonthlyReport) -> str:
    """The thresholds in one cell: key=value; …"""
    data = result.formula.model_dump(mode="json")
    weights = data.pop("weights")
    data.update({f"weight_{k}": v for k, v in weights.items()})
    return "; ".join(f"{k}={v}" for k, v in data.items() if k != "version")


# Every column of the CSV, in its order; those with a header are, in the same order, the
# columns of the terminal table and the HTML page.
COLUMNS: tuple[Column, ...] = (
    Column("month", None, lambda _, result: result.month),
    Column("level", None, lambda _, result: result.level.value),
    _measure("parent_id", "{parent}", left=True),
    _measure("org_id", "{level}", left=True),
    *(_measure(key) for key in ("district_id", "street_id", "community_id", "grid_id")),
    Column(
        "rank",
        "rank",
        lambda r, _: r.rank or "",
        lambda r: f"{r.rank}/{r.peers}" if r.rank else "–",
    ),
    Column("peers", None, lambda r, _: r.peers),
    _measure("received", "received"),
    _measure("archived"),
    _measure("completed", "completed"),
    _measure("completed_on_time"),
    _measure("on_time_rate", "on time", pct),
    _measure("escalated", "escalated"),
    _measure("reopened", "reopened"),
    _measure("returned", "returned"),
    _measure("rated", "rated", html_only=True),
    _measure("satisfied"),
    _measure("satisfaction_rate", "satisfied", pct),
    _measure("completion_rate"),
    _measure("avg_resolve_hours", "resolve h", _num),
    _measure("red_cases", "red"),
    Column(
        "score",
        "score",
        lambda r, _: "" if r.score is None else str(r.score),
        lambda r: _num(None if r.score is None else float(r.score)),
        exact=lambda r: "–" if r.score is None else str(r.score),
    ),
    Column(
        "flag",
        "flag",
        lambda r, _: r.banner.value if r.banner else "",
        lambda r: r.banner.label if r.banner else "",
        left=True,
    ),
    Column("reasons", "why", lambda r, _: "; ".join(r.reasons), left=True, wrap=True),
    Column("formula_name", None, lambda _, result: result.formula_name),
    Column("formula_version", None, lambda _, result: result.formula.version),
    Column("formula", None, lambda _, result: _formula_text(result)),
)


# ---------------------------------------------------------------------------- text


def print_table(result: MonthlyReport) -> None:
    scope = f", under {result.scope}" if result.scope else ""
    table = Table(
        title=(
            f"{result.month} {_PLURAL[result.level]}{scope} — 红黄旗 {result.formula.version}"
            f" (months in {result.timezone})"
        ),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    columns = [c for c in COLUMNS if c.header and not c.html_only]
    for c in columns:
        justify: JustifyMethod = "left" if c.left else "right"
        table.add_column(c.heading(result.level), justify=justify, no_wrap=not c.wrap)
    for r in result.units:
        table.add_row(*(c.cell(r, result) for c in columns))
    out.print(table)
    red = sum(r.banner is Banner.RED for r in result.units)
    yellow = sum(r.banner is Banner.YELLOW for r in result.units)
    out.print(f"{len(result.units)} {_PLURAL[result.level]}: {red} 红旗, {yellow} 黄旗")
    out.print(
        f"counted from {_SOURCES[result.counted_from]}; formula flags, version "
        f"{result.formula.version}:"
    )
    for rule in result.rules:
        out.print(f"  - {rule}")


# ---------------------------------------------------------------------------- CSV, JSON


def to_csv(result: MonthlyReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(c.key for c in COLUMNS)
    writer.writerows([c.value(r, result) for c in COLUMNS] for r in result.units)
    return buffer.getvalue()


def to_json(result: MonthlyReport) -> str:
    return json.dumps(result.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n"


# ---------------------------------------------------------------------------- HTML
# The page and its charts are templates (casectl/templates, escaped by Jinja2); the charts'
# geometry is computed here.

RED, YELLOW, PLAIN, MUTED, TEAL = "#c8102e", "#e0a100", "#5b7fa6", "#b8c2cc", "#2a9d8f"
MAX_BARS = 60

_pages = jinja2.Environment(
    loader=jinja2.PackageLoader("casectl"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_pages.globals.update(red=RED, yellow=YELLOW, plain=PLAIN, muted=MUTED, teal=TEAL)
_pages.filters["px"] = "{:.1f}".format


class Mark(NamedTuple):
    """A bar, or a dot (without width and height), with its tooltip."""

    x: float
    y: float
    title: str
    colour: str
    width: float = 0
    height: float = 0


class Slot(NamedTuple):
    """A month on a trend chart: its label's x, its label, its bars."""

    x: float
    label: str
    bars: list[Mark]


class Row(NamedTuple):
    """A line of the ranking chart: a parent's heading, or a unit and its score's bar."""

    y: int
    heading: str | None = None
    label: str = ""
    colour: str = PLAIN
    width: float | None = None  # the bar's; None: not ranked
    why: str = ""
    tail: str = ""


@dataclass
class Chart:
    """A chart's size, the plot inside its margins, and what is drawn on it."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int = 40
    row: int = 20  # the ranking's line height
    grid: list[tuple[float, str]] = field(default_factory=list)  # y, label
    slots: list[Slot] = field(default_factory=list)
    lines: list[tuple[float, str, str]] = field(default_factory=list)  # y, colour, name
    series: list[list[Mark]] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    @property
    def plot_w(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> int:
        return self.height - self.top - self.bottom

    def month_axis(self, points: Sequence[TrendPoint]) -> list[tuple[float, TrendPoint]]:
        slot = self.plot_w / max(1, len(points))
        return [(self.left + i * slot + slot / 2, p) for i, p in enumerate(points)]


def _ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `top`."""
    if top <= 0:
        return [0, 1]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(top / step) + 1)]


def trend_counts_chart(points: Sequence[TrendPoint]) -> Chart:
    """Cases received and completed per month, as paired bars."""
    c = Chart(width=720, height=260, left=48, right=12, top=28)
    ticks = _ticks(max([1, *(max(p.received, p.completed) for p in points)]))
    scale = c.plot_h / ticks[-1]
    c.grid = [(c.top + c.plot_h - t * scale, f"{t:g}") for t in ticks]
    bar = c.plot_w / max(1, len(points)) * 0.36
    for x, p in c.month_axis(points):
        bars = []
        for j, (value, colour, name) in enumerate(
            ((p.received, MUTED, "received"), (p.completed, PLAIN, "completed"))
        ):
            h = value * scale  # the two bars meet at the month's middle
            y = c.top + c.plot_h - h
            bars.append(Mark(x - bar + j * bar, y, f"{p.month} {name}: {value}", colour, bar, h))
        c.slots.append(Slot(x, p.month[2:], bars))
    return c


def trend_rates_chart(
    points: Sequence[TrendPoint], lines: Sequence[tuple[str, str, float]]
) -> Chart:
    """On-time and satisfaction rates per month, with the formula's thresholds as dashed
    lines. The axis starts at 50 % (lower when a rate falls below it)."""
    c = Chart(width=720, height=260, left=48, right=150, top=28)
    rates = [r for p in points for r in (p.on_time_rate, p.satisfaction_rate) if r is not None]
    low = min(0.5, math.floor(min(rates, default=1) * 4) / 4)

    def y_of(rate: float) -> float:
        return c.top + c.plot_h - (rate - low) / (1 - low) * c.plot_h

    step = 0.1 if low >= 0.5 else 0.25
    ticks = [low + k * step for k in range(round((1 - low) / step) + 1)]
    c.grid = [(y_of(t), f"{round(t * 100):d}%") for t in ticks]
    c.lines = [(y_of(rate), colour, name) for name, colour, rate in lines]
    axis = c.month_axis(points)
    for name, rate, colour in (
        ("on time", "on_time_rate", PLAIN),
        ("satisfied", "satisfaction_rate", TEAL),
    ):
        c.series.append(
            [
                Mark(x, y_of(value), f"{p.month} {name}: {value * 100:.1f}%", colour)
                for x, p in axis
                if (value := getattr(p, rate)) is not None
            ]
        )
    c.slots = [Slot(x, p.month[2:], []) for x, p in axis]
    return c


def ranking_chart(units: Sequence[Ranked]) -> Chart:
    """One bar per unit (its score), grouped by parent in rank order, coloured by flag."""
    shown = units[:MAX_BARS]
    top, row = 24, 20
    lines = len(shown) + len(dict.fromkeys(r.unit.parent_id for r in shown))
    c = Chart(width=720, height=top + row * lines + 10, left=190, right=150, top=top, row=row)
    y = c.top
    current = None
    for r in shown:
        if r.unit.parent_id != current:
            current = r.unit.parent_id
            c.rows.append(Row(y, heading=current))
            y += row
        colour = RED if r.banner is Banner.RED else YELLOW if r.banner is Banner.YELLOW else PLAIN
        tail = "" if r.score is None else str(r.score)
        c.rows.append(
            Row(
                y,
                label=f"{r.rank}. {r.unit.org_id}" if r.rank else f"–  {r.unit.org_id}",
                colour=colour,
                width=None if r.score is None else float(r.score) / 100 * c.plot_w,
                why="; ".join(r.reasons),
                tail=f"{tail}  {r.banner.label.split()[0]}" if r.banner else tail,
            )
        )
        y += row
    return c


class CohortTable(NamedTuple):
    """A cohort formula's month on the flags page: its name, version, rate labels, and
    per unit its id, flag (class, label) and cells (each rate with its counts, then the score)."""

    name: str
    version: str
    labels: list[str]
    rows: list[tuple[str, str, str, list[str]]]


def cohort_table(formula: RateFormula, units: Sequence[RatedUnit]) -> CohortTable:
    rows = []
    for r in units:
        cells = []
        for rate in formula.rates:
            value = r.rates[rate.key]
            num, den = getattr(r.unit, rate.numerator), getattr(r.unit, rate.denominator)
            cells.append(f"{pct(None if value is None else float(value))} ({num}/{den})")
        cells.append("–" if r.score is None else str(r.score))
        flag = (r.banner.value, r.banner.label) if r.banner else ("", "")
        rows.append((r.org_id, *flag, cells))
    return CohortTable(formula.name, formula.version, [x.label for x in formula.rates], rows)


def to_html(result: MonthlyReport, cohorts: Sequence[CohortTable] = ()) -> str:
    f = result.formula
    units = result.units

    def total(measure: str) -> int:
        return sum(getattr(r.unit, measure) for r in units)

    completed, rated = total("completed"), total("rated")
    cards = [
        (_PLURAL[result.level], str(len(units))),
        ("received", str(total("received"))),
        ("completed", str(completed)),
        ("on time", pct(total("completed_on_time") / completed if completed else None)),
        ("satisfied", pct(total("satisfied") / rated if rated else None)),
        ("红旗 commended", str(sum(r.banner is Banner.RED for r in units))),
        ("黄旗 warned", str(sum(r.banner is Banner.YELLOW for r in units))),
    ]
    thresholds = [
        (f"红旗 ≥ {float(f.red_on_time) * 100:g}%", RED, float(f.red_on_time)),
        (f"黄旗 < {float(f.yellow_on_time) * 100:g}% on time", YELLOW, float(f.yellow_on_time)),
        (
            f"黄旗 < {float(f.yellow_satisfaction) * 100:g}% satisfied",
            YELLOW,
            float(f.yellow_satisfaction),
        ),
    ]
    return _pages.get_template("monthly.html").render(
        report=result,
        level=_PLURAL[result.level],
        source=_SOURCES[result.counted_from],
        cards=cards,
        counts=trend_counts_chart(result.trend),
        rates=trend_rates_chart(result.trend, thresholds),
        ranking=ranking_chart(units),
        more=len(units) - MAX_BARS,
        columns=[c for c in COLUMNS if c.header],
        thresholds=f.model_dump(mode="json"),
        cohorts=cohorts,
    )
