"""Contacts and session outcomes in PostgreSQL.

Upserts are idempotent by construction: a contact row carries the version
``(version_at, version_event)`` of the event that last wrote it, and an update
applies only when the incoming version is strictly newer. Replays and
out-of-order events therefore change nothing.

A contact is unique per (bot, identify method, identifier, external_workspace_id): the
business's own workspace from its answer (OpenCX's externalId, not Doorman's tenant
workspaces), NULL when it gave none, NULL being one partition of its own (NULLS NOT DISTINCT).

An erased contact's key is tombstoned: an event for it that happened before the erasure changes
nothing, a later one makes a new contact (shared/tombstones.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar
from uuid import UUID

import asyncpg

from shared.crypto import Secrets
from shared.events import ContactCollected, Event, IdentityVerified
from shared.sessions import link_collected
from shared.tombstones import NOT_ERASED, ContactKey, key_hashes

E = TypeVar("E", bound=Event)


def _kept_unless_sent(columns: Sequence[str]) -> str:
    """An upsert's SET for profile fields: what the event sends, else what the contact has (absent or null
    keeps the value)."""
    return ",\n    ".join(f"{c} = COALESCE(EXCLUDED.{c}, c.{c})" for c in columns)


# A verified identity: latest data wins (the version guard), and what changes who the contact is is
# recorded on it, never silent (identity_history, at most the last 50 entries):
# * identity_changed: a verified contact's external_id (the business's `id`, when the bot identifies by
#   email or phone) changes; the update still applies.
# * took_over_unverified: the contact was made by the Collect Information form; what the visitor typed
#   is kept in `typed` (and field_sources keep "visitor" for the fields the business did not send).
# An event for an erased contact's key that happened before the erasure is skipped (shared/tombstones.py).
UPSERT_VERIFIED = f"""
INSERT INTO contacts AS c (
    bot_id, identify_method, identifier, external_id, name, email, phone_number, country_code,
    avatar, label, metadata, verified, version_at, version_event, last_verified_at, field_sources,
    external_workspace_id, degraded
)
SELECT $1::uuid, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text, $8::text, $9::text, $10::text,
       $11::jsonb, true, $12::timestamptz, $13::uuid, $12::timestamptz, $14::jsonb, $15::text, $16::bool
WHERE {NOT_ERASED.format(hashes="$17", at="$12")}
ON CONFLICT (bot_id, identify_method, identifier, external_workspace_id) DO UPDATE SET
    {_kept_unless_sent(("external_id", "name", "email", "phone_number", "country_code", "avatar", "label"))},
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
    identity_history = jsonb_path_query_array(c.identity_history
        || CASE WHEN NOT c.verified THEN jsonb_build_array(jsonb_build_object(
               'kind', 'took_over_unverified', 'at', EXCLUDED.version_at, 'event_id', EXCLUDED.version_event,
               'session_id', $18::text)) ELSE '[]' END
        || CASE WHEN c.verified AND EXCLUDED.external_id <> c.external_id THEN jsonb_build_array(jsonb_build_object(
               'kind', 'identity_changed', 'at', EXCLUDED.version_at, 'event_id', EXCLUDED.version_event,
               'session_id', $18::text, 'old_external_id', c.external_id, 'new_external_id', EXCLUDED.external_id))
           ELSE '[]' END,
        '$[last - 49 to last]'),
    -- an unverified contact's fields are all the visitor's (UPSERT_COLLECTED writes only these)
    typed            = CASE WHEN c.verified THEN c.typed ELSE jsonb_strip_nulls(jsonb_build_object(
                           'name', c.name, 'email', c.email, 'phone_number', c.phone_number,
                           'country_code', c.country_code)) END,
    taken_over_at    = CASE WHEN c.verified THEN c.taken_over_at ELSE EXCLUDED.version_at END,
    updated_at       = now()
WHERE NOT c.verified  -- a verified identity takes precedence over what a visitor typed
   OR (c.version_at, c.version_event) < (EXCLUDED.version_at, EXCLUDED.version_event)
"""

# What a visitor typed never overwrites a verified contact, nor newer typed data. A form has no business
# workspace (the embed's is never trusted): its contact is in the NULL partition.
UPSERT_COLLECTED = f"""
INSERT INTO contacts AS c (
    bot_id, identify_method, identifier, name, email, phone_number, country_code,
    verified, version_at, version_event, field_sources
)
SELECT $1::uuid, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text, false, $8::timestamptz, $9::uuid,
       $10::jsonb
WHERE {NOT_ERASED.format(hashes="$11", at="$8")}
ON CONFLICT (bot_id, identify_method, identifier, external_workspace_id) DO UPDATE SET
    {_kept_unless_sent(("name", "email", "phone_number", "country_code"))},
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

