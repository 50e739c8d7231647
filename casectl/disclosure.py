"""`casectl disclosure`: the public list of closed cases per community and month (办结公示),
from the ledger: the service, the place down to the community, the times, the outcome and
the satisfaction; nothing personal and no text a resident typed (the same as the
gateway's `GET /requests.json?status=closed`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import click
import jinja2
from rich.table import Table

from casectl.cases import out
from casectl.common import (
    CannotRun,
    catalogue,
    checked_month,
    database,
    policy_timezone,
    run,
    settings,
)
from domain.catalogue import ServiceCatalogue
from domain.ranking import month_bounds

QUERY = """SELECT case_id, category, community_id, street_id, district_id, opened_at,
       archived_at, outcome, on_time, satisfaction
  FROM ledger
 WHERE archived_at >= $1 AND archived_at < $2
   AND $3 IN (community_id, street_id, district_id)
 ORDER BY district_id, street_id, community_id, archived_at, case_id"""

OUTCOMES = {"completed": "办结 completed", "withdrawn": "撤回 withdrawn", "merged": "并案 merged"}
SATISFACTION = {
    "very_satisfied": "非常满意",
    "satisfied": "满意",
    "basically_satisfied": "基本满意",
    "unsatisfied": "不满意",
}
CONTENT = {"very_satisfied", "satisfied", "basically_satisfied"}

_pages = jinja2.Environment(
    loader=jinja2.PackageLoader("casectl"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass
class Community:
    id: str
    street: str
    district: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def content(self) -> str:
        rated = [r for r in self.rows if r["satisfaction_code"] is not None]
        if not rated:
            return "none rated"
        share = sum(r["satisfaction_code"] in CONTENT for r in rated) / len(rated)
        return f"{share:.0%} of {len(rated)} rated"


def took(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


def disclosed(records: list[Any], services: ServiceCatalogue, zone: Any) -> list[Community]:
    """The ledger's rows as the public list: per community, each case's public fields."""
    communities: dict[str, Community] = {}
    for r in records:
        community = communities.setdefault(
            r["community_id"], Community(r["community_id"], r["street_id"], r["district_id"])
        )
        service = services.get(r["category"])
        community.rows.append(
            {
                "case_id": r["case_id"],
                "service_code": r["category"],
                "service": f"{service.name_zh} {service.name_en}" if service else r["category"],
                "opened": r["opened_at"].astimezone(zone).isoformat(timespec="minutes"),
                "closed": r["archived_at"].astimezone(zone).isoformat(timespec="minutes"),
                "took": took(r["archived_at"] - r["opened_at"]),
                "outcome": OUTCOMES.get(r["outcome"], r["outcome"]),
                "on_time": "yes 是" if r["on_time"] else "no 否",
                "satisfaction_code": r["satisfaction"],
                "satisfaction": SATISFACTION.get(r["satisfaction"] or "", "not rated 未评价"),
            }
        )
    return list(communities.values())


@click.command()
@click.option("--month", required=True, help="the month the cases closed, YYYY-MM")
@click.option(
    "--org", required=True, help="a community, or a street or district (all its communities)"
)
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path))
def disclosure(month: str, org: str, html_file: Path | None, json_file: Path | None) -> None:
    """办结公示: the cases closed in a month under an org, per community: service, place,
    times, outcome, satisfaction; nothing personal, no resident's words."""
    checked_month(month)
    s = settings()
    timezone = policy_timezone(s)
    services = catalogue(s)
    start, end = month_bounds(month, timezone)

    async def work() -> list[Any]:
        pool = await database(s)
        try:
            return list(await pool.fetch(QUERY, start, end, org))
        except asyncpg.PostgresError as exc:
            raise CannotRun(f"PostgreSQL refused the query: {exc}") from None
        finally:
            await pool.close()

    communities = disclosed(run(work), services, start.tzinfo)
    total = sum(len(c.rows) for c in communities)
    table = Table(title=f"办结公示 {org} {month}: {total} closed")
    for column in ("community", "case", "service", "closed", "took", "outcome", "satisfaction"):
        table.add_column(column)
    for c in communities:
        for r in c.rows:
            table.add_row(
                c.id, r["case_id"], r["service_code"], r["closed"], r["took"],
                r["outcome"], r["satisfaction"],
            )  # fmt: skip
    out.print(table)
    if json_file is not None:
        body = {
            "month": month,
            "org": org,
            "timezone": timezone,
            "communities": [
                {"community_id": c.id, "street_id": c.street, "district_id": c.district,
                 "cases": c.rows}
                for c in communities
            ],
        }  # fmt: skip
        json_file.write_text(json.dumps(body, ensure_ascii=False, indent=2), encoding="utf-8")
    if html_file is not None:
        page = _pages.get_template("disclosure.html").render(
            month=month,
            scope=org,
            start=start,
            end=end,
            timezone=timezone,
            total=total,
            catalogue=services.version,
            generated=datetime.now(UTC).astimezone(start.tzinfo),
            communities=communities,
        )
        html_file.write_text(page, encoding="utf-8")
