"""The monthly ranking against a real PostgreSQL: measures from ledger rows written here
(and one case taken through the decider and the event store until it goes red), the
month cut in Asia/Shanghai, flags, the trend, and `casectl report monthly` in a
subprocess (table, CSV, JSON, HTML; bad month, empty month).

The database is shared with other tests: every test ranks units of its own district."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from activities.contract import EventBatch
from activities.reports import choose_source, monthly_measures, trend
from activities.store import GENESIS, append, event_hash
from casectl.report import to_html
from domain.commands import CheckDeadlines, parse_command, parse_open_case
from domain.decider import apply_batch, decide, open_case
from domain.events import Event
from domain.ranking import (
    FLAGS_2026_1,
    Banner,
    MonthlyReport,
    RankLevel,
    TrendPoint,
    UnitMeasures,
    assess,
    month_bounds,
    within,
)
from domain.state import CaseState, record
from policies import POLICY_2026_2
from support import KEYRING, actor, casectl, report

CST = timezone(timedelta(hours=8))
MONTH = "2031-03"  # far from the dates other tests write
TZ = "Asia/Shanghai"


def at(text: str) -> datetime:
    """A local time in the office's timezone: '03-10 09:00' is 2031-03-10 09:00 +08:00."""
    return datetime.fromisoformat(f"2031-{text}:00+08:00")


class Orgs:
    """A district of this test's own: streets S1, S2; communities C11, C12 …; grids G111 …"""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.district = f"D-{self.tag}"

    def street(self, s: int) -> str:
        return f"S-{self.tag}-{s}"

    def community(self, s: int, c: int) -> str:
        return f"C-{self.tag}-{s}{c}"

    def grid(self, s: int, c: int, g: int) -> str:
        return f"G-{self.tag}-{s}{c}{g}"

    def location(self, s: int, c: int, g: int = 1) -> dict[str, str]:
        return {
            "district_id": self.district,
            "street_id": self.street(s),
            "community_id": self.community(s, c),
            "grid_id": self.grid(s, c, g),
        }


async def add_case(
    pool: asyncpg.Pool,
    where: dict[str, str],
    opened: datetime,
    archived: datetime | None = None,
    *,
    outcome: str = "completed",
    on_time: bool = True,
    escalations: int = 0,
    reopens: int = 0,
    returns: int = 0,
    satisfaction: str | None = "satisfied",
    resolved: datetime | None = None,
) -> str:
    """A case as the read model and the ledger hold it (without its events)."""
    case_id = f"case-test-{uuid.uuid4().hex[:16]}"
    await pool.execute(
        """INSERT INTO cases (case_id, version, step, flag, category, source, grid_id,
               community_id, street_id, district_id, reopen_count, escalation_count,
               return_count, opened_at, updated_at, archived_at, outcome, state)
           VALUES ($1, 9, $2, 'green', 'public_facilities', 'visit', $3, $4, $5, $6, $7, $8,
                   $9, $10, $11, $12, $13, '{}')""",
        case_id,
        "archive" if archived else "resolve",
        where["grid_id"],
        where["community_id"],
        where["street_id"],
        where["district_id"],
        reopens,
        escalations,
        returns,
        opened,
        archived or opened,
        archived,
        outcome if archived else None,
    )
    if archived is not None:
        await pool.execute(
            """INSERT INTO ledger (case_id, outcome, source, category, grid_id, community_id,
                   street_id, district_id, opened_at, resolved_at, archived_at, on_time,
                   escalation_count, reopen_count, return_count, satisfaction, policy_version)
               VALUES ($1, $2, 'visit', 'public_facilities', $3, $4, $5, $6, $7, $8, $9, $10,
                       $11, $12, $13, $14, 'test')""",
            case_id,
            outcome,
            where["grid_id"],
            where["community_id"],
            where["street_id"],
            where["district_id"],
            opened,
            resolved
            if resolved
            else (opened + timedelta(hours=6) if outcome == "completed" else None),
            archived,
            on_time,
            escalations,
            reopens,
            returns,
            satisfaction,
        )
    return case_id


