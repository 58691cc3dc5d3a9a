"""Webhook deliveries, recorded as an outbox: a delivery's row is written in the transaction of the change
it announces, published (``webhook.due``, to the verifier's webhook stage) after the commit, and
republished by a sweeper while it was not (the broker was away): a change is never announced without
being committed, nor committed without being announced.

Who records what: the contacts service, in its batch transaction, ``contact.created`` /
``contact.updated`` (from the verified and collected upserts) and ``session.fell_back``
(:func:`record_outcomes`); the gateway, in its erasure transaction, ``contact.erased``
(:func:`contact_erased`, then :func:`publish` after the commit, or leave it to the sweeper). The
verifier's webhook stage records each attempt (:func:`attempted`) and a delivery given up on (:func:`dead`).
This module is the one writer of ``webhook_deliveries``. A bot's webhook settings (table ``webhooks``) say
whether a change is recorded at all.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any
from uuid import UUID

import asyncpg
import structlog

from shared.events import ContactCollected, Event, IdentityVerified, WebhookDue
from shared.messaging import Publisher
from shared import db
from shared.service import background
from shared.service import every as run_every

log = structlog.get_logger("doorman.webhooks")

WEBHOOK_TYPES = ("contact.created", "contact.updated", "contact.erased", "session.fell_back")
# NOTIFYed (no payload needed) when a bot's webhook settings change; the contacts service listens.
WEBHOOKS_CHANNEL = "doorman_webhooks_changed"
NO_SESSION = "-"


def _due(row: asyncpg.Record, correlation: Mapping[str, str] | None = None) -> WebhookDue:
    session_id = row["session_id"] or NO_SESSION
    return WebhookDue(
        event_id=row["delivery_id"], bot_id=row["bot_id"], session_id=session_id, webhook_type=row["type"],
        correlation_id=(correlation or {}).get(session_id, f"webhook-{row['delivery_id'].hex[:12]}"),
    )


# -- recording (in the caller's transaction) ------------------------------------------------------------

_ENQUEUE = """
INSERT INTO webhook_deliveries (delivery_id, bot_id, type, contact_id, session_id, body)
SELECT d.id, w.bot_id, $2, $4, $5,
       jsonb_build_object('id', d.id, 'type', $2::text, 'occurred_at', now(), 'bot_id', w.bot_id, 'data', $3::jsonb)::text
