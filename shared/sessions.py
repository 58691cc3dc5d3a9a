"""Ending sessions that never resolved, so no widget waits forever.

A session still pending ``EXPIRE_GRACE_SECONDS`` after its deadline lost a message
somewhere despite retries and redeliveries. The contacts service sweeps such
sessions every second, and a gateway reading one ends it on the spot; both end it as
``fallback(internal_error)`` with a conditional update, so it still gets exactly one
outcome whoever gets there first.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from shared.events import FallbackReason

EXPIRE_GRACE_SECONDS = 2.0
EXPIRED_DETAIL = "the session was not resolved in time"


@dataclass(frozen=True)
class Expired:
    session_id: str
    bot_id: UUID
    watcher: str | None


_EXPIRE = """
    UPDATE widget_sessions s
    SET status = 'fallback', reason = $1, detail = $2, resolved_at = now()
    WHERE s.session_id = ANY(ARRAY({candidates})) AND s.status = 'pending'
    RETURNING s.session_id, s.bot_id, s.watcher
"""
# Range scan of the partial index on pending sessions' deadlines (the predicate is sargable).
_OVERDUE = """SELECT session_id FROM widget_sessions
              WHERE status = 'pending' AND deadline_at < now() - make_interval(secs => $3)
              ORDER BY deadline_at LIMIT $4 FOR UPDATE SKIP LOCKED"""
# One session, by primary key: what a gateway does when it reads one.
_ONE_OVERDUE = """SELECT session_id FROM widget_sessions
                  WHERE session_id = $4 AND status = 'pending' AND deadline_at < now() - make_interval(secs => $3)
                  FOR UPDATE SKIP LOCKED"""


async def expire_overdue(
    conn: asyncpg.Connection | asyncpg.Pool, *, session_id: str | None = None, limit: int = 1000,
) -> list[Expired]:
    """End overdue pending sessions (the one given, or up to ``limit``) as internal_error."""
    reason, detail = FallbackReason.internal_error.value, EXPIRED_DETAIL
    if session_id is None:
        rows = await conn.fetch(_EXPIRE.format(candidates=_OVERDUE), reason, detail, EXPIRE_GRACE_SECONDS, limit)
    else:
        rows = await conn.fetch(_EXPIRE.format(candidates=_ONE_OVERDUE), reason, detail, EXPIRE_GRACE_SECONDS, session_id)
    return [Expired(r["session_id"], r["bot_id"], r["watcher"]) for r in rows]


async def session_pending(conn: asyncpg.Connection | asyncpg.Pool, session_id: str) -> bool:
    """Whether the session exists and still waits for its outcome."""
    return await conn.fetchval("SELECT status = 'pending' FROM widget_sessions WHERE session_id = $1", session_id) is True
