"""Demo cases for `make run`: cases in different steps and levels, one for each path of
the loop a user may want to see in the Temporal UI, opened through the public client like
any other system would. Seeding is idempotent: each demo case has a fixed source ticket,
so a second `make run` finds them instead of opening twins.

    python -m devstack.demo open "路灯不亮"    # report one more case and dispatch it
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from caseloop.client import CaseClient, CommandRefused
from caseloop.talkday_schedules import schedule_id
from domain.policy import DEFAULT_POLICY
from infra.process import leave
from infra.settings import local_settings

GRID, COMMUNITY, STREET, DISTRICT = "G-0101", "C-01", "S-01", "D-01"
GRID_WORKER = {"id": "gw-li", "role": "grid_worker", "org": GRID}
COMMUNITY_ADMIN = {"id": "ca-zhang", "role": "community_admin", "org": COMMUNITY}
STREET_OFFICER = {"id": "so-wang", "role": "street_officer", "org": STREET}
DISTRICT_OFFICER = {"id": "do-zhao", "role": "district_officer", "org": DISTRICT}
RESIDENT = {"id": "res-0042", "role": "resident", "org": GRID}
# a party member registered in the grid, who takes cases the community offers (党员接单)
PARTY_MEMBER = {"id": "pm-chen", "role": "party_member", "org": GRID}
# departments the street summons (街道吹哨): the duty desk of each acts for it
WATER = {"id": "water-duty", "role": "department", "org": "water"}
POLICE = {"id": "police-duty", "role": "department", "org": "police"}

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
HANDLED = [DISPATCH_MINOR, CLAIM, CHECK_IN, DELIBERATE]
# the SHA-256 of a site photo kept in the city's file store (only the reference is recorded)
SITE_PHOTO_SHA256 = "9f2c6a4be1d0c3f7a85e2b6d4c1f0e9a7b3d5c8e2f4a6b1c9d7e3f5a0b2c4d6e"


@dataclass(frozen=True)
class DemoCase:
    ticket: str
    title: str
    category: str
    commands: list[Step] = field(default_factory=list)  # what brings it to where it stands
    description: str | None = None  # default: the title, reported through the mini program
    categories: tuple[str, ...] = ()  # the reporter's resident categories (三必问四必访)


DEMO_CASES: list[DemoCase] = [
    DemoCase("DEMO-001", "小区东门路灯不亮", "public_facilities"),
    DemoCase("DEMO-002", "3号楼楼道堆放杂物", "fire_safety", [DISPATCH_MINOR, CLAIM]),
    DemoCase("DEMO-003", "楼顶漏水，雨天渗到卧室", "housing_repair", HANDLED),
    DemoCase(
        "DEMO-004",
        "菜市场周边占道经营，车辆无法通行",
        "street_order",
        [
            ("dispatch", {"actor": COMMUNITY_ADMIN, "severity": "hard", "handling_class": "joint"}),
            ("claim", {"actor": STREET_OFFICER}),
            # 督办: the district urges the street on; nobody else takes the case over
            (
                "urge_case",
                {"actor": DISTRICT_OFFICER, "message": "占道经营影响通行，请街道本周内拿出方案"},
            ),
        ],
    ),
    # Immediate handling (即时办理): resolved on site, no deliberation; the resident has
    # three days to answer (the feedback clock).
    DemoCase(
        "DEMO-005", "健身器材损坏", "public_facilities", [DISPATCH_MINOR, CLAIM, CHECK_IN, RESOLVE]
    ),
    # Explanation (解释疏导): explained, no site visit; accepted, it waits for its revisit
    # (from the next day on, within 7 days).
    DemoCase(
        "DEMO-006",
        "邻里噪音纠纷",
        "neighbour_dispute",
        [
            (
                "dispatch",
                {"actor": COMMUNITY_ADMIN, "severity": "minor", "handling_class": "explanation"},
            ),
            CLAIM,
            (
                "report_resolution",
                {
                    "actor": GRID_WORKER,
                    "summary": "已向双方解释噪音管理规定，楼上住户同意晚十点后保持安静",
                },
            ),
            ACCEPT,
        ],
    ),
    DemoCase("DEMO-007", "下水道堵塞反复", "housing_repair", [*HANDLED, RESOLVE, REJECT]),
    DemoCase(
        "DEMO-008",
        "垃圾清运不及时",
        "environment_sanitation",
        [("withdraw", {"actor": RESIDENT, "reason": "已由物业自行处理"})],
    ),
    # A self-governance matter (自治协商): it waits in deliberation for the community's
    # talk day; seeding it draws up the talk-day agenda once (see seed).
    DemoCase(
        "DEMO-009",
        "5号楼加装电梯，低层住户意见不一",
        "neighbour_dispute",
        [
            (
                "dispatch",
                {
                    "actor": COMMUNITY_ADMIN,
                    "severity": "major",
                    "handling_class": "self_governance",
                },
            ),
            CLAIM,
            CHECK_IN,
        ],
        "5号楼多数住户申请加装电梯，一、二层住户担心采光和噪音，"
        "希望社区组织楼栋居民一起商量。居民通过小程序“心声速递”上报。",
    ),
    # A hard matter at the street, two departments summoned (吹哨报到): one DepartmentTask
    # child workflow completed (police reported), one still running with its clock (water).
    DemoCase(
        "DEMO-010",
        "社区东侧道路供水管破裂，路面积水塌陷",
        "water_supply",
        [
            ("dispatch", {"actor": COMMUNITY_ADMIN, "severity": "hard", "handling_class": "joint"}),
            ("claim", {"actor": STREET_OFFICER}),
            ("check_in", {"actor": STREET_OFFICER}),
            (
                "record_deliberation",
                {
                    "actor": STREET_OFFICER,
                    "participants": ["街道城建办", "供水公司", "交警中队"],
                    "decision": "供水公司抢修管道，交警中队疏导交通，街道城建办跟进路面修复",
                },
            ),
            (
                "summon_departments",
                {
                    "actor": STREET_OFFICER,
                    "departments": ["water", "police"],
                    "reason": "供水管破裂需抢修，抢修期间需设置围挡、疏导交通",
                },
            ),
            (
                "record_department_report",
                {
                    "actor": POLICE,
                    "report": "交警中队已到场设置围挡和绕行标志，早晚高峰安排警力疏导",
                },
            ),
        ],
        "社区东侧道路下供水管破裂，路面大面积积水并出现塌陷，早晚高峰车辆拥堵，"
        "附近两个小区水压不足。居民通过小程序“心声速递”上报。",
    ),
    # Returned (退单) by the grid worker: the community reviews the return; meanwhile the
    # case's clocks keep running.
    DemoCase(
        "DEMO-011",
        "小区北门外井盖缺失",
        "public_facilities",
        [
            DISPATCH_MINOR,
            CLAIM,
            (
                "return_case",
                {
                    "actor": GRID_WORKER,
                    "reason": "现场核实井盖位于相邻网格G-0102辖区，请社区重新分派",
                },
            ),
        ],
    ),
    # More time asked by the grid worker, granted by the street officer: the resolve
    # deadline moves by two days.
    DemoCase(
        "DEMO-012",
        "2号楼单元门禁系统故障",
        "public_facilities",
        [
            (
                "dispatch",
                {"actor": COMMUNITY_ADMIN, "severity": "major", "handling_class": "immediate"},
            ),
            CLAIM,
            CHECK_IN,
            (
                "record_deliberation",
                {
                    "actor": GRID_WORKER,
                    "participants": ["网格员李", "物业经理", "门禁厂家售后"],
                    "decision": "物业联系厂家更换门禁主板，维修期间安排保安值守",
                },
            ),
            (
                "request_extension",
                {
                    "actor": GRID_WORKER,
                    "extra": "P2D",
                    "reason": "门禁主板需厂家返修，配件到货约需两天",
                },
            ),
            (
                "decide_extension",
                {
                    "actor": STREET_OFFICER,
                    "approved": True,
                    "comment": "同意延期两天，请做好居民解释工作",
                },
            ),
        ],
        "2号楼单元门禁刷卡无反应，单元门无法关闭，居民担心安全。居民通过小程序“心声速递”上报。",
    ),
    # Reported by a household in difficulty (困难家庭): revisited in person within 3 days.
    DemoCase(
        "DEMO-013",
        "家中自来水管老化渗漏",
        "housing_repair",
        [
            DISPATCH_MINOR,
            CLAIM,
            CHECK_IN,
            (
                "record_deliberation",
                {
                    "actor": GRID_WORKER,
                    "participants": ["网格员李", "物业经理"],
                    "decision": "物业上门更换老化水管，材料费由社区帮扶资金承担",
                },
            ),
            (
                "report_resolution",
                {"actor": GRID_WORKER, "summary": "已更换厨房老化水管，试水无渗漏"},
            ),
            ACCEPT,
        ],
        "厨房自来水管老化渗漏，地面长期潮湿，家中无力自行维修。居民通过小程序“心声速递”上报。",
        ("household_in_difficulty",),
    ),
    # 组织建单、党员接单: the community offers a minor case to the grid's party members and
    # volunteers; a party member takes it and checks in with a photo (evidence by
    # reference: the file stays in the city's file store, the case keeps its hash).
    DemoCase(
        "DEMO-014",
        "人行道地砖松动，老人易绊倒",
        "public_facilities",
        [
            DISPATCH_MINOR,
            ("offer_case", {"actor": COMMUNITY_ADMIN, "note": "党员接单：楼栋党员就近处理"}),
            ("claim", {"actor": PARTY_MEMBER}),
            (
                "check_in",
                {
                    "actor": PARTY_MEMBER,
                    "evidence": [
                        {
                            "uri": "https://files.example.cn/cases/DEMO-014/site.jpg",
                            "sha256": SITE_PHOTO_SHA256,
                            "media_type": "image/jpeg",
                            "caption": "松动地砖现场",
                        }
                    ],
                },
            ),
        ],
    ),
    # The same street light reported again by another resident: merged into DEMO-001,
    # which records the report it received (its reporter hears of the outcome too).
    DemoCase(
        "DEMO-015",
        "东门路灯还是不亮",
        "public_facilities",
        [
            (
                "merge_into",
                {"actor": COMMUNITY_ADMIN, "target_case_id": "case-mini_program-DEMO-001"},
            ),
        ],
    ),
]
# The self-governance case: when seeding opens it, the community's agenda is drawn up.
TALK_DAY_CASE = "DEMO-009"


def report(
    ticket: str | None,
    title: str,
    category: str,
    description: str | None = None,
    categories: tuple[str, ...] = (),
) -> dict[str, Any]:
    now = datetime.now(ZoneInfo("Asia/Shanghai")).replace(microsecond=0)
    reporter: dict[str, Any] = {
        "name": "居民",
        "phone": "13900000000",
        "resident_id": RESIDENT["id"],
    }
    if categories:
        reporter["categories"] = list(categories)
    return {
        "source": "mini_program",
        "source_ref": ticket or f"APP-{uuid.uuid4().hex[:12]}",
        "title": title,
        "description": description or f"{title}。居民通过小程序“心声速递”上报。",
        "category": category,
        "location": {
            "grid_id": GRID,
            "community_id": COMMUNITY,
            "street_id": STREET,
            "district_id": DISTRICT,
        },
        "reporter": reporter,
        "reported_at": now.isoformat(),
    }


@dataclass
class Seeded:
    created: int = 0
    existing: int = 0
    # the schedule triggered to draw up the talk-day agenda (None: not triggered, either
    # the self-governance case was there already or the community has no schedule)
    agenda_triggered: str | None = None


async def seed(client: CaseClient) -> Seeded:
    """Open the demo cases that are not there yet and bring each to where it stands. A
    refused command raises CommandRefused: the demo is out of step with the domain."""
    seeded = Seeded()
    created: set[str] = set()
    for case in DEMO_CASES:
        opened = await client.open_case(
            report(case.ticket, case.title, case.category, case.description, case.categories)
        )
        if not opened.created:
            seeded.existing += 1
            continue
        seeded.created += 1
        created.add(case.ticket)
        for index, (name, payload) in enumerate(case.commands):
            # command ids make a half-finished seeding safe to run again
            await client.send(opened.case_id, name, payload, command_id=f"{case.ticket}-{index}")
    if TALK_DAY_CASE in created:
        # the agenda would run the day before the talk day (Monday 17:00): run it now, so
        # the case is told its talk day and the agenda run shows in the UI
        seeded.agenda_triggered = await trigger_agenda(client.client, COMMUNITY)
    return seeded


async def trigger_agenda(client: Client, community_id: str) -> str | None:
    """Trigger the community's talk-day schedule once; its id, or None when the community
    has no schedule (CASE_TALK_DAYS does not configure it)."""
    sid = schedule_id(community_id)
    try:
        await client.get_schedule_handle(sid).trigger()
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return None
        raise
    return sid


async def open_one(title: str) -> None:
    client = await CaseClient.connect(local_settings())
    opened = await client.open_case(report(None, title, "public_facilities"))
    summary = await client.send(opened.case_id, *DISPATCH_MINOR)
    due = DEFAULT_POLICY.local(summary.due_at).isoformat() if summary.due_at else "-"
    level = summary.level.value if summary.level else "-"
    print(f"opened {opened.case_id}: step {summary.step.value}, level {level}, due {due}")


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] != "open":
        sys.exit('usage: python -m devstack.demo open "TITLE"')
    try:
        asyncio.run(open_one(argv[1]))
    except (CommandRefused, RuntimeError) as exc:
        sys.exit(f"demo: {exc}")
    leave(0)


if __name__ == "__main__":
    main(sys.argv[1:])
