"""`casectl report monthly`: the monthly red/yellow flag ranking (红黄旗) of grids,
communities or streets from the ledger, as a table, CSV, JSON and an HTML page a street
office opens offline (charts drawn here as inline SVG: no script, nothing fetched).

The flags follow a versioned formula (domain/ranking.py); every output carries its
version and thresholds, so the flags can be recomputed from the counts beside them."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import asyncpg
import click
from rich import box
from rich.console import Console
from rich.table import Table

from activities import reports
from casectl.main import CannotRun, database, run, settings
from caseloop.settings import SettingsError
from domain.ranking import (
    CURRENT_FORMULA,
    Banner,
    MonthlyReport,
    Ranked,
    RankLevel,
    TrendPoint,
    assess,
    locate,
    month_bounds,
    parse_month,
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
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path))
def monthly(
    month: str,
    level: str,
    org: str | None,
    months: int,
    from_ledger: bool,
    csv_file: Path | None,
    json_file: Path | None,
    html_file: Path | None,
) -> None:
    """Rank the units of a level for a month: cases received, completed (on time),
    escalated, reopened, returned, satisfaction, time to resolve, red cases; the red
    flag (红旗, commended) and the yellow flag (黄旗, warned) by the current formula."""
    try:
        parse_month(month)
    except ValueError as exc:
        raise CannotRun(f"--month: {exc}") from None
    s = settings()
    try:
        timezone = s.policy().timezone
    except SettingsError as exc:
        raise CannotRun(str(exc)) from None
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

    async def _report(pool: asyncpg.Pool) -> MonthlyReport:
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
    for path, render, option in (
        (csv_file, to_csv, "--csv"),
        (json_file, to_json, "--json"),
        (html_file, to_html, "--html"),
    ):
        if path is None:
            continue
        try:
            # utf-8 with a byte order mark for the CSV: spreadsheet programs in China read
            # a CSV without it as GBK
            path.write_text(render(result), encoding="utf-8-sig" if option == "--csv" else "utf-8")
        except OSError as exc:
            raise CannotRun(f"{option}: cannot write {path}: {exc.strerror or exc}") from None
        out.print(f"wrote {path}")


# ---------------------------------------------------------------------------- text


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def flag_text(r: Ranked) -> str:
    return r.banner.label if r.banner else ""


def _cells(r: Ranked, *, html: bool) -> list[str]:
    """One unit's row, for the terminal table and (with the number of rated cases, and
    the score exactly as computed) for the HTML report."""
    u = r.unit
    if html:
        score = "–" if r.score is None else str(r.score)
    else:
        score = _num(None if r.score is None else float(r.score))
    return [
        u.parent_id,
        u.org_id,
        f"{r.rank}/{r.peers}" if r.rank else "–",
        str(u.received),
        str(u.completed),
        pct(u.on_time_rate),
        str(u.escalated),
        str(u.reopened),
        str(u.returned),
        *([str(u.rated)] if html else []),
        pct(u.satisfaction_rate),
        _num(u.avg_resolve_hours),
        str(u.red_cases),
        score,
        flag_text(r),
        "; ".join(r.reasons),
    ]


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
    numeric = (
        "rank",
        "received",
        "completed",
        "on time",
        "escalated",
        "reopened",
        "returned",
        "satisfied",
        "resolve h",
        "red",
        "score",
    )
    for column in (result.level.parent, result.level.value, *numeric, "flag", "why"):
        right = column in numeric
        table.add_column(column, justify="right" if right else "left", no_wrap=column != "why")
    for r in result.units:
        table.add_row(*_cells(r, html=False))
    out.print(table)
    red = sum(r.banner is Banner.RED for r in result.units)
    yellow = sum(r.banner is Banner.YELLOW for r in result.units)
    out.print(f"{len(result.units)} {_PLURAL[result.level]}: {red} 红旗, {yellow} 黄旗")
    out.print(f"counted from {_SOURCES[result.counted_from]}; formula {result.formula.version}:")
    for rule in result.rules:
        out.print(f"  - {rule}")


# ---------------------------------------------------------------------------- CSV, JSON

CSV_COLUMNS = [
    "month",
    "level",
    "org_id",
    "parent_id",
    "district_id",
    "street_id",
    "community_id",
    "grid_id",
    "received",
    "archived",
    "completed",
    "completed_on_time",
    "on_time_rate",
    "escalated",
    "reopened",
    "returned",
    "rated",
    "satisfied",
    "satisfaction_rate",
    "completion_rate",
    "avg_resolve_hours",
    "red_cases",
    "score",
    "rank",
    "peers",
    "flag",
    "reasons",
    "formula_version",
    "formula",
]


def _formula_text(result: MonthlyReport) -> str:
    """The thresholds in one cell: key=value; …"""
    data = result.formula.model_dump(mode="json")
    weights = data.pop("weights")
    data.update({f"weight_{k}": v for k, v in weights.items()})
    return "; ".join(f"{k}={v}" for k, v in data.items() if k != "version")


def to_csv(result: MonthlyReport) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    formula = _formula_text(result)
    for r in result.units:
        u = r.unit
        writer.writerow(
            {
                **u.model_dump(mode="json", exclude={"level", "resolved", "resolve_seconds"}),
                "month": result.month,
                "level": result.level.value,
                "org_id": u.org_id,
                "parent_id": u.parent_id,
                "score": "" if r.score is None else str(r.score),
                "rank": r.rank or "",
                "peers": r.peers,
                "flag": r.banner.value if r.banner else "",
                "reasons": "; ".join(r.reasons),
                "formula_version": result.formula.version,
                "formula": formula,
            }
        )
    return buffer.getvalue()


def to_json(result: MonthlyReport) -> str:
    return json.dumps(result.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n"


# ---------------------------------------------------------------------------- HTML

RED, YELLOW, PLAIN, MUTED = "#c8102e", "#e0a100", "#5b7fa6", "#b8c2cc"
FONT = 'system-ui, "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", sans-serif'
MAX_BARS = 60


def _ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `top`."""
    if top <= 0:
        return [0, 1]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(top / step) + 1)]


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" style="max-width: 100%; height: auto" '
        f'role="img" aria-label="{escape(label)}" '
        f'font-family="{escape(FONT)}" font-size="12">' + "".join(body) + "</svg>"
    )


