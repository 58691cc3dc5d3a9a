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

from shared.messaging import Publisher
from shared.metrics import OUTCOMES, SWEPT
from shared.service import background
from shared.sessions import expire_overdue, prune
from shared.webhook_outbox import Outbox

from .handler import notify

log = structlog.get_logger("doorman.contacts.housekeeping")


async def sweep(pool: asyncpg.Pool, publish: Publisher, outbox: Outbox | None = None) -> int:
    """End overdue sessions as internal_error and tell their waiting gateways (and the bots' webhooks)."""
    async with pool.acquire() as conn, conn.transaction():
        expired = await expire_overdue(conn)
        due = await outbox.record(conn, [], {e.session_id: e.bot_id for e in expired}) if outbox and expired else []
    SWEPT.inc(len(expired))
    OUTCOMES.labels("fallback", "internal_error").inc(len(expired))
    for e in expired:
        log.warning("session swept: never resolved", session_id=e.session_id, bot_id=str(e.bot_id))
    await notify([e.resolved() for e in expired], correlation={}, publish=publish)
    if due:
        await outbox.publish(due)  # type: ignore[union-attr]
    return len(expired)


@asynccontextmanager
async def housekeeping(
    pool: asyncpg.Pool, publish: Publisher, *, retention: timedelta, sweep_every: float = 1.0, prune_every: float = 300.0,
    outbox: Outbox | None = None,
) -> AsyncIterator[None]:
    async def sweeping() -> None:
        while True:
            try:
                await sweep(pool, publish, outbox)
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
