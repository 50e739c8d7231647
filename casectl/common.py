"""What casectl's commands share: the errors a user sees, settings, the connections to
Temporal and PostgreSQL, running a command's coroutine.

Settings come from the environment; next to a `make run` stack the keys, the codec token
and the PostgreSQL URL it keeps in its data directory are used when the environment has
none. Exit status: 0 done, 1 the work found a problem
(a refused command, an audit mismatch), 2 the command could not run (bad input,
unreachable server, unknown case).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import asyncpg
import click
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.db import create_pool
from caseloop.client import CaseClient, connect
from domain.catalogue import ServiceCatalogue
from infra.settings import Settings, SettingsError, local_settings

T = TypeVar("T")


class Failed(click.ClickException):
    """The work ran and found a problem (exit 1)."""

    exit_code = 1


class CannotRun(click.ClickException):
    """The command could not run: bad input, a server out of reach (exit 2)."""

    exit_code = 2


def settings() -> Settings:
    try:
        return local_settings()
    except SettingsError as exc:
        raise CannotRun(str(exc)) from None


async def temporal(s: Settings) -> Client:
    try:
        return await asyncio.wait_for(connect(s), timeout=10)
    except (RuntimeError, TimeoutError, OSError) as exc:
        raise CannotRun(
            f"cannot reach Temporal at {s.temporal_address} (TEMPORAL_ADDRESS): "
            f"{str(exc) or type(exc).__name__}"
        ) from None


async def cases(s: Settings) -> CaseClient:
    return CaseClient(await temporal(s), s.task_queue, catalogue(s))


def catalogue(s: Settings) -> ServiceCatalogue:
    try:
        return s.catalogue()
    except SettingsError as exc:
        raise CannotRun(str(exc)) from None


async def database(s: Settings) -> asyncpg.Pool:
    if s.database_url is None:
        raise CannotRun("DATABASE_URL is not set (and no `make run` stack was found)")
    try:
        pool = await asyncio.wait_for(create_pool(s.database_url, max_size=4), timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise CannotRun(f"cannot reach PostgreSQL (DATABASE_URL): {exc}") from None
    return pool


def unknown_case(case_id: str) -> NoReturn:
    raise CannotRun(f"no case {case_id} in this namespace")


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Run a command's coroutine; RPC errors become one readable line."""

    async def guarded() -> T:
        try:
            return await work()
        except RPCError as exc:
            if exc.status is RPCStatusCode.UNAVAILABLE:
                raise CannotRun(f"Temporal is unavailable: {exc.message}") from None
            raise CannotRun(
                f"Temporal refused the request ({exc.status.name}): {exc.message}"
            ) from None

    return asyncio.run(guarded())