def trend_counts_svg(points: Sequence[TrendPoint]) -> str:
    """Cases received and completed per month, as paired bars."""
    width, height, left, right, top, bottom = 720, 260, 48, 12, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = _ticks(max([1, *(max(p.received, p.completed) for p in points)]))
    y_max = ticks[-1]
    body = [f'<text x="{left}" y="16" font-weight="600">cases per month</text>']
    for t in ticks:
        y = top + plot_h - t / y_max * plot_h
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e7eb"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{t:g}</text>'
        )
    slot = plot_w / max(1, len(points))
    bar = slot * 0.36
    for i, p in enumerate(points):
        x0 = left + i * slot + slot * 0.14
        for j, (value, colour, name) in enumerate(
            ((p.received, MUTED, "received"), (p.completed, PLAIN, "completed"))
        ):
            h = value / y_max * plot_h
            body.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{p.month} {name}: {value}</title></rect>'
            )
        body.append(
            f'<text x="{left + i * slot + slot / 2:.1f}" y="{height - bottom + 16}" '
            f'text-anchor="middle" fill="#555">{p.month[2:]}</text>'
        )
    body.append(_legend(width - right - 200, 16, [("received", MUTED), ("completed", PLAIN)]))
    return _svg(width, height, "cases received and completed per month", body)


def trend_rates_svg(points: Sequence[TrendPoint], lines: Sequence[tuple[str, str, float]]) -> str:
    """On-time and satisfaction rates per month, with the formula's thresholds as dashed
    lines. The axis starts at 50 % (lower when a rate falls below it)."""
    width, height, left, right, top, bottom = 720, 260, 48, 150, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    body = [f'<text x="{left}" y="16" font-weight="600">rates per month</text>']
    rates = [r for p in points for r in (p.on_time_rate, p.satisfaction_rate) if r is not None]
    low = min(0.5, math.floor(min(rates, default=1) * 4) / 4)

    def y_of(rate: float) -> float:
        return top + plot_h - (rate - low) / (1 - low) * plot_h

    step = 0.1 if low >= 0.5 else 0.25
    for t in [low + k * step for k in range(round((1 - low) / step) + 1)]:
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y_of(t):.1f}" y2="{y_of(t):.1f}" '
            f'stroke="#e3e7eb"/><text x="{left - 6}" y="{y_of(t) + 4:.1f}" text-anchor="end" '
            f'fill="#555">{round(t * 100):d}%</text>'
        )
    for name, colour, rate in lines:
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y_of(rate):.1f}" '
            f'y2="{y_of(rate):.1f}" stroke="{colour}" stroke-dasharray="4 3">'
            f"<title>{escape(name)}</title></line>"
            f'<text x="{width - right + 4}" y="{y_of(rate) + 4:.1f}" fill="{colour}" '
            f'font-size="11">{escape(name)}</text>'
        )
    slot = plot_w / max(1, len(points))
    series = (("on time", "on_time_rate", PLAIN), ("satisfied", "satisfaction_rate", "#2a9d8f"))
    for name, attr, colour in series:
        coords = []
        for i, p in enumerate(points):
            value = getattr(p, attr)
            if value is None:
                continue
            x, y = left + i * slot + slot / 2, y_of(value)
            coords.append(f"{x:.1f},{y:.1f}")
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">'
                f"<title>{p.month} {name}: {value * 100:.1f}%</title></circle>"
            )
        if len(coords) > 1:
            body.insert(
                len(body) - len(coords),
                f'<polyline points="{" ".join(coords)}" fill="none" stroke="{colour}" '
                f'stroke-width="2"/>',
            )
    for i, p in enumerate(points):
        body.append(
            f'<text x="{left + i * slot + slot / 2:.1f}" y="{height - bottom + 16}" '
            f'text-anchor="middle" fill="#555">{p.month[2:]}</text>'
        )
    body.append(_legend(width - right - 200, 16, [("on time", PLAIN), ("satisfied", "#2a9d8f")]))
    return _svg(width, height, "on-time and satisfaction rates per month", body)


