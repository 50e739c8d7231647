"""Bad input, table-driven: malformed and hostile start inputs and commands, sent through
the Python client and through the raw `temporal` CLI with plain JSON, as any other system
could (docs/architecture.md, "Refusals leave no trace").

A refused command is refused by the update's validator: the caller learns the field or
rule, never a value (no phone number), the history gains nothing, PostgreSQL is
unchanged, and the case still takes a valid command afterwards. A bad start input is
refused by the client before anything starts; started by another client, the workflow
fails at once with a non-retryable `InvalidCaseInput` naming the field, without a failed
workflow task, and writes nothing to PostgreSQL. Positive controls prove the suite does
not refuse everything: Chinese text, emoji, newlines and the longest allowed texts pass.

One worker on one task queue serves the whole module; the commands go to two cases opened
once (one dispatched and waiting in collect, one at street level in resolve with a
department summoned), each refusal followed by a valid note.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from caseloop.client import CaseClient, CommandRefused
from domain.errors import DomainError
from support import (
    COMMUNITY_ADMIN,
    GRID,
    GRID_WORKER,
    RESIDENT,
    STREET_OFFICER,
    actor,
    report,
)

TEMPORAL = Path(sys.executable).parent / "temporal"
PHONE = "13912345678"  # the reporter's phone in every input here: never in a message
MB = "x" * (1 << 20)
DROP = object()  # a patch value: remove the field
SQL = "'; DROP TABLE cases; --"
SOURCE = "hotline_12345"
UNREADABLE_RESULT = "payload item 0: encoding binary/encrypted: payload encoding is not supported"

OTHER_GRID_WORKER = actor("grid_worker", "G-99", "gw-9")
OTHER_STREET_OFFICER = actor("street_officer", "S-99", "so-9")
OTHER_RESIDENT = actor("resident", GRID, "res-2")  # reported some other case
PHONE_RESIDENT = actor("resident", GRID, PHONE)  # an app whose account ids are phone numbers
SUMMONED = actor("department", "DEPT-WATER", "dept-water-1")
NOT_SUMMONED = actor("department", "DEPT-POWER", "dept-power-1")
NOTE = {"actor": COMMUNITY_ADMIN, "text": "已电话联系居民，明天上门 👍"}


# ---------------------------------------------------------------------------- helpers


def base(ref: str) -> dict[str, Any]:
    """A valid report whose reporter's phone is PHONE."""
    payload = report(ref)
    payload["reporter"] = {"name": "王阿姨", "phone": PHONE, "resident_id": "res-1"}
    return payload


def patched(payload: Any, patch: dict[str, Any]) -> Any:
    """`payload` with dotted paths set (or removed with DROP); the key "" replaces it."""
    if "" in patch:
        return patch[""]
    payload = json.loads(json.dumps(payload))
    for path, value in patch.items():
        *parents, leaf = path.split(".")
        target = payload
        for key in parents:
            target = target[key]
        if value is DROP:
            del target[leaf]
        else:
            target[leaf] = value
    return payload


def without(payload: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != key}


def assert_no_secret(message: str, secrets: tuple[str, ...] = ()) -> None:
    for secret in (PHONE, *secrets):
        assert secret not in message, f"{secret!r} quoted in {message!r}"


@dataclass
class Module:
    """What the module shares: the worker, the cases commands go to, cases to end."""

    worker: Worker | None = None
    running: asyncio.Task[None] | None = None
    cases: dict[str, str] = field(default_factory=dict)
    opened: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def task_queue() -> str:
    """One task queue for the module (overrides conftest's queue per test), so one worker
    serves every case below."""
    return f"bad-input-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture(scope="module")
async def module(dev_env: WorkflowEnvironment) -> AsyncIterator[Module]:
    shared = Module()
    yield shared
    for case_id in shared.opened:
        with contextlib.suppress(RPCError):  # closed already
            await dev_env.client.get_workflow_handle(case_id).terminate("bad input suite done")
    if shared.worker is not None and shared.running is not None:
        await shared.worker.shutdown()
        await shared.running


@pytest_asyncio.fixture
async def worker(
    module: Module, case_worker: Callable[[Client], Worker], dev_env: WorkflowEnvironment
) -> Worker:
    """The conftest's worker (real workflow and activities), started once for the module."""
    if module.worker is None:
        module.worker = case_worker(dev_env.client)
        module.running = asyncio.create_task(module.worker.run())
    assert module.running is not None
    if module.running.done():
        module.running.result()  # the worker died: say why
    return module.worker


@pytest.fixture
def client(dev_env: WorkflowEnvironment, task_queue: str) -> CaseClient:
    return CaseClient(dev_env.client, task_queue)


async def temporal(env: WorkflowEnvironment, *args: str, json_input: str | None = None) -> Any:
    """Run the `temporal` CLI against the dev server; returns (exit code, stdout, stderr).
    A large input goes through a file: one argument may not exceed 128 KiB on Linux."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    argv = [*args, "--address", env.client.service_client.config.target_host]
    argv += ["--namespace", env.client.namespace, "--disable-config-file"]
    with tempfile.TemporaryDirectory() as tmp:
        if json_input is not None and len(json_input) > 64_000:
            path = Path(tmp) / "input.json"
            path.write_text(json_input, encoding="utf-8")
            argv += ["--input-file", str(path)]
        elif json_input is not None:
            argv += ["--input", json_input]
        proc = await asyncio.create_subprocess_exec(
            str(TEMPORAL),
            *argv,
            env=environ,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def history_events(env: WorkflowEnvironment, case_id: str) -> list[Any]:
    history = await env.client.get_workflow_handle(case_id).fetch_history()
    return [(EventType.Name(e.event_type), e) for e in history.events]


async def stored(pool: asyncpg.Pool, case_id: str) -> tuple[list[tuple[Any, ...]], Any]:
    """The case's rows in the event store (seq, type, hash) and its read-model version."""
    rows = await pool.fetch(
        "SELECT seq, type, hash FROM case_events WHERE case_id = $1 ORDER BY seq", case_id
    )
    version = await pool.fetchval("SELECT version FROM cases WHERE case_id = $1", case_id)
    return [tuple(r) for r in rows], version


