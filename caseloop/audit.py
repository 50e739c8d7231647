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
import dataclasses
import json
import logging
import re
import traceback
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from pydantic import BaseModel, ConfigDict
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History, HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.exceptions import FailureError
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.worker import (
    ExecuteWorkflowInput,
    HandleSignalInput,
    HandleUpdateInput,
    Interceptor,
    Replayer,
    StartActivityInput,
    StartLocalActivityInput,
    UnsandboxedWorkflowRunner,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
    WorkflowReplayResult,
)

from activities.contract import RECORD_EVENTS, EventBatch
from activities.store import Connection, first_broken_link, unsealed_payload
from domain.events import Event, event_payload
from domain.model import CASE_ID_PATTERN
from infra.crypto import Keyring, data_converter
from workflows.case import CaseWorkflow
from workflows.sandbox import SANDBOX

_CASE_ID = re.compile(CASE_ID_PATTERN)
# The file names of a history by its form: protobuf's JSON (for people and other tools),
# or the protobuf bytes (read in 0.1 ms where the JSON takes 5 to 6: docs/auditing.md)
SUFFIXES = {"json": ".json", "binary": ".binpb"}
_CLOSING = {  # the attributes of the events that end a run
    f"workflow_execution_{end}_event_attributes"
    for end in ("completed", "failed", "canceled", "terminated", "continued_as_new", "timed_out")
}

# Batches captured during replay, by the replayed workflow's id (a replayer replays one
# history at a time; `_replayed` takes them when that history is done), and the first
# exception the workflow code raised that fails a workflow task (not a FailureError, which
# fails the workflow or refuses an update as the history recorded).
_captured: dict[str, list[EventBatch]] = defaultdict(list)
_raised: dict[str, Exception] = {}


@contextmanager
def _noting_task_failure() -> Iterator[None]:
    try:
        yield
    except FailureError:
        raise
    except Exception as exc:
        _raised.setdefault(workflow.info().workflow_id, exc)
        raise


class _Capture(Interceptor):
    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _Inbound


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_Outbound(outbound))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        with _noting_task_failure():
            return await super().execute_workflow(input)

    async def handle_signal(self, input: HandleSignalInput) -> None:
        with _noting_task_failure():
            await super().handle_signal(input)

    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        with _noting_task_failure():
            return await super().handle_update_handler(input)


class _Outbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        if input.activity == RECORD_EVENTS and input.args:
            _captured[workflow.info().workflow_id].append(input.args[0])
        return super().start_activity(input)

    def start_local_activity(self, input: StartLocalActivityInput) -> workflow.ActivityHandle[Any]:
        if input.activity == RECORD_EVENTS and input.args:
            _captured[workflow.info().workflow_id].append(input.args[0])
        return super().start_local_activity(input)


@dataclass
class Replayed:
    """One history replayed: the batches the current code derived, or why it failed."""

    workflow_id: str
    run_id: str
    chain: str  # the first run id of the case's chain of runs (continue-as-new)
    source: str
    started_at: datetime
    failure: str | None  # why the replay failed, its kind first (see _failure_text)
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
    """A Temporal history: JSON (`casectl audit export`, `temporal workflow show -o json`),
    or the History message's protobuf bytes in a `.binpb` file (`--format binary`)."""
    workflow_id = case_id_of(path)
    events = _binary_events(path) if path.suffix == SUFFIXES["binary"] else _json_events(path)
    if not events:
        raise ValueError(f"{path}: not a Temporal history (no events)")
    return WorkflowHistory(workflow_id, events)


def history_bytes(history: WorkflowHistory, form: str) -> bytes:
    """A history as `load_history` reads it from a file named with `SUFFIXES[form]`."""
    if form == "binary":
        return History(events=history.events).SerializeToString()
    return history.to_json().encode()


def _json_events(path: Path) -> Sequence[HistoryEvent]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise ValueError(f"{path}: not a Temporal history (no events list)")
    try:  # protobuf's JSON, as the export writes it
        return json_format.ParseDict(data, History()).events
    except json_format.ParseError:
        # the Temporal CLI's and UI's enum spellings, or fields this SDK does not know:
        # the SDK's reader, which rewrites the enums in a copy and skips unknown fields
        return WorkflowHistory.from_json("", data).events