def _legend(x: float, y: float, items: Sequence[tuple[str, str]]) -> str:
    parts = []
    for i, (name, colour) in enumerate(items):
        xi = x + i * 100
        parts.append(
            f'<rect x="{xi:.1f}" y="{y - 9}" width="12" height="10" fill="{colour}"/>'
            f'<text x="{xi + 16:.1f}" y="{y}" fill="#333">{escape(name)}</text>'
        )
    return "".join(parts)


def ranking_svg(units: Sequence[Ranked]) -> str:
    """One bar per unit (its score), grouped by parent in rank order, coloured by flag."""
    shown = list(units[:MAX_BARS])
    row, left, right, top = 20, 190, 150, 24
    parents = list(dict.fromkeys(r.unit.parent_id for r in shown))
    height = top + row * (len(shown) + len(parents)) + 10
    width = 720
    plot_w = width - left - right
    body = [
        '<text x="0" y="14" font-weight="600">score (0-100) and flag</text>',
        _legend(width - 330, 14, [("红旗", RED), ("黄旗", YELLOW), ("no flag", PLAIN)]),
    ]
    y = top
    current = None
    for r in shown:
        if r.unit.parent_id != current:
            current = r.unit.parent_id
            body.append(
                f'<text x="0" y="{y + 14}" font-weight="600" fill="#333">{escape(current)}</text>'
            )
            y += row
        colour = RED if r.banner is Banner.RED else YELLOW if r.banner is Banner.YELLOW else PLAIN
        label = f"{r.rank}. {r.unit.org_id}" if r.rank else f"–  {r.unit.org_id}"
        body.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{escape(label)}</text>')
        why = escape("; ".join(r.reasons))
        if r.score is None:
            body.append(
                f'<rect x="{left}" y="{y + 3}" width="{plot_w}" height="{row - 6}" fill="none" '
                f'stroke="{MUTED}" stroke-dasharray="3 3"><title>{why}</title></rect>'
                f'<text x="{left + 6}" y="{y + 14}" fill="#777">not ranked</text>'
            )
        else:
            w = float(r.score) / 100 * plot_w
            body.append(
                f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" '
                f'fill="{colour}"><title>{why}</title></rect>'
            )
        tail = f"{r.score}" if r.score is not None else ""
        if r.banner:
            tail += f"  {r.banner.label.split()[0]}"
        body.append(f'<text x="{left + plot_w + 6}" y="{y + 14}">{escape(tail)}</text>')
        y += row
    return _svg(width, height, "ranking: score and flag of each unit", body)


_CSS = (
    f"body {{ font-family: {FONT}; margin: 24px; color: #222; max-width: 1200px; }}"
    """
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: #555; margin: 0 0 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { border: 1px solid #dde3e8; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 20px; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #e3e7eb; padding: 4px 8px; text-align: right; }
th { background: #f4f6f8; position: sticky; top: 0; }
td.t, th.t { text-align: left; }
tr.yellow td.flag { color: #a77700; font-weight: 600; }
code { background: #f4f6f8; padding: 1px 4px; }
"""
    f"tr.red td.flag {{ color: {RED}; font-weight: 600; }}"
)


