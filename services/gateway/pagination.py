"""Keyset pagination: a cursor is the position after the last row shown, ``<created_at>.<key>``, the
row's creation time in microseconds since the Unix epoch and its id.

Every string of a list's cursor pattern is a position (a page after it, possibly empty), so what the
document allows is what the API accepts; anything else is refused by the query model (422 on ``cursor``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
from pydantic import AfterValidator, Field

from .constraints import stripped

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
# Up to 16 digits: until the year 2286, so any such number is a time Python and PostgreSQL can hold.
_POSITION = r"[0-9]{1,16}\."
UUID_KEY = "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
SESSION_KEY = "[A-Za-z0-9_-]{1,128}"


def cursor(key: str) -> Any:
    """The type of a list's ``cursor`` query parameter (default None) for ids matching ``key``, its pattern stated."""
    pattern = stripped(_POSITION + key)

    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError("not a cursor this API returned")
        return value

    return Annotated[str | None,
                     Field(description="the previous page's `next_cursor`", json_schema_extra={"pattern": pattern}),
                     AfterValidator(lambda value: value if value is None else check(value))]


UuidCursor = cursor(UUID_KEY)  # bots, contacts, webhook deliveries
SessionCursor = cursor(SESSION_KEY)  # the activity log


def encode(created_at: datetime, key: Any) -> str:
    return f"{(created_at - EPOCH) // MICROSECOND}.{key}"


def after(cursor: str | None, key: Callable[[str], Any] = str) -> tuple[datetime | None, Any]:
    """The position a cursor (already checked against its pattern) points after: ``(None, None)`` for the first page."""
    if not cursor:
        return None, None
    micros, _, last = cursor.partition(".")
    return EPOCH + int(micros) * MICROSECOND, key(last)


def page(rows: Sequence[asyncpg.Record], limit: int, *, items: str, key: str) -> dict[str, Any]:
    """``rows`` were fetched with ``LIMIT limit + 1``: the extra one says there is a next page."""
    shown = [dict(r) for r in rows[:limit]]
    next_cursor = encode(shown[-1]["created_at"], shown[-1][key]) if len(rows) > limit else None
    return {items: shown, "next_cursor": next_cursor}
