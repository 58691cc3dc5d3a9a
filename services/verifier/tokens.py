"""Signed identity tokens (``identity_source: signed_token``): the widget's access token is a JWT
the business signed; Doorman verifies it with no call to the business.

The signature is verified by PyJWT with the bot's one algorithm pinned (``algorithms=[pinned]``,
never taken from the token); every claim check is ours, so they run in the order below (the README's table of token codes) and each
failure is ``auth_rejected`` with a detail starting with its code:

    malformed_token        not a JWT Doorman can read (three base64url parts, JSON header, at most
                           MAX_TOKEN_CHARS characters); checked first
    algorithm_not_allowed  ``alg`` is not the bot's algorithm (``none`` never is)
    unknown_kid            no key has the token's ``kid`` (HS256: the bot's current or previous
                           secret; RS256/ES256: the JWKS)
    bad_signature          the signature does not verify
    invalid_claim          a time claim (``exp``, ``nbf``, ``iat``) present but not a NumericDate:
                           a finite number of seconds from 1970 to the end of 9999 (not NaN,
                           Infinity, a huge number, a boolean, a string or null)
    expired                ``exp`` missing or past
    not_yet_valid          ``nbf`` in the future
    issued_in_future       ``iat`` missing or in the future
    lifetime_too_long      ``exp - iat`` over ``max_lifetime_seconds``
    wrong_audience         ``aud`` is not the bot id (a list holding it is fine)
    wrong_issuer           ``iss`` is not the configured issuer (when one is set)
    missing_claim          the identify method's claim is absent or blank
    invalid_claim          (again) a mapped claim cannot be used (an unparsable phone number as the
                           identifier, metadata over the limits)

Clock skew: LEEWAY_SECONDS (30 s) either way for ``exp``, ``nbf`` and ``iat``; ``max_lifetime`` is
exact. A JWKS that cannot be fetched is ``auth_unavailable`` (retried, as an identity call's 5xx).

The ``kid`` is only ever a dictionary key: never a path, a URL or SQL.
"""

from __future__ import annotations

import binascii
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import jwt
import structlog
from jwt.utils import base64url_decode

from shared.auth_config import AuthConfig
from shared.events import FallbackReason, Identity
from shared.identifiers import IDENTIFIER_FIELDS
from shared.profiles import MAX_JSON_DEPTH, PROFILE_FIELDS, InvalidProfile, build_identity, depth_exceeds

from .discovery import Discovery
from .failures import AuthFailure, Kind
from .jwks import JwksCache, JwksUnavailable, UnknownKey, quote

log = structlog.get_logger("doorman.verifier.tokens")

LEEWAY_SECONDS = 30
MAX_TOKEN_CHARS = 8192  # as the widget API's access_token
MAX_NUMERIC_DATE = 253402300799  # 9999-12-31T23:59:59Z, the last second a datetime holds

# What PyJWT checks: the signature only. The claims are ours (below), in the module docstring's order.
_SIGNATURE_ONLY = {
    "verify_signature": True, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
    "verify_aud": False, "verify_iss": False, "verify_sub": False, "verify_jti": False, "require": [],
}


class TokenRejected(Exception):
    """A check failed; ``code`` names it and starts the detail."""

    def __init__(self, code: str, why: str) -> None:
        super().__init__(f"{code}: {why}")
        self.code = code


# -- the checks ----------------------------------------------------------------------------------


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _segment(token: str, index: int, what: str, parse_constant: Callable[[str], Any]) -> dict[str, Any]:
    """Part ``index`` of the token (0: the header, 1: the claims) as the JSON object it encodes, read
    here rather than by PyJWT (which refuses a non-string kid before alg is compared);
    TokenRejected(malformed_token) when it is none."""
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenRejected("malformed_token", f"the token is longer than {MAX_TOKEN_CHARS} characters")
    if token.count(".") != 2:
        raise TokenRejected("malformed_token", "a JWT has three dot-separated parts")
    try:
        value = json.loads(base64url_decode(token.split(".")[index]), parse_constant=parse_constant)
    except (binascii.Error, RecursionError, ValueError):
        value = None
    if not isinstance(value, dict):
        raise TokenRejected("malformed_token", f"the token's {what} is not a base64url-encoded JSON object")
    return value


def read_header(token: str) -> dict[str, Any]:
    """The token's JOSE header, unverified (what the Testing panel shows, and where ``alg`` and
    ``kid`` are read); TokenRejected(malformed_token) when it is not a JWT (NaN or Infinity in it:
    not JSON)."""
    return _segment(token, 0, "header", _not_json)


def read_claims(token: str) -> dict[str, Any]:
    """The token's claims WITHOUT verifying anything (the Testing panel shows them, as JSON): NaN
    and Infinity, which a signed token may hold (:func:`check_claims` refuses them as times) but JSON
    cannot, as the strings the token spells them with."""
    return _segment(token, 1, "payload", str)


def numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """The time claim ``name`` in seconds since 1970, None when absent; TokenRejected(invalid_claim)
    when it is not a NumericDate Doorman can compare and show (finite, 1970 to 9999)."""
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= MAX_NUMERIC_DATE:
        return float(value)  # NaN fails the comparison above; the bound keeps every difference finite
    raise TokenRejected("invalid_claim", f"{name} must be a number of seconds since 1970 (up to year 9999)")


def check_claims(claims: Mapping[str, Any], config: AuthConfig, bot_id: UUID, *, now: float | None = None) -> Identity:
    """Every check after the signature, in the module docstring's order; the Identity the claims map to."""
    settings = config.signed_token
    now = time.time() if now is None else now
    exp, nbf, iat = (numeric_date(claims, name) for name in ("exp", "nbf", "iat"))
    if exp is None:
        raise TokenRejected("expired", "the token has no exp claim")
    if exp <= now - LEEWAY_SECONDS:
        raise TokenRejected("expired", f"the token expired {round(now - exp)} s ago")
    if nbf is not None and nbf > now + LEEWAY_SECONDS:
        raise TokenRejected("not_yet_valid", f"the token is valid only in {round(nbf - now)} s")
    if iat is None:
        raise TokenRejected("issued_in_future", "the token has no iat claim")
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
        raise TokenRejected("wrong_issuer", f"iss must be {quote(settings.issuer)}")
    return identity_from_claims(claims, config)


def identity_from_claims(claims: Mapping[str, Any], config: AuthConfig,
                         claim_names: Mapping[str, str] | None = None) -> Identity:
    """The claims mapped onto the profile fields (as configured, or as ``claim_names`` says; ``country_code``,
    ``avatar`` and ``label`` by their own names), then read exactly as an Authentication URL's ``data``."""
    mapping = config.signed_token.claims if claim_names is None else claim_names
    names = {f: mapping.get(f, f) for f in (*PROFILE_FIELDS, "metadata")}
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


async def _jwks_url(config: AuthConfig, bot_id: UUID, discovery: Discovery | None) -> str | None:
    """``jwks_url``, else the ``jwks_uri`` the issuer's discovery document names (JwksUnavailable while the
    provider cannot be reached; an AuthFailure of its kind when the document cannot be used)."""
    settings = config.signed_token
    if settings.jwks_url or not settings.issuer or discovery is None:
        return settings.jwks_url
    try:
        metadata = await discovery.metadata(settings.issuer, tenant=bot_id)
    except AuthFailure as exc:
        if exc.reason is FallbackReason.auth_unavailable:
            raise JwksUnavailable(exc.detail) from None
        raise
    if metadata.jwks_uri is None:
        raise AuthFailure(Kind.MISCONFIGURED, "signed_token.issuer: the provider's discovery document has no jwks_uri")
    return metadata.jwks_uri


async def _key(token_header: Mapping[str, Any], config: AuthConfig, bot_id: UUID, jwks: JwksCache,
               discovery: Discovery | None = None) -> Any:
    settings = config.signed_token
    kid = token_header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenRejected("unknown_kid", "the token has no kid header naming its key")
    if settings.algorithm == "HS256":
        secret = settings.secrets().get(kid)
        if secret is None:
            raise TokenRejected("unknown_kid", f"kid {quote(kid)} is not one of this bot's current token secrets")
        return secret.get_secret_value().encode()
    jwks_url = await _jwks_url(config, bot_id, discovery)
    if not jwks_url:
        raise TokenRejected("unknown_kid", "the bot has no jwks_url (nor an issuer to discover it) to read keys from")
    try:
        return await jwks.key(bot_id, jwks_url, settings.algorithm, kid)
    except UnknownKey as exc:
        raise TokenRejected("unknown_kid", str(exc)) from None


async def verify_token(token: str, config: AuthConfig, bot_id: UUID, *, jwks: JwksCache,
                       discovery: Discovery | None = None) -> Identity:
    """The Identity a signed token carries; TokenRejected naming the check that failed, or
    JwksUnavailable."""
    header = read_header(token)
    algorithm = config.signed_token.algorithm
    if header.get("alg") != algorithm:
        raise TokenRejected("algorithm_not_allowed", f"alg is {quote(header.get('alg'))}; this bot accepts only {algorithm}")
    key = await _key(header, config, bot_id, jwks, discovery)
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
    expires_at: float | None = None  # the verified token's exp (seconds since 1970)


async def check_token(token: str, config: AuthConfig, bot_id: UUID, *, jwks: JwksCache,
                      discovery: Discovery | None = None) -> TokenCheck:
    """verify_token, its failures as the verifier's AuthFailure: ``token_refused``, or ``jwks_unavailable`` when
    the JWKS (or the discovery document naming it) could not be fetched, or ``misconfigured`` when the issuer's
    discovery document cannot be used (what
    each gets, a retry included: :mod:`.failures`). ``discovery``: where a bot with an issuer and no jwks_url
    finds its keys."""
    started = time.perf_counter()
    identity = failure = code = None
    try:
        identity = await verify_token(token, config, bot_id, jwks=jwks, discovery=discovery)
    except TokenRejected as exc:
        code, failure = exc.code, AuthFailure(Kind.TOKEN_REFUSED, str(exc))
    except JwksUnavailable as exc:
        code, failure = "jwks_unavailable", AuthFailure(Kind.JWKS_UNAVAILABLE, str(exc))
    except AuthFailure as exc:  # the issuer's discovery document: unusable, or the provider could not be reached
        code, failure = "misconfigured", exc
        if exc.kind is not Kind.MISCONFIGURED:  # the provider did not answer: its keys could not be fetched
            code = "jwks_unavailable"
    expires_at = numeric_date(read_claims(token), "exp") if identity is not None else None  # verified: a time
    return TokenCheck(identity, failure, code, (time.perf_counter() - started) * 1000, expires_at)
