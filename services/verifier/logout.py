"""OpenID Connect Back-Channel Logout 1.0: a logout token posted to a bot, checked as the spec's section 2.6 says, for
the gateway (which asks over the broker: :mod:`shared.logout`).

    header     a JWT Doorman can read; ``typ`` absent or ``logout+jwt``; ``alg`` RS256 or ES256 (never ``none``, never
               a shared secret); a ``kid``
    signature  by the key with that kid in the provider's JWKS (``jwks_uri`` of the issuer's discovery document,
               cached per bot; an unknown kid fetches it again at most once per 10 s)
    claims     ``iss`` exactly the bot's issuer; ``aud`` its ``client_id`` (or a list holding it); ``iat`` within the
               last 5 minutes (30 s of clock skew); ``exp``, when present, not past; a string ``jti``; ``events``
               an object whose back-channel logout member is a JSON object; a string ``sub`` and/or ``sid``; no
               ``nonce``

Every refusal is :class:`LogoutRefused`, whose text says which check failed (the gateway answers it as the
``error_description`` of a 400). The ``jti`` is recorded by the gateway, in the database, so every replica agrees.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import asyncpg
import jwt
import structlog

from shared.auth_config import Oidc, load
from shared.crypto import Secrets
from shared.events import FallbackReason
from shared.logout import LogoutAnswer, LogoutClaims, LogoutRequest

from .discovery import Discovery
from .failures import AuthFailure
from .jwks import JwksCache, JwksUnavailable, UnknownKey, quote
from .tokens import TokenRejected, numeric_date, read_header

log = structlog.get_logger("doorman.verifier.logout")

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
TYPES = ("logout+jwt", "application/logout+jwt")  # RFC 8725 3.11: explicit typing; a media type's prefix may be left out
ALGORITHMS = ("RS256", "ES256")  # what a provider's JWKS holds keys for; never none, never a shared secret
MAX_AGE_SECONDS = 300
LEEWAY_SECONDS = 30
MAX_ID = 255  # characters of a jti, sub or sid

_SIGNATURE_ONLY = {
    "verify_signature": True, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
    "verify_aud": False, "verify_iss": False, "verify_sub": False, "verify_jti": False, "require": [],
}


class LogoutRefused(Exception):
    """The logout token is not valid: the text says why."""


def check_header(token: str) -> tuple[str, str]:
    """The token's (alg, kid), once its header is one a logout token may have."""
    try:
        header = read_header(token)
    except TokenRejected as exc:
        raise LogoutRefused(f"the logout token is not a JWT: {exc}") from None
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in TYPES):
        raise LogoutRefused(f"typ is {quote(typ)}; a logout token's is logout+jwt (or none)")
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise LogoutRefused(f"alg is {quote(alg)}; logout tokens are accepted signed with {' or '.join(ALGORITHMS)}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise LogoutRefused("the logout token has no kid header naming the provider's key")
    return alg, kid


def check_signature(token: str, key: Any, alg: str) -> dict[str, Any]:
    """The token's claims, once its signature verifies with ``key`` (the provider's, for ``alg``)."""
    try:
        claims = jwt.decode(token, key, algorithms=[alg], options=_SIGNATURE_ONLY)  # type: ignore[arg-type]
    except jwt.InvalidSignatureError:
        raise LogoutRefused("bad_signature: the signature is not the provider's") from None
    except (jwt.InvalidTokenError, jwt.InvalidKeyError, RecursionError, ValueError, TypeError):
        raise LogoutRefused("the logout token cannot be read as a signed JWT") from None
    if not isinstance(claims, dict):
        raise LogoutRefused("the logout token's payload is not a JSON object")
    return claims


def _identifier(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        raise LogoutRefused(f"{name} must be a non-empty string of at most {MAX_ID} characters")
    return value


def _time(claims: Mapping[str, Any], name: str) -> float | None:
    try:
        return numeric_date(claims, name)
    except TokenRejected:
        raise LogoutRefused(f"{name} must be a number of seconds since 1970") from None


def check_claims(claims: Mapping[str, Any], *, issuer: str, client_id: str, now: float) -> LogoutClaims:
    """The claims of a logout token whose signature verified, checked in the module docstring's order."""
    if claims.get("iss") != issuer:
        raise LogoutRefused(f"iss must be the bot's issuer, {quote(issuer)}")
    aud = claims.get("aud")
    if not (aud == client_id or (isinstance(aud, list) and client_id in aud)):
        raise LogoutRefused(f"aud must be the bot's client_id, {quote(client_id)}")
    iat = _time(claims, "iat")
    if iat is None:
        raise LogoutRefused("the logout token has no iat")
    if iat > now + LEEWAY_SECONDS:
        raise LogoutRefused(f"iat is {round(iat - now)} s in the future")
    if now - iat > MAX_AGE_SECONDS + LEEWAY_SECONDS:
        raise LogoutRefused(f"the logout token was issued {round(now - iat)} s ago; at most {MAX_AGE_SECONDS} s is accepted")
    exp = _time(claims, "exp")
    if exp is not None and exp <= now - LEEWAY_SECONDS:
        raise LogoutRefused(f"the logout token expired {round(now - exp)} s ago")
    jti = _identifier(claims, "jti")
    if jti is None:
        raise LogoutRefused("the logout token has no jti")
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
        raise LogoutRefused(f"events must hold the member {BACKCHANNEL_EVENT} with a JSON object")
    sub, sid = _identifier(claims, "sub"), _identifier(claims, "sid")
    if sub is None and sid is None:
        raise LogoutRefused("the logout token names neither a sub nor a sid")
    if "nonce" in claims:
        raise LogoutRefused("a logout token must not carry a nonce")
    return LogoutClaims(issuer=issuer, jti=jti, sub=sub, sid=sid)


async def _key(oidc: Oidc, bot_id: UUID, alg: str, kid: str, *, jwks: JwksCache, discovery: Discovery) -> Any:
    """The provider's key named ``kid``: JwksUnavailable while the provider cannot be reached."""
    try:
        metadata = await discovery.metadata(oidc.issuer, tenant=bot_id)
    except AuthFailure as exc:
        if exc.reason is FallbackReason.auth_unavailable:
            raise JwksUnavailable(exc.detail) from None
        raise LogoutRefused(f"the bot's OpenID Provider cannot be used: {exc.detail}") from None
    if metadata.jwks_uri is None:
        raise LogoutRefused("the provider's discovery document has no jwks_uri to check the signature with")
    try:
        return await jwks.key(bot_id, metadata.jwks_uri, alg, kid)
    except UnknownKey as exc:
        raise LogoutRefused(f"unknown_kid: {exc}") from None


async def verify_logout_token(token: str, oidc: Oidc, bot_id: UUID, *, jwks: JwksCache, discovery: Discovery,
                              now: float | None = None) -> LogoutClaims:
    """The claims of a valid logout token for the bot's provider; LogoutRefused, or JwksUnavailable."""
    alg, kid = check_header(token)
    key = await _key(oidc, bot_id, alg, kid, jwks=jwks, discovery=discovery)
    claims = check_signature(token, key, alg)
    return check_claims(claims, issuer=oidc.issuer, client_id=oidc.client_id, now=time.time() if now is None else now)


async def answer(body: bytes, *, pool: asyncpg.Pool, secrets: Secrets, jwks: JwksCache,
                 discovery: Discovery) -> bytes | None:
    """A gateway's :class:`LogoutRequest` -> its :class:`LogoutAnswer`, or None when checking it outlasts the
    gateway's patience (it answered 503 already)."""
    request = LogoutRequest.model_validate_json(body)
    try:
        async with asyncio.timeout(request.patience_seconds):
            reply = await _answer(pool, secrets, jwks, discovery, request)
    except TimeoutError:
        log.warning("logout token check outlasted its asker's patience", bot_id=str(request.bot_id))
        return None
    return reply.model_dump_json().encode()


async def _answer(pool: asyncpg.Pool, secrets: Secrets, jwks: JwksCache, discovery: Discovery,
                  request: LogoutRequest) -> LogoutAnswer:
    config = await load(pool, secrets, request.bot_id)
    if config is None or config.identity_source != "oidc" or config.oidc is None:
        return LogoutAnswer(refused="this bot does not verify visitors with an OpenID Provider")
    try:
        claims = await verify_logout_token(request.logout_token(secrets), config.oidc, request.bot_id, jwks=jwks,
                                           discovery=discovery)
    except LogoutRefused as exc:
        log.info("logout token refused", bot_id=str(request.bot_id), detail=str(exc))
        return LogoutAnswer(refused=str(exc))
    except JwksUnavailable as exc:
        log.warning("logout token not checked: the provider's keys cannot be fetched", bot_id=str(request.bot_id),
                    detail=str(exc))
        return LogoutAnswer(unavailable=str(exc))
    return LogoutAnswer(claims=claims)
