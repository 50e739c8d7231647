"""Builders shared by the workflow and activity tests: a resident's report and the staff
of its grid, community, street and district."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment

from activities.contract import EventBatch
from domain.commands import parse_command, parse_open_case
from domain.decider import apply_batch, decide, open_case
from domain.policy import DEFAULT_POLICY
from domain.state import CaseState, record
from infra.calendars import with_library_calendar
from infra.crypto import Keyring, data_converter
from policies import NOTHING_RAISED, POLICY_2026_2

BIN = Path(sys.executable).parent
# The suite runs encrypted, as `make run` does: payloads via the codec, personal fields
# sealed in PostgreSQL.
KEYS = Keyring.generate_entry("test-2") + "," + Keyring.generate_entry("test-1")
KEYRING = Keyring.parse(KEYS)
CONVERTER = data_converter(KEYRING)

GRID, COMMUNITY, STREET, DISTRICT = "G-01", "C-01", "S-01", "D-01"
REPORTED_AT = datetime.fromisoformat("2026-11-23T09:30:00+08:00")


def report(ref: str | None = None, **changes: Any) -> dict[str, Any]:
    """An OpenCase payload, as another system would send it (plain JSON)."""
    payload: dict[str, Any] = {
        "source": "hotline_12345",
        "source_ref": ref if ref is not None else uuid.uuid4().hex[:16],
        "title": "楼道灯坏了 (stairwell light broken)",
        "description": "3号楼2单元楼道灯一周不亮，老人晚上上下楼不便。",
        "category": "public_facilities",
        "location": {
            "grid_id": GRID,
            "community_id": COMMUNITY,
            "street_id": STREET,
            "district_id": DISTRICT,
            "address": "3号楼2单元",
        },
        "reporter": {"name": "王阿姨", "phone": "13800000000", "resident_id": "res-1"},
        "reported_at": "2026-11-23T09:30:00+08:00",
    }
    payload.update(changes)
    return payload


async def casectl(env: dict[str, str], *args: str, stdin: str = "") -> tuple[int, str, str]:
    """Run the installed casectl; its exit status, standard output and standard error."""
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "casectl"),
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode())
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def worker_env(
    env: WorkflowEnvironment, database_url: str, task_queue: str, **more: str
) -> dict[str, str]:
    """The environment of a worker process a test starts: this test's Temporal server,
    PostgreSQL and task queue, the suite's keys, JSON log lines; `more` adds to it."""
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "DATABASE_URL": database_url,
        "CASE_TASK_QUEUE": task_queue,
        "CASE_ENCRYPTION_KEYS": KEYS,
        "LOG_FORMAT": "json",
        "CASE_POLICY": str(POLICY_FILE),
        **more,
    }


def actor(role: str, org: str, id: str | None = None) -> dict[str, str]:
    return {"id": id or f"{role}-{org}".replace("_", "-"), "role": role, "org": org}


GRID_WORKER = actor("grid_worker", GRID, "gw-1")
COMMUNITY_ADMIN = actor("community_admin", COMMUNITY, "ca-1")
STREET_OFFICER = actor("street_officer", STREET, "so-1")
DISTRICT_OFFICER = actor("district_officer", DISTRICT, "do-1")
RESIDENT = actor("resident", GRID, "res-1")

# The commands of a straight run through the six steps, with who sends them.
LIFECYCLE: list[tuple[str, dict[str, Any]]] = [
    ("dispatch", {"actor": COMMUNITY_ADMIN, "severity": "minor", "handling_class": "immediate"}),
    ("claim", {"actor": GRID_WORKER}),
    ("check_in", {"actor": GRID_WORKER}),
    (
        "record_deliberation",
        {"actor": GRID_WORKER, "participants": ["网格员", "物业"], "decision": "换灯"},
    ),
    ("report_resolution", {"actor": GRID_WORKER, "summary": "已更换灯泡"}),
    ("record_feedback", {"actor": RESIDENT, "accepted": True, "satisfaction": "satisfied"}),
    (
        "record_revisit",
        {"actor": GRID_WORKER, "satisfaction": "very_satisfied", "checklist": NOTHING_RAISED},
    ),
]


# the policy as the worker loads it: the built-in one with the holiday calendar, except
# that a revisit may follow the feedback at once, so that a whole lifecycle runs in
# seconds on the dev server (the earliest revisit has tests of its own, with BUILT_IN)
BUILT_IN = with_library_calendar(DEFAULT_POLICY, date.today())
POLICY = BUILT_IN.model_copy(update={"revisit_earliest": None})
# the same for a worker process (CASE_POLICY)
POLICY_FILE = Path(tempfile.mkdtemp(prefix="caseloop-tests-")) / "policy.json"
POLICY_FILE.write_text(POLICY.model_dump_json(), encoding="utf-8")


def lifecycle_batches(
    ref: str | None = None,
    start: datetime = REPORTED_AT,
    run_id: str = "run-1",
) -> list[EventBatch]:
    """The batches a CaseWorkflow would record for a straight lifecycle, one per command,
    five minutes apart (under the 2026.2 policy: one event per batch but the last)."""
    case = parse_open_case(report(ref))
    case_id = f"case-hotline_12345-{case.source_ref}"
    batches: list[EventBatch] = []
    state: CaseState | None = None
    now = start
    for name, body in [(None, None), *LIFECYCLE]:
        if state is None:
            decided = open_case(case_id, case, now, POLICY_2026_2)
        else:
            assert name is not None and body is not None
            now += timedelta(minutes=5)
            decided = decide(state, parse_command(name, body), now, POLICY_2026_2)
        state, events = apply_batch(state, decided)
        batches.append(
            EventBatch(
                case_id=case_id,
                run_id=run_id,
                events=events,
                state=state,
                record=record(state) if state.archived else None,
            )
        )
    return batches
