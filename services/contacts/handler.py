"""Record outcomes: upsert verified contacts, end sessions, tell the waiting gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import structlog
from aio_pika.exceptions import PublishError

from shared.events import ContactCollected, Event, FallbackReason, IdentityVerified, SessionFellBack, SessionResolved
from shared.messaging import Publish
from shared.metrics import OUTCOMES, SESSION_SECONDS

from .repository import Outcome, Resolved, resolve_sessions, take_new, upsert_collected, upsert_verified

log = structlog.get_logger("doorman.contacts")


async def record(events: Sequence[Event], *, pool: asyncpg.Pool, publish: Publish) -> None:
    """One transaction for the whole batch; notifications only after the commit.

    The inbox makes it idempotent by event id: an event already processed (a
    redelivery, a replay, a second verifier run of the same widget open) is skipped.
    """
    async with pool.acquire() as conn, conn.transaction():
        events = await take_new(conn, events)
        verified = [e for e in events if isinstance(e, IdentityVerified)]
        contact_ids = await upsert_verified(conn, verified)
        await upsert_collected(conn, [e for e in events if isinstance(e, ContactCollected)])
        outcomes = []
        for e in events:
            if isinstance(e, IdentityVerified):
                key = (e.bot_id, e.identify_method.value, e.identity.identifier)
                outcomes.append(Outcome(e.session_id, "verified", contact_id=contact_ids[key], facts=e.facts))
            elif isinstance(e, SessionFellBack):
                outcomes.append(Outcome(e.session_id, "fallback", reason=e.reason.value, detail=e.detail, facts=e.facts))
        resolved = await resolve_sessions(conn, outcomes)
    by_session = {e.session_id: e for e in events if not isinstance(e, ContactCollected)}
    for r in resolved:
        _count(r)
        log.info("session resolved", session_id=r.session_id, bot_id=str(r.bot_id), status=r.status,
                 reason=r.reason, latency_ms=round(r.seconds * 1000, 1),
                 correlation_id=by_session[r.session_id].correlation_id)
    await notify(resolved, events=by_session, publish=publish)


async def notify(resolved: Sequence[Resolved], *, events: dict[str, Event], publish: Publish) -> None:
    """Tell the replica holding each session's stream. Best effort: the database is the truth,
    and a stream also re-reads it now and then, so a lost notification only costs latency."""
    await asyncio.gather(*(_notify_one(r, events[r.session_id], publish) for r in resolved if r.watcher))


async def _notify_one(r: Resolved, source: Event, publish: Publish) -> None:
    try:
        await publish(
            SessionResolved(correlation_id=source.correlation_id, session_id=r.session_id, bot_id=r.bot_id, status=r.status),
            routing_key=f"{SessionResolved.event_type}.{r.watcher}",
        )
    except PublishError:
        log.info("watcher gone; outcome left for polling", session_id=r.session_id, watcher=r.watcher)
    except Exception as exc:
        log.warning("outcome notification failed", session_id=r.session_id, error=repr(exc))


async def record_one(event: Event, *, pool: asyncpg.Pool, publish: Publish) -> None:
    await record([event], pool=pool, publish=publish)


async def fall_back_on_failure(event: Event, exc: BaseException, *, pool: asyncpg.Pool, publish: Publish) -> None:
    """This event can never be recorded: its session still ends, in internal_error."""
    async with pool.acquire() as conn, conn.transaction():
        resolved = await resolve_sessions(conn, [Outcome(
            event.session_id, "fallback", reason=FallbackReason.internal_error.value,
            detail="the contact could not be recorded",
        )])
    for r in resolved:
        _count(r)
    await notify(resolved, events={event.session_id: event}, publish=publish)


def _count(r: Resolved) -> None:
    OUTCOMES.labels(r.status, r.reason or "").inc()
    SESSION_SECONDS.labels(r.status).observe(r.seconds)