FROM webhooks w CROSS JOIN (SELECT gen_random_uuid() AS id) d
WHERE w.bot_id = $1 AND w.enabled AND $2 = ANY(w.events)
RETURNING delivery_id, bot_id, type, session_id
"""


async def enqueue_webhook(
    conn: asyncpg.Connection, bot_id: UUID, type: str, data: Mapping[str, Any], *,
    contact_id: UUID | None = None, session_id: str | None = None,
) -> WebhookDue | None:
    """Record one delivery of ``type`` with ``data`` in the caller's transaction, if the bot's webhook is
    enabled for that type (else None). Publish what it returns after the commit (:func:`publish`); if
    that is not done, the sweeper publishes it within seconds."""
    if type not in WEBHOOK_TYPES:
        raise ValueError(f"not a webhook type: {type}")
    plain = json.loads(json.dumps(data, default=str))  # UUIDs and datetimes as strings; the pool encodes jsonb
    row = await conn.fetchrow(_ENQUEUE, bot_id, type, plain, contact_id, session_id)
    return _due(row) if row is not None else None


async def forget_contact(conn: asyncpg.Connection, bot_id: UUID, contact_id: UUID, sessions: Sequence[str]) -> int:
    """Erasure: delete every delivery about the contact or about one of its ``sessions`` (``session.fell_back``
    of a session whose visitor then sent the form: the session id and the detail), pending ones included, so
    none goes out after ``contact.erased`` (which is kept). Returns how many."""
    status = await conn.execute(
        """DELETE FROM webhook_deliveries WHERE bot_id = $1 AND (contact_id = $2 OR session_id = ANY($3::text[]))
           AND type <> 'contact.erased'""", bot_id, contact_id, list(sessions))
    return int(status.split()[-1])


async def contact_erased(conn: asyncpg.Connection, bot_id: UUID, contact_id: UUID,
                         sessions: Sequence[str]) -> WebhookDue | None:
    """What erasure calls in its transaction: forget the deliveries of the contact and of its ``sessions``, and
    record ``contact.erased`` (``data: {contact_id}``, nothing personal) if the bot's webhook takes it. Publish
    the result after the commit (``services.gateway.admin.webhooks.publish_after_commit``) or leave it to the sweeper."""
    await forget_contact(conn, bot_id, contact_id, sessions)
    return await enqueue_webhook(conn, bot_id, "contact.erased", {"contact_id": str(contact_id)},
                                 contact_id=contact_id)


_CONTACT_DATA = """jsonb_build_object(
    'contact_id', c.contact_id, 'identify_method', c.identify_method, 'identifier', c.identifier,
    'external_workspace_id', c.external_workspace_id, 'external_id', c.external_id, 'name', c.name,
    'email', c.email, 'phone_number', c.phone_number, 'country_code', c.country_code, 'avatar', c.avatar,
    'label', c.label, 'metadata', c.metadata, 'verified', c.verified, 'created_at', c.created_at,
    'updated_at', c.updated_at)"""

# Contacts this transaction created or updated (their created_at / updated_at is the transaction's now()),
# and sessions it ended in a fallback, for the bots whose webhook takes that type.
_RECORD = f"""
WITH hooks AS (
    SELECT bot_id, events FROM webhooks WHERE enabled AND bot_id = ANY($1::uuid[])
), touched AS (
    SELECT c.contact_id FROM contacts c
    JOIN unnest($2::uuid[], $3::text[], $4::text[], $5::text[]) AS k(bot_id, identify_method, identifier, workspace)
      ON (c.bot_id, c.identify_method, c.identifier) = (k.bot_id, k.identify_method, k.identifier)
     AND c.external_workspace_id IS NOT DISTINCT FROM k.workspace
    UNION
    SELECT s.collected_contact_id FROM widget_sessions s
    WHERE s.session_id = ANY($6::text[]) AND s.collected_contact_id IS NOT NULL
), changes AS (
    SELECT c.bot_id, CASE WHEN c.created_at = now() THEN 'contact.created' ELSE 'contact.updated' END AS type,
           c.contact_id, NULL::text AS session_id, {_CONTACT_DATA} AS data
    FROM contacts c JOIN touched t USING (contact_id)
    WHERE c.updated_at = now()
    UNION ALL
    SELECT s.bot_id, 'session.fell_back', NULL, s.session_id, jsonb_build_object(
               'session_id', s.session_id, 'reason', s.reason, 'detail', s.detail,
               'collect_information', s.collect_information, 'opened_at', s.created_at, 'resolved_at', s.resolved_at)
    FROM widget_sessions s WHERE s.session_id = ANY($7::text[]) AND s.status = 'fallback'
), due AS (
    SELECT gen_random_uuid() AS delivery_id, ch.* FROM changes ch
    JOIN hooks h ON h.bot_id = ch.bot_id AND ch.type = ANY(h.events)
)
INSERT INTO webhook_deliveries (delivery_id, bot_id, type, contact_id, session_id, body)
SELECT delivery_id, bot_id, type, contact_id, session_id,
       jsonb_build_object('id', delivery_id, 'type', type, 'occurred_at', now(), 'bot_id', bot_id, 'data', data)::text