def to_html(result: MonthlyReport) -> str:
    f = result.formula
    level = _PLURAL[result.level]
    scope = f" under {result.scope} ({result.scope_level})" if result.scope_level else ""
    scope = scope or (f" under {result.scope}" if result.scope else "")
    units = result.units
    red = sum(r.banner is Banner.RED for r in units)
    yellow = sum(r.banner is Banner.YELLOW for r in units)
    received = sum(r.unit.received for r in units)
    completed = sum(r.unit.completed for r in units)
    on_time = sum(r.unit.completed_on_time for r in units)
    rated = sum(r.unit.rated for r in units)
    satisfied = sum(r.unit.satisfied for r in units)
    cards = [
        (level, str(len(units))),
        ("received", str(received)),
        ("completed", str(completed)),
        ("on time", pct(on_time / completed if completed else None)),
        ("satisfied", pct(satisfied / rated if rated else None)),
        ("红旗 commended", str(red)),
        ("黄旗 warned", str(yellow)),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>红黄旗 {escape(result.month)} {escape(level)}{escape(scope)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>红黄旗 monthly ranking: {escape(level)}{escape(scope)}, {escape(result.month)}</h1>",
        f'<p class="meta">month {escape(result.period_start.isoformat())} to '
        f"{escape(result.period_end.isoformat())} ({escape(result.timezone)}) · counted from "
        f"{escape(_SOURCES[result.counted_from])} · formula "
        f'<code class="formula-version">{escape(f.version)}</code> · generated '
        f"{escape(result.generated_at.isoformat(timespec='seconds'))}</p>",
        '<div class="cards">'
        + "".join(f'<div class="card">{escape(k)}<b>{escape(v)}</b></div>' for k, v in cards)
        + "</div>",
    ]
    if result.trend:
        whose = result.scope or "all units"
        thresholds = [
            (f"红旗 ≥ {float(f.red_on_time) * 100:g}%", RED, float(f.red_on_time)),
            (f"黄旗 < {float(f.yellow_on_time) * 100:g}% on time", YELLOW, float(f.yellow_on_time)),
            (
                f"黄旗 < {float(f.yellow_satisfaction) * 100:g}% satisfied",
                YELLOW,
                float(f.yellow_satisfaction),
            ),
        ]
        parts += [
            f"<h2>Trend over {len(result.trend)} months: {escape(whose)}</h2>",
            '<div class="charts">',
            trend_counts_svg(result.trend),
            trend_rates_svg(result.trend, thresholds),
            "</div>",
        ]
    if units:
        more = len(units) - MAX_BARS
        parts += [
            "<h2>Ranking</h2>",
            ranking_svg(units),
            f"<p class='meta'>{more} more in the table below; narrow with --org</p>"
            if more > 0
            else "",
            "<h2>Measures</h2>",
            _html_table(result),
        ]
    else:
        parts.append(f"<p>No {escape(level)} had cases in {escape(result.month)}.</p>")
    parts += [
        f"<h2>Formula {escape(f.version)}</h2>",
        "<ul>" + "".join(f"<li>{escape(rule)}</li>" for rule in result.rules) + "</ul>",
        "<table><tr><th class='t'>threshold</th><th>value</th></tr>"
        + "".join(
            f"<tr><td class='t'>{escape(k)}</td><td>{escape(str(v))}</td></tr>"
            for k, v in f.model_dump(mode="json").items()
        )
        + "</table>",
        "<p class='meta'>Indicators after seed 000 (稠城街道: 受理数, 完成数, 满意度, "
        "红黄旗竞赛 每月评比排名); time limits after seed 004 (7135). Received: cases opened "
        "in the month; the other counts: cases archived in the month; red: cases overdue at "
        "district level at some moment of the month.</p>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _html_table(result: MonthlyReport) -> str:
    head = [
        result.level.parent,
        result.level.value,
        "rank",
        "received",
        "completed",
        "on time",
        "escalated",
        "reopened",
        "returned",
        "rated",
        "satisfied",
        "resolve h",
        "red",
        "score",
        "flag",
        "why",
    ]
    text_columns = {0, 1, 14, 15}
    rows = [
        "<table><thead><tr>"
        + "".join(
            f"<th class='t'>{escape(h)}</th>" if i in text_columns else f"<th>{escape(h)}</th>"
            for i, h in enumerate(head)
        )
        + "</tr></thead><tbody>"
    ]
    for r in result.units:
        cells = _cells(r, html=True)
        css = r.banner.value if r.banner else ""
        rows.append(
            f"<tr class='{css}'>"
            + "".join(
                f"<td class='t{' flag' if i == 14 else ''}'>{escape(c)}</td>"
                if i in text_columns
                else f"<td>{escape(c)}</td>"
                for i, c in enumerate(cells)
            )
            + "</tr>"
        )
    rows.append("</tbody></table>")
    return "".join(rows)
