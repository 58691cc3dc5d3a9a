"""Reads for agents and businesses: contacts and the authentication activity log."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from shared.destinations import host_of

from .. import pagination
from .contact_views import AuthEventPage, ContactDetail, ContactHistoryEntry, ContactPage
from .views import AuthBreaker, BreakerReplica

CONTACT_SUMMARY = """contact_id, identify_method, identifier, external_workspace_id, external_id, name, email, phone_number,
    country_code, avatar, label, verified, created_at, updated_at, last_verified_at"""
SEARCH_TEXT = "(coalesce(name, '') || ' ' || coalesce(email, '') || ' ' || coalesce(phone_number, '') || ' ' || identifier)"


def _like(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_contacts(pool: asyncpg.Pool, bot_id: UUID, *, q: str | None, limit: int, cursor: str | None) -> ContactPage:
    """Newest first; ``q`` matches name, email, phone or identifier (substring, any case)."""
    created_at, contact_id = pagination.after(cursor, UUID)
    rows = await pool.fetch(
        f"""SELECT {CONTACT_SUMMARY} FROM contacts
            WHERE bot_id = $1
              AND ($2::text IS NULL OR {SEARCH_TEXT} ILIKE $2)
              AND ($3::timestamptz IS NULL OR (created_at, contact_id) < ($3, $4::uuid))
            ORDER BY created_at DESC, contact_id DESC
            LIMIT $5""",
        bot_id, _like(q) if q else None, created_at, contact_id, limit + 1,
    )
    return ContactPage.model_validate(pagination.page(rows, limit, items="contacts", key="contact_id"))


async def get_contact(
    pool: asyncpg.Pool | asyncpg.Connection, bot_id: UUID, contact_id: UUID,
) -> ContactDetail | None:
    row = await pool.fetchrow(
        f"""SELECT {CONTACT_SUMMARY}, metadata, field_sources, degraded, typed, taken_over_at, identity_history
            FROM contacts WHERE bot_id = $1 AND contact_id = $2""",
        bot_id, contact_id,
    )
    if row is None:
        return None
    contact = dict(row)
    contact["sources"] = contact.pop("field_sources")
    contact["history"] = [history_entry(e) for e in contact.pop("identity_history")]
    return ContactDetail.model_validate(contact)


def history_entry(stored: dict[str, Any]) -> ContactHistoryEntry:
    """An ``identity_history`` entry as the contacts service writes it (``UPSERT_VERIFIED``): a
    ``took_over_unverified`` entry has no ids, and an entry written before sessions were named has no session."""
    return ContactHistoryEntry(
        kind=stored["kind"], at=stored["at"], session_id=stored.get("session_id"), event_id=stored["event_id"],
        old_external_id=stored.get("old_external_id"), new_external_id=stored.get("new_external_id"),
    )


async def auth_events(
    pool: asyncpg.Pool, bot_id: UUID, *, reason: str | None, status: str | None, limit: int, cursor: str | None,
) -> AuthEventPage:
    """Recent sessions, newest first, with why they ended as they did."""
    created_at, session_id = pagination.after(cursor)
    rows = await pool.fetch(
        """SELECT s.session_id, s.origin, s.status, s.reason, s.detail, s.contact_id, s.created_at, s.resolved_at,
                  round(extract(epoch FROM s.resolved_at - s.created_at) * 1000)::int AS latency_ms,
                  s.auth_http_status, s.auth_latency_ms, s.whitelist_note, s.degraded, s.circuit_open, s.ended_by,
                  s.ended_at,
                  -- the change of who the contact is that this session's verification made, if any
                  (SELECT h FROM contacts c, jsonb_array_elements(c.identity_history) h
                   WHERE c.contact_id = s.contact_id AND h->>'session_id' = s.session_id LIMIT 1) AS identity_change
           FROM widget_sessions s
           WHERE s.bot_id = $1 AND ($2::text IS NULL OR s.reason = $2) AND ($3::text IS NULL OR s.status = $3)
             AND ($4::timestamptz IS NULL OR (s.created_at, s.session_id) < ($4, $5::text))
           ORDER BY s.created_at DESC, s.session_id DESC
           LIMIT $6""",
        bot_id, reason, status, created_at, session_id, limit + 1,
    )
    page = pagination.page(rows, limit, items="events", key="session_id")
    for event in page["events"]:
        if event["identity_change"] is not None:
            event["identity_change"] = history_entry(event["identity_change"])
    return AuthEventPage.model_validate(page)


async def auth_breaker(pool: asyncpg.Pool, bot_id: UUID) -> AuthBreaker | None:
    """The breaker state the verifier replicas recorded for the bot's calls to the host of its Authentication URL
    (another bot's breaker for the same host is its own)."""
    auth_url = await pool.fetchval("SELECT auth_url FROM custom_auth_settings WHERE bot_id = $1", bot_id)
    host = host_of(auth_url) if auth_url else None
    rows = await pool.fetch(
        """SELECT replica, state, since, opened, detail, updated_at FROM auth_breakers
           WHERE bot_id = $1 AND host = $2 ORDER BY updated_at DESC LIMIT 50""", bot_id, host,
    ) if host else []
    replicas = [BreakerReplica(**r) for r in rows]
    states = {r.state for r in replicas}
    state = "open" if "open" in states else "half_open" if "half_open" in states else "closed"
    return AuthBreaker(host=host, state=state, replicas=replicas)
