"""Erasure and export of a contact (the admin API; the operator's token or the bot's workspace key).

``DELETE /v1/bots/{bot_id}/contacts/{contact_id}`` removes the contact's personal data in one
transaction and leaves a tombstone (shared/tombstones.py): the contact's key as a keyed
hash and when it was erased, so an older event (a replay, a retry, a dead letter put back, a late
verification) cannot bring the contact back, while a new verification makes a new contact. Removed:

* the contact's row: profile, ``metadata``, field sources, ``typed``, its identity history;
* its link from the widget sessions that verified as it or sent the form that made it, and those
  sessions' free-text ``detail`` (it may quote the business's answer); the sessions stay in the
  activity log with their status, reason and timings, pointing at no one;
* the webhook deliveries about it or about those sessions (``session.fell_back`` of a session whose
  visitor then sent the form), pending ones included; ``contact.erased`` is recorded instead;
* identities the business pushed for it (``pushed_identities``): the one its sessions used, and any
  other of the bot with its identifier or business id (in its business workspace), used or not;
* its identity in the outage grace cache (``grace_identities``), by identifier or business id.

``GET .../export`` answers everything stored about the contact, read in one snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg
from aiohttp import web

from shared.tombstones import key_hash
from shared.crypto import Secrets
from shared import webhook_outbox
from shared.events import WebhookDue, utcnow
from shared.routes import Routes
from shared.sessions import OF_CONTACT, erase_contact_details

from ..access import visible_bot
from ..http_errors import Error, error, json_response
from ..keys import POOL, SECRETS
from . import directory, webhooks
from .contact_views import ContactExport, ExportedCachedIdentity, ExportedPushedIdentity, ExportedSession

routes = Routes()

NOT_FOUND_CONTACT = {404: (
    "No bot has this `bot_id` (or it belongs to another workspace), no contact of that bot has this id "
    "(`contact_not_found`), or the contact was erased (`contact_erased`).", Error)}

_KEY = """SELECT identify_method, identifier, external_workspace_id, external_id
          FROM contacts WHERE bot_id = $1 AND contact_id = $2"""
# Pushed profiles: the one its sessions used, or any with its identifier (the field named by the identify
# method, as pushed: normalised) or its business id, in its business workspace.
# $1 bot, $2 contact, $3 identify method, $4 identifier, $5 external_workspace_id, $6 external_id.
_PUSHED = f"""pushed_identities p WHERE p.bot_id = $1 AND (
    p.used_by IN (SELECT s.session_id FROM widget_sessions s WHERE {OF_CONTACT})
    OR ((p.identity ->> 'external_workspace_id') IS NOT DISTINCT FROM $5
        AND (p.identity ->> $3::text = $4::text OR p.identity ->> 'id' = $6::text)))"""
# The grace cache: the identity verified for an access token ($1 bot, $2 identify method, $3 identifier,
# $4 external_workspace_id, $5 external_id).
_CACHED = """grace_identities g WHERE g.bot_id = $1 AND g.identity IS NOT NULL
    AND (g.identity ->> 'external_workspace_id') IS NOT DISTINCT FROM $4::text
    AND ((g.identify_method = $2 AND g.identity ->> 'identifier' = $3::text) OR g.identity ->> 'id' = $5::text)"""


def _contact_id(request: web.Request) -> UUID:
    try:
        return UUID(request.match_info["contact_id"])
    except ValueError:
        raise error(404, "contact_not_found", "no contact has this id") from None


async def _not_found(pool: asyncpg.Pool, bot_id: UUID, contact_id: UUID) -> web.HTTPException:
    if await pool.fetchval("SELECT true FROM contact_tombstones WHERE contact_id = $1 AND bot_id = $2",
                           contact_id, bot_id):
        return error(404, "contact_erased", "this contact was erased")
    return error(404, "contact_not_found", "no contact has this id")


async def erase(pool: asyncpg.Pool, secrets: Secrets, bot_id: UUID, contact_id: UUID) -> Erased | None:
    """Erase the contact (see the module's docstring); None when the bot has no such contact."""
    async with pool.acquire() as conn, conn.transaction():
        # The row lock orders this against the contacts service's upserts of the same contact.
        row = await conn.fetchrow(_KEY + " FOR UPDATE", bot_id, contact_id)
        if row is None:
            return None
        method, identifier, workspace, external_id = row
        await conn.execute(
            "INSERT INTO contact_tombstones (contact_id, bot_id, key_hash) VALUES ($1, $2, $3)",
            contact_id, bot_id, key_hash(secrets, (bot_id, method, identifier, workspace)),
        )
        await conn.execute(f"DELETE FROM {_PUSHED}", bot_id, contact_id, method, identifier, workspace, external_id)
        await conn.execute(f"DELETE FROM {_CACHED}", bot_id, method, identifier, workspace, external_id)
        sessions = await erase_contact_details(conn, bot_id, contact_id)
        await conn.execute("DELETE FROM contacts WHERE contact_id = $1", contact_id)  # sessions' links: SET NULL
        # The earlier webhook deliveries about it or its sessions hold its data: gone; `contact.erased` is
        # announced if the bot takes it.
        return Erased(await webhook_outbox.contact_erased(conn, bot_id, contact_id, sessions))


@dataclass(frozen=True)
class Erased:
    announced: WebhookDue | None  # contact.erased, to publish once committed


async def export(pool: asyncpg.Pool, bot_id: UUID, contact_id: UUID) -> ContactExport | None:
    """Everything stored about the contact, in one snapshot; None when the bot has no such contact."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        contact = await directory.get_contact(conn, bot_id, contact_id)
        if contact is None:
            return None
        key = await conn.fetchrow(_KEY, bot_id, contact_id)
        method, identifier, workspace, external_id = key
        sessions = await conn.fetch(
            f"""SELECT s.session_id, CASE WHEN s.contact_id = $2 THEN 'verified' ELSE 'collected' END AS link,
                       s.origin, s.status, s.reason, s.detail, s.created_at, s.resolved_at, s.collected_at, s.degraded
                FROM widget_sessions s WHERE {OF_CONTACT} ORDER BY s.created_at DESC, s.session_id DESC""",
            bot_id, contact_id,
        )
        pushed = await conn.fetch(
            f"""SELECT p.identity, p.created_at, p.expires_at, p.used_by, p.used_at FROM {_PUSHED}
                ORDER BY p.created_at DESC""",
            bot_id, contact_id, method, identifier, workspace, external_id,
        )
        cached = await conn.fetch(
            f"SELECT g.identify_method, g.identity, g.verified_at FROM {_CACHED} ORDER BY g.verified_at DESC",
            bot_id, method, identifier, workspace, external_id,
        )
    return ContactExport(
        exported_at=utcnow(), contact=contact,
        sessions=[ExportedSession(**r) for r in sessions],
        pushed_identities=[ExportedPushedIdentity(**r) for r in pushed],
        cached_identities=[ExportedCachedIdentity(**r) for r in cached],
    )


async def _addressed(request: web.Request) -> tuple[asyncpg.Pool, UUID, UUID]:
    """The pool, the bot (one the caller may see) and the contact id the path names."""
    return request.app[POOL], await visible_bot(request), _contact_id(request)


@routes.delete("/v1/bots/{bot_id}/contacts/{contact_id}", "eraseContact", "Erase a contact",
               auth="workspace", tag="contacts", responses={
    204: ("Erased: its personal data is gone, and an event from before now (a replay, a retry, a late "
          "verification) will not make it again; a verification after now makes a new contact.", None),
    **NOT_FOUND_CONTACT,
})
async def erase_contact(request: web.Request) -> web.Response:
    pool, bot_id, contact_id = await _addressed(request)
    if (erased := await erase(pool, request.app[SECRETS], bot_id, contact_id)) is None:
        raise await _not_found(pool, bot_id, contact_id)
    await webhooks.publish_after_commit(request.app, [erased.announced])
    return web.Response(status=204)


@routes.get("/v1/bots/{bot_id}/contacts/{contact_id}/export", "exportContact",
            "Export everything stored about a contact", auth="workspace", tag="contacts", responses={
    200: ("The contact's profile, sources, flags and history, its sessions with their outcomes, and the identities "
          "kept for it.", ContactExport),
    **NOT_FOUND_CONTACT,
})
async def export_contact(request: web.Request) -> web.Response:
    pool, bot_id, contact_id = await _addressed(request)
    if (exported := await export(pool, bot_id, contact_id)) is None:
        raise await _not_found(pool, bot_id, contact_id)
    return json_response(exported)
