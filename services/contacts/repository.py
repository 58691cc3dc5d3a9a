"""Contacts and session outcomes in PostgreSQL.

Upserts are idempotent by construction: a contact row carries the version
``(version_at, version_event)`` of the event that last wrote it, and an update
applies only when the incoming version is strictly newer. Replays and
out-of-order events therefore change nothing.

A contact is unique per (bot, identify method, identifier, external_workspace_id): the
business's own workspace from its answer (OpenCX's externalId, not Doorman's tenant
workspaces), NULL when it gave none, NULL being one partition of its own (NULLS NOT DISTINCT).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar
from uuid import UUID

import asyncpg

from shared.events import ContactCollected, Event, IdentityVerified
from shared.sessions import link_collected

E = TypeVar("E", bound=Event)

UPSERT_VERIFIED = """
INSERT INTO contacts AS c (
    bot_id, identify_method, identifier, external_id, name, email, phone_number, country_code,
    avatar, label, metadata, verified, version_at, version_event, last_verified_at, field_sources,
    external_workspace_id, degraded
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, true, $12, $13, $12, $14, $15, $16)
ON CONFLICT (bot_id, identify_method, identifier, external_workspace_id) DO UPDATE SET
    external_id      = COALESCE(EXCLUDED.external_id, c.external_id),
    name             = COALESCE(EXCLUDED.name, c.name),
    email            = COALESCE(EXCLUDED.email, c.email),
    phone_number     = COALESCE(EXCLUDED.phone_number, c.phone_number),
    country_code     = COALESCE(EXCLUDED.country_code, c.country_code),
    avatar           = COALESCE(EXCLUDED.avatar, c.avatar),
    label            = COALESCE(EXCLUDED.label, c.label),
    metadata         = c.metadata || EXCLUDED.metadata,
    verified         = true,
    version_at       = EXCLUDED.version_at,
    version_event    = EXCLUDED.version_event,
    -- the latest verification says whether it was degraded (a degraded one's observed_at is when the
    -- business verified the token; DEGRADED below dates it)
    degraded         = CASE WHEN c.last_verified_at > EXCLUDED.last_verified_at THEN c.degraded
                            ELSE EXCLUDED.degraded END,
    last_verified_at = greatest(c.last_verified_at, EXCLUDED.last_verified_at),
    field_sources    = c.field_sources || EXCLUDED.field_sources,
    updated_at       = now()
WHERE NOT c.verified  -- a verified identity takes precedence over what a visitor typed
   OR (c.version_at, c.version_event) < (EXCLUDED.version_at, EXCLUDED.version_event)
"""

# What a visitor typed never overwrites a verified contact, nor newer typed data. A form has no business
# workspace (the embed's is never trusted): its contact is in the NULL partition.
UPSERT_COLLECTED = """
INSERT INTO contacts AS c (
    bot_id, identify_method, identifier, name, email, phone_number, country_code,
    verified, version_at, version_event, field_sources
) VALUES ($1, $2, $3, $4, $5, $6, $7, false, $8, $9, $10)
ON CONFLICT (bot_id, identify_method, identifier, external_workspace_id) DO UPDATE SET
    name          = COALESCE(EXCLUDED.name, c.name),
    email         = COALESCE(EXCLUDED.email, c.email),
    phone_number  = COALESCE(EXCLUDED.phone_number, c.phone_number),
    country_code  = COALESCE(EXCLUDED.country_code, c.country_code),
    version_at    = EXCLUDED.version_at,
    version_event = EXCLUDED.version_event,
    field_sources = c.field_sources || EXCLUDED.field_sources,
    updated_at    = now()
WHERE NOT c.verified AND (c.version_at, c.version_event) < (EXCLUDED.version_at, EXCLUDED.version_event)
"""

# A verification from the outage grace: the contact's last verification, if none is newer, was degraded.
DEGRADED = """
UPDATE contacts c SET degraded = true, last_verified_at = u.at
FROM (SELECT bot_id, identify_method, identifier, workspace, max(at) AS at
      FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
           AS k(bot_id, identify_method, identifier, workspace, at)
      GROUP BY 1, 2, 3, 4) u
WHERE (c.bot_id, c.identify_method, c.identifier) = (u.bot_id, u.identify_method, u.identifier)
  AND c.external_workspace_id IS NOT DISTINCT FROM u.workspace
  AND (c.last_verified_at IS NULL OR c.last_verified_at < u.at)
"""

CONTACT_IDS = """
SELECT c.contact_id, c.bot_id, c.identify_method, c.identifier, c.external_workspace_id
FROM contacts c
JOIN unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS k(bot_id, identify_method, identifier, workspace)
  ON (c.bot_id, c.identify_method, c.identifier) = (k.bot_id, k.identify_method, k.identifier)
 AND c.external_workspace_id IS NOT DISTINCT FROM k.workspace
