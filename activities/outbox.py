"""The notification outbox (migration 009): claiming due notifications for delivery,
recording how each attempt went, listing them and putting parked ones back.

The rows are written by the append (activities/store.py); the notifier (notifier/)
delivers them; `casectl notifications` lists and retries them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Connection = asyncpg.Connection | PoolConnectionProxy
Status = Literal["pending", "delivered", "parked"]
STATUSES: tuple[Status, ...] = ("pending", "delivered", "parked")


@dataclass(frozen=True)
class Due:
    """A notification claimed for delivery."""

    id: str
    case_id: str
    seq: int
    source: str
    payload: dict[str, Any]
    attempts: int  # attempts before this one


# The head of each case's pending notifications, due now, of the sources with a webhook.
# FOR UPDATE OF n SKIP LOCKED: a row another notifier holds (it is delivering it) is
# passed over, and with it the rest of its case, whose earlier row is still pending.
_CLAIM = """
SELECT n.id, n.case_id, n.seq, n.source, n.payload, n.attempts
  FROM notifications n
 WHERE n.status = 'pending'
   AND n.next_attempt_at <= now()
   AND n.source = ANY($1::text[])
   AND NOT EXISTS (SELECT 1 FROM notifications p
                    WHERE p.case_id = n.case_id AND p.status = 'pending' AND p.seq < n.seq)
 ORDER BY n.next_attempt_at, n.created_at, n.case_id, n.seq
 LIMIT $2
   FOR UPDATE OF n SKIP LOCKED
"""


async def claim(conn: Connection, sources: Sequence[str], limit: int) -> list[Due]:
    """Lock up to `limit` due notifications, at most one per case (its earliest pending),
    for the transaction `conn` is in: until it ends, no other notifier takes them or the
    later ones of their cases. A notifier that dies mid-delivery loses its connection,
    the transaction rolls back, and the rows are pending again."""
    if not sources:
        return []
    rows = await conn.fetch(_CLAIM, list(sources), limit)
    return [
        Due(r["id"], r["case_id"], r["seq"], r["source"], r["payload"], r["attempts"]) for r in rows
    ]


async def delivered(conn: Connection, ids: Sequence[str]) -> None:
    if ids:
        await conn.execute(
            """UPDATE notifications SET status = 'delivered', delivered_at = now(),
                      attempts = attempts + 1, last_error = NULL
                WHERE id = ANY($1::text[])""",
            list(ids),
        )


async def failed(conn: Connection, failures: Sequence[tuple[str, str, timedelta | None]]) -> None:
    """(id, error, wait before the next attempt): None parks the notification."""
    if failures:
        await conn.executemany(
            """UPDATE notifications SET attempts = attempts + 1, last_error = $2,
                      status = CASE WHEN $3::interval IS NULL THEN 'parked' ELSE status END,
                      parked_at = CASE WHEN $3::interval IS NULL THEN now() END,
                      next_attempt_at = now() + coalesce($3::interval, interval '0')
                WHERE id = $1""",
            [(i, error[:500], wait) for i, error, wait in failures],
        )


@dataclass(frozen=True)
class Listed:
    id: str
    case_id: str
    seq: int
    source: str
    kind: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None
    parked_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in self.__dict__.items()
        }


async def listing(
    pool: asyncpg.Pool,
    status: Status | None,
    case_id: str | None = None,
    source: str | None = None,
    limit: int = 100,
) -> list[Listed]:
    """The notifications in a status (all when None), of a case or a source, oldest first."""
    rows = await pool.fetch(
        """SELECT id, case_id, seq, source, kind, status, attempts, last_error, created_at,
                  next_attempt_at, delivered_at, parked_at
             FROM notifications
            WHERE ($1::text IS NULL OR status = $1)
              AND ($2::text IS NULL OR case_id = $2)
              AND ($3::text IS NULL OR source = $3)
            ORDER BY created_at, case_id, seq
            LIMIT $4""",
        status,
        case_id,
        source,
        limit,
    )
    return [Listed(**dict(r)) for r in rows]


async def counts(pool: asyncpg.Pool) -> dict[str, dict[str, int]]:
    """How many notifications of each source are in each status."""
    rows = await pool.fetch(
        "SELECT source, status, count(*) AS n FROM notifications GROUP BY source, status"
    )
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        out.setdefault(r["source"], {s: 0 for s in STATUSES})[r["status"]] = r["n"]
    return out


async def retry(pool: asyncpg.Pool, ids: Sequence[str] | None) -> list[str]:
    """Put parked notifications back to pending, due now, their attempts counted from
    zero: the ones named, or every parked one when `ids` is None. Returns those moved."""
    rows = await pool.fetch(
        """UPDATE notifications SET status = 'pending', attempts = 0, parked_at = NULL,
                  next_attempt_at = now()
            WHERE status = 'parked' AND ($1::text[] IS NULL OR id = ANY($1::text[]))
        RETURNING id""",
        None if ids is None else list(ids),
    )
    return sorted(r["id"] for r in rows)
