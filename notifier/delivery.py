"""Delivery of the notification outbox (activities/outbox.py) to each source system's
webhook: claimed with FOR UPDATE SKIP LOCKED, one per case at a time (in seq order),
signed with HMAC-SHA256, retried with exponential backoff, parked after the configured
number of attempts. At least once: a notifier that dies between the POST and the commit
leaves the row pending, and it is sent again (with the same id)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import asyncpg
import rfc8785
import structlog

from activities import outbox
from domain.notifications import (
    ATTEMPT_HEADER,
    ID_HEADER,
    SIGNATURE_HEADER,
    Webhooks,
    retry_delay,
    sign,
)

log = structlog.get_logger("notifier")


@dataclass(frozen=True)
class Retries:
    max_attempts: int = 10
    backoff: timedelta = timedelta(seconds=2)
    backoff_max: timedelta = timedelta(minutes=10)

    def wait(self, attempts: int) -> timedelta | None:
        """The wait after `attempts` failed attempts, with up to a tenth more at random
        (notifications failing together do not all come back at once); None: park it."""
        if attempts >= self.max_attempts:
            return None
        delay = retry_delay(attempts, self.backoff, self.backoff_max)
        return delay * (1 + random.random() / 10)  # a spread, not a secret


@dataclass
class Round:
    claimed: int = 0
    delivered: int = 0
    failed: int = 0
    parked: int = 0


class Notifier:
    """Delivers in rounds: each round claims up to `batch` due notifications (one per
    case) in a transaction, posts them concurrently, records the outcomes and commits."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        webhooks: Webhooks,
        retries: Retries = Retries(),
        *,
        batch: int = 100,
        timeout: float = 10.0,
    ) -> None:
        self.pool = pool
        self.webhooks = webhooks
        self.retries = retries
        self.batch = batch
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Notifier:
        self._session = aiohttp.ClientSession(
            timeout=self.timeout, connector=aiohttp.TCPConnector(limit=self.batch)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver_round(self) -> Round:
        """One round; what it did (nothing claimed: nothing is due)."""
        done = Round()
        async with self.pool.acquire() as conn, conn.transaction():
            due = await outbox.claim(conn, self.webhooks.sources, self.batch)
            if not due:
                return done
            done.claimed = len(due)
            errors = await asyncio.gather(*(self._post(n) for n in due))
            ok = [n.id for n, error in zip(due, errors, strict=True) if error is None]
            failures = []
            for n, error in zip(due, errors, strict=True):
                if error is None:
                    continue
                wait = self.retries.wait(n.attempts + 1)
                failures.append((n.id, error, wait))
                if wait is None:
                    done.parked += 1
                    log.error(
                        "notification parked",
                        id=n.id,
                        source=n.source,
                        attempts=n.attempts + 1,
                        error=error,
                    )
                else:
                    log.warning(
                        "notification not delivered",
                        id=n.id,
                        source=n.source,
                        attempt=n.attempts + 1,
                        retry_in=round(wait.total_seconds(), 1),
                        error=error,
                    )
            await outbox.delivered(conn, ok)
            await outbox.failed(conn, failures)
            done.delivered, done.failed = len(ok), len(failures)
        return done

    async def _post(self, n: outbox.Due) -> str | None:
        """POST one notification; None when the webhook took it (2xx), else what failed."""
        hook = self.webhooks.get(n.source)
        if hook is None:  # pragma: no cover - claim() asks only for configured sources
            return "no webhook for this source"
        assert self._session is not None, "use the notifier in `async with`"
        body = rfc8785.dumps(n.payload)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(hook.secret, body),
            ID_HEADER: n.id,
            ATTEMPT_HEADER: str(n.attempts + 1),
        }
        try:
            # no redirects: a signed notification goes where it was configured to, or fails
            async with self._session.post(
                hook.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                response.release()  # the answer's body is not read
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except TimeoutError:
            return "timed out"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]

    async def run(self, stop: asyncio.Event, poll: float = 1.0) -> None:
        """Round after round until `stop` is set: at once while rounds find work, else
        after `poll` seconds. A database error is logged and retried after `poll`."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                done = await self.deliver_round()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("delivery round failed", error=str(exc))
                done = Round()
            if done.claimed:
                log.debug(
                    "delivery round", seconds=round(time.monotonic() - started, 3), **done.__dict__
                )
            if done.claimed < self.batch:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=poll)
                except TimeoutError:
                    pass