async def until_stored(pool: asyncpg.Pool, case_id: str) -> list[tuple[Any, ...]]:
    for _ in range(100):
        rows, _version = await stored(pool, case_id)
        if rows:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"{case_id} recorded nothing")


# ---------------------------------------------------------------------------- start input

# (patch of a valid report, what the message must say). Every report carries PHONE.
START_REFUSED = [
    # missing required fields
    pytest.param({"title": DROP}, "title: Field required", id="missing-title"),
    pytest.param({"source": DROP}, "source: Field required", id="missing-source"),
    pytest.param({"description": DROP}, "description: Field required", id="missing-description"),
    pytest.param({"location": DROP}, "location: Field required", id="missing-location"),
    pytest.param({"reporter": DROP}, "reporter: Field required", id="missing-reporter"),
    pytest.param({"reported_at": DROP}, "reported_at: Field required", id="missing-reported_at"),
    pytest.param(
        {"location.grid_id": DROP}, "location.grid_id: Field required", id="missing-grid_id"
    ),
    pytest.param({"reporter.name": DROP}, "reporter.name: Field required", id="missing-name"),
    # extra unknown fields, some carrying personal data
    pytest.param({"priority": "urgent"}, "priority: Extra inputs", id="extra-top-level"),
    pytest.param({"case_id": "case-x-y"}, "case_id: Extra inputs", id="extra-case_id"),
    pytest.param({"reporter.mobile": PHONE}, "reporter.mobile: Extra inputs", id="extra-mobile"),
    pytest.param(
        {"reporter.id_card": "110101199003077777"},
        "reporter.id_card: Extra inputs",
        id="extra-id_card",
    ),
    pytest.param({"location.floor": 3}, "location.floor: Extra inputs", id="extra-nested"),
    # wrong types
    pytest.param({"title": 12345}, "title: Input should be a valid string", id="title-number"),
    pytest.param({"description": True}, "description: Input should be", id="description-bool"),
    pytest.param(
        {"location": "G-01"}, "location: Input should be a valid dictionary", id="location-str"
    ),
    pytest.param(
        {"reporter": PHONE}, "reporter: Input should be a valid dictionary", id="reporter-str"
    ),
    pytest.param(
        {"location.coordinates": {"lat": "north", "lon": 120.1}},
        "location.coordinates.lat",
        id="lat-word",
    ),
    pytest.param(
        {"location.coordinates": {"lat": 91, "lon": 120.1}},
        "location.coordinates.lat: Input should be less than or equal to 90",
        id="lat-out-of-range",
    ),
    pytest.param({"reported_at": f"call {PHONE}"}, "reported_at", id="reported_at-garbage"),
    pytest.param({"reporter.phone": 13912345678}, "reporter.phone", id="phone-number-type"),
    pytest.param(
        {"reporter.phone": f"call me: {PHONE}"}, "reporter.phone: String should match", id="phone"
    ),
    # naive and implausible datetimes
    pytest.param(
        {"reported_at": "2026-11-23T09:30:00"}, "reported_at: Value error, must carry", id="naive"
    ),
    pytest.param({"reported_at": "2026-11-23"}, "reported_at: Value error", id="date-only"),
    pytest.param(
        {"reported_at": "1900-01-01T08:00:00+08:00"}, "between the years 2000", id="year-1900"
    ),
    pytest.param(
        {"reported_at": "2200-01-01T08:00:00+08:00"}, "between the years 2000", id="year-2200"
    ),
    # empty strings
    pytest.param({"title": ""}, "title: String should have at least 1", id="empty-title"),
    pytest.param({"title": "   \n"}, "title: String should have at least 1", id="blank-title"),
    pytest.param({"description": ""}, "description: String should have", id="empty-description"),
    pytest.param({"category": ""}, "category: String should match", id="empty-category"),
    pytest.param({"source": ""}, "source: Input should be", id="empty-source"),
    pytest.param({"source_ref": ""}, "source_ref: String should match", id="empty-source_ref"),
    pytest.param({"location.grid_id": ""}, "location.grid_id", id="empty-grid_id"),
    pytest.param({"reporter.name": ""}, "reporter.name", id="empty-name"),
    # 1 MB strings
    pytest.param({"title": MB}, "title: String should have at most 200", id="title-1mb"),
    pytest.param(
        {"description": MB}, "description: String should have at most 4000", id="desc-1mb"
    ),
    pytest.param({"location.address": MB}, "location.address: String should", id="address-1mb"),
    # control characters
    pytest.param(
        {"title": "路灯\x00不亮"}, "title: Value error, must not contain control", id="nul"
    ),
    pytest.param(
        {"description": "\x1b[2J\x1b[31m红字"}, "description: Value error", id="ansi-escape"
    ),
    pytest.param({"reporter.name": "王\x07阿姨"}, "reporter.name: Value error", id="bell"),
    pytest.param({"title": "a\x7fb"}, "title: Value error, must not contain", id="del"),
    # unknown enum values
    pytest.param({"source": "fax"}, "source: Input should be 'mini_program'", id="source-fax"),
    pytest.param({"source": "HOTLINE_12345"}, "source: Input should be", id="source-upper"),
    pytest.param({"category": "Public Facilities"}, "category: String should", id="category-caps"),
    # ids with path or SQL metacharacters, spaces, slashes
    pytest.param({"location.grid_id": "../../etc/passwd"}, "location.grid_id", id="grid-dotdot"),
    pytest.param({"location.grid_id": SQL}, "location.grid_id: String should match", id="grid-sql"),
    pytest.param({"location.grid_id": "G 01"}, "location.grid_id", id="grid-space"),
    pytest.param({"location.grid_id": "G/01"}, "location.grid_id", id="grid-slash"),
    pytest.param({"location.grid_id": "G-01\n"}, "location.grid_id", id="grid-newline"),
    pytest.param({"location.street_id": "S-01; rm -rf /"}, "location.street_id", id="street-shell"),
    pytest.param({"source_ref": "../../etc/passwd"}, "source_ref: String should", id="ref-dotdot"),
    pytest.param({"source_ref": SQL}, "source_ref: String should match", id="ref-sql"),
    pytest.param({"source_ref": "T 4711"}, "source_ref", id="ref-space"),
    pytest.param({"source_ref": "T/4711"}, "source_ref", id="ref-slash"),
    pytest.param({"source_ref": "工单4711"}, "source_ref", id="ref-not-ascii"),
    pytest.param({"source_ref": "T" * 65}, "source_ref", id="ref-too-long"),
    pytest.param({"reporter.resident_id": "res/../1"}, "reporter.resident_id", id="resident-id"),
]

