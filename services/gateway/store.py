"""The gateway's reads and writes in PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import structlog

from shared.crypto import Secrets
from shared.db import CONFIG_CHANNEL
from shared.events import utcnow
from shared.sessions import EXPIRE_GRACE_SECONDS, expire_overdue

from . import pagination
from .schemas import CustomAuthSettingsIn

log = structlog.get_logger("doorman.gateway.store")

# What a visitor's browser may learn about its own contact; label and metadata are for agents.
WIDGET_CONTACT_FIELDS = ("contact_id", "name", "email", "phone_number", "avatar", "verified")


async def bot_exists(conn: asyncpg.Connection | asyncpg.Pool, bot_id: UUID) -> bool:
    return await conn.fetchval("SELECT true FROM bots WHERE bot_id = $1", bot_id) is not None


BOT_COLUMNS = "bot_id, name, workspace_id, created_at, updated_at"


async def workspace_exists(pool: asyncpg.Pool, workspace_id: UUID) -> bool:
    return await pool.fetchval("SELECT true FROM workspaces WHERE workspace_id = $1", workspace_id) is not None


async def create_bot(pool: asyncpg.Pool, name: str, workspace_id: UUID | None) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"INSERT INTO bots (bot_id, name, workspace_id) VALUES ($1, $2, $3) RETURNING {BOT_COLUMNS}",
            uuid4(), name, workspace_id,
        )
        await conn.execute("INSERT INTO custom_auth_settings (bot_id) VALUES ($1)", row["bot_id"])
    return dict(row)


async def list_bots(
    pool: asyncpg.Pool, *, workspace_id: UUID | None, every_workspace: bool, limit: int, cursor: str | None,
) -> dict[str, Any]:
    """Newest first: every bot for the operator, else the workspace's."""
    created_at, bot_id = pagination.after(cursor, UUID)
    rows = await pool.fetch(
        f"""SELECT {BOT_COLUMNS} FROM bots
            WHERE ($1 OR workspace_id = $2)
              AND ($3::timestamptz IS NULL OR (created_at, bot_id) < ($3, $4::uuid))
            ORDER BY created_at DESC, bot_id DESC LIMIT $5""",
        every_workspace, workspace_id, created_at, bot_id, limit + 1,
    )
    return pagination.page(rows, limit, items="bots", key="bot_id")


async def get_bot(pool: asyncpg.Pool, bot_id: UUID) -> dict[str, Any] | None:
    row = await pool.fetchrow(f"SELECT {BOT_COLUMNS} FROM bots WHERE bot_id = $1", bot_id)
    return dict(row) if row else None


_SETTINGS_COLUMNS = """
    enabled, auth_url, header_token_cipher IS NOT NULL AS header_token_set,
    signing_secret_cipher IS NOT NULL AS signing_secret_set, identify_method,
    request_fields, whitelist_enabled, whitelist_source, whitelist_domains, whitelist_api_url, revision, updated_at
"""


def _settings_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "enabled": row["enabled"],
        "auth_url": row["auth_url"],
        "header_token_set": row["header_token_set"],
        "signing_secret_set": row["signing_secret_set"],
        "identify_method": row["identify_method"],
        "request_fields": list(row["request_fields"]),
        "domain_whitelist": {
            "enabled": row["whitelist_enabled"],
            "source": row["whitelist_source"],
            "domains": list(row["whitelist_domains"]),
            "api_url": row["whitelist_api_url"],
        },
        "revision": row["revision"],
        "updated_at": row["updated_at"],
    }


async def get_custom_auth(pool: asyncpg.Pool, bot_id: UUID) -> dict[str, Any] | None:
    row = await pool.fetchrow(f"SELECT {_SETTINGS_COLUMNS} FROM custom_auth_settings WHERE bot_id = $1", bot_id)
    return _settings_view(row) if row else None


_PUT_SETTINGS = f"""
    UPDATE custom_auth_settings SET
        enabled = $2, auth_url = $3,
        header_token_cipher = CASE WHEN $4 THEN header_token_cipher ELSE $5 END,
        identify_method = $6, request_fields = $7,
        whitelist_enabled = $8, whitelist_source = $9, whitelist_domains = $10, whitelist_api_url = $11,
        revision = revision + 1, updated_at = now()
    WHERE bot_id = $1
    RETURNING {_SETTINGS_COLUMNS}
"""


async def put_custom_auth(
    pool: asyncpg.Pool, bot_id: UUID, body: CustomAuthSettingsIn, secrets: Secrets,
) -> dict[str, Any] | None:
    keep_token = "header_token" not in body.model_fields_set
    cipher = secrets.encrypt(body.header_token) if body.header_token else None
    whitelist = body.domain_whitelist
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            _PUT_SETTINGS, bot_id, body.enabled, body.auth_url, keep_token, cipher, body.identify_method.value,
            list(body.request_fields), whitelist.enabled, whitelist.source, list(whitelist.domains), whitelist.api_url,
        )
        if row is None:
            return None
        # Delivered to every verifier replica when this transaction commits.
        await conn.execute("SELECT pg_notify($1, $2)", CONFIG_CHANNEL, str(bot_id))
    return _settings_view(row)


