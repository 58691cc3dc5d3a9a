"""The sweeper of held opens: publish the ``widget.opened`` events kept in their session rows while the
broker was away (:mod:`.opening`), once it is back.

Every gateway replica runs one, so the backlog drains through whichever replica reaches the broker
first, including the backlog of a replica that died. Replicas share it without publishing twice: each
round locks a small batch of rows with ``FOR UPDATE SKIP LOCKED``, publishes their bodies in one
confirmed message and clears them in the same transaction, committing only after the confirm. Only
sessions still pending and within their deadline are published: one ended by a logout or by the
overdue sweeper has had its body cleared by that transition (and the row lock orders the two).

A confirm that times out although the broker kept the message leaves the body held, and a later round
publishes it again. One outcome per open still holds: the message says it is a replay, so a verifier
first checks the session is still pending (skipping it if not), and the contacts service resolves a
session only while it is pending (the first outcome wins).
"""

from __future__ import annotations

import asyncpg
import structlog

from shared.events import WidgetOpened
from shared.messaging import REPLAYED_HEADER, Publisher
from shared.metrics import OPENS_REPUBLISHED
from shared.sessions import held_opens, published

log = structlog.get_logger("doorman.gateway.held")

CHUNK = 100  # held opens per message (and per transaction)
EVERY = 0.5  # seconds between rounds: an empty round is one probe of an empty partial index


async def republish(pool: asyncpg.Pool, publish: Publisher, *, chunk: int = CHUNK) -> int:
    """Publish held opens, a chunk per transaction, until none is left; returns how many."""
    done = 0
    while publish.ready:
        async with pool.acquire() as conn, conn.transaction():
            held = await held_opens(conn, chunk)
            if not held:
                break
            await publish.stored(WidgetOpened.event_type, [h.body for h in held], headers={REPLAYED_HEADER: 1})
            await published(conn, [h.session_id for h in held])
        done += len(held)
        OPENS_REPUBLISHED.inc(len(held))
        log.info("held widget opens published", opens=len(held))
        if len(held) < chunk:
            break
    return done
