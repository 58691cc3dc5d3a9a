"""Keeps the session table (and so the activity log) bounded: old sessions are deleted in chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg
import structlog

from shared.service import background

log = structlog.get_logger("doorman.contacts.retention")
CHUNK = 5000


async def prune(pool: asyncpg.Pool, older_than: timedelta) -> int:
    """Delete resolved sessions created before ``now() - older_than``; returns how many."""
    deleted = 0
    while True:
        n = await pool.fetchval(
            """WITH doomed AS (
                   SELECT session_id FROM widget_sessions
                   WHERE created_at < now() - $1::interval AND status <> 'pending'
                   LIMIT $2 FOR UPDATE SKIP LOCKED)
               , gone AS (DELETE FROM widget_sessions s USING doomed WHERE s.session_id = doomed.session_id RETURNING 1)
               SELECT count(*) FROM gone""",
            older_than, CHUNK,
        )
        deleted += n
        if n < CHUNK:
            return deleted


@asynccontextmanager
async def pruning(pool: asyncpg.Pool, older_than: timedelta, *, every: float = 300.0) -> AsyncIterator[None]:
    async def loop() -> None:
        while True:
            try:
                if n := await prune(pool, older_than):
                    log.info("old sessions pruned", deleted=n)
            except Exception as exc:  # a blip: try again next round
                log.warning("session pruning failed", error=repr(exc))
            await asyncio.sleep(every)

    async with background(loop()):
        yield
