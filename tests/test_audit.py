"""The audit trail end to end on a Temporal dev server that suggests continue-as-new
early (after 60 history events), so every lifecycle here spans several runs: cases go on
across runs with their state, and `casectl audit` exports every run, replays the chain
against the code and PostgreSQL, and catches a tampered row."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from caseloop.client import CaseClient
from domain.model import Step
from support import BIN, CONVERTER, KEYS, LIFECYCLE, RESIDENT, report
from support import casectl as run_casectl
from worker import register_search_attributes

MakeWorker = Callable[[Client], Worker]


@pytest_asyncio.fixture(scope="module")
async def can_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        data_converter=CONVERTER,
        ui=False,
        dev_server_log_level="error",
        dev_server_extra_args=[
            "--dynamic-config-value",
            "limit.historyCount.suggestContinueAsNew=25",
        ],
    )
    await register_search_attributes(env.client, "default")
    yield env
    await env.shutdown()


@pytest.fixture
def cli_env(can_env: WorkflowEnvironment, pg_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "TEMPORAL_ADDRESS": can_env.client.service_client.config.target_host,
        "CASE_ENCRYPTION_KEYS": KEYS,
        "DATABASE_URL": pg_url,
        "CASELOOP_DATA": str(tmp_path / "no-stack"),  # no local `make run` settings
    }


async def casectl(env: dict[str, str], *args: str) -> tuple[int, str]:
    """casectl's exit status and its output and errors together."""
    code, out, err = await run_casectl(env, *args)
    return code, out + err


async def runs_of(client: Client, case_id: str) -> list[str]:
    return [e.run_id async for e in client.list_workflows(f"WorkflowId = '{case_id}'")]


async def lifecycle(client: CaseClient, ref: str) -> str:
    opened = await client.open_case(report(ref))
    for name, payload in LIFECYCLE[:5]:
        await client.send(opened.case_id, name, payload, command_id=f"{ref}-{name}")
    rejected = {"actor": RESIDENT, "accepted": False, "satisfaction": "unsatisfied"}
    await client.send(opened.case_id, "record_feedback", rejected, command_id=f"{ref}-no")
    await client.send(opened.case_id, *LIFECYCLE[4], command_id=f"{ref}-again")
    for name, payload in LIFECYCLE[5:]:
        await client.send(opened.case_id, name, payload, command_id=f"{ref}-{name}")
    return opened.case_id


async def test_a_case_continues_as_new_with_its_state_and_command_ids(
    can_env: WorkflowEnvironment, case_worker: MakeWorker, task_queue: str, pool: asyncpg.Pool
) -> None:
    client = CaseClient(can_env.client, task_queue)
    async with case_worker(can_env.client):
        opened = await client.open_case(report())
        case_id = opened.case_id
        for name, payload in LIFECYCLE[:5]:
            await client.send(case_id, name, payload, command_id=f"{case_id}-{name}")
        assert len(await runs_of(can_env.client, case_id)) >= 2
        # a command retried after the case moved to a new run is applied once
        repeated = await client.send(
            case_id, *LIFECYCLE[4], command_id=f"{case_id}-report_resolution"
        )
        assert repeated.step is Step.FEEDBACK
        state = await client.state(case_id)
        # the opening and its intake clock, then one event per command
        assert state.step is Step.FEEDBACK and state.version == 7
        for name, payload in LIFECYCLE[5:]:
            await client.send(case_id, name, payload, command_id=f"{case_id}-{name}")
        archived = await client.result(case_id)
    assert archived.outcome is not None and archived.on_time
    rows = await pool.fetch(
        "SELECT seq, type, run_id, command_id FROM case_events WHERE case_id = $1 ORDER BY seq",
        case_id,
    )
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert [r["type"] for r in rows].count("resolution_reported") == 1
    assert len({r["run_id"] for r in rows}) >= 2  # recorded by more than one run
    assert rows[-1]["type"] == "case_archived"


