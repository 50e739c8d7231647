"""The cohort formulas (contest-2026.1, beijing-12345-2026.1) against a real PostgreSQL:
cases taken through the decider and the event store (which writes `case_events`, `cases`
and `ledger`), the counts recomputed here from `case_events` alone and compared with
`casectl report monthly --formula … --json`; and each defect of the first ranking with a
test that fails on it (basically satisfied, merged and withdrawn reports received, two
groups compared for completion, no time of first contact, breaches counted against the
community where the case happened).

The database is shared with other tests: every test ranks units of its own district."""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from activities.contract import EventBatch
from activities.reports import cohort_measures, monthly_measures
from activities.store import FIRST_CONTACT, append
from domain.commands import CheckDeadlines, parse_command, parse_open_case
from domain.decider import apply_batch, decide, open_case
from domain.events import Event
from domain.formulas import (
    BEIJING_12345_2026_1,
    CONTEST_2026_1,
    COUNT_NAMES,
    SATISFIED,
    CohortMeasures,
    RateFormula,
    holder,
)
from domain.model import Satisfaction
from domain.policy import DeadlinePolicy
from domain.ranking import RankLevel, month_bounds
from domain.state import CaseState, record
from policies import NOTHING_RAISED
from support import KEYRING, POLICY, actor, casectl, lifecycle_batches, report

MIGRATION_007 = (
    Path(__file__).resolve().parents[1] / "activities/migrations/007_cohort_rankings.sql"
).read_text(encoding="utf-8")
MONTH = "2032-05"  # far from the dates other tests write
TZ = "Asia/Shanghai"


@pytest.fixture
def cli_env(pg_url: str, tmp_path: Path) -> dict[str, str]:
    """casectl against the test database, without a `make run` stack."""
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


def at(text: str) -> datetime:
    """A local time: '05-10T09:00' is 2032-05-10 09:00 +08:00."""
    return datetime.fromisoformat(f"2032-{text}:00+08:00")


class Orgs:
    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.district = f"D-{self.tag}"

    def street(self, s: int = 1) -> str:
        return f"S-{self.tag}-{s}"

    def community(self, c: int, s: int = 1) -> str:
        return f"C-{self.tag}-{s}{c}"

    def grid(self, c: int, s: int = 1) -> str:
        return f"G-{self.tag}-{s}{c}1"

    def location(self, c: int, s: int = 1) -> dict[str, str]:
        return {
            "district_id": self.district,
            "street_id": self.street(s),
            "community_id": self.community(c, s),
            "grid_id": self.grid(c, s),
        }


