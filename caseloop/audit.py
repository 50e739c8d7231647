"""The audit: histories replayed against the current workflow code, the domain events
they derive compared with the `case_events` rows and their hash chain.

Replaying a history runs today's CaseWorkflow over the recorded history: a code change
that would take a different path fails as non-deterministic. While it replays, every
batch the code hands to `record_events` is captured: that is the domain event sequence
the current code derives from the history. Recomputing the hash chain over it (personal
fields sealed as the store seals them) and comparing with the stored rows checks, row by
row, that PostgreSQL holds what the history says happened.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.worker import (
    Interceptor,
    Replayer,
    StartActivityInput,
    UnsandboxedWorkflowRunner,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
    WorkflowReplayResult,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.contract import RECORD_EVENTS, EventBatch
from activities.store import Connection, first_broken_link, unsealed_payload
from caseloop.client import data_converter
from caseloop.crypto import Keyring
from domain.events import Event, event_payload
from domain.model import CASE_ID_PATTERN
from workflows.case import CaseWorkflow

_CASE_ID = re.compile(CASE_ID_PATTERN)
_CLOSING = {  # the attributes of the events that end a run
    f"workflow_execution_{end}_event_attributes"
    for end in ("completed", "failed", "canceled", "terminated", "continued_as_new", "timed_out")
}

# Batches captured during replay, by the replayed workflow's id (a replayer replays one
# history at a time; `_replayed` takes them when that history is done).
_captured: dict[str, list[EventBatch]] = defaultdict(list)


class _Capture(Interceptor):
    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _Inbound


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_Outbound(outbound))


class _Outbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        if input.activity == RECORD_EVENTS and input.args:
            _captured[workflow.info().workflow_id].append(input.args[0])
        return super().start_activity(input)


@dataclass
class Replayed:
    """One history replayed: the batches the current code derived, or why it failed."""

    workflow_id: str
    run_id: str
    chain: str  # the first run id of the case's chain of runs (continue-as-new)
    source: str
    started_at: str
    failure: str | None
    closed: bool  # the history ends with the run's close (completed, continued, ...)
    events: list[Event] = field(default_factory=list)


def is_case_id(value: str) -> bool:
    return _CASE_ID.fullmatch(value) is not None


def case_id_of(path: Path) -> str:
    """The case id of a history file, which a history does not carry: from the file name
    (`<case id>.json`), else from the folder (`<case id>/<run>.json`)."""
    for candidate in (path.stem, path.parent.name):
        if is_case_id(candidate):
            return candidate
    raise ValueError(
        f"{path}: cannot tell the case id; name the file <case id>.json "
        "or put it in a folder named after the case"
    )


def load_history(path: Path) -> WorkflowHistory:
    """A Temporal JSON history (`casectl audit export` or `temporal workflow show -o json`)."""
    workflow_id = case_id_of(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise ValueError(f"{path}: not a Temporal history (no events list)")
    return WorkflowHistory.from_json(workflow_id, data)


def history_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The .json files named, and those under the folders named, in a stable order."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*.json") if p.is_file())
        elif path.exists():
            yield path
        else:
            raise ValueError(f"{path}: no such file or folder")


def _first_attributes(history: WorkflowHistory) -> tuple[str, str, str]:
    """(run id, first run id of its continue-as-new chain, start time)."""
    first = history.events[0]
    attrs = first.workflow_execution_started_event_attributes
    return (
        attrs.original_execution_run_id,
        attrs.first_execution_run_id or attrs.original_execution_run_id,
        first.event_time.ToJsonString(),
    )


async def replay(
    histories: Iterable[tuple[str, WorkflowHistory]],
    converter: DataConverter,
    *,
    sandboxed: bool = False,
) -> AsyncIterator[Replayed]:
    """Replay (source, history) pairs one after another with the current CaseWorkflow.

    The sandbox is optional: determinism is decided by comparing the code's commands with
    the history either way; the sandbox also refuses non-deterministic calls (slower)."""
    replayer = Replayer(
        runtime=_quiet_runtime(),
        workflows=[CaseWorkflow],
        data_converter=converter,
        interceptors=[_Capture()],
        workflow_runner=_sandbox() if sandboxed else UnsandboxedWorkflowRunner(),
    )
    sources: dict[str, list[str]] = defaultdict(list)

    def feed() -> Iterator[WorkflowHistory]:
        for source, history in histories:
            sources[history.workflow_id].append(source)
            yield history

    async with replayer.workflow_replay_iterator(_aiter(feed())) as results:
        async for result in results:
            yield _replayed(result, sources[result.history.workflow_id].pop(0))


def replay_files(
    paths: Sequence[Path], keyring: Keyring | None, sandboxed: bool = False
) -> list[Replayed]:
    """Load and replay history files (one process's share of a parallel audit)."""

    async def work() -> list[Replayed]:
        histories = ((str(p), load_history(p)) for p in paths)
        return [r async for r in replay(histories, data_converter(keyring), sandboxed=sandboxed)]

    return asyncio.run(work())


def _quiet_runtime() -> Runtime:
    """A runtime that does not log failed replays to stderr: the report names them."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime(telemetry=TelemetryConfig(logging=None, metrics=None))
    logging.getLogger("temporalio").setLevel(logging.CRITICAL)
    return _runtime


_runtime: Runtime | None = None


def _failure_text(failure: Exception) -> str:
    """The gist of a replay failure: the workflow task's own message when core wraps it."""
    text = str(failure)
    inner = re.search(r'message: "((?:[^"\\]|\\.)*)"', text)
    gist = inner.group(1) if inner else text.splitlines()[0] if text else ""
    return f"{type(failure).__name__}: {gist}"[:500]


def _sandbox() -> SandboxedWorkflowRunner:
    from worker import SANDBOX

    return SANDBOX


async def _aiter(items: Iterable[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for item in items:
        yield item


def _replayed(result: WorkflowReplayResult, source: str) -> Replayed:
    history = result.history
    run_id, chain, started_at = _first_attributes(history)
    batches = _captured.pop(history.workflow_id, [])
    failure = result.replay_failure
    last = history.events[-1].WhichOneof("attributes") or ""
    return Replayed(
        workflow_id=history.workflow_id,
        run_id=run_id,
        chain=chain,
        source=source,
        started_at=started_at,
        failure=None if failure is None else _failure_text(failure),
        closed=last in _CLOSING,
        events=[event for batch in batches for event in batch.events],
    )


@dataclass(frozen=True)
class Mismatch:
    case_id: str
    seq: int | None
    what: str


def compare(
    case_id: str,
    derived: Sequence[Event],
    rows: Sequence[Mapping[str, Any]],
    keyring: Keyring | None,
    *,
    complete: bool,
) -> Mismatch | None:
    """The first difference between the events derived from a case's histories and its
    stored rows (all of them, in seq order), or None when the chain holds and every row
    says what the history says.

    The chain is checked over the rows as stored; each row's content is compared with the
    derived event with its personal fields unsealed, so rows written before sealing
    existed (personal data in clear) compare too. The derived events may start after
    seq 1 (only the later runs of a case that continued as new were exported);
    `complete` says the last history is closed, so rows beyond it are a difference rather
    than events recorded after the export."""
    broken = first_broken_link(rows)
    if broken is not None:
        return Mismatch(case_id, broken, "stored hash chain broken (row changed or removed)")
    by_seq = {int(row["seq"]): row for row in rows}
    for event in derived:
        row = by_seq.get(event.seq)
        if row is None:
            return Mismatch(case_id, event.seq, f"history has {event.type}, no row in case_events")
        if row["type"] != event.type:
            return Mismatch(
                case_id, event.seq, f"history derives {event.type}, case_events has {row['type']}"
            )
        try:
            content = unsealed_payload(row["payload"], case_id, keyring)
        except ValueError as exc:
            return Mismatch(case_id, event.seq, f"row cannot be read: {exc}")
        if content != event_payload(event):
            return Mismatch(
                case_id, event.seq, f"history derives {event.type}, the row says other content"
            )
    end = derived[-1].seq if derived else 0
    if complete and len(rows) > end:
        extra = by_seq[end + 1]
        return Mismatch(case_id, end + 1, f"case_events has {extra['type']}, the history has not")
    return None


async def stored_rows(conn: Connection, case_id: str) -> list[Mapping[str, Any]]:
    rows = await conn.fetch(
        "SELECT case_id, seq, type, payload, prev_hash, hash FROM case_events"
        " WHERE case_id = $1 ORDER BY seq",
        case_id,
    )
    return [dict(row) for row in rows]


@dataclass
class CaseAudit:
    """What the audit found for one case."""

    case_id: str
    histories: int
    events: int
    problem: str | None  # a replay failure or the first mismatch; None: all agree
    seq: int | None = None


def audit_case(
    case_id: str,
    runs: Sequence[Replayed],
    rows: Sequence[Mapping[str, Any]] | None,
    keyring: Keyring | None,
) -> CaseAudit:
    """Judge one case from its replayed runs (any order) and its stored rows (None: the
    replay alone)."""
    runs = sorted(runs, key=lambda r: r.started_at)
    events = [e for r in runs for e in r.events]
    failed = next((r for r in runs if r.failure is not None), None)
    if failed is not None:
        return CaseAudit(
            case_id, len(runs), len(events), f"replay failed ({failed.source}): {failed.failure}"
        )
    if any(b.seq != a.seq + 1 for a, b in pairwise(events)):
        return CaseAudit(case_id, len(runs), len(events), "the histories' events have gaps")
    mismatch = (
        None if rows is None else compare(case_id, events, rows, keyring, complete=runs[-1].closed)
    )
    if mismatch is None:
        return CaseAudit(case_id, len(runs), len(events), None)
    return CaseAudit(case_id, len(runs), len(events), mismatch.what, mismatch.seq)