# Start inputs that are not a JSON object: refused by the client, and by the workflow when
# started through the CLI (`run` takes Any, so the SDK decodes anything and `run` refuses).
START_NOT_AN_OBJECT = [
    pytest.param([1, PHONE], id="list"),
    pytest.param(PHONE, id="string"),
    pytest.param(None, id="null"),
    pytest.param(42, id="number"),
]

# Valid workflow input under a workflow id that is not case-{source}-{source_ref}:
# (patch, workflow id given the report's ref, what the message must say).
WRONG_WORKFLOW_ID = [
    pytest.param({}, lambda ref: f"case-{SOURCE}-other{ref}", "case id must be", id="other-ref"),
    pytest.param(
        {"source": "visit"},
        lambda ref: f"case-{SOURCE}-{ref}",
        "case id must be",
        id="source-visit",
    ),
    pytest.param(
        {"source_ref": DROP},
        lambda ref: f"case-visit-{ref}",
        "case id must start with case-hotline_12345-",
        id="no-ref-other-source",
    ),
    pytest.param(
        {"source_ref": DROP},
        lambda ref: f"case-{SOURCE}-../../{ref}",
        "case id must match",
        id="no-ref-dotdot",
    ),
    pytest.param(
        {"source_ref": DROP},
        lambda ref: f"case-{SOURCE}-{ref}{SQL}",
        "case id must match",
        id="sql",
    ),
    pytest.param(
        {"source_ref": DROP}, lambda ref: f"case-{SOURCE}-{ref} x", "case id must match", id="space"
    ),
    pytest.param(
        {"source_ref": DROP},
        lambda ref: f"case-{SOURCE}-{ref}{'x' * 64}",
        "case id must match",
        id="too-long",
    ),
]

# Valid reports that must be accepted: Chinese, emoji, newlines, longest texts, edge years.
START_ACCEPTED = [
    pytest.param({"title": "路灯不亮 💡", "description": "老人晚上看不见 😢 请尽快🙏"}, id="emoji"),
    pytest.param(
        {"location.address": "幸福小区3号楼2单元", "reporter.name": "欧阳娜娜"}, id="chinese"
    ),
    pytest.param({"description": "第一行\n第二行\t缩进"}, id="newline-tab"),
    pytest.param({"title": "灯" * 200, "description": "长" * 4000}, id="longest-texts"),
    pytest.param({"title": "  前后空格  "}, id="surrounding-spaces"),
    pytest.param(
        {
            "location.coordinates": {"lat": 29.31, "lon": 120.07},
            "reported_at": "2026-11-23T01:30:00Z",
        },
        id="coordinates-utc",
    ),
    pytest.param({"reporter": {"name": "匿名"}}, id="anonymous"),
    pytest.param({"reported_at": "2000-01-01T00:30:00+08:00"}, id="year-2000"),
    pytest.param({"reported_at": "2100-12-31T23:59:59+08:00"}, id="year-2100"),
    pytest.param({"reported_at": "2100-12-31T23:59:59-08:00"}, id="year-2100-utc-2101"),
    pytest.param({"source": "wechat_qr", "category": "environment_sanitation"}, id="other-source"),
]


def fresh_ref() -> str:
    return f"BAD.{uuid.uuid4().hex[:12]}_x-1"