async def open_session(
    pool: asyncpg.Pool, *, session_id: str, bot_id: UUID, origin: str | None, deadline_at: datetime,
) -> bool:
    """Record a pending session; False when the bot does not exist."""
    try:
        await pool.execute(
            "INSERT INTO widget_sessions (session_id, bot_id, origin, deadline_at) VALUES ($1, $2, $3, $4)",
            session_id, bot_id, origin, deadline_at,
        )
    except asyncpg.ForeignKeyViolationError:
        return False
    return True


async def forget_session(pool: asyncpg.Pool, session_id: str) -> None:
    """Undo :func:`open_session` when the event could not be published: nothing half-accepted."""
    await pool.execute("DELETE FROM widget_sessions WHERE session_id = $1 AND status = 'pending'", session_id)


_SESSION_VIEW = """
    SELECT s.session_id, s.status, s.reason, s.detail, s.deadline_at, s.collected_at IS NOT NULL AS collected,
           c.contact_id, c.name, c.email, c.phone_number, c.avatar, c.verified
    FROM widget_sessions s LEFT JOIN contacts c USING (contact_id)
    WHERE s.session_id = $1
"""


async def session_view(conn: asyncpg.Connection | asyncpg.Pool, session_id: str) -> dict[str, Any] | None:
    """The widget's view of a session; an overdue pending one is ended here (see shared.sessions)."""
    row = await conn.fetchrow(_SESSION_VIEW, session_id)
    if row is None:
        return None
    overdue = row["deadline_at"] + timedelta(seconds=EXPIRE_GRACE_SECONDS) < utcnow()
    if row["status"] == "pending" and overdue and await expire_overdue(conn, session_id=session_id):
        log.warning("session expired on read", session_id=session_id)
        row = await conn.fetchrow(_SESSION_VIEW, session_id)
    return _widget_view(row)


def _widget_view(row: asyncpg.Record) -> dict[str, Any]:
    contact = {k: row[k] for k in WIDGET_CONTACT_FIELDS} if row["contact_id"] else None
    fallback = {"reason": row["reason"], "detail": row["detail"]} if row["status"] == "fallback" else None
    return {"session_id": row["session_id"], "status": row["status"], "contact": contact, "fallback": fallback,
            "collected": row["collected"]}


async def watch_session(pool: asyncpg.Pool, session_id: str, replica: str) -> str | None:
    """Say this replica holds the session's stream; returns the status (None: no such session).

    The row lock orders this against the contacts service's resolve: either it
    sees our replica and notifies us, or we see the resolved status here.
    """
    return await pool.fetchval(
        "UPDATE widget_sessions SET watcher = $2 WHERE session_id = $1 RETURNING status", session_id, replica,
    )


async def claim_collection(pool: asyncpg.Pool, session_id: str) -> tuple[UUID | None, str | None]:
    """Take the session's one Collect Information submission: (bot_id, None), or (None, why not)."""
    bot_id = await pool.fetchval(
        """UPDATE widget_sessions SET collected_at = now()
           WHERE session_id = $1 AND status = 'fallback' AND collected_at IS NULL RETURNING bot_id""",
        session_id,
    )
    if bot_id is not None:
        return bot_id, None
    row = await pool.fetchrow("SELECT status, collected_at FROM widget_sessions WHERE session_id = $1", session_id)
    if row is None:
        return None, "not_found"
    if row["status"] != "fallback":
        return None, "not_fallback"
    return None, "already_collected"


async def release_collection(pool: asyncpg.Pool, session_id: str) -> None:
    await pool.execute("UPDATE widget_sessions SET collected_at = NULL WHERE session_id = $1", session_id)


SIGNING_OVERLAP_HOURS = 24  # a rotated-out signing secret keeps signing (second signature) this long


async def rotate_signing_secret(pool: asyncpg.Pool, bot_id: UUID, secret: str, secrets: Secrets) -> datetime | None:
    """Make ``secret`` the bot's signing secret; the old one keeps signing for a while. Returns until when."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """UPDATE custom_auth_settings SET
                   signing_previous_cipher = signing_secret_cipher,
                   signing_previous_until = CASE WHEN signing_secret_cipher IS NULL THEN NULL
                                                 ELSE now() + make_interval(hours => $3) END,
                   signing_secret_cipher = $2, revision = revision + 1, updated_at = now()
               WHERE bot_id = $1 RETURNING signing_previous_until""",
            bot_id, secrets.encrypt(secret), SIGNING_OVERLAP_HOURS,
        )
        await conn.execute("SELECT pg_notify($1, $2)", CONFIG_CHANNEL, str(bot_id))
    return row["signing_previous_until"] if row else None