"""

CONTACT_FIELDS = ("external_id", "name", "email", "phone_number", "country_code", "avatar", "label")


def _sources(event: IdentityVerified) -> dict[str, str]:
    """Which fields this event sets: they came from the business's API."""
    values = event.identity.model_dump()
    values["external_id"] = values.pop("id")
    sources = {field: "api" for field in CONTACT_FIELDS if values.get(field) is not None}
    if event.identity.metadata:
        sources["metadata"] = "api"
    return sources


ContactKey = tuple[UUID, str, str, str | None]  # bot, identify method, identifier, external_workspace_id


def contact_key(event: IdentityVerified) -> ContactKey:
    """Which contact a verified identity belongs to."""
    return (event.bot_id, event.identify_method.value, event.identity.identifier, event.identity.external_workspace_id)


def _order(key: ContactKey) -> tuple[str, str, str, bool, str]:
    """A total order of keys (no workspace before any workspace), the same in every batch."""
    bot_id, method, identifier, workspace = key
    return (str(bot_id), method, identifier, workspace is not None, workspace or "")


async def upsert_verified(conn: asyncpg.Connection, events: Sequence[IdentityVerified]) -> dict[ContactKey, UUID]:
    """Apply verified identities, oldest first for each contact; returns each key's contact id.

    Rows are written in key order, so concurrent batches lock shared contacts in the same order
    (no deadlock); the version guard keeps the latest data whatever the order across batches."""
    if not events:
        return {}
    ordered = sorted(events, key=lambda e: (*_order(contact_key(e)), e.observed_at, str(e.event_id)))
    await conn.executemany(UPSERT_VERIFIED, [
        (
            e.bot_id, e.identify_method.value, e.identity.identifier, e.identity.id, e.identity.name,
            e.identity.email, e.identity.phone_number, e.identity.country_code, e.identity.avatar,
            e.identity.label, e.identity.metadata, e.observed_at, e.event_id, _sources(e),
            e.identity.external_workspace_id, e.degraded,
        )
        for e in ordered
    ])
    if degraded := [e for e in events if e.degraded]:
        keys_at = [(*contact_key(e), e.occurred_at) for e in degraded]
        await conn.execute(DEGRADED, *(list(column) for column in zip(*keys_at)))
    keys = list({contact_key(e) for e in events})
    rows = await conn.fetch(CONTACT_IDS, *([k[i] for k in keys] for i in range(4)))
    return {(r["bot_id"], r["identify_method"], r["identifier"], r["external_workspace_id"]): r["contact_id"]
            for r in rows}


async def take_new(conn: asyncpg.Connection, events: Sequence[E]) -> list[E]:
    """Record the events in the inbox; returns those not seen before (first of each id)."""
    unique = list({e.event_id: e for e in reversed(events)}.values())[::-1]
    new = {r["event_id"] for r in await conn.fetch(
        "INSERT INTO processed_events (event_id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING RETURNING event_id",
        [e.event_id for e in unique],
    )}
    return [e for e in unique if e.event_id in new]


def collected_key(event: ContactCollected, identify_method: str | None) -> tuple[str, str]:
    """Which contact a form belongs to: the bot's identify method when the form has that field,
    else the email, else the phone; a form with neither is a contact of its own session."""
    by_field = {"email": event.email, "phone_number": event.phone_number}
    if identify_method in by_field and by_field[identify_method]:
        return identify_method, by_field[identify_method]  # type: ignore[return-value]
    for method, value in by_field.items():
        if value:
            return method, value
    return "session", event.session_id


async def upsert_collected(conn: asyncpg.Connection, events: Sequence[ContactCollected]) -> None:
    if not events:
        return
    methods = dict(await conn.fetch(
        "SELECT bot_id, identify_method FROM custom_auth_settings WHERE bot_id = ANY($1::uuid[])",
        list({e.bot_id for e in events}),
    ))
    for e in sorted(events, key=lambda e: (e.occurred_at, str(e.event_id))):
        method, identifier = collected_key(e, methods.get(e.bot_id))
        typed = {"name": e.name, "email": e.email, "phone_number": e.phone_number, "country_code": e.country_code}
        await conn.execute(
            UPSERT_COLLECTED, e.bot_id, method, identifier, e.name, e.email, e.phone_number, e.country_code,
            e.occurred_at, e.event_id, {k: "visitor" for k, v in typed.items() if v is not None},
        )
        await link_collected(conn, e.session_id, e.bot_id, method, identifier)