async def red_case_through_the_store(pool: asyncpg.Pool, where: dict[str, str]) -> str:
    """A minor case (policy 2026.2) the community misses, the street misses and the
    district misses (red on 03-13), resolved and archived after all: every event decided
    by the domain and appended by the event store, which writes `cases`, `ledger` and
    `case_events`."""
    payload = report(
        uuid.uuid4().hex[:12], location=where, reported_at=at("03-02T09:00").isoformat()
    )
    case = parse_open_case(payload)
    case_id = f"case-hotline_12345-{case.source_ref}"
    grid_worker = actor("grid_worker", where["grid_id"], "gw-r")
    admin = actor("community_admin", where["community_id"], "ca-r")
    officer = actor("district_officer", where["district_id"], "do-r")
    resident = actor("resident", where["grid_id"], "res-1")
    steps: list[tuple[str, Any, datetime]] = [
        (
            "dispatch",
            {"actor": admin, "severity": "minor", "handling_class": "joint"},
            at("03-02T09:10"),
        ),
        ("claim", {"actor": grid_worker}, at("03-02T09:11")),
        ("check_in", {"actor": grid_worker}, at("03-02T09:15")),
        (
            "record_deliberation",
            {"actor": grid_worker, "participants": ["网格员"], "decision": "联系物业"},
            at("03-02T10:00"),
        ),
        ("tick", None, at("03-03T09:10")),  # community's day gone: to the street
        ("tick", None, at("03-08T09:10")),  # street's 5 days gone: to the district
        ("tick", None, at("03-13T09:10")),  # district's 5 days gone: red
        ("report_resolution", {"actor": officer, "summary": "修好了"}, at("03-14T10:00")),
        (
            "record_feedback",
            {"actor": resident, "accepted": True, "satisfaction": "satisfied"},
            at("03-14T12:00"),
        ),
        (
            "record_revisit",
            {"actor": officer, "satisfaction": "basically_satisfied"},
            at("03-16T10:00"),
        ),
    ]
    state: CaseState | None = None

    async def record_(events: list[Event]) -> CaseState:
        """Number the events, fold them in and append them as the workflow would."""
        nonlocal state
        state, numbered = apply_batch(state, events)
        archived = record(state) if state.archived else None
        batch = EventBatch(
            case_id=case_id, run_id="r", events=numbered, state=state, record=archived
        )
        await append(pool, batch, KEYRING)
        return state

    current = await record_(open_case(case_id, case, at("03-02T09:00"), POLICY_2026_2))
    for name, body, now in steps:
        command = CheckDeadlines() if name == "tick" else parse_command(name, body)
        current = await record_(decide(current, command, now, POLICY_2026_2))
    assert current.archived and current.flag.value == "red"
    return case_id


async def measures(pool: asyncpg.Pool, level: RankLevel, month: str) -> list[UnitMeasures]:
    """The month's units from the summary, checked against the ledger's own rows."""
    summary = await monthly_measures(pool, level, month, TZ, "summary")
    ledger = await monthly_measures(pool, level, month, TZ, "ledger")
    assert sorted(summary, key=repr) == sorted(ledger, key=repr)
    return summary


async def trends(
    pool: asyncpg.Pool, month: str, months: int, scope: tuple[str, str] | None = None
) -> list[TrendPoint]:
    """The trend from the summary, checked against the ledger's own rows."""
    summary = await trend(pool, month, months, TZ, "summary", scope)
    assert summary == await trend(pool, month, months, TZ, "ledger", scope)
    return summary


def one(units: list[UnitMeasures], org: str) -> UnitMeasures:
    [unit] = [u for u in units if u.org_id == org]
    return unit


