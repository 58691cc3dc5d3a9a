"""Keyset pagination with opaque cursors: ``(created_at, id)`` of the last row, base64url JSON.

A bad cursor raises :class:`BadCursor`; the error middleware answers it with 422 on the
``cursor`` field, so list handlers need not handle it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg


class BadCursor(ValueError):
    def __init__(self) -> None:
        super().__init__("not a cursor this API returned")


def encode(created_at: datetime, key: Any) -> str:
    raw = json.dumps([created_at.isoformat(), str(key)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def after(cursor: str | None, key: Callable[[str], Any] = str) -> tuple[datetime | None, Any]:
    """The position a cursor points after: ``(None, None)`` for the first page."""
    if not cursor:
        return None, None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, last = json.loads(raw)
        return datetime.fromisoformat(created_at), key(last)
    except (ValueError, TypeError):
        raise BadCursor() from None


def page(rows: Sequence[asyncpg.Record], limit: int, *, items: str, key: str) -> dict[str, Any]:
    """``rows`` were fetched with ``LIMIT limit + 1``: the extra one says there is a next page."""
    shown = [dict(r) for r in rows[:limit]]
    next_cursor = encode(shown[-1]["created_at"], shown[-1][key]) if len(rows) > limit else None
    return {items: shown, "next_cursor": next_cursor}
