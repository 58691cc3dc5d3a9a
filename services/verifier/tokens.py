"""Signed identity tokens (``identity_source: signed_token``): the widget's access token is a JWT
the business signed; Doorman verifies it with no call to the business.

The signature is verified by PyJWT with the bot's one algorithm pinned (``algorithms=[pinned]``,
never taken from the token); every claim check is ours, so they run in DESIGN.md's order and each
failure is ``auth_rejected`` with a detail starting with its code:

    malformed_token        not a JWT Doorman can read (three base64url parts, JSON header, at most
                           MAX_TOKEN_CHARS characters); an addition to DESIGN's list, checked first
    algorithm_not_allowed  ``alg`` is not the bot's algorithm (``none`` never is)
    unknown_kid            no key has the token's ``kid`` (HS256: the bot's current or previous
                           secret; RS256/ES256: the JWKS)
    bad_signature          the signature does not verify
    expired                ``exp`` missing, not a number, or past
    not_yet_valid          ``nbf`` in the future
    issued_in_future       ``iat`` missing, not a number, or in the future
    lifetime_too_long      ``exp - iat`` over ``max_lifetime_seconds``
    wrong_audience         ``aud`` is not the bot id (a list holding it is fine)
    wrong_issuer           ``iss`` is not the configured issuer (when one is set)
    missing_claim          the identify method's claim is absent or blank
    invalid_claim          a mapped claim cannot be used (an unparsable phone number as the
                           identifier, metadata over the limits): an addition to DESIGN's list

Clock skew: LEEWAY_SECONDS (30 s) either way for ``exp``, ``nbf`` and ``iat``; ``max_lifetime`` is
exact. A JWKS that cannot be fetched is ``auth_unavailable`` (retried, as an identity call's 5xx).

The ``kid`` is only ever a dictionary key: never a path, a URL or SQL.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import aiohttp
import jwt
import structlog
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.utils import base64url_decode

from shared.auth_config import AuthConfig
from shared.events import FallbackReason, Identity
from shared.http import DestinationBlocked, HostBusy, InvalidResponse, OutboundClient
from shared.identifiers import IDENTIFIER_FIELDS

from .answer import MAX_JSON_DEPTH, PROFILE_FIELDS, AuthFailure, InvalidProfile, depth_exceeds, build_identity

log = structlog.get_logger("doorman.verifier.tokens")

LEEWAY_SECONDS = 30
MAX_TOKEN_CHARS = 8192  # as the widget API's access_token
MAX_KID_SHOWN = 64  # characters of a refused kid quoted in the detail
MAX_JWKS_KEYS = 100

# What PyJWT checks: the signature only. The claims are ours (below), in DESIGN.md's order.
_SIGNATURE_ONLY = {
    "verify_signature": True, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
    "verify_aud": False, "verify_iss": False, "verify_sub": False, "verify_jti": False, "require": [],
}


class TokenRejected(Exception):
    """A check failed; ``code`` names it and starts the detail."""

    def __init__(self, code: str, why: str) -> None:
        super().__init__(f"{code}: {why}")
        self.code = code


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
    seconds while the URL fails). A ``kid`` it does not hold makes it fetch again at most once per
    ``refetch_interval`` seconds per bot and URL (a business that rotated its keys is seen within
    a minute; a stream of made-up kids costs one fetch a minute). After a failed fetch the URL is
    not asked again for ``retry_after_failure`` seconds. Concurrent lookups share one fetch.
    Per process: a second verifier replica keeps its own.
    """

    def __init__(
        self, http: OutboundClient, *, ttl: float = 300.0, refetch_interval: float = 60.0,
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
        """The key to verify a ``kid``'s signature with; TokenRejected(unknown_kid) or JwksUnavailable."""
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
            raise TokenRejected("unknown_kid", f"no key in the JWKS has kid {_quote(kid)}")
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
                entry.keys = await self._fetch(entry.url)
            except JwksUnavailable as exc:
                entry.failed = True
                log.warning("jwks_fetch_failed", bot_id=str(bot_id), reason=str(exc))
                return
            entry.built.clear()
            entry.fetched_at, entry.failed = self._clock(), False
            log.info("jwks_fetched", bot_id=str(bot_id), keys=len(entry.keys))

    async def _fetch(self, url: str) -> dict[str, dict[str, Any]]:
        try:
            response = await self._http.request("GET", url, headers={"Accept": "application/json"})
        except DestinationBlocked as exc:
            raise JwksUnavailable(f"the JWKS URL's address is not allowed ({exc})") from None
        except HostBusy:
            raise JwksUnavailable("the JWKS URL has too many calls in flight") from None
        except InvalidResponse as exc:
            raise JwksUnavailable(f"the JWKS cannot be read ({exc})") from None
        except (TimeoutError, asyncio.TimeoutError):
            raise JwksUnavailable("the JWKS URL did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise JwksUnavailable(f"could not reach the JWKS URL ({type(exc).__name__})") from None
        if not 200 <= response.status < 300:
            raise JwksUnavailable(f"the JWKS URL answered HTTP {response.status}")
        try:
            document = json.loads(response.body)
        except (ValueError, RecursionError):
            raise JwksUnavailable("the JWKS is not JSON") from None
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list):
            raise JwksUnavailable('the JWKS is not {"keys": [...]}')
        return {k["kid"]: k for k in keys[:MAX_JWKS_KEYS] if isinstance(k, dict) and isinstance(k.get("kid"), str)}


def _key_for(jwk: Mapping[str, Any], algorithm: str, kid: str) -> Any:
    """The public key a JWK holds, if it can verify ``algorithm``; else unknown_kid (a key of another
    type, curve, use or algorithm is not this token's key)."""
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", algorithm) != algorithm:
        raise TokenRejected("unknown_kid", f"the JWKS key {_quote(kid)} is not for {algorithm} signatures")
    try:
        if algorithm == "RS256" and jwk.get("kty") == "RSA":
            return RSAAlgorithm.from_jwk(dict(jwk))
        if algorithm == "ES256" and jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
            return ECAlgorithm.from_jwk(dict(jwk))
    except (jwt.InvalidKeyError, ValueError, TypeError, KeyError):
        raise TokenRejected("unknown_kid", f"the JWKS key {_quote(kid)} cannot be read") from None
    raise TokenRejected("unknown_kid", f"the JWKS key {_quote(kid)} is not a {algorithm} key")


# -- the checks ----------------------------------------------------------------------------------


def _quote(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)[:MAX_KID_SHOWN]
    return json.dumps(text[:MAX_KID_SHOWN] + ("…" if len(text) > MAX_KID_SHOWN else ""))


def read_header(token: str) -> dict[str, Any]:
    """The token's JOSE header, unverified (what the Testing panel shows, and where ``alg`` and
    ``kid`` are read); TokenRejected(malformed_token) when it is not a JWT."""
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenRejected("malformed_token", f"the token is longer than {MAX_TOKEN_CHARS} characters")
    if token.count(".") != 2:
        raise TokenRejected("malformed_token", "a JWT has three dot-separated parts")
    try:  # read here rather than by PyJWT, which refuses a non-string kid before alg is compared
        header = json.loads(base64url_decode(token.partition(".")[0]))
    except (binascii.Error, RecursionError, ValueError):
        header = None
    if not isinstance(header, dict):
        raise TokenRejected("malformed_token", "the token's header is not a base64url-encoded JSON object")
    return header


def read_claims(token: str) -> dict[str, Any]:
    """The token's claims WITHOUT verifying anything (the Testing panel shows them)."""
    try:
        return jwt.decode(token, options={**_SIGNATURE_ONLY, "verify_signature": False})  # type: ignore[typeddict-item]
    except (jwt.InvalidTokenError, RecursionError, ValueError):
        raise TokenRejected("malformed_token", "the token's payload is not a base64url-encoded JSON object") from None


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def check_claims(claims: Mapping[str, Any], config: AuthConfig, bot_id: UUID, *, now: float | None = None) -> Identity:
    """Every check after the signature, in DESIGN.md's order; the Identity the claims map to."""
    settings = config.signed_token
    now = time.time() if now is None else now
    exp, nbf, iat = _number(claims, "exp"), _number(claims, "nbf"), _number(claims, "iat")
    if exp is None:
        raise TokenRejected("expired", "the token has no numeric exp claim")
    if exp <= now - LEEWAY_SECONDS:
        raise TokenRejected("expired", f"the token expired {round(now - exp)} s ago")
    if "nbf" in claims and nbf is None:
        raise TokenRejected("not_yet_valid", "the nbf claim is not a number")
    if nbf is not None and nbf > now + LEEWAY_SECONDS:
        raise TokenRejected("not_yet_valid", f"the token is valid only in {round(nbf - now)} s")
    if iat is None:
        raise TokenRejected("issued_in_future", "the token has no numeric iat claim")
    if iat > now + LEEWAY_SECONDS:
        raise TokenRejected("issued_in_future", f"iat is {round(iat - now)} s in the future")
    if exp - iat > settings.max_lifetime_seconds:
        raise TokenRejected("lifetime_too_long", (
            f"exp - iat is {round(exp - iat)} s; this bot accepts at most {settings.max_lifetime_seconds} s"))
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if str(bot_id) not in [a.lower() for a in audiences if isinstance(a, str)]:
        raise TokenRejected("wrong_audience", f"aud must be this bot's id ({bot_id})")
    if settings.issuer is not None and claims.get("iss") != settings.issuer:
        raise TokenRejected("wrong_issuer", f"iss must be {_quote(settings.issuer)}")
    return identity_from_claims(claims, config)


def identity_from_claims(claims: Mapping[str, Any], config: AuthConfig) -> Identity:
    """The claims mapped onto the profile fields (as configured; ``country_code``, ``avatar`` and
    ``label`` by their own names), then read exactly as an Authentication URL's ``data``."""
    names = {f: config.signed_token.claims.get(f, f) for f in (*PROFILE_FIELDS, "metadata")}
    identifier_claim = names[IDENTIFIER_FIELDS[config.identify_method]]
    value = claims.get(identifier_claim)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise TokenRejected("missing_claim", (
            f"the {identifier_claim!r} claim (identify method {config.identify_method.value}) is missing or empty"))
    data = {f: claims.get(name) for f, name in names.items()}
    if depth_exceeds(data, MAX_JSON_DEPTH):
        raise TokenRejected("invalid_claim", f"the claims are nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return build_identity(data, config.identify_method, label=lambda f: f"claim {names[f]!r}")
    except InvalidProfile as exc:
        raise TokenRejected("invalid_claim", str(exc)) from None


async def _key(token_header: Mapping[str, Any], config: AuthConfig, bot_id: UUID, jwks: JwksCache) -> Any:
    settings = config.signed_token
    kid = token_header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenRejected("unknown_kid", "the token has no kid header naming its key")
    if settings.algorithm == "HS256":
        secret = settings.secrets().get(kid)
        if secret is None:
            raise TokenRejected("unknown_kid", f"kid {_quote(kid)} is not one of this bot's current token secrets")
        return secret.get_secret_value().encode()
    if not settings.jwks_url:
        raise TokenRejected("unknown_kid", "the bot has no jwks_url to read keys from")
    return await jwks.key(bot_id, settings.jwks_url, settings.algorithm, kid)


async def verify_token(token: str, config: AuthConfig, bot_id: UUID, *, jwks: JwksCache) -> Identity:
    """The Identity a signed token carries; TokenRejected naming the check that failed, or
    JwksUnavailable."""
    header = read_header(token)
    algorithm = config.signed_token.algorithm
    if header.get("alg") != algorithm:
        raise TokenRejected("algorithm_not_allowed", f"alg is {_quote(header.get('alg'))}; this bot accepts only {algorithm}")
    key = await _key(header, config, bot_id, jwks)
    try:
        claims = jwt.decode(token, key, algorithms=[algorithm], options=_SIGNATURE_ONLY)  # type: ignore[arg-type]
    except jwt.InvalidSignatureError:
        raise TokenRejected("bad_signature", "the signature does not match the token's header and claims") from None
    except jwt.InvalidAlgorithmError:  # unreachable: alg was compared above; kept as a second lock
        raise TokenRejected("algorithm_not_allowed", f"this bot accepts only {algorithm}") from None
    except (jwt.InvalidKeyError, jwt.InvalidTokenError, RecursionError, ValueError, TypeError):
        raise TokenRejected("malformed_token", "the token cannot be read as a signed JWT") from None
    return check_claims(claims, config, bot_id)


@dataclass(frozen=True)
class TokenCheck:
    """What a signed token came to: the identity, or why not (``code``: the failed check)."""

    identity: Identity | None
    failure: AuthFailure | None
    code: str | None
    elapsed_ms: float


async def check_token(token: str, config: AuthConfig, bot_id: UUID, *, jwks: JwksCache) -> TokenCheck:
    """verify_token, its failures as the verifier's AuthFailure (``auth_rejected``; ``auth_unavailable``
    and a retry when the JWKS could not be fetched)."""
    started = time.perf_counter()
    identity = failure = code = None
    try:
        identity = await verify_token(token, config, bot_id, jwks=jwks)
    except TokenRejected as exc:
        code, failure = exc.code, AuthFailure(FallbackReason.auth_rejected, str(exc))
    except JwksUnavailable as exc:
        code, failure = "jwks_unavailable", AuthFailure(FallbackReason.auth_unavailable, str(exc))
    return TokenCheck(identity, failure, code, (time.perf_counter() - started) * 1000)