def _binary_events(path: Path) -> Sequence[HistoryEvent]:
    try:
        return History.FromString(path.read_bytes()).events
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    except DecodeError:
        raise ValueError(f"{path}: not a Temporal history (not History protobuf bytes)") from None


def history_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The files named, and the history files (`SUFFIXES`) under the folders named, in a
    stable order; a file named twice (a folder and a folder inside it) once."""
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.suffix in SUFFIXES.values() and p.is_file()
            )
        elif path.exists():
            found = [path]
        else:
            raise ValueError(f"{path}: no such file or folder")
        for file in found:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                yield file


def _first_attributes(history: WorkflowHistory) -> tuple[str, str, datetime]:
    """(run id, first run id of its continue-as-new chain, start time)."""
    first = history.events[0]
    attrs = first.workflow_execution_started_event_attributes
    return (
        attrs.original_execution_run_id,
        attrs.first_execution_run_id or attrs.original_execution_run_id,
        first.event_time.ToDatetime(tzinfo=UTC),
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
    if converter.payload_codec is not None:
        converter = dataclasses.replace(converter, payload_codec=_Unsent(converter.payload_codec))
    replayer = Replayer(
        runtime=_quiet_runtime(),
        workflows=[CaseWorkflow],
        data_converter=converter,
        interceptors=[_Capture()],
        workflow_runner=SANDBOX if sandboxed else UnsandboxedWorkflowRunner(),
    )
    sources: dict[str, list[str]] = defaultdict(list)

    def feed() -> Iterator[WorkflowHistory]:
        for source, history in histories:
            sources[history.workflow_id].append(source)
            yield history

    async with replayer.workflow_replay_iterator(_aiter(feed())) as results:
        async for result in results:
            yield _replayed(result, sources[result.history.workflow_id].pop(0))


class _Unsent(PayloadCodec):
    """A replay's codec: it decodes what the history holds, and leaves what the replayed
    code sends as it is (a replay sends nothing; commands are compared without their
    payloads), which spares encrypting every payload of every command again."""

    def __init__(self, codec: PayloadCodec) -> None:
        self._codec = codec

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return await self._codec.decode(payloads)


class Duplicate(BaseModel):
    """A history file holding a run that another file holds too (an export nested in
    another, a case exported twice): the run is replayed once, from the copy with the
    most events (a run only grows)."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    run_id: str
    source: str
    same_as: str  # the copy replayed
    differs_at: int | None = None  # the first event id where the copies disagree


def distinct(
    histories: Iterable[tuple[str, WorkflowHistory]],
) -> tuple[list[tuple[str, WorkflowHistory]], list[Duplicate]]:
    """Each run (workflow id and run id) once, and the other copies of it as duplicates.
    A copy that is not the beginning of the one replayed names where they part."""
    copies: dict[tuple[str, str], list[tuple[str, WorkflowHistory]]] = defaultdict(list)
    for source, history in histories:
        copies[(history.workflow_id, _first_attributes(history)[0])].append((source, history))
    kept: list[tuple[str, WorkflowHistory]] = []
    duplicates: list[Duplicate] = []
    for (case_id, run_id), found in copies.items():
        longest = max(range(len(found)), key=lambda i: len(found[i][1].events))
        same_as, replayed = found[longest]
        kept.append((same_as, replayed))
        for source, history in found[:longest] + found[longest + 1 :]:
            differs_at = next(
                (
                    a.event_id
                    for a, b in zip(history.events, replayed.events, strict=False)
                    if a != b
                ),
                None,
            )
            duplicates.append(
                Duplicate(
                    case_id=case_id,
                    run_id=run_id,
                    source=source,
                    same_as=same_as,
                    differs_at=differs_at,
                )
            )
    return kept, duplicates


@dataclass
class ReplayedFiles:
    replayed: list[Replayed]
    duplicates: list[Duplicate]


