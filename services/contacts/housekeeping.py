"""Background upkeep in the contacts service: end overdue sessions, prune old ones.

Several replicas may run it at once: the sweep locks rows with SKIP LOCKED and
ends each session conditionally, and pruning deletes in small chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial

import asyncpg
import structlog

from shared.logging import session_ref
from shared.messaging import Publisher
from shared.metrics import OUTCOMES, SWEPT
from shared.service import background, every
from shared.logout import forget_seen
from shared.sessions import expire_overdue, prune
from shared.webhook_outbox import Outbox

from .handler import notify

log = structlog.get_logger("doorman.contacts.housekeeping")


async def sweep(pool: asyncpg.Pool, publish: Publisher, outbox: Outbox | None = None) -> int:
    """Resolve overdue sessions as fallback(internal_error) and tell their waiting gateways (and the bots' webhooks)."""
    async with pool.acquire() as conn, conn.transaction():
        expired = await expire_overdue(conn)
        due = await outbox.record(conn, [], {e.session_id: e.bot_id for e in expired}) if outbox and expired else []
    SWEPT.inc(len(expired))
    OUTCOMES.labels("fallback", "internal_error").inc(len(expired))
    for e in expired:
        log.warning("session swept: never resolved", session_ref=session_ref(e.session_id), bot_id=str(e.bot_id))
    await notify([e.resolved() for e in expired], correlation={}, publish=publish)
    if due:
        await outbox.publish(due)  # type: ignore[union-attr]
    return len(expired)


@asynccontextmanager
async def housekeeping(
    pool: asyncpg.Pool, publish: Publisher, *, retention: timedelta, sweep_every: float = 1.0, prune_every: float = 300.0,
    outbox: Outbox | None = None,
) -> AsyncIterator[None]:
    async def pruned() -> None:
        if n := await prune(pool, retention):
            log.info("old sessions pruned", deleted=n)
        await forget_seen(pool)  # back-channel logout tokens' jtis, once too old to be replayed

    async with (
        background(every(sweep_every, partial(sweep, pool, publish, outbox), failed="sweep failed")),
        background(every(prune_every, pruned, failed="pruning failed")),
    ):
        yield