async def test_measures_of_a_month_cut_in_office_time(pool: asyncpg.Pool) -> None:
    o = Orgs()
    c11, c12 = o.location(1, 1), o.location(1, 2)
    # C11: received in March = opened 03-01 00:00 local (Feb 28 16:00 UTC) … 03-31 23:59
    await add_case(pool, c11, at("03-01T00:00"), at("03-03T00:00"), resolved=at("03-01T12:00"))
    await add_case(
        pool,
        c11,
        at("03-05T08:00"),
        at("03-09T08:00"),
        on_time=False,
        escalations=1,
        satisfaction="basically_satisfied",
        resolved=at("03-06T20:00"),
    )
    await add_case(
        pool,
        c11,
        at("03-06T08:00"),
        at("03-31T23:59"),
        reopens=1,
        satisfaction="very_satisfied",
        resolved=at("03-07T08:00"),
    )
    await add_case(pool, c11, at("03-20T08:00"))  # still open
    await add_case(pool, c11, at("03-31T23:00"), at("04-02T10:00"))  # archived in April
    # opened in February, archived in March: archived, not received
    await add_case(
        pool, c11, at("02-27T10:00"), at("03-01T00:00"), outcome="withdrawn", satisfaction=None
    )
    await add_case(
        pool,
        c11,
        at("02-20T10:00"),
        at("03-10T10:00"),
        outcome="merged",
        returns=1,
        satisfaction="unsatisfied",
    )
    # the edges: Feb 28 23:59 local and Apr 1 00:00 local are not March (in UTC they are)
    await add_case(pool, c11, at("02-10T10:00"), at("02-28T23:59"))
    await add_case(pool, c11, at("02-10T10:00"), at("04-01T00:00"))
    await add_case(pool, c11, at("04-01T00:00"))
    red_id = await red_case_through_the_store(pool, c12)

    units = [
        u for u in await measures(pool, RankLevel.COMMUNITY, MONTH) if u.district_id == o.district
    ]
    assert sorted(u.org_id for u in units) == [o.community(1, 1), o.community(1, 2)]
    u = one(units, o.community(1, 1))
    assert u.street_id == o.street(1) and u.parent_id == o.street(1) and u.grid_id is None
    assert (u.received, u.archived, u.completed, u.completed_on_time) == (5, 5, 3, 2)
    assert (u.escalated, u.reopened, u.returned) == (1, 1, 1)
    # rated: three completed and the merged one; content (domain.formulas.SATISFIED):
    # basically satisfied, very satisfied and satisfied (not the merged one's unsatisfied)
    assert (u.rated, u.satisfied, u.red_cases) == (4, 3, 0)
    # resolved after 12 h, 36 h and 24 h: 24 h on average
    assert (u.resolved, u.avg_resolve_hours) == (3, 24.0)
    assert (u.on_time_rate, u.satisfaction_rate, u.completion_rate) == (0.6667, 0.75, 0.6)

    # the case that went red through the store: the ledger row the store wrote, its flag
    red = one(units, o.community(1, 2))
    ledger = await pool.fetchrow("SELECT * FROM ledger WHERE case_id = $1", red_id)
    assert ledger["on_time"] is False and ledger["escalation_count"] == 2
    assert ledger["final_level"] == "district" and ledger["satisfaction"] == "basically_satisfied"
    assert (red.received, red.completed, red.completed_on_time, red.escalated) == (1, 1, 0, 1)
    assert (red.rated, red.satisfied, red.red_cases) == (1, 1, 1)  # basically satisfied
    # red in March, archived in March: not red in April; red in February? not yet
    for month, expected in (("2031-02", []), ("2031-04", [])):
        later = await measures(pool, RankLevel.COMMUNITY, month)
        assert [x.red_cases for x in later if x.community_id == o.community(1, 2)] == expected

    # the same cases at grid and street level
    grids = [u for u in await measures(pool, RankLevel.GRID, MONTH) if u.district_id == o.district]
    assert sorted((g.org_id, g.parent_id) for g in grids) == [
        (o.grid(1, 1, 1), o.community(1, 1)),
        (o.grid(1, 2, 1), o.community(1, 2)),
    ]
    streets = [
        u for u in await measures(pool, RankLevel.STREET, MONTH) if u.district_id == o.district
    ]
    [s1] = streets
    assert (s1.org_id, s1.parent_id, s1.received, s1.completed, s1.red_cases) == (
        o.street(1),
        o.district,
        6,
        4,
        1,
    )


