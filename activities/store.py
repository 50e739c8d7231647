"""The activities: the deadline policy, and the event store append with its read model,
ledger and notification outbox, all in one transaction.

Each activity is safe to retry: an append that already happened is recognised by its
hash chain and writes nothing twice."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import asyncpg
import rfc8785
import structlog
from asyncpg.pool import PoolConnectionProxy
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contract import (
    CHAIN_CONFLICT,
    LOAD_POLICY,
    MERGE_RECORDED,
    RECORD_EVENTS,
    Appended,
    EventBatch,
    MergeClaim,
)
from domain.events import (
    PERSONAL_FIELDS,
    STATE_PERSONAL_FIELDS,
    Event,
    EventBase,
    event_payload,
)
from domain.notifications import Notification, notifications
from domain.policy import DeadlinePolicy
from domain.state import CaseRecord, CaseState
from infra.crypto import Keyring

log = structlog.get_logger(__name__)
GENESIS = "0" * 64
# The events that are the handler's first contact with a case (cases.first_contact_at).
FIRST_CONTACT = ("case_claimed", "handler_checked_in")
Connection = asyncpg.Connection | PoolConnectionProxy


def event_hash(
    prev_hash: str, case_id: str, seq: int, type_: str, occurred_at: str, payload: dict[str, Any]
) -> str:
    """sha256(prev_hash bytes || RFC 8785 JSON of {case_id, seq, type, occurred_at, payload})."""
    body = rfc8785.dumps(
        {
            "case_id": case_id,
            "seq": seq,
            "type": type_,
            "occurred_at": occurred_at,
            "payload": payload,
        }
    )
    return hashlib.sha256(bytes.fromhex(prev_hash) + body).hexdigest()


def _personal(
    document: dict[str, Any], paths: Iterable[tuple[str, ...]] | None = None
) -> Iterator[tuple[dict[str, Any], str]]:
    """(parent object, field name) of each personal field present in a JSON document: an
    event payload (the fields its type declares) or the case's state (`paths`)."""
    for path in PERSONAL_FIELDS.get(str(document["type"]), ()) if paths is None else paths:
        parent: Any = document
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and parent.get(path[-1]) is not None:
            yield parent, path[-1]


def stored_payload(event: EventBase, case_id: str, keyring: Keyring | None) -> dict[str, Any]:
    """The event as written to `case_events.payload`: its JSON, with the personal fields
    sealed when keys are configured (deterministically, so a retry writes the same)."""
    payload = event_payload(event)
    if keyring is not None:
        for parent, name in _personal(payload):
            parent[name] = {"sealed": keyring.seal(parent[name], case_id)}
    return payload


def unsealed_payload(
    stored: dict[str, Any], case_id: str, keyring: Keyring | None
) -> dict[str, Any]:
    """A stored payload with its sealed personal fields opened: the event's JSON again.
    Rows written without keys (or before sealing existed) hold them in clear already.
    Raises ValueError when a field is sealed and no key opens it."""
    payload = copy.deepcopy(stored)
    for parent, name in _personal(payload):
        value = parent[name]
        if isinstance(value, dict) and set(value) == {"sealed"}:
            if keyring is None:
                raise ValueError("personal data is sealed: CASE_ENCRYPTION_KEYS is needed")
            parent[name] = keyring.unseal(value["sealed"], case_id)
    return payload


def first_broken_link(rows: Iterable[Mapping[str, Any]]) -> int | None:
    """The seq of the first `case_events` row (of one case, in seq order) whose hash or
    prev_hash does not follow from the rows before it, or None when the chain holds.
    The hash is recomputed from the payload as stored: canonical JSON makes it stable."""
    prev = GENESIS
    expected_seq = 1
    for row in rows:
        payload = row["payload"]
        digest = event_hash(
            prev, row["case_id"], row["seq"], row["type"], str(payload["occurred_at"]), payload
        )
        if row["seq"] != expected_seq or row["prev_hash"] != prev or row["hash"] != digest:
            return int(row["seq"])
        prev, expected_seq = digest, expected_seq + 1
    return None


def _conflict(message: str) -> ApplicationError:
    return ApplicationError(message, type=CHAIN_CONFLICT, non_retryable=True)


class CaseActivities:
    """Activities over one asyncpg pool and the policy the worker was started with."""

    def __init__(
        self, pool: asyncpg.Pool, policy: DeadlinePolicy, keyring: Keyring | None = None
    ) -> None:
        self.pool = pool
        self.policy = policy
        self.keyring = keyring

    @activity.defn(name=LOAD_POLICY)
    async def load_policy(self) -> DeadlinePolicy:
        return self.policy

    @activity.defn(name=MERGE_RECORDED)
    async def merge_recorded(self, claim: MergeClaim) -> bool:
        """Whether the event store holds the merged case's `case_merged` naming the target."""
        found = await self.pool.fetchval(
            """SELECT EXISTS (SELECT 1 FROM case_events
                              WHERE case_id = $1 AND type = 'case_merged'
                                AND payload->>'target_case_id' = $2)""",
            claim.merged_case_id,
            claim.target_case_id,
        )
        return bool(found)

    @activity.defn(name=RECORD_EVENTS)
    async def record_events(self, batch: EventBatch) -> Appended:
        info = activity.info()
        with structlog.contextvars.bound_contextvars(
            case_id=batch.case_id, workflow_id=info.workflow_id, attempt=info.attempt
        ):
            appended = await append(self.pool, batch, self.keyring)
            log.info(
                "events recorded",
                types=[e.type for e in batch.events],
                head_seq=appended.head_seq,
                inserted=appended.inserted,
            )
            return appended


