"""The points of party members and volunteers against a real PostgreSQL: cases offered,
taken and completed through the decider and the event store (which writes `case_events`
as the workflow's recording does), read back by activities/points.py, and
`casectl points` in a subprocess (table, JSON, bad input).

The database is shared with other tests: every test uses grids of its own."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from activities.contract import EventBatch
from activities.points import taken_cases
from activities.store import append
from domain.commands import CheckDeadlines, parse_command, parse_open_case
from domain.decider import apply_batch, decide, open_case
from domain.events import Event
from domain.model import Role
from domain.points import POINTS_EVENT_TYPES, CaseEvents, credit, tally, year_bounds
from domain.policy import DeadlinePolicy
from domain.state import CaseState, record
from policies import POLICY_2026_2
from support import KEYRING, actor, casectl, report

TZ = "Asia/Shanghai"
MONTH = "2031-06"  # far from the dates other tests write
ROOT = Path(__file__).resolve().parent.parent


def at(text: str) -> datetime:
    """'06-10T09:00' is 2031-06-10 09:00 +08:00."""
    return datetime.fromisoformat(f"2031-{text}:00+08:00")


def place(tag: str, grid: int = 1) -> dict[str, str]:
    return {
        "grid_id": f"G-{tag}-{grid}",
        "community_id": f"C-{tag}",
        "street_id": f"S-{tag}",
        "district_id": f"D-{tag}",
    }


async def through_the_store(
    pool: asyncpg.Pool,
    where: dict[str, str],
    handler: dict[str, str] | None,
    opened: datetime,
    *,
    satisfaction: str = "satisfied",
    policy: DeadlinePolicy = POLICY_2026_2,
) -> CaseEvents:
    """A minor case offered to its grid and taken by `handler` (a grid worker claims it when
    None), resolved, accepted by the resident, revisited and archived two days after
    `opened`: every event decided by the domain and appended by the event store. Returns
    the case's events as the points read them."""
    case = parse_open_case(
        report(uuid.uuid4().hex[:12], location=where, reported_at=opened.isoformat())
    )
    case_id = f"case-hotline_12345-{case.source_ref}"
    admin = actor("community_admin", where["community_id"], "ca-p")
    grid_worker = actor("grid_worker", where["grid_id"], "gw-p")
    resident = actor("resident", where["grid_id"], "res-1")
    taker = handler or grid_worker
    steps: list[tuple[str, dict[str, Any], int]] = [  # minutes after the opening
        ("dispatch", {"actor": admin, "severity": "minor", "handling_class": "immediate"}, 10),
        ("offer_case", {"actor": admin, "note": "党员志愿者可接"}, 11),
        ("claim", {"actor": taker}, 12),
        ("check_in", {"actor": taker}, 14),
        ("record_deliberation", {"actor": taker, "participants": ["居民"], "decision": "换灯"}, 60),
        ("report_resolution", {"actor": taker, "summary": "灯已换好"}, 120),
        (
            "record_feedback",
            {"actor": resident, "accepted": True, "satisfaction": satisfaction},
            180,
        ),
        ("record_revisit", {"actor": grid_worker, "satisfaction": "very_satisfied"}, 2880),
    ]
    state: CaseState | None = None
    events: list[Event] = []

    async def record_(decided: list[Event]) -> CaseState:
        nonlocal state
        state, numbered = apply_batch(state, decided)
        events.extend(numbered)
        batch = EventBatch(
            case_id=case_id,
            run_id="r",
            events=numbered,
            state=state,
            record=record(state) if state.archived else None,
        )
        await append(pool, batch, KEYRING)
        return state

    current = await record_(open_case(case_id, case, opened, policy))
    for name, body, minutes in steps:
        now = opened + timedelta(minutes=minutes)
        # the clocks first, as the workflow's timer would have fired (a warning of the
        # revisit clock, say)
        due = decide(current, CheckDeadlines(), now, policy)
        if due:
            current = await record_(due)
        current = await record_(decide(current, parse_command(name, body), now, policy))
    assert current.archived
    return CaseEvents(case_id=case_id, grid_id=where["grid_id"], events=events[1:])