async def test_a_red_case_still_open_counts_until_archived(pool: asyncpg.Pool) -> None:
    """Red in March and still open: red in March and April, not in February."""
    o = Orgs()
    where = o.location(2, 1)
    case_id = await add_case(pool, where, at("03-01T10:00"))
    await pool.execute("UPDATE cases SET flag = 'red' WHERE case_id = $1", case_id)
    # the red breach as one row with a valid hash chain of its own
    when = at("03-20T10:00")
    payload = {"type": "deadline_breached", "flag": "red", "occurred_at": when.isoformat()}
    digest = event_hash(GENESIS, case_id, 1, "deadline_breached", when.isoformat(), payload)
    await pool.execute(
        """INSERT INTO case_events (case_id, seq, type, payload, occurred_at, run_id,
                                    prev_hash, hash)
           VALUES ($1, 1, 'deadline_breached', $2, $3, 'r', $4, $5)""",
        case_id,
        payload,
        when,
        GENESIS,
        digest,
    )
    counts = {}
    for month in ("2031-02", "2031-03", "2031-04"):
        units = await measures(pool, RankLevel.STREET, month)
        counts[month] = [u.red_cases for u in units if u.district_id == o.district]
    assert counts == {"2031-02": [], "2031-03": [1], "2031-04": [1]}


async def test_flags_from_the_ledger(pool: asyncpg.Pool) -> None:
    """Street 3 ranks four communities: one commended, one warned, one too small."""
    o = Orgs()
    day = at("03-10T09:00")

    async def cases(c: int, n: int, late: int = 0, lukewarm: int = 0) -> None:
        for i in range(n):
            await add_case(
                pool,
                o.location(3, c, 1 + i % 2),
                day - timedelta(days=1),
                day + timedelta(hours=i),
                on_time=i >= late,
                satisfaction="unsatisfied" if i < lukewarm else "satisfied",
            )

    await cases(1, 10)  # perfect
    await cases(2, 10, late=1)  # 90 % on time: ranked second, no flag
    await cases(3, 10, lukewarm=2)  # 80 % satisfied: warned
    await cases(4, 3)  # too few to rank
    units = [
        u for u in await measures(pool, RankLevel.COMMUNITY, MONTH) if u.district_id == o.district
    ]
    ranked = {r.unit.org_id: r for r in assess(units, FLAGS_2026_1)}
    c = [o.community(3, i) for i in range(1, 5)]
    assert [ranked[x].rank for x in c] == [1, 2, 3, None]
    assert [ranked[x].banner for x in c] == [Banner.RED, None, Banner.YELLOW, None]
    assert ranked[c[0]].score == 100 and ranked[c[1]].score == 96
    assert ranked[c[2]].reasons == ["satisfaction 80.0% < 90%"]
    assert all(r.peers == 3 for r in ranked.values())
    # grids rank within their community
    grids = [u for u in await measures(pool, RankLevel.GRID, MONTH) if u.district_id == o.district]
    assert len(within(assess(grids), c[0])) == 2


async def test_trend_of_a_scope(pool: asyncpg.Pool) -> None:
    o = Orgs()
    where = o.location(4, 1)
    await add_case(pool, where, at("01-10T10:00"), at("01-12T10:00"))
    await add_case(pool, where, at("01-30T10:00"), at("03-02T10:00"), on_time=False)
    await add_case(pool, where, at("03-03T10:00"))
    points = await trends(pool, MONTH, 4, ("street", o.street(4)))
    assert [p.month for p in points] == ["2030-12", "2031-01", "2031-02", "2031-03"]
    assert [(p.received, p.completed, p.completed_on_time) for p in points] == [
        (0, 0, 0),
        (2, 1, 1),
        (0, 0, 0),
        (1, 1, 0),
    ]
    for kind, org in (
        ("district", o.district),
        ("community", o.community(4, 1)),
        ("grid", o.grid(4, 1, 1)),
    ):
        same = await trends(pool, MONTH, 4, (kind, org))
        assert [p.received for p in same] == [0, 2, 0, 1]
    everything = await trends(pool, MONTH, 4)
    assert all(a.received >= b.received for a, b in zip(everything, points, strict=True))


