"""Demo cases for `make run`: a handful of cases in different steps and levels, opened
through the public client like any other system would. Seeding is idempotent: each demo
case has a fixed source ticket, so a second `make run` finds them instead of opening twins.

    python -m caseloop.demo open "路灯不亮"    # report one more case and dispatch it
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from caseloop.client import CaseClient, CommandRefused
from caseloop.settings import local_settings
from domain.policy import DEFAULT_POLICY

GRID, COMMUNITY, STREET, DISTRICT = "G-0101", "C-01", "S-01", "D-01"
GRID_WORKER = {"id": "gw-li", "role": "grid_worker", "org": GRID}
COMMUNITY_ADMIN = {"id": "ca-zhang", "role": "community_admin", "org": COMMUNITY}
STREET_OFFICER = {"id": "so-wang", "role": "street_officer", "org": STREET}
RESIDENT = {"id": "res-0042", "role": "resident", "org": GRID}

Step = tuple[str, dict[str, Any]]
DISPATCH_MINOR: Step = (
    "dispatch",
    {"actor": COMMUNITY_ADMIN, "severity": "minor", "handling_class": "immediate"},
)
CLAIM: Step = ("claim", {"actor": GRID_WORKER})
CHECK_IN: Step = ("check_in", {"actor": GRID_WORKER})
DELIBERATE: Step = (
    "record_deliberation",
    {"actor": GRID_WORKER, "participants": ["网格员李", "物业经理"], "decision": "物业当天维修"},
)
RESOLVE: Step = ("report_resolution", {"actor": GRID_WORKER, "summary": "已维修完毕，现场拍照留存"})
ACCEPT: Step = (
    "record_feedback",
    {"actor": RESIDENT, "accepted": True, "satisfaction": "satisfied"},
)
REJECT: Step = (
    "record_feedback",
    {"actor": RESIDENT, "accepted": False, "satisfaction": "unsatisfied", "comment": "仍然漏水"},
)
REVISIT: Step = ("record_revisit", {"actor": GRID_WORKER, "satisfaction": "very_satisfied"})
HANDLED = [DISPATCH_MINOR, CLAIM, CHECK_IN, DELIBERATE]

# (ticket, title, category, the commands that bring it to where it stands)
DEMO_CASES: list[tuple[str, str, str, list[Step]]] = [
    ("DEMO-001", "小区东门路灯不亮", "public_facilities", []),
    ("DEMO-002", "3号楼楼道堆放杂物", "fire_safety", [DISPATCH_MINOR, CLAIM]),
    ("DEMO-003", "楼顶漏水，雨天渗到卧室", "housing_repair", HANDLED),
    (
        "DEMO-004",
        "菜市场周边占道经营，车辆无法通行",
        "street_order",
        [
            ("dispatch", {"actor": COMMUNITY_ADMIN, "severity": "hard", "handling_class": "joint"}),
            ("claim", {"actor": STREET_OFFICER}),
        ],
    ),
    ("DEMO-005", "健身器材损坏", "public_facilities", [*HANDLED, RESOLVE]),
    ("DEMO-006", "邻里噪音纠纷", "neighbour_dispute", [*HANDLED, RESOLVE, ACCEPT, REVISIT]),
    ("DEMO-007", "下水道堵塞反复", "housing_repair", [*HANDLED, RESOLVE, REJECT]),
    (
        "DEMO-008",
        "垃圾清运不及时",
        "sanitation",
        [("withdraw", {"actor": RESIDENT, "reason": "已由物业自行处理"})],
    ),
]


def report(ticket: str | None, title: str, category: str) -> dict[str, Any]:
    now = datetime.now(ZoneInfo("Asia/Shanghai")).replace(microsecond=0)
    return {
        "source": "mini_program",
        "source_ref": ticket or f"APP-{uuid.uuid4().hex[:12]}",
        "title": title,
        "description": f"{title}。居民通过小程序“心声速递”上报。",
        "category": category,
        "location": {
            "grid_id": GRID,
            "community_id": COMMUNITY,
            "street_id": STREET,
            "district_id": DISTRICT,
        },
        "reporter": {"name": "居民", "phone": "13900000000", "resident_id": RESIDENT["id"]},
        "reported_at": now.isoformat(),
    }


@dataclass
class Seeded:
    created: int = 0
    existing: int = 0


async def seed(client: CaseClient) -> Seeded:
    seeded = Seeded()
    for ticket, title, category, commands in DEMO_CASES:
        opened = await client.open_case(report(ticket, title, category))
        if not opened.created:
            seeded.existing += 1
            continue
        seeded.created += 1
        for index, (name, payload) in enumerate(commands):
            # command ids make a half-finished seeding safe to run again
            await client.send(opened.case_id, name, payload, command_id=f"{ticket}-{index}")
    return seeded


async def open_one(title: str) -> None:
    client = await CaseClient.connect(local_settings())
    opened = await client.open_case(report(None, title, "public_facilities"))
    summary = await client.send(opened.case_id, *DISPATCH_MINOR)
    due = DEFAULT_POLICY.local(summary.due_at).isoformat() if summary.due_at else "-"
    level = summary.level.value if summary.level else "-"
    print(f"opened {opened.case_id}: step {summary.step.value}, level {level}, due {due}")


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] != "open":
        sys.exit('usage: python -m caseloop.demo open "TITLE"')
    try:
        asyncio.run(open_one(argv[1]))
    except (CommandRefused, RuntimeError) as exc:
        sys.exit(f"demo: {exc}")


if __name__ == "__main__":
    main(sys.argv[1:])
