"""The notification outbox against the real embedded PostgreSQL and a real local HTTP
receiver (an aiohttp server): rows written in the append's transaction, delivery signed
and in order per case, a receiver down then back up, a notifier killed mid-delivery and
restarted, two notifiers at once, parking after N failures, `casectl notifications`.

Each test has a database of its own (created on the suite's server), so the outbox holds
only its notifications."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from activities.contract import EventBatch
from activities.db import create_pool, migrate
from activities.store import append
from caseloop.client import CaseClient
from devstack.stack import webhooks_banner
from infra.settings import Settings, SettingsError
from notifier.__main__ import retries
from notifier.delivery import Notifier, Retries
from support import (
    COMMUNITY_ADMIN,
    KEYRING,
    LIFECYCLE,
    POLICY,
    RESIDENT,
    lifecycle_batches,
    report,
)
from webhooks import FAST, SECRET, Receiver, hooks, run_until
from worker import build_worker

ROOT = Path(__file__).resolve().parent.parent
PHONE, NAME = "13800000000", "王阿姨"  # the reporter in support.report()


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass
class Outbox:
    url: str
    pool: asyncpg.Pool

    async def rows(self) -> list[asyncpg.Record]:
        return await self.pool.fetch("SELECT * FROM notifications ORDER BY case_id, seq")

    async def statuses(self) -> dict[str, str]:
        return {r["id"]: r["status"] for r in await self.rows()}

    async def wait_for(
        self, done: Callable[[list[asyncpg.Record]], bool], within: float = 60
    ) -> list[asyncpg.Record]:
        deadline = time.monotonic() + within
        while True:
            rows = await self.rows()
            if done(rows):
                return rows
            assert time.monotonic() < deadline, [(r["id"], r["status"]) for r in rows]
            await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def db(pg_url: str, pool: asyncpg.Pool) -> AsyncIterator[Outbox]:
    name = f"notify_{uuid.uuid4().hex[:12]}"
    await pool.execute(f'CREATE DATABASE "{name}"')
    url = with_database(pg_url, name)
    own = await create_pool(url, max_size=6)
    await migrate(own)
    yield Outbox(url, own)
    await own.close()
    await pool.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def cases(db: Outbox, n: int) -> list[list[EventBatch]]:
    """`n` cases of the hotline, each through its whole lifecycle (4 notifications)."""
    made = [lifecycle_batches(f"N{i:03d}-{uuid.uuid4().hex[:6]}") for i in range(n)]
    for batches in made:
        for batch in batches:
            await append(db.pool, batch, KEYRING)
    return made


async def all_delivered(db: Outbox) -> bool:
    return set((await db.statuses()).values()) == {"delivered"}


# ---------------------------------------------------------------------------- the outbox


async def test_rows_are_written_with_the_events_once_and_without_personal_data(
    db: Outbox,
) -> None:
    [batches] = await cases(db, 1)
    for batch in batches:  # an activity retried: the same append again
        await append(db.pool, batch, KEYRING)
    rows = await db.rows()
    assert [(r["seq"], r["kind"], r["status"]) for r in rows] == [
        (1, "accepted", "pending"),
        (2, "dispatched", "pending"),
        (6, "resolved", "pending"),
        (9, "archived", "pending"),
    ]
    events = await db.pool.fetch("SELECT seq, hash FROM case_events ORDER BY seq")
    hashes = {r["seq"]: r["hash"] for r in events}
    for r in rows:
        assert r["id"] == f"{r['case_id']}:{r['seq']}:{hashes[r['seq']][:12]}"
        assert r["payload"]["id"] == r["id"] and r["source"] == "hotline_12345"
    text = json.dumps([r["payload"] for r in rows], ensure_ascii=False)
    for personal in (PHONE, NAME, "res-1", "3号楼", "楼道灯"):
        assert personal not in text


@pytest.mark.parametrize("failing", ["cases", "notifications"])
async def test_a_failed_append_writes_neither_events_nor_notifications(
    db: Outbox, failing: str
) -> None:
    """The outbox insert is in the events' transaction: when the projection fails after
    the events were inserted, or the outbox insert itself fails, nothing stays."""
    [batches] = [lifecycle_batches(f"F{uuid.uuid4().hex[:8]}")]
    await db.pool.execute(
        """CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"""
    )
    await db.pool.execute(
        f"CREATE TRIGGER refuse BEFORE INSERT ON {failing} FOR EACH ROW EXECUTE FUNCTION refuse()"
    )
    with pytest.raises(asyncpg.RaiseError, match="refused by the test"):
        await append(db.pool, batches[0], KEYRING)
    counts = await db.pool.fetchrow(
        """SELECT (SELECT count(*) FROM case_events) AS events,
                  (SELECT count(*) FROM notifications) AS notifications,
                  (SELECT count(*) FROM cases) AS cases"""
    )
    assert dict(counts) == {"events": 0, "notifications": 0, "cases": 0}
    await db.pool.execute(f"DROP TRIGGER refuse ON {failing}")
    await append(db.pool, batches[0], KEYRING)  # and once it can, both are written
    assert [r["kind"] for r in await db.rows()] == ["accepted"]


async def test_a_lost_workflow_tasks_undelivered_notifications_go_with_its_events(
    db: Outbox,
) -> None:
    """A lost task's dispatch (seq 2) was written and its notification delivered; its
    claim (seq 3) written too. The retried task's dispatch replaces both events: the
    delivered notification stays on record, and the new event's has another id."""
    batches = lifecycle_batches(f"L{uuid.uuid4().hex[:8]}")

    def decided(batch: EventBatch, decided_in: int, hours: int = 0) -> EventBatch:
        events = [
            e.model_copy(update={"occurred_at": e.occurred_at + timedelta(hours=hours)})
            for e in batch.events
        ]
        return batch.model_copy(update={"events": events, "decided_in": decided_in})

    await append(db.pool, decided(batches[0], 5), KEYRING)
    await append(db.pool, decided(batches[1], 9), KEYRING)  # the lost task's dispatch
    lost = (await db.rows())[1]
    await db.pool.execute("UPDATE notifications SET status = 'delivered' WHERE id = $1", lost["id"])
    await append(db.pool, decided(batches[2], 9), KEYRING)
    await append(db.pool, decided(batches[1], 14, hours=1), KEYRING)
    rows = await db.rows()
    assert [(r["seq"], r["kind"], r["status"]) for r in rows] == [
        (1, "accepted", "pending"),
        (2, "dispatched", "delivered"),  # the lost one, already sent
        (2, "dispatched", "pending"),  # the event that took its place
    ]
    assert rows[1]["id"] == lost["id"] != rows[2]["id"]
    # a lost task's notification not yet delivered is deleted with its event
    other = lifecycle_batches(f"M{uuid.uuid4().hex[:8]}")
    await append(db.pool, decided(other[0], 5), KEYRING)
    await append(db.pool, decided(other[1], 9), KEYRING)
    pending = await db.pool.fetchval(
        "SELECT id FROM notifications WHERE case_id = $1 AND seq = 2", other[0].case_id
    )
    await append(db.pool, decided(other[1], 14, hours=1), KEYRING)
    again = await db.pool.fetch(
        "SELECT id, seq FROM notifications WHERE case_id = $1 ORDER BY seq", other[0].case_id
    )
    assert [r["seq"] for r in again] == [1, 2] and pending not in {r["id"] for r in again}