class Story:
    """One case through the decider and the event store, as the workflow records it."""

    def __init__(self, pool: asyncpg.Pool, where: dict[str, str], policy: DeadlinePolicy) -> None:
        self.pool = pool
        self.where = where
        self.policy = policy
        self.state: CaseState | None = None
        ref = uuid.uuid4().hex[:12]
        self.case_id = f"case-hotline_12345-{ref}"
        self.ref = ref
        self.worker = actor("grid_worker", where["grid_id"], f"gw-{where['grid_id']}")
        self.admin = actor("community_admin", where["community_id"], "ca")
        self.street = actor("street_officer", where["street_id"], "so")
        self.resident = actor("resident", where["grid_id"], "res-1")

    async def _record(self, events: list[Event]) -> list[Event]:
        self.state, numbered = apply_batch(self.state, events)
        archived = record(self.state) if self.state.archived else None
        batch = EventBatch(
            case_id=self.case_id, run_id="r", events=numbered, state=self.state, record=archived
        )
        await append(self.pool, batch, KEYRING)
        return numbered

    async def open(self, when: datetime) -> Story:
        payload = report(self.ref, location=self.where, reported_at=when.isoformat())
        await self._record(open_case(self.case_id, parse_open_case(payload), when, self.policy))
        return self

    async def do(self, name: str, body: dict[str, Any], when: datetime) -> Story:
        assert self.state is not None
        await self._record(decide(self.state, parse_command(name, body), when, self.policy))
        return self

    async def ticks(self, until: datetime) -> Story:
        """Every clock that runs out up to `until`, checked every hour."""
        assert self.state is not None
        now = self.state.updated_at
        while now < until:
            now = min(until, now + timedelta(hours=1))
            while events := decide(self.state, CheckDeadlines(), now, self.policy):
                await self._record(events)
        return self

    async def dispatched(self, when: datetime) -> Story:
        body = {"actor": self.admin, "severity": "minor", "handling_class": "immediate"}
        return await self.do("dispatch", body, when)

    async def completed(self, when: datetime, satisfaction: str) -> Story:
        """Claimed and checked in at `when`, resolved, accepted and revisited the same day."""
        w = self.worker
        await self.do("claim", {"actor": w}, when)
        await self.do("check_in", {"actor": w}, when + timedelta(minutes=5))
        decision = {"actor": w, "participants": ["网格员"], "decision": "换灯"}
        await self.do("record_deliberation", decision, when + timedelta(minutes=10))
        resolution = {"actor": w, "summary": "已修"}
        await self.do("report_resolution", resolution, when + timedelta(hours=1))
        feedback = {"actor": self.resident, "accepted": True, "satisfaction": satisfaction}
        await self.do("record_feedback", feedback, when + timedelta(hours=2))
        revisit = {"actor": w, "satisfaction": satisfaction, "checklist": NOTHING_RAISED}
        return await self.do("record_revisit", revisit, when + timedelta(hours=3))


async def story(
    pool: asyncpg.Pool, where: dict[str, str], opened: datetime, policy: DeadlinePolicy = POLICY
) -> Story:
    return await (await Story(pool, where, policy).open(opened)).dispatched(
        opened + timedelta(minutes=10)
    )


# ---------------------------------------------------------------------------- recomputed


async def recount(
    pool: asyncpg.Pool, district: str, level: RankLevel, month: str, formula: RateFormula
) -> dict[str, dict[str, int]]:
    """The month's cohort counts of the district's units, from `case_events` alone (no
    `cases`, no `ledger`): the definitions of domain/formulas.py, folded in Python."""
    start, end = month_bounds(month, TZ)
    rows = await pool.fetch(
        """SELECT case_id, seq, type, payload, occurred_at FROM case_events
           WHERE case_id IN (SELECT case_id FROM case_events WHERE type = 'case_opened'
                             AND payload -> 'case' -> 'location' ->> 'district_id' = $1)
           ORDER BY case_id, seq""",
        district,
    )
    by_case: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        by_case[r["case_id"]].append(r)
    kinds = ["grid_id", "community_id", "street_id", "district_id"]
    depth = kinds.index(f"{level.value}_id")
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNT_NAMES, 0))
    for events in by_case.values():
        location = events[0]["payload"]["case"]["location"]
        unit = counts[location[f"{level.value}_id"]]
        opened = events[0]["occurred_at"]
        # the events that happened before the month's end: how the case stood then
        before = [e for e in events if e["occurred_at"] < end]
        archived = [e["payload"]["outcome"] for e in before if e["type"] == "case_archived"]
        outcome = archived[0] if archived else None
        rated = [
            e["payload"]["satisfaction"]
            for e in before
            if e["type"] in ("feedback_recorded", "revisit_recorded")
        ]
        contacts = [e["occurred_at"] for e in events if e["type"] in FIRST_CONTACT]
        contact = contacts[0] if contacts else None
        if start <= opened < end:
            unit["opened"] += 1
            if outcome in ("merged", "withdrawn"):
                unit[outcome] += 1
            else:
                unit["received"] += 1
                if contact is not None and contact < end:
                    unit["contacted"] += 1
                    if contact - opened <= timedelta(hours=formula.response_hours):
                        unit["responded"] += 1
            if outcome == "completed":
                unit["completed"] += 1
                if rated:
                    unit["rated"] += 1
                    unit["satisfied"] += rated[-1] in SATISFIED
        asked: dict[str, Any] = {}
        for e in events:
            p = e["payload"]
            if e["type"] == "return_requested":
                asked = p
            if not start <= e["occurred_at"] < end:
                continue
            level_loop = {
                "deadline_breached": (p.get("level"), p.get("loop")),
                "case_escalated": (p.get("from_level"), p.get("from_loop")),
                "return_requested": (p.get("level"), p.get("loop")),
                "return_reviewed": (asked.get("level"), asked.get("loop")),
                "case_urged": (p.get("level"), None),
            }.get(e["type"])
            if level_loop is None:
                continue
            held = holder(*level_loop)
            if held is None or held.depth > depth:
                continue
            name = {
                "deadline_breached": "breaches",
                "case_escalated": "breaches",
                "return_requested": "returns",
                "case_urged": "urgings",
            }.get(e["type"])
            if e["type"] == "return_reviewed":
                name = "returns_approved" if p["approved"] else None
            if name:
                counts[location[f"{level.value}_id"]][name] += 1
    return {org: c for org, c in counts.items() if any(c.values())}