# The batch's contacts by key; a row an old event brought back in the race with an erasure (see
# tombstones.py) is deleted here instead, in the same transaction. Key i's hashes are the rows of
# ($5, $6) with index i: every configured key's hash of it.
CONTACT_IDS = """
WITH k AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
        AS k(bot_id, identify_method, identifier, workspace, i)
), found AS (
    SELECT c.contact_id, c.bot_id, c.identify_method, c.identifier, c.external_workspace_id, c.version_at, k.i
    FROM contacts c JOIN k
      ON (c.bot_id, c.identify_method, c.identifier) = (k.bot_id, k.identify_method, k.identifier)
     AND c.external_workspace_id IS NOT DISTINCT FROM k.workspace
), revived AS (
    DELETE FROM contacts c USING found f
    WHERE c.contact_id = f.contact_id AND EXISTS (
        SELECT 1 FROM unnest($5::bigint[], $6::bytea[]) AS h(i, key_hash)
        JOIN contact_tombstones t ON t.bot_id = f.bot_id AND t.key_hash = h.key_hash
        WHERE h.i = f.i AND t.erased_at >= f.version_at)
    RETURNING c.contact_id
)
SELECT contact_id, bot_id, identify_method, identifier, external_workspace_id FROM found
WHERE contact_id NOT IN (SELECT contact_id FROM revived)
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


def contact_key(event: IdentityVerified) -> ContactKey:
    """Which contact a verified identity belongs to."""
    return (event.bot_id, event.identify_method.value, event.identity.identifier, event.identity.external_workspace_id)


def _order(key: ContactKey) -> tuple[str, str, str, bool, str]:
    """A total order of keys (no workspace before any workspace), the same in every batch."""
    bot_id, method, identifier, workspace = key
    return (str(bot_id), method, identifier, workspace is not None, workspace or "")


async def upsert_verified(
    conn: asyncpg.Connection, events: Sequence[IdentityVerified], secrets: Secrets | None = None,
) -> dict[ContactKey, UUID]:
    """Apply verified identities, oldest first for each contact; returns each key's contact id (a key
    whose events all came before its contact's erasure has none). ``secrets`` hashes keys to match
    erased contacts' tombstones; the contacts service always passes it.

    Rows are written in key order, so concurrent batches lock shared contacts in the same order
    (no deadlock); the version guard keeps the latest data whatever the order across batches."""
    if not events:
        return {}
    hashes = {key: key_hashes(secrets, key) for key in {contact_key(e) for e in events}}
    ordered = sorted(events, key=lambda e: (*_order(contact_key(e)), e.observed_at, str(e.event_id)))
    await conn.executemany(UPSERT_VERIFIED, [
        (
            e.bot_id, e.identify_method.value, e.identity.identifier, e.identity.id, e.identity.name,
            e.identity.email, e.identity.phone_number, e.identity.country_code, e.identity.avatar,
            e.identity.label, e.identity.metadata, e.observed_at, e.event_id, _sources(e),
            e.identity.external_workspace_id, e.degraded, hashes[contact_key(e)], e.session_id,
        )
        for e in ordered
    ])
    if degraded := [e for e in events if e.degraded]:
        keys_at = [(*contact_key(e), e.occurred_at) for e in degraded]
        await conn.execute(DEGRADED, *(list(column) for column in zip(*keys_at)))
    return await contact_ids(conn, hashes)


async def contact_ids(conn: asyncpg.Connection, hashes: dict[ContactKey, list[bytes]]) -> dict[ContactKey, UUID]:
    """The contacts of these keys (each with its tombstone hashes), after a batch's upserts."""
    keys = list(hashes)
    flat = [(i, h) for i, key in enumerate(keys, start=1) for h in hashes[key]]
    rows = await conn.fetch(CONTACT_IDS, *([k[i] for k in keys] for i in range(4)),
                            [i for i, _ in flat], [h for _, h in flat])
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


def collected_keys(event: ContactCollected) -> dict[str, str]:
    """Every key a form may be filed under, whatever the bot's identify method: its email's and its phone's;
    with neither, its session's."""
    keys = {method: value for method, value in (("email", event.email), ("phone_number", event.phone_number)) if value}
    return keys or {"session": event.session_id}


def collected_key(event: ContactCollected, identify_method: str | None) -> tuple[str, str]:
    """Which contact a form belongs to: the bot's identify method when the form has that field,
    else the email, else the phone; a form with neither is a contact of its own session."""
    keys = collected_keys(event)
    if identify_method is not None and identify_method in keys:
        return identify_method, keys[identify_method]
    return next(iter(keys.items()))


async def upsert_collected(
    conn: asyncpg.Connection, events: Sequence[ContactCollected], secrets: Secrets | None = None,
) -> None:
    """Apply forms, oldest first; a form sent before its contact's erasure is skipped (``secrets`` as for
    :func:`upsert_verified`)."""
    if not events:
        return
    methods = dict(await conn.fetch(
        "SELECT bot_id, identify_method FROM custom_auth_settings WHERE bot_id = ANY($1::uuid[])",
        list({e.bot_id for e in events}),
    ))
    hashes: dict[ContactKey, list[bytes]] = {}
    for e in sorted(events, key=lambda e: (e.occurred_at, str(e.event_id))):
        method, identifier = collected_key(e, methods.get(e.bot_id))
        key = (e.bot_id, method, identifier, None)
        hashes[key] = key_hashes(secrets, key)
        # Skipped if it came before the erasure of a contact under any of its keys: the bot's identify method may
        # have changed since the form was sent, and with it the key the form's contact was filed under.
        erased_if = [h for m, i in collected_keys(e).items() for h in key_hashes(secrets, (e.bot_id, m, i, None))]
        typed = {"name": e.name, "email": e.email, "phone_number": e.phone_number, "country_code": e.country_code}
        await conn.execute(
            UPSERT_COLLECTED, e.bot_id, method, identifier, e.name, e.email, e.phone_number, e.country_code,
            e.occurred_at, e.event_id, {k: "visitor" for k, v in typed.items() if v is not None}, erased_if,
        )
        await link_collected(conn, e.session_id, e.bot_id, method, identifier)
    if secrets is not None:
        await contact_ids(conn, hashes)  # the race with an erasure (shared/tombstones.py)