# ---------------------------------------------------------------------------- delivery


async def test_delivered_signed_once_each_and_in_order_per_case(
    db: Outbox, receiver: Receiver
) -> None:
    made = await cases(db, 3)
    await receiver.start()
    async with Notifier(db.pool, hooks(receiver.url), FAST) as notifier:
        await run_until(notifier, lambda: all_delivered(db))
    rows = await db.rows()
    assert len(rows) == 12 and all(r["attempts"] == 1 for r in rows)
    assert sorted(a.id for a in receiver.arrivals) == sorted(r["id"] for r in rows)
    assert all(a.signed and a.attempt == 1 for a in receiver.arrivals)
    assert receiver.in_order_per_case()
    assert set(receiver.seqs_by_case()) == {b[0].case_id for b in made}
    first = next(a for a in receiver.arrivals if a.seq == 2)
    assert first.payload["kind"] == "dispatched" and first.payload["status"] == "open"
    assert first.payload["source_ref"] and first.payload["level"] == "community"
    assert PHONE not in first.body and NAME not in first.body


async def test_a_receiver_down_then_back_up_gets_everything_in_order(
    db: Outbox, receiver: Receiver
) -> None:
    await cases(db, 2)

    async def retried_while_down() -> bool:
        rows = await db.rows()
        return any(r["attempts"] >= 3 for r in rows)

    async with Notifier(db.pool, hooks(receiver.url), FAST) as notifier:
        await run_until(notifier, retried_while_down)
        down = await db.rows()
        # nothing delivered, nothing parked; the heads retried, the rest waiting behind
        assert {r["status"] for r in down} == {"pending"}
        assert {r["seq"] for r in down if r["attempts"] > 0} == {1}
        assert all(r["last_error"] for r in down if r["attempts"] > 0)
        await receiver.start()
        await run_until(notifier, lambda: all_delivered(db))
    assert sorted({a.id for a in receiver.arrivals}) == sorted(await db.statuses())
    assert len(receiver.arrivals) == 8 and receiver.in_order_per_case()
    assert all(a.signed for a in receiver.arrivals)
    assert {a.attempt for a in receiver.arrivals if a.seq == 1} != {1}  # retried heads