def of(units: list[CohortMeasures], district: str) -> dict[str, dict[str, int]]:
    return {
        u.org_id: {k: getattr(u, k) for k in COUNT_NAMES}
        for u in units
        if u.district_id == district
    }


async def month_of_stories(pool: asyncpg.Pool, o: Orgs) -> dict[str, Story]:
    """Street 1: community 1's cases of May 2032, and one of community 2."""
    c1, c2 = o.location(1), o.location(2)
    s: dict[str, Story] = {}
    # completed: basically satisfied (基本满意), and satisfied
    s["basic"] = await (await story(pool, c1, at("05-10T09:00"))).completed(
        at("05-10T10:00"), "basically_satisfied"
    )
    s["plain"] = await (await story(pool, c1, at("05-11T09:00"))).completed(
        at("05-12T12:00"), "satisfied"  # first contact after 27 h: not a response in 24 h
    )
    # unsatisfied at the revisit: reopened, open at the month's end
    s["unhappy"] = await (await story(pool, c1, at("05-12T09:00"))).completed(
        at("05-12T09:30"), "unsatisfied"
    )
    # merged into the first, and withdrawn: not received
    merged = await story(pool, c1, at("05-10T11:00"))
    body = {"actor": merged.admin, "target_case_id": s["basic"].case_id}
    s["merged"] = await merged.do("merge_into", body, at("05-10T11:30"))
    withdrawn = await story(pool, c1, at("05-13T09:00"))
    s["withdrawn"] = await withdrawn.do(
        "withdraw", {"actor": withdrawn.admin, "reason": "已自行解决"}, at("05-13T10:00")
    )
    # opened in April, completed in May: April's cohort; opened in May, completed in June
    s["april"] = await (await story(pool, c1, at("04-28T09:00"))).completed(
        at("05-03T09:00"), "satisfied"
    )
    s["june"] = await (await story(pool, c1, at("05-31T20:00"))).completed(
        at("06-01T09:00"), "satisfied"
    )
    # urged by the street, returned (approved), then left to run out in every loop
    late = await story(pool, c1, at("05-06T09:00"))
    await late.do("claim", {"actor": late.worker}, at("05-06T09:20"))
    await late.do("urge_case", {"actor": late.street, "message": "请尽快"}, at("05-06T09:30"))
    await late.do("return_case", {"actor": late.worker, "reason": "不属本网格"}, at("05-06T09:40"))
    await late.do("review_return", {"actor": late.admin, "approved": True}, at("05-06T09:50"))
    s["late"] = await late.ticks(at("05-29T09:00"))
    s["other"] = await (await story(pool, c2, at("05-14T09:00"))).completed(
        at("05-14T09:30"), "very_satisfied"
    )
    return s


