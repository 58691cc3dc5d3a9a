"""Versioned SQL migrations: ``migrations/NNNN_name.sql`` applied in order, once each.

Re-runnable and safe to run from several processes at once (an advisory lock
serialises them). Creates the database itself if it does not exist yet.
"""

from __future__ import annotations

from importlib import resources
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import structlog

log = structlog.get_logger("doorman.migrate")
_LOCK = 0x646F6F72  # "door"


def _migrations() -> list[tuple[str, str]]:
    files = sorted(f for f in resources.files("doorman.migrations").iterdir() if f.name.endswith(".sql"))
    return [(f.name.removesuffix(".sql"), f.read_text()) for f in files]


async def ensure_database(dsn: str) -> None:
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        parts = urlsplit(dsn)
        name = unquote(parts.path.lstrip("/"))
        admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
        try:
            await admin.execute(f'CREATE DATABASE "{name.replace(chr(34), "")}"')
            log.info("database created", database=name)
        except asyncpg.DuplicateDatabaseError:
            pass
        finally:
            await admin.close()
    else:
        await conn.close()


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations; returns the names applied now."""
    await ensure_database(dsn)
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            for name, sql in _migrations():
                if name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                applied_now.append(name)
                log.info("migration applied", migration=name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK)
    finally:
        await conn.close()
    return applied_now