async def test_two_notifiers_at_once_send_each_notification_once(
    db: Outbox, receiver: Receiver
) -> None:
    await cases(db, 15)
    receiver.delay = 0.005
    await receiver.start()
    async with (
        Notifier(db.pool, hooks(receiver.url), FAST, batch=4) as one,
        Notifier(db.pool, hooks(receiver.url), FAST, batch=4) as other,
    ):
        await asyncio.gather(
            run_until(one, lambda: all_delivered(db)),
            run_until(other, lambda: all_delivered(db)),
        )
    ids = [a.id for a in receiver.arrivals]
    assert len(ids) == len(set(ids)) == 60
    assert receiver.in_order_per_case()


def notifier_process(db: Outbox, webhooks_file: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": db.url,
        "CASE_WEBHOOKS": str(webhooks_file),
        "CASE_NOTIFY_POLL": "0.05",
        "CASE_NOTIFY_BACKOFF": "0.05",
        "CASE_NOTIFY_BACKOFF_MAX": "0.2",
        "LOG_FORMAT": "json",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "notifier"],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def test_a_notifier_killed_mid_delivery_and_restarted_loses_nothing(
    db: Outbox, receiver: Receiver, tmp_path: Path
) -> None:
    made = await cases(db, 3)
    rows = await db.rows()
    held = next(r["id"] for r in rows if r["case_id"] == made[0][0].case_id and r["seq"] == 2)
    receiver.hold = held
    await receiver.start()
    webhooks_file = tmp_path / "webhooks.json"
    webhooks_file.write_text(
        json.dumps({"hotline_12345": {"url": receiver.url, "secret": SECRET}}), encoding="utf-8"
    )
    log = tmp_path / "notifier.log"
    first = notifier_process(db, webhooks_file, log)
    try:
        await asyncio.wait_for(receiver.held.wait(), timeout=60)
        first.send_signal(signal.SIGKILL)  # while the POST of `held` is unanswered
        assert await asyncio.to_thread(first.wait, 10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    receiver.release.set()
    assert (await db.statuses())[held] == "pending"  # not recorded as delivered
    second = notifier_process(db, webhooks_file, log)
    try:
        await db.wait_for(lambda rows: {r["status"] for r in rows} == {"delivered"})
    finally:
        second.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(second.wait, 30)
    assert code == 0, log.read_text()
    arrived = [a.id for a in receiver.arrivals]
    assert set(arrived) == {r["id"] for r in rows}  # every one at least once
    assert arrived.count(held) == 2  # sent again after the restart, same id
    assert receiver.in_order_per_case()
    assert all(a.signed for a in receiver.arrivals)


# ---------------------------------------------------------------------------- parking


async def casectl(db: Outbox, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": db.url,
        "CASELOOP_DATA": str(tmp_path / "no-stack"),
        "COLUMNS": "250",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from casectl.main import main; main()",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_parked_after_n_failures_listed_by_casectl_and_retried(
    db: Outbox, receiver: Receiver, tmp_path: Path
) -> None:
    [batches] = await cases(db, 1)
    receiver.status = 500
    await receiver.start()
    three = Retries(
        max_attempts=3, backoff=timedelta(milliseconds=10), backoff_max=timedelta(seconds=1)
    )

    async def all_parked() -> bool:
        return set((await db.statuses()).values()) == {"parked"}

    async with Notifier(db.pool, hooks(receiver.url), three) as notifier:
        await run_until(notifier, all_parked)
    rows = await db.rows()
    assert [(r["attempts"], r["last_error"]) for r in rows] == [(3, "HTTP 500")] * 4
    # each tried three times, and the next of the case only once it was parked
    assert [(a.seq, a.attempt) for a in receiver.arrivals] == [
        (seq, n) for seq in (1, 2, 6, 9) for n in (1, 2, 3)
    ]

    code, out, err = await casectl(db, tmp_path, "notifications")
    assert code == 0, err
    for r in rows:
        assert r["id"] in out
    assert "HTTP 500" in out and "parked" in out
    code, out, err = await casectl(db, tmp_path, "notifications", "--format", "json")
    listed = json.loads(out)
    assert listed["counts"]["hotline_12345"] == {"pending": 0, "delivered": 0, "parked": 4}
    assert [n["id"] for n in listed["notifications"]] == [r["id"] for r in rows]

    code, _, err = await casectl(db, tmp_path, "notifications", "retry", "not-an-id")
    assert code == 2 and "IDS" in err
    code, out, err = await casectl(db, tmp_path, "notifications", "retry", rows[0]["id"])
    assert code == 0 and "1 notification(s) put back to pending" in out, err
    code, out, err = await casectl(db, tmp_path, "notifications", "retry", rows[0]["id"])
    assert code == 1 and "not parked" in err  # pending already: left alone
    code, out, err = await casectl(db, tmp_path, "notifications", "retry", "--all")
    assert code == 0 and "3 notification(s) put back to pending" in out, err
    assert {r["attempts"] for r in await db.rows()} == {0}

    receiver.status = 200
    receiver.arrivals.clear()
    async with Notifier(db.pool, hooks(receiver.url), three) as notifier:
        await run_until(notifier, lambda: all_delivered(db))
    assert [a.seq for a in receiver.arrivals] == [1, 2, 6, 9]
    assert batches[0].case_id == receiver.arrivals[0].case_id
    code, out, _ = await casectl(db, tmp_path, "notifications")
    assert code == 0 and "no parked notifications" in out


# ---------------------------------------------------------------------------- settings


def test_webhooks_are_configured_inline_or_by_a_file_and_a_bad_one_is_named(tmp_path: Path) -> None:
    assert webhooks_banner(Settings.from_env({})).startswith("no CASE_WEBHOOKS")
    good = tmp_path / "webhooks.json"
    good.write_text(
        json.dumps({"hotline_12345": {"url": "https://12345.example/hook", "secret": SECRET}}),
        encoding="utf-8",
    )
    settings = Settings.from_env({"CASE_WEBHOOKS": str(good), "CASE_NOTIFY_MAX_ATTEMPTS": "4"})
    assert settings.webhooks().sources == ["hotline_12345"]
    assert webhooks_banner(settings) == f"webhooks of hotline_12345 (CASE_WEBHOOKS: {good})"
    inline = Settings.from_env({"CASE_WEBHOOKS": good.read_text(encoding="utf-8")})
    assert inline.webhooks() == settings.webhooks() and SECRET not in repr(inline)
    assert webhooks_banner(inline) == "webhooks of hotline_12345 (CASE_WEBHOOKS: inline)"
    with pytest.raises(SettingsError, match="neither") as missing:
        Settings.from_env({"CASE_WEBHOOKS": "hotline: s3cret"}).webhooks()
    assert "s3cret" not in str(missing.value)
    assert retries(settings).max_attempts == 4
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"hotline_12345": {"url": "gopher://x", "secret": "short-secret"}}),
        encoding="utf-8",
    )
    for setting in (str(bad), bad.read_text(encoding="utf-8")):
        with pytest.raises(SettingsError) as refused:
            Settings.from_env({"CASE_WEBHOOKS": setting}).webhooks()
        message = str(refused.value)
        assert message.startswith("CASE_WEBHOOKS") and "hotline_12345.url" in message
        assert "hotline_12345.secret" in message and "short-secret" not in message
    with pytest.raises(SettingsError, match="CASE_NOTIFY_MAX_ATTEMPTS"):
        Settings.from_env({"CASE_NOTIFY_MAX_ATTEMPTS": "0"})


