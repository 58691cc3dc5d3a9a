"""The widget's view of a session, read from the database: ``GET /v1/widget/sessions/{id}``, a stream that
starts after the outcome (both through one :func:`view_reader` per replica, concurrent reads in one query),
and the outcome hub's re-read of sessions waited on for a while. An overdue
pending session is expired first (:func:`shared.sessions.expire_overdue`), so a reader never waits on a
lost message."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg

from shared.batching import Batcher
from shared.events import FallbackReason, utcnow
from shared.sessions import EXPIRE_GRACE_SECONDS, expire_overdue
from shared.widget_view import SessionView, fallback_view, widget_view

_VIEW_COLUMNS = """s.session_id, s.status, s.reason, s.deadline_at, s.collected_at IS NOT NULL AS collected,
                   s.collect_information, s.degraded, s.identity_expires_at,
                   c.contact_id, c.name, c.email, c.phone_number, c.avatar, c.verified"""
_SESSION_VIEWS = f"""SELECT {_VIEW_COLUMNS} FROM widget_sessions s LEFT JOIN contacts c USING (contact_id)
                     WHERE s.session_id = ANY($1::text[])"""


def busy_view(session_id: str, collect_information: str | None = None) -> SessionView:
    return fallback_view(session_id, FallbackReason.busy, collect_information)


def _overdue(row: asyncpg.Record, now: datetime) -> bool:
    return row["status"] == "pending" and row["deadline_at"] + timedelta(seconds=EXPIRE_GRACE_SECONDS) < now


ViewReader = Batcher[str, SessionView | None]
READS_AT_ONCE = 512  # session ids in one read
READS_IN_FLIGHT = 2


def view_reader(pool: asyncpg.Pool) -> ViewReader:
    """One session's view per call (None: no such session), the calls of concurrent requests read together:
    ``GET /v1/widget/sessions/{id}`` polled by many widgets, and streams of sessions opened elsewhere, cost one
    query per batch instead of one each (an overdue pending one falls back first: :func:`session_views`)."""
    async def read(session_ids: list[str]) -> list[SessionView | None]:
        views = await session_views(pool, session_ids)
        return [views.get(s) for s in session_ids]

    return Batcher(read, name="gateway session reads", max_weight=READS_AT_ONCE, max_in_flight=READS_IN_FLIGHT)


async def session_views(conn: asyncpg.Connection | asyncpg.Pool, session_ids: Sequence[str]) -> dict[str, SessionView]:
    """Several sessions' views in one round trip (sessions that do not exist are left out);
    overdue pending ones are expired first, so a reader never waits on a lost message."""
    rows = await conn.fetch(_SESSION_VIEWS, list(session_ids))
    now = utcnow()
    overdue = [r["session_id"] for r in rows if _overdue(r, now)]
    if overdue and await expire_overdue(conn, session_ids=overdue):
        rows = await conn.fetch(_SESSION_VIEWS, list(session_ids))
    return {r["session_id"]: widget_view(r) for r in rows}