async def test_audit_exports_replays_and_catches_tampering(
    can_env: WorkflowEnvironment,
    case_worker: MakeWorker,
    task_queue: str,
    pool: asyncpg.Pool,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    client = CaseClient(can_env.client, task_queue)
    async with case_worker(can_env.client):
        case_ids = [await lifecycle(client, f"audit-{i}-{tmp_path.name[-6:]}") for i in (1, 2)]
        # a case still open is exported as far as it got
        open_case = (await client.open_case(report())).case_id
        await client.send(open_case, *LIFECYCLE[0])
    runs = {c: await runs_of(can_env.client, c) for c in case_ids}
    assert all(len(r) >= 2 for r in runs.values()), runs
    out = tmp_path / "export"

    code, text = await casectl(cli_env, "audit", "export", *case_ids, open_case, "--out", str(out))
    assert code == 0, text
    total = sum(len(r) for r in runs.values()) + 1
    assert f"exported {total} histories" in text
    for case_id in case_ids:
        assert len(list((out / case_id).glob("*.json"))) == len(runs[case_id])

    code, text = await casectl(cli_env, "audit", "replay", str(out), "--json")
    assert code == 0, text
    report_ = json.loads(text)
    assert report_["cases"] == 3 and report_["histories"] == total
    assert report_["compared_with_database"] and report_["problems"] == []

    code, text = await casectl(cli_env, "audit", "verify-chain", *case_ids)
    assert code == 0 and "0 broken chains" in text, text

    # tamper with one row: the resolution summary of the first case
    victim = case_ids[0]
    async with forged_resolution(pool, victim) as seq:
        code, text = await casectl(cli_env, "audit", "verify-chain", *case_ids)
        assert code == 1, text
        assert f"{victim}: first tampered row seq {seq} (resolution_reported)" in text
        assert "1 broken chains" in text
        code, text = await casectl(cli_env, "audit", "replay", str(out))
        assert code == 1, text
        assert f"MISMATCH {victim} at seq {seq}" in text
        assert case_ids[1] not in text
        # a forged row with a recomputed chain is still caught by the replay
        await _rechain(pool, victim)
        code, text = await casectl(cli_env, "audit", "verify-chain", victim)
        assert code == 0, text
        code, text = await casectl(cli_env, "audit", "replay", str(out / victim))
        assert code == 1 and f"at seq {seq}" in text and "other content" in text, text
    code, text = await casectl(cli_env, "audit", "replay", str(out / victim))
    assert code == 0, text


async def test_an_export_nested_in_another_is_counted_once(
    can_env: WorkflowEnvironment,
    case_worker: MakeWorker,
    task_queue: str,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """The README's audit: an export into audit/, another into audit/s01, then a replay of
    audit/: the nested folder holds the same runs again (one of them, of a case still open,
    grew between the two exports). Each run is replayed once and the copies are reported
    as duplicates, not as a mismatch."""
    client = CaseClient(can_env.client, task_queue)
    async with case_worker(can_env.client):
        closed = await lifecycle(client, f"twice-{tmp_path.name[-6:]}")
        still_open = (await client.open_case(report())).case_id
        out = tmp_path / "audit"
        code, text = await casectl(
            cli_env, "audit", "export", closed, still_open, "--out", str(out)
        )
        assert code == 0, text
        await client.send(still_open, *LIFECYCLE[0])  # the open case moves on
        nested = out / "s01"
        code, text = await casectl(
            cli_env, "audit", "export", closed, still_open, "--out", str(nested)
        )
        assert code == 0, text
    runs = len(await runs_of(can_env.client, closed)) + 1
    assert runs >= 3

    code, text = await casectl(cli_env, "audit", "replay", str(out), "--json")
    assert code == 0, text
    found = json.loads(text)
    assert found["problems"] == [] and found["histories"] == runs, found
    duplicates = found["duplicates"]
    assert len(duplicates) == runs, duplicates
    assert {Path(d["source"]).parent.parent for d in duplicates} | {
        Path(d["same_as"]).parent.parent for d in duplicates
    } == {out, nested}
    # the copy of the open case exported later holds more: that one is replayed
    (grown,) = [d for d in duplicates if d["case_id"] == still_open]
    assert Path(grown["same_as"]).is_relative_to(nested), grown

    code, text = await casectl(cli_env, "audit", "replay", str(out))
    assert code == 0 and "MISMATCH" not in text, text
    assert f"{runs} duplicate histories counted once" in text, text


@contextlib.asynccontextmanager
async def forged_resolution(pool: asyncpg.Pool, case_id: str) -> AsyncIterator[int]:
    """The case's resolution summary changed in case_events (its chain left broken); the
    seq of the forged row. The row and its chain are put back afterwards."""
    seq = await pool.fetchval(
        "SELECT min(seq) FROM case_events WHERE case_id = $1 AND type = 'resolution_reported'",
        case_id,
    )
    original = await pool.fetchval(
        "SELECT payload FROM case_events WHERE case_id = $1 AND seq = $2", case_id, seq
    )
    update = "UPDATE case_events SET payload = $3 WHERE case_id = $1 AND seq = $2"
    await pool.execute(update, case_id, seq, {**original, "summary": "已解决 (forged)"})
    try:
        yield seq
    finally:
        await pool.execute(update, case_id, seq, original)
        await _rechain(pool, case_id)


async def _rechain(pool: asyncpg.Pool, case_id: str) -> None:
    """What a forger with database access would do: recompute every hash after a change."""
    from activities.store import GENESIS, event_hash

    prev = GENESIS
    rows = await pool.fetch(
        "SELECT seq, type, payload FROM case_events WHERE case_id = $1 ORDER BY seq", case_id
    )
    for row in rows:
        payload: dict[str, Any] = row["payload"]
        digest = event_hash(prev, case_id, row["seq"], row["type"], payload["occurred_at"], payload)
        await pool.execute(
            "UPDATE case_events SET prev_hash = $3, hash = $4 WHERE case_id = $1 AND seq = $2",
            case_id,
            row["seq"],
            prev,
            digest,
        )
        prev = digest


async def test_a_history_shown_by_the_temporal_cli_replays(
    can_env: WorkflowEnvironment,
    case_worker: MakeWorker,
    task_queue: str,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    client = CaseClient(can_env.client, task_queue)
    async with case_worker(can_env.client):
        opened = await client.open_case(report())
        await client.send(opened.case_id, *LIFECYCLE[0])
        await client.send(opened.case_id, "withdraw", {"actor": RESIDENT, "reason": "已解决"})
        await client.result(opened.case_id)
    path = tmp_path / f"{opened.case_id}.json"
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "temporal"),
        "workflow",
        "show",
        "--workflow-id",
        opened.case_id,
        "--output",
        "json",
        "--address",
        cli_env["TEMPORAL_ADDRESS"],
        stdout=asyncio.subprocess.PIPE,
    )
    shown, _ = await proc.communicate()
    assert proc.returncode == 0
    path.write_bytes(shown)
    code, text = await casectl(cli_env, "audit", "replay", str(path))
    assert code == 0 and "1 cases, 1 histories" in text and "history and case_events" in text, text


async def test_audit_errors_are_one_line_and_exit_2(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    broken = tmp_path / "case-hotline_12345-x.json"
    broken.write_text('{"events": [\n  {"eventId": "1",\n}', encoding="utf-8")
    code, text = await casectl(cli_env, "audit", "replay", str(broken))
    assert code == 2 and "not JSON (line 3, column 1)" in text, text
    anonymous = tmp_path / "history.json"
    anonymous.write_text('{"events": []}', encoding="utf-8")
    code, text = await casectl(cli_env, "audit", "replay", str(anonymous))
    assert code == 2 and "cannot tell the case id" in text, text
    code, text = await casectl(cli_env, "audit", "replay", str(tmp_path / "missing"))
    assert code == 2 and "no such file or folder" in text, text
    code, text = await casectl(
        cli_env, "audit", "export", "case-visit-nothing-here", "--out", str(tmp_path / "o")
    )
    assert code == 2 and "no case matches" in text, text
    code, text = await casectl(cli_env, "audit", "export", "--since", "2026-11-01", "--out", "x")
    assert code == 2 and "--since: give the offset" in text, text
    no_db = {**cli_env, "DATABASE_URL": "postgresql://nobody@/none?host=/nonexistent"}
    code, text = await casectl(no_db, "audit", "verify-chain")
    assert code == 2 and "cannot reach PostgreSQL (DATABASE_URL)" in text, text
    no_temporal = {**cli_env, "TEMPORAL_ADDRESS": "localhost:1"}
    code, text = await casectl(no_temporal, "audit", "export", "--out", str(tmp_path / "o"))
    assert code == 2 and "cannot reach Temporal at localhost:1" in text, text
    assert "Traceback" not in text


def _rows(case_id: str, events: list[Any], keyring: Any) -> list[dict[str, Any]]:
    """case_events rows as the store writes them (sealed with keys, clear without)."""
    from activities.store import GENESIS, event_hash, stored_payload

    rows, prev = [], GENESIS
    for e in events:
        payload = stored_payload(e, case_id, keyring)
        digest = event_hash(prev, case_id, e.seq, e.type, payload["occurred_at"], payload)
        rows.append(
            {
                "case_id": case_id,
                "seq": e.seq,
                "type": e.type,
                "payload": payload,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    return rows


def test_compare_reads_sealed_rows_and_rows_from_before_sealing() -> None:
    from datetime import UTC, datetime

    from caseloop.audit import compare
    from domain.commands import parse_open_case
    from domain.decider import apply_batch, open_case
    from domain.policy import DEFAULT_POLICY
    from support import KEYRING

    case_id = "case-hotline_12345-compare-1"
    opened = open_case(
        case_id, parse_open_case(report("compare-1")), datetime.now(UTC), DEFAULT_POLICY
    )
    _, events = apply_batch(None, opened[:1])  # the opening alone (not its intake clock)
    sealed = _rows(case_id, events, KEYRING)
    assert "13800000000" not in json.dumps(sealed)
    assert compare(case_id, events, sealed, KEYRING, complete=True) is None
    clear = _rows(case_id, events, None)  # written before personal fields were sealed
    assert compare(case_id, events, clear, KEYRING, complete=True) is None
    unreadable = compare(case_id, events, sealed, None, complete=True)
    assert unreadable is not None and "CASE_ENCRYPTION_KEYS is needed" in unreadable.what
    # another phone in a clear row, the chain recomputed: the content gives it away
    forged_payload = json.loads(json.dumps(clear[0]["payload"]).replace("13800000000", "1"))
    forged = _rows(case_id, events, None)
    from activities.store import GENESIS, event_hash

    forged[0]["payload"] = forged_payload
    forged[0]["hash"] = event_hash(
        GENESIS, case_id, 1, events[0].type, forged_payload["occurred_at"], forged_payload
    )
    found = compare(case_id, events, forged, KEYRING, complete=True)
    assert found is not None and found.seq == 1 and "other content" in found.what
    # a row missing at the end of a closed history, and a derived event with no row
    assert compare(case_id, events, sealed[:0], KEYRING, complete=True) is not None


GOLDEN = Path(__file__).parent / "golden"


def _replayed(source: str, events: list[Any]) -> Any:
    """A run as replayed, started the day of its first seq (runs are ordered by start)."""
    from datetime import UTC, datetime, timedelta

    from caseloop.audit import Replayed

    return Replayed(
        workflow_id="case-hotline_12345-runs",
        run_id=source,
        chain="first",
        source=source,
        started_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=events[0].seq),
        failure=None,
        closed=False,
        events=events,
    )


def test_copies_of_a_run_are_told_apart_from_a_missing_run() -> None:
    from caseloop.audit import audit_case, distinct, load_history
    from support import lifecycle_batches

    case_id = "case-hotline_12345-golden-plain"
    path = GOLDEN / "v4" / f"{case_id}.json"
    whole = load_history(path)
    start = load_history(path)  # exported while the case was still open
    del start.events[5:]
    forged = load_history(path)
    forged.events[3].event_time.seconds += 1
    kept, duplicates = distinct([("a/start", start), ("b/whole", whole), ("c/forged", forged)])
    assert [source for source, _ in kept] == ["b/whole"]
    assert [(d.source, d.same_as, d.differs_at) for d in duplicates] == [
        ("a/start", "b/whole", None),
        ("c/forged", "b/whole", forged.events[3].event_id),
    ]
    events = [e for batch in lifecycle_batches("runs") for e in batch.events]
    runs = [_replayed("r1", events[:3]), _replayed("r2", events[3:])]
    assert audit_case(case_id, runs, None, None, duplicates[:1]).problem is None
    parted = audit_case(case_id, runs, None, None, duplicates).problem
    assert parted is not None and "two copies of run" in parted and "c/forged" in parted
    # a run left out of the files: named as such, at the first seq no history holds
    missing = audit_case(case_id, [runs[0], _replayed("r3", events[5:])], None, None)
    assert missing.seq == 4 and missing.problem is not None
    assert "seq 4 to 5 are in no history" in missing.problem, missing.problem


async def test_a_replay_failure_is_named_by_its_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK tells a non-deterministic replay from a failed workflow task by type; for the
    latter the exception the workflow code raised is named, with where it was raised."""
    import workflows.case
    from caseloop.audit import load_history, replay
    from infra.crypto import Keyring, data_converter

    converter = data_converter(Keyring.parse((GOLDEN / "keyring.txt").read_text().strip()))
    history = load_history(GOLDEN / "v4" / "case-hotline_12345-golden-plain.json")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("policy")

    monkeypatch.setattr(workflows.case, "open_case", broken)
    (found,) = [r async for r in replay([("plain", history)], converter)]
    assert found.failure is not None and found.events == []
    assert found.failure.startswith("the workflow code raised KeyError: 'policy' ("), found.failure
    assert "test_audit.py, line" in found.failure, found.failure


def _cli_spelling(value: Any) -> Any:
    """A protobuf JSON history as `temporal workflow show -o json` and the UI spell it:
    enums without their prefix, in PascalCase ("WorkflowTaskScheduled", "Normal")."""
    prefixes = {"eventType": "EVENT_TYPE_", "kind": "TASK_QUEUE_KIND_"}
    if isinstance(value, list):
        return [_cli_spelling(v) for v in value]
    if not isinstance(value, dict):
        return value
    spelt = {}
    for key, v in value.items():
        if key in prefixes and isinstance(v, str):
            v = "".join(w.capitalize() for w in v.removeprefix(prefixes[key]).split("_"))
        spelt[key] = _cli_spelling(v)
    return spelt


async def test_a_history_loads_and_replays_alike_in_each_form(tmp_path: Path) -> None:
    """The export's JSON, the CLI's spelling of it and the protobuf bytes of a history are
    the same history events, and the replay derives the same domain events from each."""
    from caseloop.audit import SUFFIXES, history_bytes, load_history, replay
    from infra.crypto import Keyring, data_converter

    converter = data_converter(Keyring.parse((GOLDEN / "keyring.txt").read_text().strip()))
    case_id = "case-hotline_12345-golden-plain"
    exported = load_history(GOLDEN / "v5" / f"{case_id}.json")
    forms = {}
    for form, suffix in SUFFIXES.items():
        path = tmp_path / form / f"{case_id}{suffix}"
        path.parent.mkdir()
        path.write_bytes(history_bytes(exported, form))
        forms[form] = load_history(path)
    shown = json.loads(history_bytes(exported, "json"))
    cli = tmp_path / "cli" / f"{case_id}.json"
    cli.parent.mkdir()
    cli.write_text(json.dumps(_cli_spelling(shown)), encoding="utf-8")
    assert '"eventType": "WorkflowExecutionStarted"' in cli.read_text(encoding="utf-8")
    forms["cli"] = load_history(cli)
    for form, history in forms.items():
        assert history.workflow_id == case_id, form
        assert list(history.events) == list(exported.events), form
    replayed = [r async for r in replay(list(forms.items()), converter)]
    assert [r.source for r in replayed] == list(forms)
    assert all(r.failure is None and r.closed for r in replayed), replayed
    assert replayed[0].events and all(r.events == replayed[0].events for r in replayed)


def test_a_file_that_is_not_binary_history_is_named(tmp_path: Path) -> None:
    from caseloop.audit import history_files, load_history

    misnamed = tmp_path / "case-hotline_12345-golden-plain.binpb"
    misnamed.write_bytes((GOLDEN / "v5" / "case-hotline_12345-golden-plain.json").read_bytes())
    with pytest.raises(ValueError, match=r"not a Temporal history \(not History protobuf bytes\)"):
        load_history(misnamed)
    (tmp_path / "notes.txt").write_text("not a history", encoding="utf-8")
    assert list(history_files([tmp_path])) == [misnamed]


async def test_a_binary_export_audits_as_the_json_export(
    can_env: WorkflowEnvironment,
    case_worker: MakeWorker,
    task_queue: str,
    pool: asyncpg.Pool,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    client = CaseClient(can_env.client, task_queue)
    async with case_worker(can_env.client):
        case_id = await lifecycle(client, f"binary-{tmp_path.name[-6:]}")
    runs = len(await runs_of(can_env.client, case_id))
    assert runs >= 2
    folders = {form: tmp_path / form for form in ("json", "binary")}
    for form, folder in folders.items():
        code, text = await casectl(
            cli_env, "audit", "export", case_id, "--format", form, "--out", str(folder)
        )
        assert code == 0 and f"exported {runs} histories" in text, text
    assert len(list((folders["json"] / case_id).glob("*.json"))) == runs
    assert len(list((folders["binary"] / case_id).glob("*.binpb"))) == runs
    reports = {}
    for form, folder in folders.items():
        code, text = await casectl(cli_env, "audit", "replay", str(folder), "--json")
        assert code == 0, text
        reports[form] = json.loads(text)
        for measured in ("seconds", "histories_per_second"):
            del reports[form][measured]
    assert reports["binary"] == reports["json"]
    assert reports["json"]["histories"] == runs and reports["json"]["compared_with_database"]
    # both exports at once: each run is the same in both forms, replayed once
    code, text = await casectl(cli_env, "audit", "replay", str(tmp_path), "--json")
    assert code == 0, text
    both = json.loads(text)
    assert both["histories"] == runs and both["problems"] == []
    assert len(both["duplicates"]) == runs
    assert all(d["differs_at"] is None for d in both["duplicates"]), both["duplicates"]

    async with forged_resolution(pool, case_id) as seq:
        await _rechain(pool, case_id)
        for folder in folders.values():
            code, text = await casectl(cli_env, "audit", "replay", str(folder))
            assert code == 1 and f"MISMATCH {case_id} at seq {seq}" in text, text
            assert "other content" in text, text


async def test_a_replay_decrypts_the_history_and_encrypts_nothing() -> None:
    """What the replayed code sends goes nowhere, so the replay does not encrypt it."""
    from caseloop.audit import load_history, replay
    from infra.crypto import Keyring, data_converter

    class Counting(Keyring):
        encrypted = decrypted = 0

        def encrypt(self, plaintext: bytes, *, key_id: str | None = None) -> tuple[str, bytes]:
            self.encrypted += 1
            return super().encrypt(plaintext, key_id=key_id)

        def decrypt(self, key_id: str, blob: bytes) -> bytes:
            self.decrypted += 1
            return super().decrypt(key_id, blob)

    keyring = Counting.parse((GOLDEN / "keyring.txt").read_text().strip())
    history = load_history(GOLDEN / "v5" / "case-hotline_12345-golden-plain.json")
    (found,) = [r async for r in replay([("plain", history)], data_converter(keyring))]
    assert found.failure is None and found.events
    assert keyring.decrypted > 0 and keyring.encrypted == 0
