"""Verifying through the business's outage: the grace cache (``outage_grace_seconds`` > 0).

For a bot with ``identity_source: auth_url`` (or ``oidc``: the OpenID Provider stands where the Authentication
URL does, below) and a grace period, every identity its Authentication URL verifies is remembered by the access token's keyed hash (:meth:`shared.crypto.Secrets.keyed_hash`;
looked up with every key's hash, so key rotation keeps matching); the token itself is never stored.
A refusal of that token marks the row, and nothing verifies it from the cache again until the business
verifies it afresh. A refusal is every answer that does not verify the token (401/403, ``status: false``,
a redirect, any other 4xx, a 2xx without a usable identity, an answer that cannot be read: the kinds
:data:`.failures.VERDICTS` marks ``Grace.REFUSES``); the visitor's reason stays ``auth_rejected`` or
``invalid_response``. Which came last, a verification or a refusal, is decided by the database's clock
(``now()`` in the SQL below), never by a verifier replica's.

When the Authentication URL is unavailable (a timeout, a connection error, HTTP 408/429/5xx, an open
circuit: the kinds marked ``Grace.ANSWERS``; not Doorman's own lack of a call slot to the host, nor a
blocked address or an unusable setting, which neither vouch for the token nor refuse it), a visitor whose
same token was verified within the last ``outage_grace_seconds``, and not refused since, is verified from that identity:
an ``IdentityVerified`` with ``degraded=True`` whose ``observed_at`` is that of the business's
verification (so it never overwrites newer data of the contact). It takes the fallback's place as the outcome,
including as what a retry ends in when no attempt is left.

Bots without a grace period cost nothing here: no read, no write. The Testing panel's dry run passes
no cache to :func:`handler.decide`, so it neither reads nor writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg
import structlog

from shared.auth_config import AuthConfig
from shared.crypto import Secrets
from shared.events import Identity, IdentityVerified, SessionFellBack, WidgetOpened
from shared.metrics import GRACE_LOOKUPS
from shared.service import background

from .failures import AuthFailure, Grace

log = structlog.get_logger("doorman.verifier.grace")
DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError)
PRUNE_EVERY_SECONDS = 600.0

# verified_at and rejected_at are the database's now(): one clock for every replica.
_REMEMBER = """
INSERT INTO grace_identities AS g (bot_id, token_hash, identify_method, identity, observed_at, verified_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (bot_id, token_hash) DO UPDATE SET
    identify_method = EXCLUDED.identify_method, identity = EXCLUDED.identity, observed_at = EXCLUDED.observed_at,
    verified_at = EXCLUDED.verified_at
WHERE g.verified_at IS NULL OR g.verified_at < EXCLUDED.verified_at
"""
# A refusal newer than the last verification also forgets the identity.
# Under every key's hash: while keys rotate, the identity may be remembered under the old key's.
_REJECT = """
INSERT INTO grace_identities AS g (bot_id, token_hash, rejected_at) SELECT $1, h, now() FROM unnest($2::bytea[]) AS h
ON CONFLICT (bot_id, token_hash) DO UPDATE SET
    rejected_at = greatest(g.rejected_at, EXCLUDED.rejected_at),
    identity = CASE WHEN g.verified_at < EXCLUDED.rejected_at THEN NULL ELSE g.identity END
"""
# observed_at is null on a row a verifier older than migration 0014 remembered: its verified_at is then
# that replica's observed_at.
_RECALL = """
SELECT identity, coalesce(observed_at, verified_at) AS observed_at, extract(epoch FROM now() - verified_at) AS age
FROM grace_identities
WHERE bot_id = $1 AND token_hash = ANY($2::bytea[]) AND identify_method = $3 AND identity IS NOT NULL
  AND verified_at > now() - make_interval(secs => $4) AND (rejected_at IS NULL OR rejected_at < verified_at)
ORDER BY verified_at DESC LIMIT 1
"""
# Rows past their bot's grace period (at least a minute, so a rejection outlives a racing verification).
_PRUNE = """
DELETE FROM grace_identities g USING custom_auth_settings s
WHERE g.bot_id = s.bot_id
  AND greatest(g.verified_at, g.rejected_at) < now() - make_interval(secs => greatest(s.outage_grace_seconds, 60))
"""


def applies(config: AuthConfig) -> bool:
    """A bot with a grace period whose visitors are verified by a call: its Authentication URL or its OpenID Provider."""
    return config.outage_grace_seconds > 0 and config.identity_source in ("auth_url", "oidc")


class GraceCache:
    def __init__(self, pool: asyncpg.Pool, secrets: Secrets) -> None:
        self._pool = pool
        self._secrets = secrets

    async def remember(self, bot_id: object, token: str, verified: IdentityVerified) -> None:
        """Best effort: a visitor who is not remembered only misses the grace in an outage."""
        try:
            await self._pool.execute(
                _REMEMBER, bot_id, self._secrets.keyed_hash(token), verified.identify_method.value,
                verified.identity.model_dump(mode="json"), verified.observed_at,
            )
        except DB_ERRORS as exc:
            log.warning("verified identity not kept for the outage grace", error=repr(exc))

    async def reject(self, bot_id: object, token: str) -> None:
        """Not best effort: a refused token must never be verified from the cache, so a failure here
        fails the open (retried, the business is asked again)."""
        await self._pool.execute(_REJECT, bot_id, self._secrets.keyed_hashes(token))

    async def recall(self, bot_id: object, token: str, identify_method: str,
                     grace_seconds: int) -> tuple[Identity, datetime, float] | None:
        """The identity verified with this token within ``grace_seconds`` and not refused since, with its
        verification's ``observed_at`` and age in seconds (by the database's clock)."""
        try:
            row = await self._pool.fetchrow(
                _RECALL, bot_id, self._secrets.keyed_hashes(token), identify_method, float(grace_seconds),
            )
        except DB_ERRORS as exc:
            GRACE_LOOKUPS.labels("error").inc()
            log.warning("grace cache not read; the visitor falls back", error=repr(exc))
            return None
        GRACE_LOOKUPS.labels("hit" if row else "miss").inc()
        if row is None:
            return None
        return Identity.model_validate(row["identity"]), row["observed_at"], float(row["age"])

    async def after_call(self, event: WidgetOpened, config: AuthConfig, outcome: IdentityVerified | SessionFellBack,
                         failure: AuthFailure | None) -> IdentityVerified | SessionFellBack:
        """The outcome of the identity call (``failure``: why it is a fallback), seen by the grace cache:
        remembered, marked, or replaced by the identity verified earlier with the same token."""
        if not applies(config) or event.access_token is None:
            return outcome
        token = event.access_token.get_secret_value()
        if isinstance(outcome, IdentityVerified):
            await self.remember(event.bot_id, token, outcome)
            return outcome
        assert failure is not None
        if failure.verdict.grace is Grace.REFUSES:
            await self.reject(event.bot_id, token)
            return outcome
        if failure.verdict.grace is not Grace.ANSWERS:
            return outcome
        found = await self.recall(event.bot_id, token, config.identify_method.value, config.outage_grace_seconds)
        if found is None:
            return outcome
        identity, observed_at, age = found
        log.info("verified from the outage grace", detail=outcome.detail, verified_seconds_ago=round(age, 1))
        return IdentityVerified(
            event_id=outcome.event_id, correlation_id=outcome.correlation_id, session_id=outcome.session_id,
            bot_id=outcome.bot_id, identify_method=config.identify_method, identity=identity, observed_at=observed_at,
            facts=outcome.facts, degraded=True,
            provider_sub=identity.id if config.identity_source == "oidc" else None,  # a back-channel logout finds it
        )

    async def prune(self) -> int:
        result = await self._pool.execute(_PRUNE)
        return int(result.rsplit(" ", 1)[-1])

    async def prune_forever(self, every: float = PRUNE_EVERY_SECONDS) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                if pruned := await self.prune():
                    log.info("grace cache pruned", rows=pruned)
            except DB_ERRORS as exc:
                log.warning("grace cache not pruned", error=repr(exc))


@asynccontextmanager
async def grace_cache(pool: asyncpg.Pool, secrets: Secrets) -> AsyncIterator[GraceCache]:
    cache = GraceCache(pool, secrets)
    async with background(cache.prune_forever()):
        yield cache
