"""Verifying a widget's access token at the business's OpenID Provider (``identity_source: oidc``).

The provider's endpoints come from its discovery document (:mod:`.discovery`); then

``userinfo``       ``GET userinfo_endpoint`` with ``Authorization: Bearer <access token>``: its claims are the identity;
``introspection``  ``POST introspection_endpoint`` (RFC 7662) authenticated as the bot's client (the secret only ever
                   sent to the origin of the issuer it was saved with): an active, unexpired token issued to an
                   accepted client; when the identify method's claim is not in the answer, userinfo is asked too.

Claims map onto the profile with the standard names (``sub``, ``email``, ``name``, ``phone_number``, ``metadata``).
Every failure is an :class:`AuthFailure` whose kind :data:`.failures.VERDICTS` decides on, as for the Authentication
URL: a refusal is ``auth_rejected``, a provider down ``auth_unavailable`` (retried, the outage grace, the breaker).
The result is an :class:`.identity.IdentityCall`, the last request made and its answer (what the Testing panel shows).
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, urlencode

from shared.auth_config import DEFAULT_CLAIMS, ISSUER, AuthConfig, NotBound, Oidc
from shared.events import Identity
from .outbound import OutboundClient, OutboundResponse

from .discovery import Discovery
from .failures import AuthFailure, Kind, kind_of
from .identity import IdentityCall, failed_call
from .oidc_answers import ProviderMetadata, read_introspection, read_userinfo, shown
from .tokens import TokenRejected, identity_from_claims

MAX_SID = 255  # characters of a provider's session id kept on a session
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750's b64token: what an Authorization header can carry


@dataclass
class _Sent:
    """The request being made (the last one, once done) and its answer."""

    method: str = "GET"
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, str | None] = field(default_factory=dict)
    response: OutboundResponse | None = None


async def _request(http: OutboundClient, sent: _Sent, what: str, *, data: bytes | None, tenant: Hashable) -> OutboundResponse:
    """Make ``sent``'s request; a failure to get an answer as an AuthFailure naming ``what``."""
    sent.response = None
    try:
        sent.response = await http.request(sent.method, sent.url, headers=dict(sent.headers), data=data, tenant=tenant)
    except AuthFailure:
        raise  # the circuit breaker's CircuitOpen
    except Exception as exc:
        kind = kind_of(exc)
        if kind is None:
            raise
        raise AuthFailure(kind, failed_call(kind, exc, f"the {what}")) from None
    return sent.response


async def _userinfo(http: OutboundClient, sent: _Sent, metadata: ProviderMetadata, token: str,
                    tenant: Hashable) -> dict[str, Any]:
    if metadata.userinfo_endpoint is None:
        raise AuthFailure(Kind.MISCONFIGURED, "oidc.issuer: the provider publishes no userinfo_endpoint")
    sent.method, sent.url, sent.body = "GET", metadata.userinfo_endpoint, {}
    sent.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    response = await _request(http, sent, "userinfo endpoint", data=None, tenant=tenant)
    return read_userinfo(response.status, response.body)


def _client_secret(oidc: Oidc, endpoint: str) -> str:
    """The client secret, to send to ``endpoint``: only on the origin of the issuer it was saved with."""
    if oidc.client_secret is None:
        raise AuthFailure(Kind.MISCONFIGURED, "oidc.client_secret: introspection needs the bot's client secret; enter it")
    try:
        return oidc.client_secret.for_url(ISSUER, endpoint).get_secret_value()
    except NotBound as exc:
        raise AuthFailure(Kind.MISCONFIGURED, str(exc)) from None


async def _introspect(http: OutboundClient, sent: _Sent, oidc: Oidc, metadata: ProviderMetadata, token: str,
                      tenant: Hashable) -> dict[str, Any]:
    endpoint = metadata.introspection_endpoint
    if endpoint is None:
        raise AuthFailure(Kind.MISCONFIGURED, "oidc.method: the provider publishes no introspection_endpoint; use userinfo")
    auth = metadata.introspection_auth()
    if auth is None:
        raise AuthFailure(Kind.MISCONFIGURED, (
            "oidc.method: the provider takes neither client_secret_basic nor client_secret_post at its introspection "
            f"endpoint (it publishes {shown(list(metadata.introspection_auth_methods))}); use userinfo"))
    secret = _client_secret(oidc, endpoint)
    form = {"token": token, "token_type_hint": "access_token"}
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    if auth == "client_secret_basic":  # RFC 6749 2.3.1: each part form-encoded, then base64
        pair = f"{quote_plus(oidc.client_id)}:{quote_plus(secret)}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    else:
        form.update(client_id=oidc.client_id, client_secret=secret)
    sent.method, sent.url, sent.headers, sent.body = "POST", endpoint, headers, dict(form)
    response = await _request(http, sent, "introspection endpoint", data=urlencode(form).encode(), tenant=tenant)
    return read_introspection(response.status, response.body, accepted_clients=oidc.accepted_clients, now=time.time())


def _identity(claims: Mapping[str, Any], config: AuthConfig, source: str) -> Identity:
    try:
        return identity_from_claims(claims, config, DEFAULT_CLAIMS)
    except TokenRejected as exc:
        raise AuthFailure(Kind.INVALID_ANSWER, f"the {source} answer: {exc}") from None


@dataclass(frozen=True)
class _Verified:
    identity: Identity
    claims: Mapping[str, Any]  # the answer the identity came from (introspection's, merged with userinfo's if asked)


async def _verify(http: OutboundClient, sent: _Sent, config: AuthConfig, token: str, discovery: Discovery,
                  tenant: Hashable) -> _Verified:
    oidc = config.oidc
    if oidc is None:
        raise AuthFailure(Kind.MISCONFIGURED, "oidc: no OpenID Provider is set; save the bot's oidc settings")
    if not BEARER_TOKEN.fullmatch(token):
        raise AuthFailure(Kind.TOKEN_REFUSED, "malformed_token: an OAuth access token is letters, digits and -._~+/ "
                                              "(RFC 6750); the provider was not asked")
    metadata = await discovery.metadata(oidc.issuer, tenant=tenant)
    if oidc.method == "userinfo":
        claims = await _userinfo(http, sent, metadata, token, tenant)
        return _Verified(_identity(claims, config, "userinfo"), claims)
    introspected = await _introspect(http, sent, oidc, metadata, token, tenant)
    try:
        return _Verified(identity_from_claims(introspected, config, DEFAULT_CLAIMS), introspected)
    except TokenRejected as exc:
        if exc.code != "missing_claim":
            raise AuthFailure(Kind.INVALID_ANSWER, f"the introspection answer: {exc}") from None
    # The identify method's claim is not in the introspection answer: userinfo has it, for the same user.
    userinfo = await _userinfo(http, sent, metadata, token, tenant)
    if "sub" in introspected and introspected["sub"] != userinfo["sub"]:
        raise AuthFailure(Kind.INVALID_ANSWER, (
            f"userinfo's sub {shown(userinfo['sub'])} is not the introspected token's {shown(introspected['sub'])}"))
    merged = {**introspected, **userinfo}
    return _Verified(_identity(merged, config, "userinfo"), {**merged, "exp": introspected.get("exp")})


def _sid(claims: Mapping[str, Any]) -> str | None:
    """The provider's session id, when its answer gives one Doorman can match a logout token's against."""
    sid = claims.get("sid")
    return sid if isinstance(sid, str) and 0 < len(sid) <= MAX_SID else None


def _expires_at(claims: Mapping[str, Any]) -> float | None:
    """The token's exp as introspection gave it (read_introspection checked it is a time); userinfo gives none."""
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


async def call_provider(http: OutboundClient, config: AuthConfig, *, access_token: str, discovery: Discovery,
                        tenant: Hashable = None) -> IdentityCall:
    """The visitor's identity from the provider, or why not; ``tenant``: the bot, for its share of call slots."""
    sent = _Sent()
    started = time.perf_counter()
    verified: _Verified | None = None
    failure: AuthFailure | None = None
    try:
        verified = await _verify(http, sent, config, access_token, discovery, tenant)
    except AuthFailure as exc:
        failure = exc
    elapsed = (time.perf_counter() - started) * 1000
    if verified is None:
        return IdentityCall(sent.headers, sent.body, sent.response, None, failure, elapsed, method=sent.method,
                            url=sent.url)
    method = config.oidc.method if config.oidc else None
    return IdentityCall(sent.headers, sent.body, sent.response, verified.identity, None, elapsed, method=sent.method,
                        url=sent.url, sid=_sid(verified.claims),
                        expires_at=_expires_at(verified.claims) if method == "introspection" else None)