async def test_cohort_counts_recomputed_from_the_events_agree_with_the_report(
    pool: asyncpg.Pool, cli_env: dict[str, str], tmp_path: Path
) -> None:
    o = Orgs()
    s = await month_of_stories(pool, o)
    assert s["late"].state is not None and s["late"].state.flag.value == "red"
    for formula in (CONTEST_2026_1, BEIJING_12345_2026_1):
        for level in RankLevel:
            measured = of(await cohort_measures(pool, level, MONTH, TZ, formula), o.district)
            assert measured == await recount(pool, o.district, level, MONTH, formula), (
                formula.version,
                level,
            )
        # and casectl's JSON and CSV carry the same counts, the formula's name and version
        out_json, out_csv = tmp_path / f"{formula.name}.json", tmp_path / f"{formula.name}.csv"
        code, out, err = await casectl(
            cli_env,
            "report",
            "monthly",
            "--month",
            MONTH,
            "--org",
            o.street(),
            "--formula",
            formula.name,
            "--months",
            "2",
            "--json",
            str(out_json),
            "--csv",
            str(out_csv),
        )
        assert code == 0, err
        assert f"formula {formula.name}, version {formula.version}" in out
        data = json.loads(out_json.read_text(encoding="utf-8"))
        assert data["formula_name"] == formula.name
        assert data["formula"]["version"] == formula.version
        reported = {
            u["unit"]["community_id"]: {k: u["unit"][k] for k in COUNT_NAMES}
            for u in data["units"]
        }
        expected = await recount(pool, o.district, RankLevel.COMMUNITY, MONTH, formula)
        assert reported == expected
        rows = list(csv.DictReader(io.StringIO(out_csv.read_text(encoding="utf-8-sig"))))
        assert {r["org_id"]: int(r["received"]) for r in rows} == {
            k: v["received"] for k, v in expected.items()
        }
        assert {r["formula_version"] for r in rows} == {formula.version}
        # every rate is its numerator over its denominator, as printed beside it
        for u in data["units"]:
            for rate in formula.rates:
                den = u["unit"][rate.denominator]
                value = round(u["unit"][rate.numerator] / den, 4) if den else None
                assert u["rates"][rate.key] == value


async def test_the_defects_of_the_first_ranking(pool: asyncpg.Pool) -> None:
    """Each count the first ranking got wrong, as the cohort formulas count it."""
    o = Orgs()
    s = await month_of_stories(pool, o)
    units = {
        u.org_id: u
        for u in await cohort_measures(pool, RankLevel.COMMUNITY, MONTH, TZ, BEIJING_12345_2026_1)
        if u.district_id == o.district
    }
    c1 = units[o.community(1)]
    # merged and withdrawn reports are not received: counted beside it
    # (opened in May: basic, plain, unhappy, merged, withdrawn, june, late)
    assert (c1.opened, c1.merged, c1.withdrawn, c1.received) == (7, 1, 1, 5)
    # completion is one cohort, as it stood at May's end: basic, plain (unhappy reopened);
    # not the April case completed in May, not the May case completed in June
    assert c1.completed == 2
    # basically satisfied is satisfied (the first ranking counted 1 of 2)
    assert (c1.rated, c1.satisfied) == (2, 2)
    # responded within 24 h: basic, unhappy, late (claimed at once); plain after 27 h;
    # june claimed in June (after the month's end)
    assert (c1.contacted, c1.responded) == (4, 3)
    # the late case: its micro-grid and grid loops ran out (against grid and community),
    # the street loop (against the street only), the district's (red, against none ranked)
    assert c1.returns == 1 and c1.returns_approved == 1 and c1.urgings == 1
    street = {
        u.org_id: u
        for u in await cohort_measures(pool, RankLevel.STREET, MONTH, TZ, CONTEST_2026_1)
        if u.district_id == o.district
    }[o.street()]
    grids = {
        u.org_id: u
        for u in await cohort_measures(pool, RankLevel.GRID, MONTH, TZ, CONTEST_2026_1)
        if u.district_id == o.district
    }
    late = await pool.fetch(
        "SELECT type, payload FROM case_events WHERE case_id = $1 AND type = ANY($2::text[])",
        s["late"].case_id,
        ["deadline_breached", "case_escalated"],
    )
    by_loop = defaultdict(int)
    for e in late:
        p = e["payload"]
        by_loop[
            holder(p.get("from_level") or p.get("level"), p.get("from_loop") or p.get("loop"))
        ] += 1
    held = {h.value: n for h, n in by_loop.items()}
    assert held["grid"] >= 2 and held["street"] >= 1 and held["district"] >= 1
    assert grids[o.grid(1)].breaches == held["grid"]
    assert c1.breaches == held["grid"] + held.get("community", 0)
    assert street.breaches == c1.breaches + held["street"]
    # the first ranking counted the red case against the community where it happened
    flags = {
        u.org_id: u
        for u in await monthly_measures(pool, RankLevel.COMMUNITY, MONTH, TZ, "ledger")
        if u.district_id == o.district
    }
    assert flags[o.community(1)].red_cases == 1
    # the first contact is kept on the read model and the ledger
    row = await pool.fetchrow(
        """SELECT c.first_contact_at AS c, l.first_contact_at AS l FROM cases c
           JOIN ledger l USING (case_id) WHERE case_id = $1""",
        s["plain"].case_id,
    )
    assert row["c"] == row["l"] == at("05-12T12:00")


