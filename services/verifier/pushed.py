"""Widget tokens from the server-to-server identity push (``POST /v1/bots/{bot_id}/identities``).

A widget open whose access token starts with ``dmw_`` is verified from the identity the business
pushed, whatever the bot's identity source, with no call to the business. A token is single use:
the first session that presents it owns it, in one conditional UPDATE, so of concurrent opens with
one token exactly one wins; a redelivery of the owning session's event is the same use, not a second.
Everything else (another session, an expired token, another bot's token, an unknown one) is
``auth_rejected`` with a detail that starts with its code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from shared.crypto import Secrets
from shared.events import IdentifyMethod, Identity, WidgetOpened
from shared.profiles import WIDGET_TOKEN_PREFIX, InvalidProfile, build_identity

from .failures import AuthFailure, Kind

# Owned by this session (a redelivery), or free and still valid: take it. Row locks order racers:
# the loser re-reads the winner's row, finds used_by set to another session, and updates nothing.
_CLAIM = """
UPDATE pushed_identities SET used_by = $3, used_at = coalesce(used_at, now())
WHERE token_hash = ANY($1::bytea[]) AND bot_id = $2
  AND (used_by = $3 OR (used_by IS NULL AND expires_at > now()))
RETURNING identity
"""
_READ = """SELECT bot_id, identity, expires_at, used_by, expires_at <= now() AS expired
           FROM pushed_identities WHERE token_hash = ANY($1::bytea[])"""


def is_widget_token(token: str) -> bool:
    return token.startswith(WIDGET_TOKEN_PREFIX)


def _rejected(detail: str) -> AuthFailure:
    return AuthFailure(Kind.WIDGET_TOKEN_REFUSED, detail)


@dataclass(frozen=True)
class PushedIdentities:
    """Where widget tokens are checked: the verifier takes them; the Testing panel (``dry_run``)
    only looks, and the token stays unused."""

    pool: asyncpg.Pool
    secrets: Secrets
    dry_run: bool = False

    async def take(self, token: str, *, bot_id: UUID, session_id: str, method: IdentifyMethod) -> Identity:
        """The pushed identity for this session's open, or AuthFailure saying why not."""
        hashes = self.secrets.keyed_hashes(token)  # every key's: a token pushed before a key rotation still matches
        if not self.dry_run:
            data = await self.pool.fetchval(_CLAIM, hashes, bot_id, session_id)
            if data is not None:
                return _identity(data, method)
        row = await self.pool.fetchrow(_READ, hashes)
        if row is None:
            raise _rejected("unknown_widget_token: no identity was pushed with this widget token (or it was pruned)")
        if row["bot_id"] != bot_id:
            raise _rejected("wrong_bot: this widget token was issued for another bot")
        if row["used_by"] is not None and row["used_by"] != session_id:
            raise _rejected("already_used: this widget token was used by another session (widget tokens are single use)")
        if row["expired"] and row["used_by"] is None:
            raise _rejected(f"expired: this widget token expired at {row['expires_at'].isoformat()}")
        if not self.dry_run:  # unreachable unless the row changed between the two statements
            raise _rejected("unusable_widget_token: this widget token could not be taken")
        return _identity(row["identity"], method)


def _identity(stored: dict[str, Any], method: IdentifyMethod) -> Identity:
    """The stored profile read as the bot's identify method reads it today: normalising again is
    idempotent, and a method changed since the push is seen (the field it needs may be missing)."""
    data = dict(stored)
    workspace = data.pop("external_workspace_id", None)
    try:
        identity = build_identity(data, method, label=str)
    except InvalidProfile as exc:
        raise AuthFailure(Kind.WIDGET_TOKEN_UNUSABLE, f"the pushed identity cannot be used: {exc}") from None
    # The business's own workspace (not Doorman's): carried once Identity has a field for it.
    if workspace is not None and "external_workspace_id" in Identity.model_fields:
        identity = identity.model_copy(update={"external_workspace_id": workspace})
    return identity


async def pushed_identity(pushed: PushedIdentities | None, event: WidgetOpened, method: IdentifyMethod) -> Identity:
    """The identity pushed for this open's widget token (see :meth:`PushedIdentities.take`)."""
    if pushed is None:  # a caller of decide() that cannot reach the database
        raise AuthFailure(Kind.WIDGET_TOKEN_UNCHECKED, "widget tokens (dmw_) cannot be checked here")
    assert event.access_token is not None
    return await pushed.take(event.access_token.get_secret_value(), bot_id=event.bot_id,
                             session_id=event.session_id, method=method)
