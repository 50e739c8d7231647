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
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import NoReturn, TypeVar

import asyncpg
import click
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.db import create_pool
from caseloop.client import CaseClient, connect
from domain.catalogue import ServiceCatalogue
from domain.ranking import parse_month
from infra.settings import Settings, SettingsError, local_settings

T = TypeVar("T")
R = TypeVar("R")


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


def checked_month(month: str) -> None:
    """`--month` as YYYY-MM, or a one-line refusal naming the option."""
    try:
        parse_month(month)
    except ValueError as exc:
        raise CannotRun(f"--month: {exc}") from None


def policy_timezone(s: Settings) -> str:
    """The timezone months are cut in: the deadline policy's."""
    try:
        return s.policy().timezone
    except SettingsError as exc:
        raise CannotRun(str(exc)) from None


def write_outputs(
    result: R,
    outputs: Iterable[tuple[Path | None, Callable[[R], str], str]],
    say: Callable[[str], object],
) -> None:
    """Each (path, render, option) given a path: the rendered result written there, and
    said. utf-8 with a byte order mark for --csv: spreadsheet programs in China read a CSV
    without it as GBK."""
    for path, render, option in outputs:
        if path is None:
            continue
        try:
            path.write_text(render(result), encoding="utf-8-sig" if option == "--csv" else "utf-8")
        except OSError as exc:
            raise CannotRun(f"{option}: cannot write {path}: {exc.strerror or exc}") from None
        say(f"wrote {path}")


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