def test_the_notifier_process_refuses_a_bad_configuration(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"fax": {"url": "https://x.example/", "secret": "0123456789abcdef"}}')
    done = subprocess.run(
        [sys.executable, "-m", "notifier"],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            "CASE_WEBHOOKS": str(bad),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("notifier: CASE_WEBHOOKS") and "fax" in done.stderr


# ---------------------------------------------------------------------------- end to end


async def test_cases_moved_by_the_worker_are_notified_in_order(
    db: Outbox, receiver: Receiver, dev_env: WorkflowEnvironment, task_queue: str
) -> None:
    """Through the real workflow and worker on the dev server (recording into this test's
    database): a case reopened once and archived, and a duplicate merged into it."""
    client = CaseClient(dev_env.client, task_queue)
    worker = build_worker(
        dev_env.client, db.pool, POLICY, task_queue, keyring=KEYRING, fail_fast=True
    )
    rejected = {"actor": RESIDENT, "accepted": False, "satisfaction": "unsatisfied"}
    merge = {"actor": COMMUNITY_ADMIN, "reason": "同一楼道灯"}
    async with worker:
        first = (await client.open_case(report())).case_id
        second = (await client.open_case(report())).case_id
        for name, payload in LIFECYCLE[:5]:
            await client.send(first, name, payload)
        await client.send(first, "record_feedback", rejected)
        await client.send(second, "merge_into", {**merge, "target_case_id": first})
        for name, payload in LIFECYCLE[4:]:
            await client.send(first, name, payload)
        await client.result(first)
        await client.result(second)
    await receiver.start()
    async with Notifier(db.pool, hooks(receiver.url), FAST) as notifier:
        await run_until(notifier, lambda: all_delivered(db))
    kinds: dict[str, list[str]] = defaultdict(list)
    for a in receiver.arrivals:
        kinds[a.case_id].append(a.payload["kind"])
        assert a.signed and a.payload["source"] == "hotline_12345"
    assert kinds == {
        first: ["accepted", "dispatched", "resolved", "reopened", "resolved", "archived"],
        second: ["accepted", "merged", "archived"],
    }
    assert receiver.in_order_per_case()
    merged = next(a.payload for a in receiver.arrivals if a.payload["kind"] == "merged")
    assert merged["merged_into"] == first and merged["status"] == "closed"
    text = " ".join(a.body for a in receiver.arrivals)
    assert PHONE not in text and NAME not in text