def replay_files(
    paths: Sequence[Path], keyring: Keyring | None, sandboxed: bool = False
) -> ReplayedFiles:
    """Load and replay history files, each run once (one process's share of a parallel
    audit: every file of a case in the same share, so that its duplicates are found)."""

    async def work() -> ReplayedFiles:
        kept, duplicates = distinct((str(p), load_history(p)) for p in paths)
        converter = data_converter(keyring)
        replayed = [r async for r in replay(kept, converter, sandboxed=sandboxed)]
        return ReplayedFiles(replayed, duplicates)

    return asyncio.run(work())


def _quiet_runtime() -> Runtime:
    """A runtime that does not log failed replays to stderr: the report names them."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime(telemetry=TelemetryConfig(logging=None, metrics=None))
    logging.getLogger("temporalio").setLevel(logging.CRITICAL)
    return _runtime


_runtime: Runtime | None = None


def _failure_text(failure: Exception, raised: Exception | None) -> str:
    """What made a replay fail, by the SDK's type of failure (as its replayer tests tell
    them apart): the code took another path than the history (NondeterminismError, with
    the history event core names), or the workflow code raised (the exception and where),
    or another workflow task failure as the SDK reports it."""
    if isinstance(failure, workflow.NondeterminismError):
        return f"NondeterminismError: the code takes another path than the history: {failure}"
    if raised is not None:
        where = traceback.extract_tb(raised.__traceback__)[-1]
        return (
            f"the workflow code raised {type(raised).__name__}: {raised} "
            f"({where.filename}, line {where.lineno})"
        )
    return f"{type(failure).__name__}: {failure}"[:500]


async def _aiter(items: Iterable[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for item in items:
        yield item


def _replayed(result: WorkflowReplayResult, source: str) -> Replayed:
    history = result.history
    run_id, chain, started_at = _first_attributes(history)
    batches = _captured.pop(history.workflow_id, [])
    raised = _raised.pop(history.workflow_id, None)
    failure = result.replay_failure
    last = history.events[-1].WhichOneof("attributes") or ""
    return Replayed(
        workflow_id=history.workflow_id,
        run_id=run_id,
        chain=chain,
        source=source,
        started_at=started_at,
        failure=None if failure is None else _failure_text(failure, raised),
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


def _discontinuity(runs: Sequence[Replayed]) -> tuple[int, str] | None:
    """The first derived event that does not follow the one before it, and why."""
    before: tuple[int, Replayed] | None = None
    for run in runs:
        for event in run.events:
            if before is not None and event.seq != before[0] + 1:
                seq, previous = before
                if run is previous:
                    return event.seq, f"{run.source} derives seq {event.seq} after seq {seq}"
                if event.seq > seq + 1:
                    return seq + 1, (
                        f"seq {seq + 1} to {event.seq - 1} are in no history: a run between "
                        f"{previous.source} and {run.source} is missing from the files"
                    )
                return event.seq, (
                    f"the runs overlap: {run.source} derives seq {event.seq}, "
                    f"{previous.source} derived up to seq {seq}"
                )
            before = event.seq, run
    return None


def audit_case(
    case_id: str,
    runs: Sequence[Replayed],
    rows: Sequence[Mapping[str, Any]] | None,
    keyring: Keyring | None,
    duplicates: Sequence[Duplicate] = (),
) -> CaseAudit:
    """Judge one case from its replayed runs (any order), the other copies of those runs
    (`distinct`) and its stored rows (None: the replay alone)."""
    runs = sorted(runs, key=lambda r: r.started_at)
    events = [e for r in runs for e in r.events]

    def found(problem: str | None, seq: int | None = None) -> CaseAudit:
        return CaseAudit(case_id, len(runs), len(events), problem, seq)

    failed = next((r for r in runs if r.failure is not None), None)
    if failed is not None:
        return found(f"replay failed ({failed.source}): {failed.failure}")
    parted = next((d for d in duplicates if d.differs_at is not None), None)
    if parted is not None:
        return found(
            f"two copies of run {parted.run_id} differ from history event {parted.differs_at}: "
            f"{parted.source} and {parted.same_as}"
        )
    gap = _discontinuity(runs)
    if gap is not None:
        return found(gap[1], gap[0])
    mismatch = (
        None if rows is None else compare(case_id, events, rows, keyring, complete=runs[-1].closed)
    )
    return found(None) if mismatch is None else found(mismatch.what, mismatch.seq)