class _StartRecorder:
    """A Temporal client stand-in that records every attempt to start a workflow."""

    def __init__(self, real: Client) -> None:
        self.real = real
        self.started: list[Any] = []

    async def start_workflow(self, *args: Any, **kwargs: Any) -> Any:
        self.started.append(kwargs.get("id"))
        return await self.real.start_workflow(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


async def assert_nothing_started(
    env: WorkflowEnvironment, pool: asyncpg.Pool, case_id: str
) -> None:
    with pytest.raises(RPCError) as missing:
        await env.client.get_workflow_handle(case_id).describe()
    assert missing.value.status is RPCStatusCode.NOT_FOUND
    assert await stored(pool, case_id) == ([], None)


@pytest.mark.parametrize(("patch", "message"), START_REFUSED)
async def test_client_refuses_bad_start_input_before_starting(
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    patch: dict[str, Any],
    message: str,
) -> None:
    recorder = _StartRecorder(dev_env.client)
    client = CaseClient(recorder, task_queue)  # type: ignore[arg-type]
    ref = fresh_ref()
    with pytest.raises(DomainError) as refused:
        await client.open_case(patched(base(ref), patch))
    assert message in str(refused.value)
    assert_no_secret(str(refused.value), (SQL, "110101199003077777", "../"))
    assert recorder.started == []
    await assert_nothing_started(dev_env, pool, f"case-{SOURCE}-{ref}")


async def test_client_refuses_a_category_outside_the_service_catalogue(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    """A well-formed category that is no code of the catalogue (domain/catalogue.json):
    refused with the field and where the codes are, before anything starts."""
    recorder = _StartRecorder(dev_env.client)
    client = CaseClient(recorder, task_queue)  # type: ignore[arg-type]
    ref = fresh_ref()
    with pytest.raises(DomainError) as refused:
        await client.open_case(patched(base(ref), {"category": "potholes"}))
    assert str(refused.value).startswith("category: not a service code of catalogue")
    assert "casectl services" in str(refused.value) and "potholes" not in str(refused.value)
    assert recorder.started == []
    await assert_nothing_started(dev_env, pool, f"case-{SOURCE}-{ref}")


@pytest.mark.parametrize("payload", START_NOT_AN_OBJECT)
async def test_client_refuses_a_start_input_that_is_not_an_object(
    dev_env: WorkflowEnvironment, task_queue: str, payload: Any
) -> None:
    recorder = _StartRecorder(dev_env.client)
    client = CaseClient(recorder, task_queue)  # type: ignore[arg-type]
    with pytest.raises(DomainError, match="the start input must be a JSON object") as refused:
        await client.open_case(payload)
    assert_no_secret(str(refused.value))
    assert recorder.started == []


async def cli_start(env: WorkflowEnvironment, task_queue: str, case_id: str, payload: Any) -> None:
    code, _out, err = await temporal(
        env,
        "workflow",
        "start",
        "--task-queue",
        task_queue,
        "--type",
        "CaseWorkflow",
        "--workflow-id",
        case_id,
        json_input=json.dumps(payload, ensure_ascii=False),
    )
    assert code == 0, err  # the server cannot refuse a start input: the workflow must


async def assert_failed_at_once(
    env: WorkflowEnvironment, pool: asyncpg.Pool, case_id: str, message: str
) -> None:
    """The workflow failed within seconds with InvalidCaseInput naming the field, without a
    failed workflow task, and recorded nothing."""
    started = time.monotonic()
    handle = env.client.get_workflow_handle(case_id)
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(), timeout=15)
    assert time.monotonic() - started < 10
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert cause.type == "InvalidCaseInput" and cause.non_retryable
    assert message in cause.message, cause.message
    assert_no_secret(cause.message, (SQL, "110101199003077777", "../"))
    events = await history_events(env, case_id)
    names = [name for name, _ in events]
    assert "EVENT_TYPE_WORKFLOW_TASK_FAILED" not in names
    assert names[-1] == "EVENT_TYPE_WORKFLOW_EXECUTION_FAILED"
    recorded = [
        e
        for name, e in events
        if name == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"
        and e.activity_task_scheduled_event_attributes.activity_type.name == "record_events"
    ]
    assert recorded == []
    assert await stored(pool, case_id) == ([], None)


@pytest.mark.parametrize(("patch", "message"), START_REFUSED)
async def test_cli_started_bad_input_fails_the_workflow_at_once(
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    worker: Worker,
    patch: dict[str, Any],
    message: str,
) -> None:
    ref = fresh_ref()
    case_id = f"case-{SOURCE}-{ref}"
    await cli_start(dev_env, task_queue, case_id, patched(base(ref), patch))
    await assert_failed_at_once(dev_env, pool, case_id, message)


@pytest.mark.parametrize("payload", START_NOT_AN_OBJECT)
async def test_cli_started_non_object_input_fails_the_workflow_at_once(
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    worker: Worker,
    payload: Any,
) -> None:
    case_id = f"case-{SOURCE}-{fresh_ref()}"
    await cli_start(dev_env, task_queue, case_id, payload)
    await assert_failed_at_once(
        dev_env, pool, case_id, "OpenCase: the start input must be a JSON object"
    )


@pytest.mark.parametrize(("patch", "workflow_id", "message"), WRONG_WORKFLOW_ID)
async def test_cli_start_under_a_wrong_workflow_id_fails_at_once(
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    worker: Worker,
    patch: dict[str, Any],
    workflow_id: Callable[[str], str],
    message: str,
) -> None:
    ref = fresh_ref()
    case_id = workflow_id(ref)
    await cli_start(dev_env, task_queue, case_id, patched(base(ref), patch))
    await assert_failed_at_once(dev_env, pool, case_id, message)


async def assert_opened(
    env: WorkflowEnvironment, pool: asyncpg.Pool, case_id: str, expected: dict[str, Any]
) -> None:
    rows = await until_stored(pool, case_id)
    assert [r[1] for r in rows] == ["case_opened", "deadline_started"]  # and its intake clock
    handle = env.client.get_workflow_handle(case_id)
    assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING
    names = [name for name, _ in await history_events(env, case_id)]
    assert "EVENT_TYPE_WORKFLOW_TASK_FAILED" not in names
    # the row is written before the workflow's next task takes the state in: poll
    state = await CaseClient(env.client, "").state(case_id)
    for _ in range(100):
        if state is not None:
            break
        await asyncio.sleep(0.05)
        state = await CaseClient(env.client, "").state(case_id)
    assert state is not None
    assert state.case.title == expected["title"].strip()
    assert state.case.description == expected["description"].strip()


@pytest.mark.parametrize("patch", START_ACCEPTED)
async def test_client_accepts_valid_reports(
    client: CaseClient,
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    worker: Worker,
    module: Module,
    patch: dict[str, Any],
) -> None:
    payload = patched(base(fresh_ref()), patch)
    opened = await client.open_case(payload)
    module.opened.append(opened.case_id)
    assert opened.created
    await assert_opened(dev_env, pool, opened.case_id, payload)


@pytest.mark.parametrize("patch", START_ACCEPTED)
async def test_cli_started_valid_reports_open(
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    worker: Worker,
    module: Module,
    patch: dict[str, Any],
) -> None:
    ref = fresh_ref()
    payload = patched(base(ref), patch)
    case_id = f"case-{payload['source']}-{ref}"
    module.opened.append(case_id)
    await cli_start(dev_env, task_queue, case_id, payload)
    await assert_opened(dev_env, pool, case_id, payload)


async def test_cli_start_without_source_ref_opens_under_any_conforming_id(
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    worker: Worker,
    module: Module,
) -> None:
    payload = without(base(""), "source_ref")
    case_id = f"case-{SOURCE}-{uuid.uuid4().hex}"
    module.opened.append(case_id)
    await cli_start(dev_env, task_queue, case_id, payload)
    await assert_opened(dev_env, pool, case_id, payload)


# ---------------------------------------------------------------------------- commands


@pytest_asyncio.fixture
async def cases(module: Module, client: CaseClient, worker: Worker) -> dict[str, str]:
    """Two cases, opened once for the module: "collect" (dispatched to the community, not
    claimed) and "resolve" (a hard matter at street level, DEPT-WATER summoned)."""
    if not module.cases:

        async def collect() -> str:
            opened = await client.open_case(base(fresh_ref()))
            module.opened.append(opened.case_id)
            await client.send(
                opened.case_id,
                "dispatch",
                {"actor": COMMUNITY_ADMIN, "severity": "major", "handling_class": "immediate"},
            )
            return opened.case_id

        async def resolve() -> str:
            opened = await client.open_case(base(fresh_ref()))
            module.opened.append(opened.case_id)
            for name, payload in [
                (
                    "dispatch",
                    {"actor": COMMUNITY_ADMIN, "severity": "hard", "handling_class": "joint"},
                ),
                ("claim", {"actor": STREET_OFFICER}),
                (
                    "record_deliberation",
                    {"actor": STREET_OFFICER, "participants": ["街道", "水务"], "decision": "吹哨"},
                ),
                (
                    "summon_departments",
                    {"actor": STREET_OFFICER, "departments": ["DEPT-WATER"], "reason": "管道"},
                ),
            ]:
                await client.send(opened.case_id, name, payload)
            return opened.case_id

        module.cases["collect"], module.cases["resolve"] = await asyncio.gather(
            collect(), resolve()
        )
    return module.cases


def note(**changes: Any) -> dict[str, Any]:
    return {**NOTE, **changes}


def staff(who: dict[str, str], **changes: str) -> dict[str, str]:
    return {**who, **changes}


@dataclass(frozen=True)
class Bad:
    """A command refused on one of the module's cases."""

    id: str
    case: str  # "collect" or "resolve"
    name: str  # the update name
    payload: Any  # "{self}" in a string is replaced by the case's id
    says: tuple[str, ...]  # what the message must contain
    secrets: tuple[str, ...] = ()  # values the message must not quote (besides PHONE)


C, R = "collect", "resolve"
COMMANDS_REFUSED = [
    # missing fields
    Bad(
        "missing-actor",
        C,
        "add_note",
        {"text": f"电话 {PHONE}"},
        ("add_note refused: actor: Field required",),
    ),
    Bad("missing-text", C, "add_note", {"actor": COMMUNITY_ADMIN}, ("text: Field required",)),
    Bad(
        "missing-severity",
        C,
        "dispatch",
        {"actor": COMMUNITY_ADMIN, "handling_class": "joint"},
        ("severity: Field",),
    ),
    Bad(
        "missing-accepted",
        C,
        "record_feedback",
        {"actor": RESIDENT, "satisfaction": "satisfied"},
        ("accepted: Field required",),
    ),
    Bad("empty-object", C, "add_note", {}, ("actor: Field required", "text: Field required")),
    # extra fields
    Bad(
        "extra-phone", C, "add_note", note(phone=PHONE), ("phone: Extra inputs are not permitted",)
    ),
    Bad(
        "extra-actor-phone",
        C,
        "add_note",
        note(actor=staff(COMMUNITY_ADMIN, phone=PHONE)),
        ("actor.phone: Extra inputs",),
    ),
    # commands carry no time (the workflow's clock decides): a naive datetime is an extra
    Bad(
        "extra-naive-occurred_at",
        C,
        "add_note",
        note(occurred_at="2026-11-23T09:30:00"),
        ("occurred_at: Extra inputs",),
    ),
    Bad("extra-command_id", C, "add_note", note(command_id="c-1"), ("command_id: Extra inputs",)),
    # wrong types
    Bad(
        "text-number",
        C,
        "add_note",
        note(text=13912345678),
        ("text: Input should be a valid string",),
    ),
    Bad(
        "text-object",
        C,
        "add_note",
        note(text={"zh": PHONE}),
        ("text: Input should be a valid string",),
    ),
    Bad(
        "actor-string",
        C,
        "add_note",
        note(actor="ca-1"),
        ("actor: Input should be a valid dictionary",),
    ),
    Bad("actor-list", C, "add_note", note(actor=[COMMUNITY_ADMIN]), ("actor: Input should be",)),
    Bad(
        "accepted-word",
        C,
        "record_feedback",
        {"actor": RESIDENT, "accepted": "perhaps", "satisfaction": "satisfied"},
        ("accepted: Input should be a valid boolean",),
    ),
    Bad(
        "participants-string",
        C,
        "record_deliberation",
        {"actor": GRID_WORKER, "participants": "网格员", "decision": "换灯"},
        ("participants: Input should be a valid list",),
    ),
    Bad(
        "participants-empty",
        C,
        "record_deliberation",
        {"actor": GRID_WORKER, "participants": [], "decision": "换灯"},
        ("participants: List should have at least 1 item",),
    ),
    Bad(
        "departments-twice",
        R,
        "summon_departments",
        {"actor": STREET_OFFICER, "departments": ["D-1", "D-1"], "reason": "x"},
        ("departments: Value error, must not name the same department twice",),
    ),
    Bad(
        "extra-word",
        C,
        "request_extension",
        {"actor": GRID_WORKER, "extra": "forever", "reason": "雨天"},
        ("extra: Input should be a valid timedelta",),
    ),
    Bad(
        "extra-365-days",
        C,
        "request_extension",
        {"actor": GRID_WORKER, "extra": "P365D", "reason": "雨天"},
        ("extra: Value error, must be between PT1H and P30D",),
    ),
    Bad(
        "extra-negative",
        C,
        "request_extension",
        {"actor": GRID_WORKER, "extra": -3600, "reason": "雨天"},
        ("extra: Value error, must be between",),
    ),
    Bad(
        "extra-naive-datetime",
        C,
        "request_extension",
        {"actor": GRID_WORKER, "extra": "2026-12-01T00:00:00", "reason": "雨天"},
        ("extra: Input should be a valid timedelta",),
    ),
    # unknown enum values
    Bad(
        "severity-unknown",
        C,
        "dispatch",
        {"actor": COMMUNITY_ADMIN, "severity": "enormous", "handling_class": "joint"},
        ("severity: Input should be 'minor', 'major' or 'hard'",),
    ),
    Bad(
        "handling_class-unknown",
        C,
        "dispatch",
        {"actor": COMMUNITY_ADMIN, "severity": "minor", "handling_class": "URGENT"},
        ("handling_class: Input should be",),
    ),
    Bad(
        "role-unknown",
        C,
        "add_note",
        note(actor=staff(COMMUNITY_ADMIN, role="superuser")),
        ("actor.role",),
    ),
    Bad(
        "role-capitalised",
        C,
        "add_note",
        note(actor=staff(COMMUNITY_ADMIN, role="Community_Admin")),
        ("actor.role",),
    ),
    Bad(
        "satisfaction-unknown",
        C,
        "record_revisit",
        {"actor": GRID_WORKER, "satisfaction": "meh"},
        ("satisfaction: Input should be",),
    ),
    # hostile ids
    Bad(
        "actor-id-dotdot",
        C,
        "add_note",
        note(actor=staff(COMMUNITY_ADMIN, id="../../etc/passwd")),
        ("actor.id: String should match pattern",),
        ("../",),
    ),
    Bad(
        "actor-id-sql",
        C,
        "add_note",
        note(actor=staff(COMMUNITY_ADMIN, id=SQL)),
        ("actor.id",),
        (SQL,),
    ),
    Bad(
        "actor-id-space",
        C,
        "add_note",
        note(actor=staff(COMMUNITY_ADMIN, id="ca 1")),
        ("actor.id",),
        ("ca 1",),
    ),
    Bad(
        "actor-id-phone",
        C,
        "add_note",
        note(actor=staff(COMMUNITY_ADMIN, id=f"+86 {PHONE}")),
        ("actor.id",),
    ),
    Bad(
        "actor-org-dotdot",
        C,
        "add_note",
        note(actor=staff(COMMUNITY_ADMIN, org="C-01/../C-02")),
        ("actor.org: String should match pattern",),
        ("../",),
    ),
    Bad(
        "actor-org-sql",
        C,
        "add_note",
        note(actor=staff(COMMUNITY_ADMIN, org=f"C-01{SQL}")),
        ("actor.org",),
        (SQL,),
    ),
    Bad(
        "assignee-dotdot",
        C,
        "dispatch",
        {
            "actor": COMMUNITY_ADMIN,
            "severity": "minor",
            "handling_class": "immediate",
            "assignee": "../gw-1",
        },
        ("assignee: String should match pattern",),
        ("../",),
    ),
    Bad(
        "target-sql",
        C,
        "merge_into",
        {"actor": COMMUNITY_ADMIN, "target_case_id": f"case-{SOURCE}-x{SQL}"},
        ("target_case_id: String should match pattern",),
        (SQL,),
    ),
    Bad(
        "target-dotdot",
        C,
        "merge_into",
        {"actor": COMMUNITY_ADMIN, "target_case_id": "../case-hotline_12345-x"},
        ("target_case_id",),
        ("../",),
    ),
    Bad(
        "department-slash",
        R,
        "summon_departments",
        {"actor": STREET_OFFICER, "departments": ["WATER/../ALL"], "reason": "x"},
        ("departments.0: String should match pattern",),
        ("../",),
    ),
    # 1 MB texts
    Bad(
        "text-1mb",
        C,
        "add_note",
        note(text=MB),
        ("text: String should have at most 4000 characters",),
    ),
    Bad(
        "reason-1mb",
        C,
        "withdraw",
        {"actor": RESIDENT, "reason": MB},
        ("reason: String should have at most",),
    ),
    Bad(
        "summary-1mb",
        R,
        "report_resolution",
        {"actor": STREET_OFFICER, "summary": MB},
        ("summary: String should have at most 4000",),
    ),
    # control characters
    Bad(
        "text-nul",
        C,
        "add_note",
        note(text="已处理\x00"),
        ("text: Value error, must not contain control",),
    ),
    Bad(
        "reason-ansi",
        C,
        "return_case",
        {"actor": GRID_WORKER, "reason": "\x1b[31m红"},
        ("reason: Value error",),
    ),
    Bad(
        "participant-backspace",
        C,
        "record_deliberation",
        {"actor": GRID_WORKER, "participants": ["网格员\x08"], "decision": "换灯"},
        ("participants.0: Value error, must not contain control characters",),
    ),
    # the wrong step
    Bad(
        "step-report_resolution",
        C,
        "report_resolution",
        {"actor": GRID_WORKER, "summary": "已更换"},
        ("report_resolution: not allowed in step collect (only in deliberate or resolve)",),
    ),
    Bad(
        "step-check_in",
        C,
        "check_in",
        {"actor": GRID_WORKER},
        ("check_in: not allowed in step collect",),
    ),
    Bad(
        "step-record_feedback",
        C,
        "record_feedback",
        {"actor": RESIDENT, "accepted": True, "satisfaction": "satisfied"},
        ("record_feedback: not allowed in step collect",),
    ),
    Bad(
        "step-record_revisit",
        C,
        "record_revisit",
        {"actor": GRID_WORKER, "satisfaction": "satisfied"},
        ("record_revisit: not allowed in step collect",),
    ),
    Bad(
        "step-summon",
        C,
        "summon_departments",
        {"actor": STREET_OFFICER, "departments": ["DEPT-WATER"], "reason": "管道"},
        ("summon_departments: not allowed in step collect",),
    ),
    Bad(
        "step-dispatch-again",
        C,
        "dispatch",
        {"actor": COMMUNITY_ADMIN, "severity": "minor", "handling_class": "immediate"},
        ("dispatch: the case is already dispatched",),
    ),
    Bad(
        "step-decide-without-request",
        C,
        "decide_extension",
        {"actor": STREET_OFFICER, "approved": True},
        ("decide_extension: no extension request is waiting",),
    ),
    Bad(
        "step-claim-in-resolve",
        R,
        "claim",
        {"actor": STREET_OFFICER},
        ("claim: not allowed in step resolve",),
    ),
    Bad(
        "step-deliberate-in-resolve",
        R,
        "record_deliberation",
        {"actor": STREET_OFFICER, "participants": ["街道"], "decision": "再议"},
        ("record_deliberation: not allowed in step resolve",),
    ),
    # the wrong actor
    Bad(
        "other-grid-worker-claims",
        C,
        "claim",
        {"actor": OTHER_GRID_WORKER},
        ("claim: actor", "(grid_worker) may not claim: not a handler"),
    ),
    Bad(
        "other-grid-worker-notes",
        C,
        "add_note",
        note(actor=OTHER_GRID_WORKER),
        ("add_note: actor", "(grid_worker) has no part in this case"),
    ),
    Bad(
        "other-grid-worker-returns",
        C,
        "return_case",
        {"actor": OTHER_GRID_WORKER, "reason": "不是本网格"},
        ("return_case: actor", "(grid_worker) is not a handler"),
    ),
    Bad(
        "other-resident-withdraws",
        C,
        "withdraw",
        {"actor": OTHER_RESIDENT, "reason": "不需要了"},
        ("withdraw: actor (resident) may not withdraw",),
        ("res-2",),
    ),
    Bad(
        "phone-resident-notes",
        C,
        "add_note",
        note(actor=PHONE_RESIDENT),
        ("add_note: actor (resident) has no part",),
    ),
    Bad(
        "resident-claims",
        C,
        "claim",
        {"actor": RESIDENT},
        ("claim: actor (resident) may not claim",),
        ("res-1",),
    ),
    Bad(
        "grid-worker-merges",
        C,
        "merge_into",
        {"actor": GRID_WORKER, "target_case_id": f"case-{SOURCE}-T1"},
        ("merge_into: actor", "(grid_worker) may not merge"),
    ),
    Bad("department-claims", C, "claim", {"actor": SUMMONED}, ("may not claim",)),
    Bad(
        "unsummoned-department-reports",
        R,
        "record_department_report",
        {"actor": NOT_SUMMONED, "report": "已修复"},
        ("is not a department summoned to this case",),
    ),
    Bad(
        "unsummoned-department-notes",
        R,
        "add_note",
        note(actor=NOT_SUMMONED),
        ("add_note: actor", "(department) has no part in this case"),
    ),
    Bad(
        "other-street-summons",
        R,
        "summon_departments",
        {"actor": OTHER_STREET_OFFICER, "departments": ["DEPT-GAS"], "reason": "燃气"},
        ("summon_departments: actor", "(street_officer) may not summon departments"),
    ),
    Bad(
        "grid-worker-summons",
        R,
        "summon_departments",
        {"actor": GRID_WORKER, "departments": ["DEPT-GAS"], "reason": "燃气"},
        ("may not summon departments",),
    ),
    Bad(
        "summon-again",
        R,
        "summon_departments",
        {"actor": STREET_OFFICER, "departments": ["DEPT-WATER"], "reason": "再吹哨"},
        ("departments already summoned: DEPT-WATER",),
    ),
    Bad(
        "resolution-before-reports",
        R,
        "report_resolution",
        {"actor": STREET_OFFICER, "summary": "已解决"},
        ("summoned departments have not reported: DEPT-WATER",),
    ),
    Bad(
        "department-withdraws",
        R,
        "withdraw",
        {"actor": SUMMONED, "reason": "x"},
        ("may not withdraw",),
    ),
    Bad(
        "grid-worker-extension-at-street",
        R,
        "request_extension",
        {"actor": GRID_WORKER, "extra": "P2D", "reason": "等配件"},
        ("request_extension: actor", "(grid_worker) is not a handler"),
    ),
    Bad(
        "merge-into-itself",
        R,
        "merge_into",
        {"actor": COMMUNITY_ADMIN, "target_case_id": "{self}"},
        ("merge_into: target_case_id: a case cannot be merged into itself",),
    ),
]

# Payloads that are not a JSON object: refused by the workflow's validator (CLI) and by
# the client before anything is sent.
NOT_AN_OBJECT = [
    pytest.param('[1, 2, "13912345678"]', id="list"),
    pytest.param(f"[{json.dumps(NOTE['actor'])}]", id="list-of-actor"),
    pytest.param(f'"{PHONE}"', id="string"),
    pytest.param("null", id="null"),
    pytest.param("42", id="number"),
]

UNKNOWN_UPDATES = ["bogus_command", "state", "Dispatch", "add_note "]


def resolved(payload: Any, case_id: str) -> Any:
    return json.loads(json.dumps(payload).replace("{self}", case_id))


@dataclass
class Snapshot:
    history_length: int  # a history only grows: the same length, the same history
    rows: list[tuple[Any, ...]]
    version: Any


async def snapshot(env: WorkflowEnvironment, pool: asyncpg.Pool, case_id: str) -> Snapshot:
    described = await env.client.get_workflow_handle(case_id).describe()
    rows, version = await stored(pool, case_id)
    return Snapshot(described.raw_description.workflow_execution_info.history_length, rows, version)


async def assert_untouched_and_alive(
    env: WorkflowEnvironment, pool: asyncpg.Pool, client: CaseClient, case_id: str, before: Snapshot
) -> None:
    """Nothing new in the history (no update event, no failed task), nothing in PostgreSQL,
    and a valid command is applied afterwards."""
    after = await snapshot(env, pool, case_id)
    assert after.history_length == before.history_length
    assert (after.rows, after.version) == (before.rows, before.version)
    summary = await client.send(case_id, "add_note", NOTE)
    assert summary.version == before.version + 1
    rows, version = await stored(pool, case_id)
    assert rows[:-1] == before.rows and rows[-1][1] == "note_added" and version == summary.version


@pytest.mark.parametrize("bad", COMMANDS_REFUSED, ids=lambda bad: bad.id)
async def test_client_command_refused_cleanly(
    client: CaseClient,
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    cases: dict[str, str],
    bad: Bad,
) -> None:
    case_id = cases[bad.case]
    before = await snapshot(dev_env, pool, case_id)
    with pytest.raises(CommandRefused) as refused:
        await client.send(case_id, bad.name, resolved(bad.payload, case_id))
    message = str(refused.value)
    for fragment in bad.says:
        assert fragment in message, message
    assert_no_secret(message, bad.secrets)
    await assert_untouched_and_alive(dev_env, pool, client, case_id, before)


async def cli_update(env: WorkflowEnvironment, case_id: str, name: str, raw: str) -> Any:
    """`temporal workflow update execute` with plain JSON, as a system without Python would."""
    return await temporal(
        env,
        "workflow",
        "update",
        "execute",
        "--workflow-id",
        case_id,
        "--name",
        name,
        json_input=raw,
    )


@pytest.mark.parametrize("bad", COMMANDS_REFUSED, ids=lambda bad: bad.id)
async def test_cli_command_refused_cleanly(
    client: CaseClient,
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    cases: dict[str, str],
    bad: Bad,
) -> None:
    case_id = cases[bad.case]
    before = await snapshot(dev_env, pool, case_id)
    raw = json.dumps(resolved(bad.payload, case_id), ensure_ascii=False)
    code, _out, err = await cli_update(dev_env, case_id, bad.name, raw)
    assert code != 0
    assert "CommandRefused" in err and "retryable: false" in err, err
    for fragment in bad.says:
        assert fragment in err, err
    assert_no_secret(err, bad.secrets)
    await assert_untouched_and_alive(dev_env, pool, client, case_id, before)


@pytest.mark.parametrize("raw", NOT_AN_OBJECT)
async def test_cli_command_not_an_object_refused_cleanly(
    client: CaseClient,
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    cases: dict[str, str],
    raw: str,
) -> None:
    case_id = cases[C]
    before = await snapshot(dev_env, pool, case_id)
    code, _out, err = await cli_update(dev_env, case_id, "add_note", raw)
    assert code != 0
    assert "add_note: the payload must be a JSON object" in err and "CommandRefused" in err, err
    assert_no_secret(err)
    await assert_untouched_and_alive(dev_env, pool, client, case_id, before)


@pytest.mark.parametrize("raw", NOT_AN_OBJECT)
async def test_client_command_not_an_object_refused_cleanly(
    client: CaseClient,
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    cases: dict[str, str],
    raw: str,
) -> None:
    case_id = cases[C]
    before = await snapshot(dev_env, pool, case_id)
    with pytest.raises(CommandRefused, match="add_note: the payload must be a JSON object"):
        await client.send(case_id, "add_note", json.loads(raw))
    await assert_untouched_and_alive(dev_env, pool, client, case_id, before)


@pytest.mark.parametrize("name", UNKNOWN_UPDATES)
async def test_unknown_update_is_rejected_and_leaves_nothing(
    client: CaseClient,
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    cases: dict[str, str],
    name: str,
) -> None:
    case_id = cases[C]
    before = await snapshot(dev_env, pool, case_id)
    payload = json.dumps(note(text=f"电话 {PHONE}"), ensure_ascii=False)
    # the CLI reaches the workflow, whose SDK rejects an update it has no handler for
    code, _out, err = await cli_update(dev_env, case_id, name, payload)
    assert code != 0 and "expected but not found" in err, err
    assert_no_secret(err)
    # the client knows the command names and sends nothing
    with pytest.raises(CommandRefused, match="unknown command") as refused:
        await client.send(case_id, name, json.loads(payload))
    assert_no_secret(str(refused.value))
    await assert_untouched_and_alive(dev_env, pool, client, case_id, before)


COMMANDS_ACCEPTED = [
    pytest.param(C, "add_note", note(text="居民说灯还是不亮 😢\n明早再去看看"), id="note-emoji"),
    pytest.param(C, "add_note", note(actor=RESIDENT, text="谢谢网格员！🙏"), id="note-resident"),
    pytest.param(R, "add_note", note(actor=SUMMONED, text="水务已派人"), id="note-department"),
    pytest.param(C, "add_note", note(text="长" * 4000), id="note-longest"),
]


@pytest.mark.parametrize(("case", "name", "payload"), COMMANDS_ACCEPTED)
@pytest.mark.parametrize("path", ["client", "cli"])
async def test_valid_commands_with_chinese_and_emoji_are_applied(
    client: CaseClient,
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    cases: dict[str, str],
    path: str,
    case: str,
    name: str,
    payload: dict[str, Any],
) -> None:
    case_id = cases[case]
    rows, version = await stored(pool, case_id)
    if path == "client":
        await client.send(case_id, name, payload)
    else:
        raw = json.dumps(payload, ensure_ascii=False)
        code, _out, err = await cli_update(dev_env, case_id, name, raw)
        # applied; but the worker encrypts its answer and this CLI has no codec server, so
        # it cannot print the result and exits 1 (README: export TEMPORAL_CODEC_ENDPOINT)
        assert code == 0 or UNREADABLE_RESULT in err, err
    after, after_version = await stored(pool, case_id)
    assert after[:-1] == rows and after[-1][1] == "note_added" and after_version == version + 1
    events = await client.events(case_id)
    assert events[-1].type == "note_added" and events[-1].text == payload["text"]  # type: ignore[union-attr]
    names = [n for n, _ in await history_events(dev_env, case_id)]
    assert "EVENT_TYPE_WORKFLOW_TASK_FAILED" not in names


async def test_the_shared_cases_never_failed_a_workflow_task(
    dev_env: WorkflowEnvironment, cases: dict[str, str]
) -> None:
    """After all of the above: the cases took every refusal without a failed workflow task."""
    for case_id in cases.values():
        names = [name for name, _ in await history_events(dev_env, case_id)]
        assert "EVENT_TYPE_WORKFLOW_TASK_FAILED" not in names
        assert "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_REJECTED" not in names
        handle = dev_env.client.get_workflow_handle(case_id)
        assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING
