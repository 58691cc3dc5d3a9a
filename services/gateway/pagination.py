"""Opaque keyset cursors: ``(created_at, id)`` of the last row, base64url-encoded JSON."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any


class BadCursor(ValueError):
    pass


def encode(created_at: datetime, key: Any) -> str:
    raw = json.dumps([created_at.isoformat(), str(key)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, key = json.loads(raw)
        return datetime.fromisoformat(created_at), str(key)
    except (ValueError, TypeError) as exc:
        raise BadCursor("not a cursor this API returned") from exc
