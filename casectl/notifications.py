"""`casectl notifications`: the notification outbox (README, "Notifications"): the
parked notifications (and, on request, the pending or delivered ones), how many of each
source are in each status, and `retry` to put parked ones back to pending."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import click
from rich import box
from rich.console import Console
from rich.table import Table

from activities import outbox
from casectl.common import CannotRun, Failed, database, run, settings
from domain.model import CASE_ID_PATTERN, Source

T = TypeVar("T")

out = Console(
    highlight=False, markup=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200
)

_ID = re.compile(r"^case-[a-z0-9_]{1,32}-[A-Za-z0-9._-]{1,64}:[0-9]{1,9}:[0-9a-f]{12}$")


def _outbox(work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    s = settings()

    async def guarded() -> T:
        pool = await database(s)
        try:
            return await work(pool)
        except asyncpg.UndefinedTableError:
            raise CannotRun(
                "the database has no notification outbox (migration 009): start the worker "
                "or the notifier once, they apply the migrations"
            ) from None
        except asyncpg.PostgresError as exc:
            raise CannotRun(f"PostgreSQL refused the query: {exc}") from None
        finally:
            await pool.close()

    return run(guarded)


@click.group("notifications", invoke_without_command=True)
@click.option(
    "--status",
    type=click.Choice([*outbox.STATUSES, "all"]),
    default="parked",
    show_default=True,
    help="which notifications to list",
)
@click.option("--case", "case_id", help="only this case's")
@click.option("--source", type=click.Choice([s.value for s in Source]), help="only this source's")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.pass_context
def notifications(
    ctx: click.Context,
    status: str,
    case_id: str | None,
    source: str | None,
    limit: int,
    fmt: str,
) -> None:
    """The notification outbox: the notifications parked after failing every attempt
    (by default), pending or delivered, oldest first, and the counts per source.
    `casectl notifications retry` sends parked ones again."""
    if ctx.invoked_subcommand is not None:
        return
    if case_id is not None and re.match(CASE_ID_PATTERN, case_id) is None:
        raise CannotRun("--case: expected a case id (case-<source>-<ref>)")
    wanted: outbox.Status | None = None if status == "all" else status  # type: ignore[assignment]

    async def work(pool: asyncpg.Pool) -> tuple[list[outbox.Listed], dict[str, dict[str, int]]]:
        return (
            await outbox.listing(pool, wanted, case_id, source, limit),
            await outbox.counts(pool),
        )

    listed, counts = _outbox(work)
    if fmt == "json":
        out.print(
            json.dumps(
                {"counts": counts, "notifications": [n.as_json() for n in listed]},
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    summary = Table(title="notifications by source", title_justify="left", box=box.SIMPLE_HEAD)
    for header in ("source", *outbox.STATUSES):
        summary.add_column(header, justify="left" if header == "source" else "right")
    for name, by_status in sorted(counts.items()):
        summary.add_row(name, *(str(by_status[s]) for s in outbox.STATUSES))
    out.print(summary)
    if not listed:
        out.print(f"no {status} notifications" if status != "all" else "no notifications")
        return
    table = Table(title=f"{status} notifications", title_justify="left", box=box.SIMPLE_HEAD)
    for header in ("id", "kind", "source", "status", "attempts", "last error", "since"):
        table.add_column(header)
    for n in listed:
        since = n.parked_at or n.delivered_at or n.next_attempt_at
        table.add_row(
            n.id,
            n.kind,
            n.source,
            n.status,
            str(n.attempts),
            n.last_error or "",
            since.isoformat(timespec="seconds"),
        )
    out.print(table)


@notifications.command("retry")
@click.argument("ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="every parked notification")
def retry(ids: tuple[str, ...], every: bool) -> None:
    """Put parked notifications (the IDS given, or --all) back to pending: the notifier
    sends them again, counting their attempts from zero."""
    if bool(ids) == every:
        raise CannotRun("name the notifications to retry (their ids), or give --all")
    bad = [i for i in ids if _ID.match(i) is None]
    if bad:
        raise CannotRun(f"IDS: not a notification id (case-…:seq:hash): {len(bad)} of them")

    async def work(pool: asyncpg.Pool) -> list[str]:
        return await outbox.retry(pool, None if every else list(ids))

    moved = _outbox(work)
    for i in moved:
        out.print(f"pending again: {i}")
    out.print(f"{len(moved)} notification(s) put back to pending")
    missing = sorted(set(ids) - set(moved))
    if missing:
        raise Failed(f"not parked (or unknown), left alone: {' '.join(missing)}")