@pytest.mark.parametrize("value", [s.value for s in Satisfaction] + [None])
async def test_satisfied_has_one_definition(pool: asyncpg.Pool, value: str | None) -> None:
    """report_satisfied() (the summary's triggers) agrees with the domain for every value,
    and the first ranking's summary counts basically satisfied as satisfied."""
    content = value is not None and Satisfaction(value).content
    assert await pool.fetchval("SELECT report_satisfied($1)", value) is content
    assert (value in SATISFIED) is content


async def test_basically_satisfied_counts_in_the_monthly_summary(pool: asyncpg.Pool) -> None:
    o = Orgs()
    await (await story(pool, o.location(1), at("05-10T09:00"))).completed(
        at("05-10T10:00"), "basically_satisfied"
    )
    for source in ("summary", "ledger"):
        [unit] = [
            u
            for u in await monthly_measures(pool, RankLevel.COMMUNITY, MONTH, TZ, source)
            if u.district_id == o.district
        ]
        assert (unit.rated, unit.satisfied) == (1, 1), source


async def test_cohort_report_html_and_bad_formula(
    pool: asyncpg.Pool, cli_env: dict[str, str], tmp_path: Path
) -> None:
    o = Orgs()
    for c in (1, 2):
        for day in range(5):
            await (await story(pool, o.location(c), at(f"04-{10 + day}T09:00"))).completed(
                at(f"04-{10 + day}T10:00"), "satisfied"
            )
            await (await story(pool, o.location(c), at(f"05-{10 + day}T09:00"))).completed(
                at(f"05-{10 + day}T10:00"), "satisfied" if c == 1 else "unsatisfied"
            )
    page = tmp_path / "rates.html"
    code, out, err = await casectl(
        cli_env,
        "report",
        "monthly",
        "--month",
        MONTH,
        "--org",
        o.street(),
        "--formula",
        "contest-2026.1",
        "--months",
        "2",
        "--html",
        str(page),
    )
    assert code == 0, err
    html = page.read_text(encoding="utf-8")
    assert "contest-2026.1" in html and 'class="formula-name">contest<' in html
    # the rates per unit and month: April and May, both communities
    assert "2032-04" in html and "2032-05" in html
    assert html.count(o.community(1)) >= 2 and html.count(o.community(2)) >= 2
    assert "2 communities: 1 红旗, 1 黄旗" in out, out
    # the flags page (the default formula) shows both cohort formulas' rates beside
    flags_page = tmp_path / "flags.html"
    by_default = ("report", "monthly", "--month", MONTH, "--org", o.street())
    code, out, err = await casectl(cli_env, *by_default, "--html", str(flags_page))
    assert code == 0, err
    flags_html = flags_page.read_text(encoding="utf-8")
    for version in ("flags-2026.1", "contest-2026.1", "beijing-12345-2026.1"):
        assert version in flags_html
    # community 1: five of five completed and satisfied; community 2: none completed
    assert "100.0% (5/5)" in flags_html and "0.0% (0/5)" in flags_html
    # a formula kept as data: a file, its version printed
    mine = CONTEST_2026_1.model_dump(mode="json") | {"version": "contest-2099.1"}
    formula_file = tmp_path / "contest-2099.1.json"
    formula_file.write_text(json.dumps(mine), encoding="utf-8")
    code, out, err = await casectl(cli_env, *by_default, "--formula", str(formula_file))
    assert code == 0 and "formula contest, version contest-2099.1" in out, err
    formula_file.write_text(json.dumps(mine | {"response_hours": 0}), encoding="utf-8")
    code, _, err = await casectl(cli_env, *by_default, "--formula", str(formula_file))
    assert code == 2 and "--formula" in err and "response_hours" in err
    bad = await casectl(cli_env, "report", "monthly", "--month", MONTH, "--formula", "nope")
    assert bad[0] == 2 and "--formula" in bad[2] and "contest-2026.1" in bad[2]