# ---------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli_env(pg_url: str, tmp_path: Path) -> dict[str, str]:
    empty = tmp_path / "no-stack"
    empty.mkdir()
    return {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": pg_url,
        "CASELOOP_DATA": str(empty),
        "COLUMNS": "250",
        # this checkout's modules, whichever checkout the installed casectl came from
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


async def test_casectl_report_monthly_writes_table_csv_json_and_html(
    pool: asyncpg.Pool, cli_env: dict[str, str], tmp_path: Path
) -> None:
    o = Orgs()
    for c, late in ((1, 0), (2, 3)):
        for i in range(6):
            await add_case(
                pool,
                o.location(5, c),
                at("03-05T10:00"),
                at(f"03-{10 + i}T10:00"),
                on_time=i >= late,
            )
    await add_case(pool, o.location(5, 1), at("02-05T10:00"), at("02-07T10:00"))
    files = {kind: tmp_path / f"ranking.{kind}" for kind in ("csv", "json", "html")}
    code, out, err = await casectl(
        cli_env,
        "report",
        "monthly",
        "--month",
        MONTH,
        "--level",
        "community",
        "--org",
        o.street(5),
        "--months",
        "3",
        *(arg for kind, path in files.items() for arg in (f"--{kind}", str(path))),
    )
    assert code == 0, err
    c1, c2 = o.community(5, 1), o.community(5, 2)
    table = out.splitlines()
    row1 = next(line for line in table if f" {c1} " in line)
    row2 = next(line for line in table if f" {c2} " in line)
    assert "红旗 commended" in row1 and "1/2" in row1 and "100.0%" in row1
    assert "黄旗 warned" in row2 and "on-time 50.0% < 80%" in row2
    assert "flags-2026.1" in out and "2 communities: 1 红旗, 1 黄旗" in out

    raw = files["csv"].read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # a spreadsheet program reads it as UTF-8
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert [(r["org_id"], r["rank"], r["flag"]) for r in rows] == [
        (c1, "1", "red"),
        (c2, "2", "yellow"),
    ]
    assert rows[0]["formula_version"] == "flags-2026.1" and "red_on_time=0.95" in rows[0]["formula"]
    assert rows[0]["formula_name"] == "flags"
    assert rows[1]["on_time_rate"] == "0.5" and rows[1]["completed"] == "6"

    data = json.loads(files["json"].read_text(encoding="utf-8"))
    assert data["formula"]["version"] == "flags-2026.1" and data["formula"]["min_completed"] == 5
    assert data["formula_name"] == "flags"
    assert data["timezone"] == TZ and data["scope_level"] == "street"
    assert data["period_start"] == "2031-03-01T00:00:00+08:00"
    assert [u["banner"] for u in data["units"]] == ["red", "yellow"]
    assert [p["month"] for p in data["trend"]] == ["2031-01", "2031-02", "2031-03"]
    assert [p["completed"] for p in data["trend"]] == [0, 1, 12]

    # the same report counted from the ledger's rows
    again = tmp_path / "again.json"
    code, _, err = await casectl(
        cli_env,
        "report",
        "monthly",
        "--month",
        MONTH,
        "--org",
        o.street(5),
        "--months",
        "3",
        "--from-ledger",
        "--json",
        str(again),
    )
    assert code == 0, err
    recount = json.loads(again.read_text(encoding="utf-8"))
    assert (data["counted_from"], recount["counted_from"]) == ("summary", "ledger")
    assert (recount["units"], recount["trend"]) == (data["units"], data["trend"])

    html = files["html"].read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(html)
    parser.close()
    assert parser.tags.count("svg") == 3 and "table" in parser.tags
    assert (
        "flags-2026.1" in html
        and "<script" not in html
        and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
        and "https://" not in html
    )
    for svg in re.findall(r"<svg.*?</svg>", html, flags=re.S):
        ET.fromstring(svg)  # each chart is well-formed SVG
    assert c1 in html and "红旗" in html


def test_the_html_report_shows_markup_in_a_name_as_text() -> None:
    """Org ids come from the case reports: markup or an ampersand in one is escaped in the
    page, its charts and its table (shown as written, never run)."""
    street, community = "S-&<em>", "C-<script>alert(1)</script>&"
    units = [
        UnitMeasures(
            level=RankLevel.COMMUNITY,
            district_id="D-escape",
            street_id=street,
            community_id=f"{community}{i}",
            received=6,
            archived=6,
            completed=6,
            completed_on_time=6 - i,
            rated=6,
            satisfied=6,
        )
        for i in range(3)
    ]
    start, end = month_bounds(MONTH, TZ)
    page = to_html(
        MonthlyReport(
            month=MONTH,
            level=RankLevel.COMMUNITY,
            scope=street,
            scope_level="street",
            timezone=TZ,
            counted_from="summary",
            period_start=start,
            period_end=end,
            formula=FLAGS_2026_1,
            rules=FLAGS_2026_1.rules(),
            units=assess(units, FLAGS_2026_1),
            trend=[TrendPoint(month=MONTH, received=18, completed=18)],
            generated_at=at("04-01T09:00"),
        )
    )
    assert "<script" not in page and "<em>" not in page and "&<" not in page
    assert "C-&lt;script&gt;alert(1)&lt;/script&gt;&amp;0" in page and "S-&amp;&lt;em&gt;" in page
    parser = _Tags()
    parser.feed(page)
    parser.close()
    assert "script" not in parser.tags and "em" not in parser.tags
    text = "".join(parser.text)
    assert f" under {street} (street)" in text  # the title and the heading
    # each unit in the ranking chart (its rank before it) and in the table
    assert all(text.count(f"{community}{i}") == 2 for i in range(3))
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.S):
        ET.fromstring(svg)  # an unescaped & or < would not parse


