"""The client tour of the README: open a case and drive it through the six steps, up to
the revisit (which the built-in policy allows from the day after the feedback on).

.venv/bin/python examples/tour.py      (with `make run` going in another terminal)
"""

from __future__ import annotations

import asyncio
import uuid

from caseloop.client import CaseClient, CommandRefused
from infra.process import leave
from infra.settings import local_settings

GRID_WORKER = {"id": "gw-li", "role": "grid_worker", "org": "G-0101"}
COMMUNITY_ADMIN = {"id": "ca-zhang", "role": "community_admin", "org": "C-01"}
RESIDENT = {"id": "res-0042", "role": "resident", "org": "G-0101"}


async def main() -> None:
    # the environment, plus the encryption keys `make run` keeps in .data/
    client = await CaseClient.connect(local_settings())
    opened = await client.open_case(
        {
            "source": "hotline_12345",
            "source_ref": f"TOUR-{uuid.uuid4().hex[:8]}",  # the hotline's ticket number
            "title": "小区门口井盖松动",
            "description": "东门人行道井盖松动，踩上去会翻，有安全隐患。",
            "category": "public_facilities",
            "location": {
                "grid_id": "G-0101",
                "community_id": "C-01",
                "street_id": "S-01",
                "district_id": "D-01",
            },
            "reporter": {"name": "赵先生", "phone": "13700000000", "resident_id": "res-0042"},
            "reported_at": "2026-11-23T08:15:00+08:00",
        }
    )
    print("opened", opened.case_id)

    # A command the case refuses: claimed by a grid worker before anyone dispatched it.
    try:
        await client.send(opened.case_id, "claim", {"actor": GRID_WORKER})
    except CommandRefused as refused:
        print("refused:", refused)

    steps = [
        (
            "dispatch",
            {"actor": COMMUNITY_ADMIN, "severity": "major", "handling_class": "immediate"},
        ),
        ("claim", {"actor": GRID_WORKER}),
        ("check_in", {"actor": GRID_WORKER}),
        (
            "record_deliberation",
            {
                "actor": GRID_WORKER,
                "participants": ["网格员李", "市政养护"],
                "decision": "当日更换井盖",
            },
        ),
        ("report_resolution", {"actor": GRID_WORKER, "summary": "井盖已更换并加固"}),
        ("record_feedback", {"actor": RESIDENT, "accepted": True, "satisfaction": "satisfied"}),
    ]
    for name, payload in steps:
        summary = await client.send(opened.case_id, name, payload)
        print(f"{name:20} -> step {summary.step.value}, version {summary.version}")

    # A revisit checks that the matter stayed solved: not the moment the feedback arrives.
    # 三必问: disputes, discontent and other concerns are asked at every revisit
    asked = {"contradictions": None, "dissatisfaction": None, "concerns": "楼道灯也不亮"}
    revisit = {
        "actor": GRID_WORKER,
        "satisfaction": "very_satisfied",
        "in_person": True,
        "checklist": asked,
    }
    try:
        await client.send(opened.case_id, "record_revisit", revisit)
    except CommandRefused as refused:
        print("refused:", refused)
    state = await client.state(opened.case_id)
    print("waiting:", ", ".join(d.label for d in state.deadlines.values()))
    for event in await client.events(opened.case_id):
        print(f"  {event.seq:2} {event.type}")


if __name__ == "__main__":
    asyncio.run(main())
    leave(0)