async def test_first_contact_follows_a_superseded_claim(pool: asyncpg.Pool) -> None:
    """The claim's workflow task was lost after its local activity wrote it: the retried
    task claims again an hour later, and the first contact is the claim that stands."""
    batches = lifecycle_batches()  # open, dispatch, claim, check in, …
    case_id = batches[0].case_id
    claim = batches[2]
    assert claim.events[0].type == "case_claimed"

    def decided(batch: EventBatch, decided_in: int, hours: int = 0) -> EventBatch:
        shift = timedelta(hours=hours)
        events = [e.model_copy(update={"occurred_at": e.occurred_at + shift}) for e in batch.events]
        return batch.model_copy(update={"events": events, "decided_in": decided_in})

    async def first_contact() -> datetime | None:
        at_: datetime | None = await pool.fetchval(
            "SELECT first_contact_at FROM cases WHERE case_id = $1", case_id
        )
        return at_

    await append(pool, decided(batches[0], 3))
    await append(pool, decided(batches[1], 5))
    assert await first_contact() is None
    await append(pool, decided(claim, 9))  # the lost task's claim
    assert await first_contact() == claim.events[0].occurred_at
    await append(pool, decided(claim, 14, hours=1))
    assert await first_contact() == claim.events[0].occurred_at + timedelta(hours=1)
    # a later check-in leaves the first contact as it is
    await append(pool, decided(batches[3], 20, hours=2))
    assert await first_contact() == claim.events[0].occurred_at + timedelta(hours=1)


async def test_rows_older_than_migration_007_get_their_first_contact_from_events(
    pool: asyncpg.Pool,
) -> None:
    """Migration 007 fills first_contact_at of the rows already there from their events
    (the first claim or check-in); a case with neither keeps NULL. Run here on rows
    written without it, in a transaction rolled back (the database is shared)."""
    after_columns = MIGRATION_007.split("ADD COLUMN first_contact_at timestamptz;\n")[2]
    backfill = after_columns.split("\n-- The cohort of a month")[0]
    claimed = await story(pool, Orgs().location(1), at("05-10T09:00"))
    await claimed.do("claim", {"actor": claimed.worker}, at("05-10T11:00"))
    await claimed.do("check_in", {"actor": claimed.worker}, at("05-10T11:30"))
    silent = await story(pool, Orgs().location(1), at("05-10T09:00"))
    ids = [claimed.case_id, silent.case_id]
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute(
                "UPDATE cases SET first_contact_at = NULL WHERE case_id = ANY($1::text[])", ids
            )
            await conn.execute(backfill)
            got = await conn.fetch(
                "SELECT case_id, first_contact_at FROM cases WHERE case_id = ANY($1::text[])", ids
            )
        finally:
            await tx.rollback()
    assert {r["case_id"]: r["first_contact_at"] for r in got} == {
        claimed.case_id: at("05-10T11:00"),
        silent.case_id: None,
    }
