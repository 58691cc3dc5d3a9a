"""Background upkeep in the contacts service: end overdue sessions, prune old ones.

Several replicas may run it at once: the sweep locks rows with SKIP LOCKED and
ends each session conditionally, and pruning deletes in small chunks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg
import structlog

from shared.events import SessionResolved
from shared.messaging import Publish
from shared.metrics import OUTCOMES, SWEPT
from shared.service import background
from shared.sessions import expire_overdue

log = structlog.get_logger("doorman.contacts.housekeeping")
CHUNK = 5000


async def prune(pool: asyncpg.Pool, older_than: timedelta) -> int:
    """Delete resolved sessions (and inbox entries) older than ``older_than``; returns sessions deleted."""
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
            break
    await pool.execute(
        """DELETE FROM processed_events WHERE event_id IN (
               SELECT event_id FROM processed_events WHERE processed_at < now() - $1::interval LIMIT 100000)""",
        older_than,
    )
    return deleted


async def sweep(pool: asyncpg.Pool, publish: Publish) -> int:
    """End overdue sessions as internal_error and tell their waiting gateways."""
    expired = await expire_overdue(pool)
    SWEPT.inc(len(expired))
    OUTCOMES.labels("fallback", "internal_error").inc(len(expired))
    for e in expired:
        log.warning("session swept: never resolved", session_id=e.session_id, bot_id=str(e.bot_id))
        if e.watcher:
            try:
                await publish(
                    SessionResolved(correlation_id="sweeper", session_id=e.session_id, bot_id=e.bot_id, status="fallback"),
                    routing_key=f"{SessionResolved.event_type}.{e.watcher}",
                )
            except Exception as exc:  # the stream re-reads the database anyway
                log.info("sweep notification not delivered", session_id=e.session_id, error=repr(exc))
    return len(expired)


@asynccontextmanager
async def housekeeping(
    pool: asyncpg.Pool, publish: Publish, *, retention: timedelta, sweep_every: float = 1.0, prune_every: float = 300.0,
) -> AsyncIterator[None]:
    async def sweeping() -> None:
        while True:
            try:
                await sweep(pool, publish)
            except Exception as exc:  # a blip: next round
                log.warning("sweep failed", error=repr(exc))
            await asyncio.sleep(sweep_every)

    async def pruning() -> None:
        while True:
            try:
                if n := await prune(pool, retention):
                    log.info("old sessions pruned", deleted=n)
            except Exception as exc:
                log.warning("pruning failed", error=repr(exc))
            await asyncio.sleep(prune_every)

    async with background(sweeping()), background(pruning()):
        yield