async def test_casectl_report_monthly_refuses_a_bad_month_and_says_when_nothing_is_there(
    pool: asyncpg.Pool, cli_env: dict[str, str], tmp_path: Path
) -> None:
    policy = tmp_path / "urumqi.json"
    policy.write_text('{"version": "urumqi-1", "timezone": "Asia/Urumqi"}', encoding="utf-8")
    no_db = {**cli_env, "DATABASE_URL": "postgresql://x@/none?host=/nonexistent"}
    e_json = str(tmp_path / "e.json")
    runs = await asyncio.gather(
        casectl(cli_env, "report", "monthly", "--month", "2031-13"),
        casectl(cli_env, "report", "monthly", "--month", "2001-01", "--json", e_json),
        casectl(cli_env, "report", "monthly", "--month", MONTH, "--org", "S-nobody-here"),
        casectl(no_db, "report", "monthly", "--month", MONTH),
        casectl({**cli_env, "CASE_POLICY": str(policy)}, "report", "monthly", "--month", "2001-01"),
    )
    (bad, _, bad_err), (empty, empty_out, _), (nobody, nobody_out, _) = runs[:3]
    (no_db_code, _, no_db_err), (zone, zone_out, zone_err) = runs[3:]
    assert bad == 2 and "--month" in bad_err and "YYYY-MM" in bad_err and "Traceback" not in bad_err
    assert len(bad_err.strip().splitlines()) == 1
    assert empty == 0 and "no communities with cases" in empty_out and "2001-01" in empty_out
    assert json.loads((tmp_path / "e.json").read_text(encoding="utf-8"))["units"] == []
    assert nobody == 0 and "at or under S-nobody-here" in nobody_out
    assert no_db_code == 2 and "cannot reach PostgreSQL (DATABASE_URL)" in no_db_err
    # an office in another timezone than the summary's: counted from the ledger, said so
    assert zone == 0 and "(Asia/Urumqi)" in zone_out
    assert "summary counts months in Asia/Shanghai" in zone_err and "report_rebuild" in zone_err


async def test_the_summary_kept_by_triggers_is_what_a_rebuild_counts(pool: asyncpg.Pool) -> None:
    """Over every row the suite has written so far (the workflow tests' cases included):
    report_months as the triggers kept it equals report_rebuild() from ledger and cases."""
    query = (
        "SELECT * FROM report_months ORDER BY month, district_id, street_id, community_id, grid_id"
    )
    async with pool.acquire() as conn:
        kept = [dict(r) for r in await conn.fetch(query)]
        tx = conn.transaction()
        await tx.start()
        try:
            assert await conn.fetchval("SELECT report_rebuild()") == len(kept)
            assert [dict(r) for r in await conn.fetch(query)] == kept
        finally:
            await tx.rollback()
    assert kept


async def test_the_summary_is_used_only_in_its_own_timezone(pool: asyncpg.Pool) -> None:
    assert await choose_source(pool, TZ, from_ledger=False) == "summary"
    assert await choose_source(pool, TZ, from_ledger=True) == "ledger"
    assert await choose_source(pool, "Asia/Urumqi", from_ledger=False) == "ledger"