async def append(pool: asyncpg.Pool, batch: EventBatch, keyring: Keyring | None = None) -> Appended:
    """Append a batch of one case's events, then bring `cases` (and `ledger`) up to date.

    Refuses a gap and a batch that is not numbered consecutively; a retry of a batch
    already stored (same hashes) is a no-op; another event under a stored seq is an error,
    except where the stored events were left by an earlier workflow task of the same run
    that Temporal never recorded (`_lost_task`): they are moved to superseded_events and
    the batch takes their place.
    """
    case_id = batch.case_id
    seqs = [e.seq for e in batch.events]
    if seqs != list(range(seqs[0], seqs[0] + len(seqs))):
        raise _conflict(f"{case_id}: batch seqs are not consecutive: {seqs}")
    first = seqs[0]
    async with pool.acquire() as conn, conn.transaction():
        # one writer per case at a time (a slow attempt and its retry may overlap)
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", case_id)
        head = await conn.fetchrow(
            "SELECT seq, hash FROM case_events WHERE case_id = $1 ORDER BY seq DESC LIMIT 1",
            case_id,
        )
        head_seq = head["seq"] if head else 0
        if first > head_seq + 1:
            raise _conflict(
                f"{case_id}: gap in the event log: stored up to seq {head_seq}, "
                f"batch starts at {first}"
            )
        found = await conn.fetch(
            "SELECT seq, hash, run_id, decided_in FROM case_events"
            " WHERE case_id = $1 AND seq >= $2 - 1",
            case_id,
            first,
        )
        stored = {r["seq"]: r["hash"] for r in found}
        prev = stored.get(first - 1, GENESIS) if first > 1 else GENESIS
        later: list[Mapping[str, Any]] = [dict(r) for r in found if r["seq"] >= first]
        if _lost_task(batch, later, stored, prev, keyring):
            await _supersede(conn, case_id, first, batch.decided_in)
            stored = {seq: h for seq, h in stored.items() if seq < first}
            head_seq = first - 1
        rows = []
        new: list[tuple[Event, str]] = []  # the events this append writes, with their hashes
        for event in batch.events:
            payload = stored_payload(event, case_id, keyring)
            digest = event_hash(
                prev, case_id, event.seq, event.type, str(payload["occurred_at"]), payload
            )
            if event.seq in stored:
                if stored[event.seq] != digest:
                    raise _conflict(
                        f"{case_id}: seq {event.seq} is stored with other content "
                        f"(stored hash {stored[event.seq][:12]}…, new {digest[:12]}…)"
                    )
            else:
                new.append((event, digest))
                rows.append(
                    (
                        case_id,
                        event.seq,
                        str(payload["type"]),
                        payload,
                        event.occurred_at,
                        batch.run_id,
                        event.command_id,
                        prev,
                        digest,
                    )
                )
            prev = digest
        if rows:
            await conn.executemany(
                """INSERT INTO case_events (case_id, seq, type, payload, occurred_at, run_id,
                                            command_id, prev_hash, hash, decided_in)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
                [(*row, batch.decided_in) for row in rows],
            )
            contacts = [e.occurred_at for e in batch.events if e.type in FIRST_CONTACT]
            await _project(conn, batch.state, min(contacts, default=None))
            if batch.record is not None:
                await _ledger(conn, batch.record)
            await _outbox(conn, notifications(batch.state, new))
        return Appended(inserted=len(rows), head_seq=max(head_seq, seqs[-1]), head_hash=prev)


def _lost_task(
    batch: EventBatch,
    later: list[Mapping[str, Any]],
    stored: Mapping[int, str],
    prev: str,
    keyring: Keyring | None,
) -> bool:
    """Whether the rows from the batch's first seq on were left by an earlier workflow
    task of the same run whose completion Temporal never recorded: written by a local
    activity of this run, decided in a shorter history than this batch, and not this
    batch itself (a retry of the same batch is a no-op, not a replacement)."""
    if batch.decided_in is None or not later:
        return False
    if any(
        r["run_id"] != batch.run_id
        or r["decided_in"] is None
        or r["decided_in"] >= batch.decided_in
        for r in later
    ):
        return False
    event = batch.events[0]
    payload = stored_payload(event, batch.case_id, keyring)
    digest = event_hash(
        prev, batch.case_id, event.seq, event.type, str(payload["occurred_at"]), payload
    )
    return stored.get(event.seq) != digest


async def _supersede(conn: Connection, case_id: str, first: int, by: int | None) -> None:
    """Move the rows of a lost workflow task (seq `first` on) to superseded_events, and
    forget what they did to the read model and the ledger (the batch writes it again)."""
    moved = await conn.execute(
        """WITH lost AS (DELETE FROM case_events WHERE case_id = $1 AND seq >= $2 RETURNING *)
           INSERT INTO superseded_events (case_id, seq, type, payload, occurred_at, run_id,
                                          command_id, prev_hash, hash, recorded_at,
                                          decided_in, superseded_in)
           SELECT case_id, seq, type, payload, occurred_at, run_id, command_id, prev_hash,
                  hash, recorded_at, decided_in, $3 FROM lost""",
        case_id,
        first,
        by,
    )
    # their notifications not yet delivered were never true (delivered ones stay on record)
    await conn.execute(
        "DELETE FROM notifications WHERE case_id = $1 AND seq >= $2 AND status <> 'delivered'",
        case_id,
        first,
    )
    # the monthly counts take back what these rows counted (migration 005's triggers)
    await conn.execute("DELETE FROM ledger WHERE case_id = $1", case_id)
    if first == 1:  # the opening itself was lost: the case's row goes, opened_at with it
        await conn.execute("DELETE FROM cases WHERE case_id = $1", case_id)
    else:
        # the first contact, when the lost rows held it, is what the kept rows say
        await conn.execute(
            """UPDATE cases SET version = $2 - 1,
                   first_contact_at = (SELECT min(occurred_at) FROM case_events
                                       WHERE case_id = $1 AND type = ANY($3::text[]))
               WHERE case_id = $1""",
            case_id,
            first,
            list(FIRST_CONTACT),
        )
    log.warning("events of a lost workflow task superseded", first_seq=first, moved=moved)


def _public_state(state: CaseState) -> dict[str, Any]:
    """The state for the read model, without the personal fields the event store seals."""
    data = state.model_dump(mode="json")
    for parent, name in _personal(data, STATE_PERSONAL_FIELDS):
        del parent[name]
    return data


async def _project(conn: Connection, s: CaseState, contact: datetime | None = None) -> None:
    """The case's row in the read model; `contact`: the time of the first claim or
    check-in among the events appended with it (the first one ever is kept)."""
    loc = s.case.location
    await conn.execute(
        """INSERT INTO cases AS c (case_id, version, step, level, severity, handling_class, flag,
               category, source, grid_id, community_id, street_id, district_id, assignee,
               due_at, reopen_count, escalation_count, return_count, opened_at, updated_at,
               archived_at, outcome, state, first_contact_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                   $18, $19, $20, $21, $22, $23, $24)
           ON CONFLICT (case_id) DO UPDATE SET
               version = EXCLUDED.version, step = EXCLUDED.step, level = EXCLUDED.level,
               severity = EXCLUDED.severity, handling_class = EXCLUDED.handling_class,
               flag = EXCLUDED.flag, assignee = EXCLUDED.assignee, due_at = EXCLUDED.due_at,
               reopen_count = EXCLUDED.reopen_count,
               escalation_count = EXCLUDED.escalation_count,
               return_count = EXCLUDED.return_count, updated_at = EXCLUDED.updated_at,
               archived_at = EXCLUDED.archived_at, outcome = EXCLUDED.outcome,
               state = EXCLUDED.state,
               first_contact_at = coalesce(c.first_contact_at, EXCLUDED.first_contact_at)
           WHERE c.version < EXCLUDED.version""",
        s.case_id,
        s.version,
        s.step.value,
        _v(s.level),
        _v(s.severity),
        _v(s.handling_class),
        s.flag.value,
        s.case.category,
        s.case.source.value,
        loc.grid_id,
        loc.community_id,
        loc.street_id,
        loc.district_id,
        s.assignee,
        s.due_at,
        s.reopen_count,
        s.escalation_count,
        s.return_count,
        s.opened_at,
        s.updated_at,
        s.archived_at,
        _v(s.outcome),
        _public_state(s),
        contact,
    )


async def _outbox(conn: Connection, due: list[Notification]) -> None:
    """The notifications of the events just appended, in the same transaction: none is
    written without its events, nor an event without its notification."""
    if due:
        await conn.executemany(
            """INSERT INTO notifications (id, case_id, seq, source, kind, payload)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING""",
            [
                (n.id, n.case_id, n.seq, n.source.value, n.kind.value, n.model_dump(mode="json"))
                for n in due
            ],
        )


async def _ledger(conn: Connection, r: CaseRecord) -> None:
    fields = list(CaseRecord.model_fields)
    values = [_column(getattr(r, name)) for name in fields]
    placeholders = ", ".join(f"${i}" for i in range(1, len(fields) + 1))
    # the first contact as the read model holds it (projected just before, same transaction)
    await conn.execute(
        f"INSERT INTO ledger ({', '.join(fields)}, first_contact_at) VALUES ({placeholders}, "
        "(SELECT first_contact_at FROM cases WHERE case_id = $1)) "
        "ON CONFLICT (case_id) DO NOTHING",
        *values,
    )


def _v(value: Any) -> str | None:
    return None if value is None else str(value.value)


def _column(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, bool, datetime)):
        return value
    return str(value.value)  # enums
