"""A source system's webhook for the tests (an aiohttp server recording what arrives) and
a notifier run until a condition holds: shared by the outbox tests and the gateway's
end-to-end test."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiohttp import web

from domain.notifications import ATTEMPT_HEADER, ID_HEADER, SIGNATURE_HEADER, Webhooks, signature_ok
from notifier.delivery import Notifier, Retries

SECRET = "hotline-webhook-secret-0123456789"
FAST = Retries(
    max_attempts=50, backoff=timedelta(milliseconds=50), backoff_max=timedelta(milliseconds=200)
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Arrival:
    id: str
    case_id: str
    seq: int
    attempt: int
    signed: bool
    payload: dict[str, Any]
    body: str


@dataclass
class Receiver:
    """A source system's webhook: records every arrival, answers `status`; `hold` keeps
    the first request for that notification id unanswered until `release` is set."""

    port: int = field(default_factory=free_port)
    status: int = 200
    delay: float = 0.0
    hold: str | None = None
    arrivals: list[Arrival] = field(default_factory=list)
    held: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/12345"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        payload = json.loads(body)
        self.arrivals.append(
            Arrival(
                request.headers[ID_HEADER],
                payload["case_id"],
                payload["seq"],
                int(request.headers[ATTEMPT_HEADER]),
                signature_ok(SECRET, body, request.headers.get(SIGNATURE_HEADER)),
                payload,
                body.decode(),
            )
        )
        if payload["id"] == self.hold and not self.held.is_set():
            self.held.set()
            await self.release.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/12345", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def seqs_by_case(self) -> dict[str, list[int]]:
        seen: dict[str, list[int]] = defaultdict(list)
        for a in self.arrivals:
            seen[a.case_id].append(a.seq)
        return seen

    def in_order_per_case(self) -> bool:
        return all(seqs == sorted(seqs) for seqs in self.seqs_by_case().values())


def hooks(url: str) -> Webhooks:
    return Webhooks.model_validate({"hotline_12345": {"url": url, "secret": SECRET}})


async def run_until(
    notifier: Notifier, done: Callable[[], Awaitable[bool]], within: float = 60
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop, poll=0.05))
    try:
        deadline = time.monotonic() + within
        while not await done():
            assert time.monotonic() < deadline, "not done in time"
            assert not task.done(), task
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
