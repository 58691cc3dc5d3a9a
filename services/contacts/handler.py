"""Record outcomes: upsert verified contacts, end sessions, tell the waiting gateways."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg
import structlog

from shared.crypto import Secrets
from shared.events import (
    ContactCollected, Event, FallbackReason, IdentityVerified, SessionFellBack, SessionResolved, WebhookDue,
)
from shared.logging import session_ref
from shared.messaging import Publisher, tell_replicas
from shared.metrics import OUTCOMES, SESSION_SECONDS
from shared.sessions import Outcome, Resolved, resolve_sessions
from shared.webhook_outbox import Outbox

from .repository import contact_key, take_new, upsert_collected, upsert_verified

log = structlog.get_logger("doorman.contacts")
# A verification the business answered before its contact was erased, arriving after the erasure
# while its session still waits (rare: a session waits seconds): the contact is not made again.
ERASED_DETAIL = "the contact was erased after this visitor was verified"


async def record(events: Sequence[Event], *, pool: asyncpg.Pool, publish: Publisher,
                 secrets: Secrets | None = None, outbox: Outbox | None = None) -> list[WebhookDue]:
    """One transaction for the whole batch; after the commit, the waiting gateways are told (best effort), and
    the webhook deliveries recorded in it are returned: what the stage emits (``outbox.publish``).

    The inbox makes it idempotent by event id: an event already processed (a
    redelivery, a replay, a second verifier run of the same widget open) is skipped.
    ``secrets`` matches erased contacts' tombstones (shared/tombstones.py), so an event older than
    an erasure brings nothing back; the service always passes it.
    """
    async with pool.acquire() as conn, conn.transaction():
        events = await take_new(conn, events)
        verified = [e for e in events if isinstance(e, IdentityVerified)]
        contact_ids = await upsert_verified(conn, verified, secrets)
        await upsert_collected(conn, [e for e in events if isinstance(e, ContactCollected)], secrets)
        outcomes = []
        for e in events:
            if isinstance(e, IdentityVerified):
                if (contact_id := contact_ids.get(contact_key(e))) is None:
                    outcomes.append(Outcome(e.session_id, "fallback", reason=FallbackReason.internal_error.value,
                                            detail=ERASED_DETAIL, facts=e.facts))
                    continue
                outcomes.append(Outcome(e.session_id, "verified", contact_id=contact_id, facts=e.facts,
                                        degraded=e.degraded, provider_sub=e.provider_sub, provider_sid=e.provider_sid,
                                        identity_expires_at=e.identity_expires_at))
            elif isinstance(e, SessionFellBack):
                outcomes.append(Outcome(e.session_id, "fallback", reason=e.reason.value, detail=e.detail, facts=e.facts))
        resolved = await resolve_sessions(conn, outcomes)
        correlation = {e.session_id: e.correlation_id for e in events}
        due = await outbox.record(conn, events, _fell_back(resolved), correlation) if outbox else []
    for r in resolved:
        _count(r)
        log.info("session resolved", session_ref=session_ref(r.session_id), bot_id=str(r.bot_id), status=r.status,
                 reason=r.reason, latency_ms=round(r.seconds * 1000, 1), correlation_id=correlation[r.session_id])
    await notify(resolved, correlation=correlation, publish=publish)
    return due


def _fell_back(resolved: Sequence[Resolved]) -> dict[str, UUID]:
    return {r.session_id: r.bot_id for r in resolved if r.status == "fallback"}


async def notify(resolved: Sequence[Resolved], *, correlation: dict[str, str], publish: Publisher) -> None:
    """Tell the gateway replicas concerned (the one that opened each session, the one holding its
    stream), one message per replica, the widget's view inside. Best effort: the database is the
    truth, and a waiting stream re-reads it now and then, so a lost notification only costs latency."""
    by_replica: dict[str, list[SessionResolved]] = {}
    for r in resolved:
        if not (replicas := r.told):
            continue
        told = SessionResolved(correlation_id=correlation.get(r.session_id, "-"), session_id=r.session_id,
                               bot_id=r.bot_id, status=r.status, view=r.view, facts=r.facts)
        for replica in replicas:
            by_replica.setdefault(replica, []).append(told)
    await tell_replicas(by_replica, publish)


async def record_one(event: Event, *, pool: asyncpg.Pool, publish: Publisher, secrets: Secrets | None = None,
                     outbox: Outbox | None = None) -> list[WebhookDue]:
    return await record([event], pool=pool, publish=publish, secrets=secrets, outbox=outbox)


async def give_up(event: Event, *, pool: asyncpg.Pool, publish: Publisher, outbox: Outbox | None = None) -> list[WebhookDue]:
    """This event can never be recorded: its session still ends, in internal_error (the webhook deliveries that
    records are returned, to be emitted)."""
    async with pool.acquire() as conn, conn.transaction():
        resolved = await resolve_sessions(conn, [Outcome(
            event.session_id, "fallback", reason=FallbackReason.internal_error.value,
            detail="the contact could not be recorded",
        )])
        due = await outbox.record(conn, [], _fell_back(resolved)) if outbox else []
    for r in resolved:
        _count(r)
    await notify(resolved, correlation={event.session_id: event.correlation_id}, publish=publish)
    return due


def _count(r: Resolved) -> None:
    OUTCOMES.labels(r.status, r.reason or "").inc()
    SESSION_SECONDS.labels(r.status).observe(r.seconds)
