"""How an OpenID Provider's answers are read: its discovery document, userinfo and RFC 7662 introspection.

Pure functions of (HTTP status, body bytes): each returns what it read or raises an :class:`AuthFailure` whose
kind :data:`.failures.VERDICTS` decides on, with a precise detail; nothing else escapes, whatever the bytes.

    discovery      2xx, a JSON object whose ``issuer`` is exactly the bot's, publishing the endpoint needed;
                   a provider down (timeout, 408/429/5xx) is its kind; anything else names ``oidc.issuer``
                   as the setting to fix (``misconfigured``)
    userinfo       401/403: the token is refused (``auth_rejected``); 2xx: a JSON object with a ``sub``
    introspection  401/403: the provider refused Doorman's client credentials (``misconfigured``); 2xx: a JSON
                   object with ``active`` true (else ``inactive_token``), ``exp`` absent or in the future (else
                   ``inactive_token``), and a ``client_id`` or ``aud`` the bot accepts (else ``wrong_client``)
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from shared.profiles import MAX_JSON_DEPTH, depth_exceeds

from .failures import AuthFailure, Kind, status_kind

MAX_URL = 2048
MAX_NUMERIC_DATE = 253402300799  # 9999-12-31T23:59:59Z: a time claim beyond (or before 1970) is not one
MAX_SHOWN = 80  # characters of a provider's value quoted in a detail
AUTH_METHODS = ("client_secret_basic", "client_secret_post")  # how Doorman authenticates, in order of preference


def shown(value: object) -> str:
    """A value the provider sent, as a detail may quote it: JSON, bounded."""
    text = json.dumps(value, default=str)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "…"


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object (UTF-8, a byte order mark allowed, no NaN), or None when it is not one."""
    try:
        document = json.loads(body.decode("utf-8-sig"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError, JSONDecodeError, NaN/Infinity, huge ints, depth
        return None
    if not isinstance(document, dict) or depth_exceeds(document, MAX_JSON_DEPTH):
        return None
    return document


# -- discovery -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderMetadata:
    """What Doorman uses of a provider's discovery document."""

    issuer: str
    userinfo_endpoint: str | None
    introspection_endpoint: str | None
    jwks_uri: str | None
    introspection_auth_methods: tuple[str, ...]  # as published; see :meth:`introspection_auth`

    def introspection_auth(self) -> str | None:
        """``client_secret_basic`` unless the provider publishes only ``client_secret_post``; None when it
        publishes neither. The introspection endpoint's own list, else the token endpoint's, else the default
        (client_secret_basic)."""
        return next((m for m in AUTH_METHODS if m in self.introspection_auth_methods), None)


def _misconfigured(detail: str) -> NoReturn:
    raise AuthFailure(Kind.MISCONFIGURED, f"oidc.issuer: {detail}")


def _url(document: Mapping[str, Any], name: str) -> str | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("https://", "http://")) or len(value) > MAX_URL:
        _misconfigured(f"the discovery document's {name} is not an http(s) URL: {shown(value)}")
    return value


def _methods(document: Mapping[str, Any]) -> tuple[str, ...]:
    for name in ("introspection_endpoint_auth_methods_supported", "token_endpoint_auth_methods_supported"):
        value = document.get(name)
        if isinstance(value, list):
            return tuple(m for m in value if isinstance(m, str))
    return ("client_secret_basic",)


def read_discovery(status: int, body: bytes, issuer: str) -> ProviderMetadata:
    """The discovery document at ``{issuer}/.well-known/openid-configuration``, as answered."""
    kind = status_kind(status)
    if kind is Kind.UNAVAILABLE:
        raise AuthFailure(kind, f"the OpenID Provider's discovery document is unavailable (HTTP {status})")
    if kind is not None:
        _misconfigured(f"the discovery document answered HTTP {status}; is the issuer right?")
    document = json_object(body)
    if document is None:
        _misconfigured("the discovery document is not a JSON object")
    if document.get("issuer") != issuer:
        _misconfigured(f"the discovery document is for the issuer {shown(document.get('issuer'))}, not this one: "
                       "set the issuer exactly as the provider spells it")
    return ProviderMetadata(
        issuer=issuer, userinfo_endpoint=_url(document, "userinfo_endpoint"),
        introspection_endpoint=_url(document, "introspection_endpoint"), jwks_uri=_url(document, "jwks_uri"),
        introspection_auth_methods=_methods(document),
    )


# -- userinfo --------------------------------------------------------------------------------------

_USERINFO_STATUS = {
    Kind.REFUSED: "the userinfo endpoint refused the token (HTTP {status})",
    Kind.UNAVAILABLE: "the userinfo endpoint is unavailable (HTTP {status})",
    Kind.REDIRECT: "the userinfo endpoint answered HTTP {status}; redirects are not followed",
    Kind.CLIENT_ERROR: "the userinfo endpoint answered HTTP {status}",
    Kind.ODD_STATUS: "the userinfo endpoint answered HTTP {status}",
}


def read_userinfo(status: int, body: bytes) -> dict[str, Any]:
    """The claims of a userinfo answer: 2xx, a JSON object with a non-empty string ``sub``."""
    if (kind := status_kind(status)) is not None:
        raise AuthFailure(kind, _USERINFO_STATUS[kind].format(status=status))
    claims = json_object(body)
    if claims is None:
        raise AuthFailure(Kind.INVALID_ANSWER, "the userinfo answer is not a JSON object")
    if not isinstance(claims.get("sub"), str) or not claims["sub"].strip():
        raise AuthFailure(Kind.INVALID_ANSWER, "the userinfo answer has no sub")
    return claims


# -- introspection ---------------------------------------------------------------------------------

_INTROSPECTION_STATUS = {
    Kind.REFUSED: ("the provider refused Doorman's client credentials at the introspection endpoint (HTTP {status}); "
                   "check oidc.client_id and oidc.client_secret"),
    Kind.UNAVAILABLE: "the introspection endpoint is unavailable (HTTP {status})",
    Kind.REDIRECT: "the introspection endpoint answered HTTP {status}; redirects are not followed",
    Kind.CLIENT_ERROR: "the introspection endpoint answered HTTP {status}",
    Kind.ODD_STATUS: "the introspection endpoint answered HTTP {status}",
}


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    return [a for a in (aud if isinstance(aud, list) else [aud]) if isinstance(a, str)]


def read_introspection(status: int, body: bytes, *, accepted_clients: Collection[str], now: float) -> dict[str, Any]:
    """The claims of an introspection answer for a token that is active, unexpired and issued to an accepted client."""
    if (kind := status_kind(status)) is not None:
        # 401/403 here is about Doorman's own credentials (an inactive token is 200 {"active": false}).
        raise AuthFailure(Kind.MISCONFIGURED if kind is Kind.REFUSED else kind,
                          _INTROSPECTION_STATUS[kind].format(status=status))
    claims = json_object(body)
    if claims is None:
        raise AuthFailure(Kind.INVALID_ANSWER, "the introspection answer is not a JSON object")
    active = claims.get("active")
    if active is False:
        raise AuthFailure(Kind.REFUSED, "inactive_token: the provider says the token is not active")
    if active is not True:
        raise AuthFailure(Kind.INVALID_ANSWER, f"the introspection answer's active must be true or false, not {shown(active)}")
    if "exp" in claims:
        exp = claims["exp"]
        if not isinstance(exp, int | float) or isinstance(exp, bool) or not 0 <= exp <= MAX_NUMERIC_DATE:
            raise AuthFailure(Kind.INVALID_ANSWER, f"the introspection answer's exp is not a time: {shown(exp)}")
        if exp <= now:
            raise AuthFailure(Kind.REFUSED, f"inactive_token: the token expired {round(now - exp)} s ago")
    client_id = claims.get("client_id")
    if not ((isinstance(client_id, str) and client_id in accepted_clients)
            or any(a in accepted_clients for a in _audiences(claims))):
        raise AuthFailure(Kind.REFUSED, (
            f"wrong_client: the token was issued to {shown(client_id)}, a client this bot does not accept "
            f"(accepted_clients: {shown(sorted(accepted_clients))})"))
    return claims
