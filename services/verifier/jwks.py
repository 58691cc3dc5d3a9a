"""The business's signing keys for signed identity tokens (RS256/ES256): its JWKS, fetched through
the guarded outbound client and cached per bot. The ``kid`` is only ever a dictionary key."""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import jwt
import structlog
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from .fetch import FetchFailed, fetch_json
from .outbound import OutboundClient

log = structlog.get_logger("doorman.verifier.jwks")

MAX_JWKS_KEYS = 100
MAX_KID_SHOWN = 64  # characters of a refused kid quoted in a detail


def quote(value: object) -> str:
    """A kid (or any header value) as a detail may quote it: JSON, bounded."""
    text = value if isinstance(value, str) else json.dumps(value)[:MAX_KID_SHOWN]
    return json.dumps(text[:MAX_KID_SHOWN] + ("…" if len(text) > MAX_KID_SHOWN else ""))


class UnknownKey(Exception):
    """No usable key has this kid (the token check calls it ``unknown_kid``)."""


class JwksUnavailable(Exception):
    """The JWKS could not be fetched or read: ``auth_unavailable``."""


# -- the JWKS, cached per bot and URL ------------------------------------------------------------


@dataclass
class _Jwks:
    url: str
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)  # kid -> JWK as published
    built: dict[tuple[str, str], Any] = field(default_factory=dict)  # (algorithm, kid) -> key object
    fetched_at: float | None = None  # the last good fetch
    attempted_at: float | None = None  # the last fetch, good or not
    failed: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class JwksCache:
    """The business's signing keys (``jwks_url``), per bot, read through the guarded outbound client.

    Fresh for ``ttl`` seconds; then fetched again (the last good keys are kept for ``max_stale``
    seconds while the URL fails). A ``kid`` it does not hold makes it fetch again when its last fetch
    (routine or not) is ``refetch_interval`` seconds old (10: a key the business adds is used within
    10 s of its first token; a stream of made-up kids costs one fetch per 10 s per bot and URL).
    After a failed fetch the URL is not asked again for ``retry_after_failure`` seconds. Concurrent
    lookups share one fetch.
    Per process: a second verifier replica keeps its own.
    """

    def __init__(
        self, http: OutboundClient, *, ttl: float = 300.0, refetch_interval: float = 10.0,
        retry_after_failure: float = 5.0, max_stale: float = 3600.0, max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._ttl = ttl
        self._refetch_interval = refetch_interval
        self._retry_after_failure = retry_after_failure
        self._max_stale = max_stale
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[UUID, _Jwks] = OrderedDict()

    def forget(self, bot_id: UUID | None) -> None:
        """The bot's settings changed (None: every bot's may have)."""
        if bot_id is None:
            self._entries.clear()
        else:
            self._entries.pop(bot_id, None)

    async def key(self, bot_id: UUID, url: str, algorithm: str, kid: str) -> Any:
        """The key to verify a ``kid``'s signature with; UnknownKey or JwksUnavailable."""
        entry = self._entry(bot_id, url)
        now = self._clock()
        if entry.fetched_at is None or now - entry.fetched_at >= self._ttl:
            await self._refresh(entry, bot_id, lambda e: e.fetched_at is None or self._clock() - e.fetched_at >= self._ttl)
            if entry.fetched_at is None or self._clock() - entry.fetched_at >= self._max_stale:
                raise JwksUnavailable("the JWKS could not be fetched")
        if kid not in entry.keys:
            await self._refresh(entry, bot_id, lambda e: kid not in e.keys and (
                e.attempted_at is None or self._clock() - e.attempted_at >= self._refetch_interval))
            if kid not in entry.keys and entry.failed and entry.attempted_at is not None \
                    and self._clock() - entry.attempted_at < self._retry_after_failure:
                raise JwksUnavailable("the JWKS could not be fetched to look for this kid")
        if kid not in entry.keys:
            raise UnknownKey(f"no key in the JWKS has kid {quote(kid)}")
        built = entry.built.get((algorithm, kid))
        if built is None:
            built = entry.built[(algorithm, kid)] = _key_for(entry.keys[kid], algorithm, kid)
        return built

    def _entry(self, bot_id: UUID, url: str) -> _Jwks:
        entry = self._entries.get(bot_id)
        if entry is None or entry.url != url:
            entry = self._entries[bot_id] = _Jwks(url)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        self._entries.move_to_end(bot_id)
        return entry

    async def _refresh(self, entry: _Jwks, bot_id: UUID, still_needed: Callable[[_Jwks], bool]) -> None:
        async with entry.lock:  # one fetch at a time; those who waited re-check whether theirs is still needed
            if not still_needed(entry):
                return
            if entry.failed and entry.attempted_at is not None \
                    and self._clock() - entry.attempted_at < self._retry_after_failure:
                return
            entry.attempted_at = self._clock()
            try:
                entry.keys = await self._fetch(entry.url, bot_id)
            except JwksUnavailable as exc:
                entry.failed = True
                log.warning("jwks_fetch_failed", bot_id=str(bot_id), reason=str(exc))
                return
            entry.built.clear()
            entry.fetched_at, entry.failed = self._clock(), False
            log.info("jwks_fetched", bot_id=str(bot_id), keys=len(entry.keys))

    async def _fetch(self, url: str, bot_id: UUID) -> dict[str, dict[str, Any]]:
        try:
            document = await fetch_json(self._http, url, what="the JWKS URL", headers={"Accept": "application/json"},
                                        tenant=bot_id)
        except FetchFailed as exc:
            raise JwksUnavailable(str(exc)) from None
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list):
            raise JwksUnavailable('the JWKS is not {"keys": [...]}')
        return {k["kid"]: k for k in keys[:MAX_JWKS_KEYS] if isinstance(k, dict) and isinstance(k.get("kid"), str)}


def _key_for(jwk: Mapping[str, Any], algorithm: str, kid: str) -> Any:
    """The public key a JWK holds, if it can verify ``algorithm``; else unknown_kid (a key of another
    type, curve, use or algorithm is not this token's key)."""
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", algorithm) != algorithm:
        raise UnknownKey(f"the JWKS key {quote(kid)} is not for {algorithm} signatures")
    try:
        if algorithm == "RS256" and jwk.get("kty") == "RSA":
            return RSAAlgorithm.from_jwk(dict(jwk))
        if algorithm == "ES256" and jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
            return ECAlgorithm.from_jwk(dict(jwk))
    except (jwt.InvalidKeyError, ValueError, TypeError, KeyError):
        raise UnknownKey(f"the JWKS key {quote(kid)} cannot be read") from None
    raise UnknownKey(f"the JWKS key {quote(kid)} is not a {algorithm} key")
