"""`casectl disclosure` (办结公示) against the real PostgreSQL: the cases closed in a month
under an org, per community, with nothing personal and no resident's words."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
from click.testing import CliRunner

from casectl.disclosure import disclosure

OPENED = datetime.fromisoformat("2026-03-10T09:00:00+08:00")


async def ledger_rows(pg_url: str, street: str) -> list[str]:
    """Four archived cases in two communities of `street`: three closed in March 2026
    (Asia/Shanghai), one on 1 April at 00:30 local time (still March in UTC)."""
    conn = await asyncpg.connect(pg_url)
    ids = []
    try:
        for community, closed, outcome, satisfaction in [
            ("A", OPENED + timedelta(days=2), "completed", "basically_satisfied"),
            ("A", OPENED + timedelta(hours=5), "withdrawn", None),
            ("B", OPENED + timedelta(days=4), "completed", "unsatisfied"),
            ("B", datetime.fromisoformat("2026-04-01T00:30:00+08:00"), "completed", "satisfied"),
        ]:
            case_id = f"case-visit-{uuid.uuid4().hex[:12]}"
            ids.append(case_id)
            await conn.execute(
                """INSERT INTO ledger (case_id, outcome, source, category, grid_id,
                       community_id, street_id, district_id, opened_at, archived_at, on_time,
                       escalation_count, reopen_count, return_count, satisfaction,
                       policy_version)
                   VALUES ($1, $2, 'visit', 'water_supply', 'G-1', $3, $4, 'D-9', $5, $6,
                           true, 0, 0, 0, $7, 'test')""",
                case_id,
                outcome,
                f"{street}-{community}",
                street,
                OPENED,
                closed,
                satisfaction,
            )
    finally:
        await conn.close()
    return ids


def test_disclosure_lists_a_months_closed_cases_per_community(
    pool: asyncpg.Pool, pg_url: str, tmp_path: Path
) -> None:
    street = f"S-{uuid.uuid4().hex[:8]}"
    ids = asyncio.run(ledger_rows(pg_url, street))
    env = {"DATABASE_URL": pg_url, "CASELOOP_DATA": str(tmp_path / "none"), "COLUMNS": "250"}
    html, as_json = tmp_path / "d.html", tmp_path / "d.json"
    result = CliRunner().invoke(
        disclosure,
        ["--month", "2026-03", "--org", street, "--html", str(html), "--json", str(as_json)],
        env=env,
    )
    assert result.exit_code == 0, result.output
    body = json.loads(as_json.read_text(encoding="utf-8"))
    assert [c["community_id"] for c in body["communities"]] == [f"{street}-A", f"{street}-B"]
    listed = [case["case_id"] for c in body["communities"] for case in c["cases"]]
    assert sorted(listed) == sorted(ids[:3])  # 1 April local time is April's
    withdrawn, completed = body["communities"][0]["cases"]  # in the order they closed
    assert completed["service"] == "供水管网 Water supply" and completed["took"] == "2.0 d"
    assert completed["satisfaction"] == "基本满意" and completed["outcome"] == "办结 completed"
    assert withdrawn["took"] == "5.0 h" and withdrawn["satisfaction"] == "not rated 未评价"
    page = html.read_text(encoding="utf-8")
    assert "办结公示" in page and ids[0] in page and ids[3] not in page
    assert "100% of 1 rated" in page and "0% of 1 rated" in page  # 基本满意 is content
    one = CliRunner().invoke(disclosure, ["--month", "2026-04", "--org", f"{street}-B"], env=env)
    assert one.exit_code == 0 and ids[3] in one.output and ids[2] not in one.output


def test_disclosure_refuses_a_bad_month(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        disclosure,
        ["--month", "March", "--org", "C-01"],
        env={"CASELOOP_DATA": str(tmp_path / "none")},
    )
    assert result.exit_code == 2 and "--month: expected a month as YYYY-MM" in result.output