async def test_the_points_read_from_case_events_are_those_of_the_recorded_events(
    pool: asyncpg.Pool,
) -> None:
    tag = uuid.uuid4().hex[:8]
    grid, other_grid = place(tag, 1), place(tag, 2)
    volunteer = actor("volunteer", grid["grid_id"], "vol-1")
    member = actor("party_member", grid["grid_id"], "pm-1")
    recorded = [
        # June: two of the volunteer's, one of the party member's; one the resident
        # rejected as unsatisfied, after accepting it; one a grid worker claimed
        await through_the_store(pool, grid, volunteer, at("06-03T09:00")),
        await through_the_store(pool, grid, volunteer, at("06-28T20:00")),
        await through_the_store(pool, grid, member, at("06-10T09:00")),
        await through_the_store(pool, grid, member, at("06-11T09:00"), satisfaction="unsatisfied"),
        await through_the_store(pool, grid, None, at("06-12T09:00")),
        # archived 07-01 00:00 local (June 30 in UTC): July's
        await through_the_store(pool, grid, volunteer, at("06-29T00:00")),
        # March: the party member's year so far
        await through_the_store(pool, grid, member, at("03-03T09:00")),
        # another grid's volunteer
        await through_the_store(
            pool, other_grid, actor("volunteer", other_grid["grid_id"], "vol-9"), at("06-04T09:00")
        ),
    ]
    year_start, _, end = year_bounds(MONTH, TZ)
    read = await taken_cases(pool, grid["grid_id"], year_start, end)
    # the taken cases of the grid archived in the year up to June's end, with the events
    # the points need (never the sealed opening), as they were recorded
    expected = [recorded[i] for i in (0, 1, 2, 3, 6)]
    assert sorted(c.case_id for c in read) == sorted(c.case_id for c in expected)
    by_id = {c.case_id: c for c in recorded}
    for c in read:
        assert c.grid_id == grid["grid_id"]
        assert [e.type for e in c.events] == [
            "case_dispatched",
            "case_claimed",
            "resolution_reported",
            "feedback_recorded",
            "case_archived",
        ]
        wanted = [e for e in by_id[c.case_id].events if e.type in POINTS_EVENT_TYPES]
        assert c.events == wanted
        assert credit(c) == credit(by_id[c.case_id])
    # recomputed from the rows, the figures of the events as recorded
    members = tally(read, grid["grid_id"], MONTH, TZ)
    assert members == tally(recorded, grid["grid_id"], MONTH, TZ)
    assert [(m.member_id, m.role, m.completed, m.points, m.year_points) for m in members] == [
        ("pm-1", Role.PARTY_MEMBER, 1, 1, 2),
        ("vol-1", Role.VOLUNTEER, 2, 6, 6),
    ]
    july = tally(
        await taken_cases(pool, grid["grid_id"], *year_bounds("2031-07", TZ)[::2]),
        grid["grid_id"],
        "2031-07",
        TZ,
    )
    assert [(m.member_id, m.completed, m.points, m.year_points) for m in july] == [
        ("pm-1", 0, 0, 2),
        ("vol-1", 1, 3, 9),
    ]
    assert await taken_cases(pool, f"G-{tag}-9", year_start, end) == []


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
        # the casectl of this checkout
        "PYTHONPATH": str(ROOT),
    }


async def test_casectl_points_prints_the_table_and_the_json(
    pool: asyncpg.Pool, cli_env: dict[str, str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    grid = place(tag)
    g = grid["grid_id"]
    volunteer = actor("volunteer", g, "vol-7")
    member = actor("party_member", g, "pm-7")
    taken = [
        await through_the_store(pool, grid, volunteer, at("06-05T09:00")),
        await through_the_store(pool, grid, member, at("06-06T09:00")),
        await through_the_store(pool, grid, member, at("05-06T09:00")),
    ]
    code, out, err = await casectl(cli_env, "points", "--grid", g, "--month", MONTH)
    assert code == 0, err
    lines = out.splitlines()
    assert f"2031-06 grid {g} — points points-2026.1 (months in {TZ})" in lines[0]
    row_pm = next(line for line in lines if " pm-7 " in f" {line} ")
    row_vol = next(line for line in lines if " vol-7 " in f" {line} ")
    assert row_pm.split()[:2] == ["pm-7", "党员"] and "2/12" in row_pm
    assert taken[1].case_id in row_pm and taken[2].case_id not in row_pm
    assert row_vol.split()[:2] == ["vol-7", "志愿者"] and taken[0].case_id in row_vol
    assert "党员 party member: 1 case(s) completed in 2031-06, 1 points" in out
    assert "志愿者 volunteer: 1 case(s) completed in 2031-06, 3 points" in out
    assert "points scheme points-2026.1:" in out and "+1 when resolved on time" in out

    code, out, err = await casectl(
        cli_env, "points", "--grid", g, "--month", MONTH, "--format", "json"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["scheme"]["version"] == "points-2026.1"
    assert data["scheme"]["party_member"] == {
        "case_points": {"minor": 1},
        "on_time_bonus": 0,
        "year_cap": 12,
    }
    assert data["scheme"]["volunteer"]["case_points"] == {"minor": 2}
    assert (data["grid_id"], data["month"], data["timezone"]) == (g, MONTH, TZ)
    assert data["period_start"] == "2031-06-01T00:00:00+08:00"
    assert data["year_start"] == "2031-01-01T00:00:00+08:00"
    assert [
        (m["member_id"], m["role"], m["completed"], m["on_time"], m["points"], m["year_points"])
        for m in data["members"]
    ] == [("pm-7", "party_member", 1, 1, 1, 2), ("vol-7", "volunteer", 1, 1, 3, 3)]
    assert data["members"][1]["cases"] == [taken[0].case_id] and data["rules"]


async def test_casectl_points_refuses_bad_input_and_says_when_nothing_is_there(
    pool: asyncpg.Pool, cli_env: dict[str, str]
) -> None:
    bad_month = await casectl(cli_env, "points", "--grid", "G-01", "--month", "2031-13")
    bad_grid = await casectl(cli_env, "points", "--grid", "G 01'", "--month", MONTH)
    no_db = await casectl(
        {**cli_env, "DATABASE_URL": "postgresql://x@/none?host=/nonexistent"},
        "points",
        *("--grid", "G-01", "--month", MONTH),
    )
    nobody = await casectl(cli_env, "points", "--grid", "G-nobody-here", "--month", MONTH)
    assert bad_month[0] == 2 and "--month" in bad_month[2] and "YYYY-MM" in bad_month[2]
    assert bad_grid[0] == 2 and "--grid" in bad_grid[2]
    assert no_db[0] == 2 and "cannot reach PostgreSQL (DATABASE_URL)" in no_db[2]
    for _, _, err in (bad_month, bad_grid, no_db):
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, out, _ = nobody
    assert code == 0 and "no party member or volunteer of grid G-nobody-here" in out
    assert "points-2026.1" in out
