"""OpenID Connect Back-Channel Logout between the gateway, which is posted the logout token, and the verifier, which
checks it against the provider's keys (:mod:`shared.rpc`); and the logout tokens already accepted.

The gateway calls no one (it holds no outbound client): it sends the token, sealed with the key ring, to
``P.verifier.backchannel_logout``; a verifier loads the bot's OpenID Provider settings, fetches the provider's JWKS
(services/verifier/logout.py) and answers the claims that matter (:class:`LogoutClaims`) or why the token is refused.
The gateway then records the token's ``jti`` (:func:`first_seen`: a replay to any replica, or to another bot of the
same provider, is refused) and ends the sessions (:func:`shared.sessions.end_provider_sessions`).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
from aio_pika.abc import AbstractChannel, AbstractQueue
from pydantic import BaseModel, ConfigDict, Field

from shared.crypto import Secrets
from shared.messaging import Topology
from shared.panel import MAX_PATIENCE_SECONDS, declare_request_queue

LOGOUT_QUEUE = "verifier.backchannel_logout"
REQUEST_TYPE = "backchannel_logout.requested"
SEEN_FOR_SECONDS = 600  # a jti is refused again for 10 minutes (a token's iat may be at most 5 minutes old)


async def declare_queue(channel: AbstractChannel, topology: Topology) -> AbstractQueue:
    """The request queue, declared by each verifier as the Testing panel's is."""
    return await declare_request_queue(channel, topology, LOGOUT_QUEUE)


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LogoutRequest(_Message):
    bot_id: UUID
    sealed_logout_token: str  # a Fernet token under the key ring: open with :meth:`logout_token`
    patience_seconds: float = Field(gt=0, le=MAX_PATIENCE_SECONDS)

    @classmethod
    def sealed(cls, secrets: Secrets, *, logout_token: str, **rest: Any) -> LogoutRequest:
        return cls(sealed_logout_token=secrets.encrypt(logout_token).decode(), **rest)

    def logout_token(self, secrets: Secrets) -> str:
        return secrets.decrypt(self.sealed_logout_token.encode())


class LogoutClaims(_Message):
    """What a valid logout token says: who logged out (``sub`` and/or ``sid``), and its ``jti`` under ``issuer``."""

    issuer: str
    jti: str
    sub: str | None
    sid: str | None


class LogoutAnswer(_Message):
    """The verifier's answer: the claims of a valid token, or why it is refused, or that the provider's keys could
    not be fetched (the token may be valid: the provider should send it again)."""

    claims: LogoutClaims | None = None
    refused: str | None = None
    unavailable: str | None = None


async def first_seen(conn: asyncpg.Connection | asyncpg.Pool, issuer: str, jti: str) -> bool:
    """Record the token's jti; False when a token with it was accepted within the last :data:`SEEN_FOR_SECONDS`."""
    return bool(await conn.fetchval(
        """INSERT INTO logout_tokens_seen (issuer, jti) VALUES ($1, $2)
           ON CONFLICT (issuer, jti) DO UPDATE SET seen_at = now()
               WHERE logout_tokens_seen.seen_at < now() - make_interval(secs => $3)
           RETURNING true""",
        issuer, jti, SEEN_FOR_SECONDS,
    ))


async def forget_seen(pool: asyncpg.Pool) -> int:
    """Drop the jtis older than :data:`SEEN_FOR_SECONDS` (their tokens' iat is too old to be accepted anyway)."""
    result = await pool.execute(
        "DELETE FROM logout_tokens_seen WHERE seen_at < now() - make_interval(secs => $1)", SEEN_FOR_SECONDS)
    return int(result.rsplit(" ", 1)[-1])