FROM due
RETURNING delivery_id, bot_id, type, session_id
"""


async def record_outcomes(
    conn: asyncpg.Connection, subscriptions: Subscriptions, events: Sequence[Event], fell_back: Mapping[str, UUID],
    *, correlation: Mapping[str, str] | None = None,
) -> list[WebhookDue]:
    """In the contacts service's batch transaction, after its upserts: a delivery for each contact created or
    updated by ``events`` and each session in ``fell_back`` (session -> bot: ended in a fallback by this
    transaction), for the bots whose webhook takes that type. No round trip unless one of the batch's bots
    has a webhook on."""
    bots = subscriptions.among({e.bot_id for e in events} | set(fell_back.values()))
    if not bots:
        return []
    keys = [(e.bot_id, e.identify_method.value, e.identity.identifier, e.identity.external_workspace_id)
            for e in events if isinstance(e, IdentityVerified) and e.bot_id in bots]
    collected = [e.session_id for e in events if isinstance(e, ContactCollected) and e.bot_id in bots]
    sessions = [s for s, bot in fell_back.items() if bot in bots]
    if not (keys or collected or sessions):
        return []
    rows = await conn.fetch(_RECORD, list(bots), *([k[i] for k in keys] for i in range(4)), collected, sessions)
    return [_due(r, correlation) for r in rows]


@dataclass(frozen=True)
class Outbox:
    """What the contacts service needs to announce its changes: which bots listen, and a confirmed publisher."""

    pool: asyncpg.Pool
    subscriptions: Subscriptions
    publisher: Publisher

    async def record(self, conn: asyncpg.Connection, events: Sequence[Event], fell_back: Mapping[str, UUID],
                     correlation: Mapping[str, str] | None = None) -> list[WebhookDue]:
        return await record_outcomes(conn, self.subscriptions, events, fell_back, correlation=correlation)

    async def publish(self, due: Sequence[WebhookDue]) -> None:
        await publish(self.pool, self.publisher, due)


# -- attempts (the verifier's webhook stage) -----------------------------------------------------------

# One attempt made: a success delivers it; a failure keeps it pending (a replayed dead one included) until
# the stage gives up (:func:`dead`).
_ATTEMPTED = """UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = $2,
                    status = CASE WHEN $3 THEN 'delivered' ELSE 'pending' END,
                    delivered_at = CASE WHEN $3 THEN now() ELSE delivered_at END
                WHERE delivery_id = $1 AND status <> 'delivered'"""


async def attempted(pool: asyncpg.Pool, delivery_id: UUID, error: str | None, *, delivered: bool) -> None:
    await pool.execute(_ATTEMPTED, delivery_id, error, delivered)


async def dead(pool: asyncpg.Pool, delivery_id: UUID) -> None:
    """No attempt left, or failed for good: the delivery log shows it dead."""
    await pool.execute("UPDATE webhook_deliveries SET status = 'dead' WHERE delivery_id = $1 AND status = 'pending'",
                       delivery_id)


# -- publishing (after the commit) and the sweeper ------------------------------------------------------


async def publish(pool: asyncpg.Pool, publisher: Publisher, due: Sequence[WebhookDue]) -> bool:
    """Hand committed deliveries to the broker (confirmed), then mark them published. A failure is logged,
    not raised: the sweeper publishes them again."""
    if not due:
        return True
    try:
        await publisher.many(due)
        await pool.execute("UPDATE webhook_deliveries SET published_at = now() WHERE delivery_id = ANY($1::uuid[])",
                           [d.event_id for d in due])
    except Exception as exc:
        log.warning("webhook deliveries not published; the sweeper will", deliveries=len(due), error=repr(exc))
        return False
    return True


_RETRY = """UPDATE webhook_deliveries SET status = 'pending', published_at = NULL
            WHERE bot_id = $1 AND delivery_id = $2 AND status = 'dead'
            RETURNING delivery_id, bot_id, type, session_id"""


async def retry_dead(pool: asyncpg.Pool, bot_id: UUID, delivery_id: UUID) -> WebhookDue | str | None:
    """Put a dead delivery back to ``pending`` (unpublished: the sweeper sends it if the caller's publish does
    not) and return it, for :func:`publish`; the same body and id, a fresh round of attempts. A delivery that is
    not dead: its status (nothing changed); an unknown one: None."""
    row = await pool.fetchrow(_RETRY, bot_id, delivery_id)
    if row is not None:
        return _due(row)
    return await pool.fetchval(
        "SELECT status FROM webhook_deliveries WHERE bot_id = $1 AND delivery_id = $2", bot_id, delivery_id)


SWEEP_AFTER = timedelta(seconds=5)  # a delivery not published this long after its commit is republished
SWEEP_CHUNK = 500


async def sweep(pool: asyncpg.Pool, publisher: Publisher, *, after: timedelta = SWEEP_AFTER) -> int:
    """Publish deliveries committed but never published (the publish after the commit failed, or the process
    died in between). Several replicas may sweep at once: rows are locked with SKIP LOCKED."""
    swept = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT delivery_id, bot_id, type, session_id FROM webhook_deliveries
                   WHERE published_at IS NULL AND created_at < now() - $1::interval
                   ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
                after, SWEEP_CHUNK,
            )
            if not rows:
                return swept
            await publisher.many([_due(r) for r in rows])
            await conn.execute("UPDATE webhook_deliveries SET published_at = now() WHERE delivery_id = ANY($1::uuid[])",
                               [r["delivery_id"] for r in rows])
        swept += len(rows)
        log.info("webhook deliveries republished", deliveries=len(rows))
        if len(rows) < SWEEP_CHUNK:
            return swept


async def prune(pool: asyncpg.Pool, older_than: timedelta) -> int:
    """Delete delivered and dead deliveries older than ``older_than`` (the delivery log's retention)."""
    status = await pool.execute(
        """DELETE FROM webhook_deliveries WHERE delivery_id IN (
               SELECT delivery_id FROM webhook_deliveries
               WHERE status <> 'pending' AND created_at < now() - $1::interval LIMIT 10000)""",
        older_than,
    )
    return int(status.split()[-1])


@asynccontextmanager
async def sweeping(
    pool: asyncpg.Pool, publisher: Publisher, *, retention: timedelta, every: float = 1.0, prune_every: float = 300.0,
) -> AsyncIterator[None]:
    async def pruned() -> None:
        if n := await prune(pool, retention):
            log.info("old webhook deliveries pruned", deleted=n)

    async with (
        background(run_every(every, partial(sweep, pool, publisher), failed="webhook sweep failed")),
        background(run_every(prune_every, pruned, failed="webhook pruning failed")),
    ):
        yield


# -- which bots have a webhook on (the contacts service's hot path asks, per batch) ---------------------


class Subscriptions:
    """The bots with a webhook enabled, in memory, kept true by LISTEN/NOTIFY on :data:`WEBHOOKS_CHANNEL`
    (reloaded on every change and every reconnect). While the listener is down every bot counts as
    subscribed: the recording query itself then decides, at the cost of a round trip."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._bots: frozenset[UUID] = frozenset()
        self.listening = False

    def among(self, bot_ids: set[UUID]) -> set[UUID]:
        return set(bot_ids) if not self.listening else bot_ids & self._bots

    async def reload(self) -> None:
        rows = await self._pool.fetch("SELECT bot_id FROM webhooks WHERE enabled")
        self._bots = frozenset(r["bot_id"] for r in rows)

    async def _notified(self, _payload: str) -> None:
        await self.reload()

    async def _up(self) -> None:
        await self.reload()
        self.listening = True

    def _down(self) -> None:
        self.listening = False

    async def listen_forever(self, dsn: str) -> None:
        await db.listen_forever(dsn, WEBHOOKS_CHANNEL, notified=self._notified, up=self._up, down=self._down,
                                name="webhook (every bot counts as subscribed meanwhile)")


@asynccontextmanager
async def subscriptions(pool: asyncpg.Pool, dsn: str) -> AsyncIterator[Subscriptions]:
    subs = Subscriptions(pool)
    async with background(subs.listen_forever(dsn)):
        yield subs
