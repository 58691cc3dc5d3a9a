"""Signed identity calls: the business can tell Doorman's calls from forgeries and replays.

Each call carries ``Doorman-Timestamp`` (unix seconds), ``Doorman-Delivery`` (a unique id: new for
each identity call; a webhook's own id, the same on every retry, so the business can dedupe on it)
and ``Doorman-Signature: v1=<hex>``, the HMAC-SHA256 with the bot's signing secret of
``"<timestamp>.<delivery>." + <the exact body bytes>``. While a rotated-out secret is still
honoured, a second ``v1=`` signature made with it follows, comma-separated.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
TIMESTAMP, DELIVERY, SIGNATURE = "Doorman-Timestamp", "Doorman-Delivery", "Doorman-Signature"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: str, delivery: str, body: bytes) -> str:
    payload = f"{timestamp}.{delivery}.".encode() + body
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def sign(
    body: bytes, signing_secrets: Sequence[str], *, now: float | None = None, delivery: str | None = None,
) -> dict[str, str]:
    """The headers to add to a call; none when the bot has no signing secret. ``delivery``: the id to
    send (a webhook's, stable across retries); None makes a new one (an identity call)."""
    if not signing_secrets:
        return {}
    timestamp = str(int(now if now is not None else time.time()))
    delivery = delivery if delivery is not None else str(uuid.uuid4())
    signatures = ", ".join(f"v1={signature(s, timestamp, delivery, body)}" for s in signing_secrets)
    return {TIMESTAMP: timestamp, DELIVERY: delivery, SIGNATURE: signatures}


def verify(secret: str, headers: dict[str, str], body: bytes, *, tolerance: float = 300, now: float | None = None) -> bool:
    """What a business does (the README shows it in a few lines): signature valid and recent."""
    timestamp, delivery = headers.get(TIMESTAMP, ""), headers.get(DELIVERY, "")
    if not timestamp.isdigit() or abs((now if now is not None else time.time()) - int(timestamp)) > tolerance:
        return False
    expected = signature(secret, timestamp, delivery, body)
    given = [part.strip().removeprefix("v1=") for part in headers.get(SIGNATURE, "").split(",")]
    return any(hmac.compare_digest(expected, g) for g in given)
