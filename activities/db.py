"""The asyncpg pool and the migrations that shape the database."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import asyncpg
import structlog

log = structlog.get_logger(__name__)

# Taken by the migration runner so two workers starting together apply each file once.
_MIGRATION_LOCK = 7_135_001


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """One pool per process. `dsn` may name a Unix socket (`?host=/path`)."""
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection
    )
    if pool is None:  # pragma: no cover - asyncpg returns None only without awaiting
        raise RuntimeError("asyncpg returned no pool")
    return pool


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) of every migration, in the order they apply."""
    files = sorted((Path(__file__).parent / "migrations").glob("*.sql"))
    return [(f.name, f.read_text(encoding="utf-8")) for f in files]


async def migrate(pool: asyncpg.Pool) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction; returns their
    names. A migration changed after it was applied is an error, not silently skipped."""
    applied: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       name       text PRIMARY KEY,
                       checksum   text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {
                r["name"]: r["checksum"]
                for r in await conn.fetch("SELECT name, checksum FROM schema_migrations")
            }
            for name, sql in migration_files():
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                if name in done:
                    if done[name] != checksum:
                        raise RuntimeError(
                            f"migration {name} was changed after it was applied; "
                            "add a new migration instead"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
                        name,
                        checksum,
                    )
                log.info("migration applied", migration=name)
                applied.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied
