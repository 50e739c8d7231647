"""The notifier process (`make run` starts it next to the worker):

    DATABASE_URL=postgresql://… CASE_WEBHOOKS=webhooks.json python -m notifier

Configured by the environment (README, "Notifications"). Runs beside the workers, as
many copies as wanted (each claims with SKIP LOCKED); stops on SIGTERM or SIGINT after
the round in flight."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from datetime import timedelta

import structlog

from activities.db import create_pool, migrate
from infra import logs
from infra.process import leave
from infra.settings import Settings, SettingsError
from notifier.delivery import Notifier, Retries

log = structlog.get_logger("notifier")


def retries(settings: Settings) -> Retries:
    return Retries(
        max_attempts=settings.notify_max_attempts,
        backoff=timedelta(seconds=settings.notify_backoff),
        backoff_max=timedelta(seconds=settings.notify_backoff_max),
    )


async def run(settings: Settings) -> None:
    if settings.database_url is None:
        raise SettingsError("DATABASE_URL: not set (`make run` starts an embedded PostgreSQL)")
    webhooks = settings.webhooks()
    pool = await create_pool(settings.database_url, max_size=4)
    try:
        await migrate(pool)  # the outbox may not exist yet when the worker starts later
        log.info(
            "notifier starting",
            pid=os.getpid(),
            sources=webhooks.sources,
            max_attempts=settings.notify_max_attempts,
        )
        if not webhooks.sources:
            log.warning("CASE_WEBHOOKS is not set: notifications wait in the outbox, undelivered")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with Notifier(
            pool,
            webhooks,
            retries(settings),
            batch=settings.notify_batch,
            timeout=settings.notify_timeout,
        ) as notifier:
            await notifier.run(stop, settings.notify_poll)
    finally:
        await pool.close()
    log.info("notifier stopped")


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(
        prog="python -m notifier",
        description="Delivers the notification outbox (configured by the environment).",
    ).parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"notifier: {exc}")
    logs.configure(settings.log_level, settings.log_format)
    try:
        asyncio.run(run(settings))
    except SettingsError as exc:
        sys.exit(f"notifier: {exc}")
    except (OSError, RuntimeError) as exc:
        sys.exit(f"notifier: cannot start: {exc}")
    leave(0)


if __name__ == "__main__":
    main()
