"""The outbound identity call: what is sent, what came back, what it means.

Made by the verifier for every widget open, and by the gateway's Testing panel through the
verifier's decision. The answer is read by :mod:`.answer`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import SecretStr

from shared.auth_config import AUTH_URL, BoundSecret, NotBound
from shared.destinations import unsendable_header
from shared.events import FallbackReason, Identity, IdentifyMethod
from shared.signing import sign

from .answer import parse_identity_response
from .failures import AuthFailure, Kind, kind_of
from .outbound import OutboundClient, OutboundResponse

_DESCRIPTIONS: dict[FallbackReason, str] = {
    FallbackReason.ca_disabled: (
        "Custom Authentication is turned off for this bot; turn it on in the bot's settings."
    ),
    FallbackReason.domain_not_allowed: (
        "The website's domain is not on the whitelist; add it or turn the domain whitelist off."
    ),
    FallbackReason.missing_token: (
        "The widget was opened without an access token; set data-token on the embed code."
    ),
    FallbackReason.auth_rejected: (
        "Your Authentication URL rejected the access token; check the token is valid and that "
        "your API accepts the configured header token."
    ),
    FallbackReason.auth_unavailable: (
        "Your Authentication URL did not answer in time or returned a server error; "
        "check it is up and fast."
    ),
    FallbackReason.invalid_response: (
        "Your Authentication URL's answer was not understood; return a JSON object with "
        "status true and a data object holding the identify method's field."
    ),
    FallbackReason.destination_blocked: (
        "Your Authentication URL points to a private or forbidden address; use a public URL."
    ),
    FallbackReason.internal_error: (
        "Something went wrong on our side; try again, and contact support if it persists."
    ),
    FallbackReason.misconfigured: (
        "A saved setting cannot be used as it is (the detail names it); save it again in the bot's settings."
    ),
    FallbackReason.busy: (
        "Doorman was too busy to verify this visitor in time and showed the form at once; nothing to fix "
        "on your side, it passes when the load does."
    ),
}


UNSENDABLE_TOKEN = ("header_token: the saved header token holds a line break or another control character and "
                    "cannot be sent in an HTTP header; save it again")


def describe(reason: FallbackReason) -> str:
    """One sentence telling the business what to fix for a fallback ``reason``."""
    return _DESCRIPTIONS[reason]


def identity_request(
    *, header_token: SecretStr | None, access_token: str, request_fields: Sequence[str],
    visitor: Mapping[str, str | None],
) -> tuple[dict[str, str], dict[str, str | None]]:
    """Headers and body of the identity call: the header token verbatim, the access token and
    exactly the selected fields (null when the embed did not give one), nothing else."""
    headers = {"Content-Type": "application/json"}
    if header_token is not None:
        headers["Authorization"] = header_token.get_secret_value()
    body: dict[str, str | None] = {"access_token": access_token}
    for field in request_fields:
        body[field] = visitor.get(field)
    return headers, body


@dataclass(frozen=True)
class IdentityCall:
    """One identity call, whatever happened: what was sent, what came back, what it means."""

    headers: dict[str, str]
    body: dict[str, str | None]
    response: OutboundResponse | None
    identity: Identity | None
    failure: AuthFailure | None
    elapsed_ms: float
    method: str = "POST"
    url: str = ""  # where it went (the Authentication URL, or the OpenID Provider's endpoint)
    sid: str | None = None  # an OpenID Provider's session id for the login, when its answer gave one
    expires_at: float | None = None  # when the verified token expires (seconds since 1970), when the answer said


def failed_call(kind: Kind, exc: BaseException, what: str = "the Authentication URL") -> str:
    """What the activity log says of a call to ``what`` that raised ``exc`` (of that ``kind``)."""
    if kind is Kind.TIMEOUT:
        return f"{what} did not answer in time"
    if kind is Kind.UNREACHABLE:
        return f"could not reach {what} ({type(exc).__name__})"
    if kind is Kind.NO_SLOT:
        return f"{exc}; {what} was not called"
    return str(exc)


def _header_token_for(auth_url: str, header_token: BoundSecret | None) -> tuple[SecretStr | None, AuthFailure | None]:
    """The header token to send to ``auth_url``, and why the call cannot be made with it, if it cannot: a
    token saved for another origin is not put in the request at all."""
    if header_token is None:
        return None, None
    try:
        token = header_token.for_url(AUTH_URL, auth_url)
    except NotBound as exc:
        return None, AuthFailure(Kind.MISCONFIGURED, str(exc))
    if unsendable_header(token.get_secret_value()):
        return token, AuthFailure(Kind.MISCONFIGURED, UNSENDABLE_TOKEN)
    return token, None


async def call_identity(
    http: OutboundClient, *, auth_url: str, identify_method: IdentifyMethod, header_token: BoundSecret | None,
    access_token: str, request_fields: Sequence[str], visitor: Mapping[str, str | None],
    signing_secrets: Sequence[str] = (), tenant: Hashable = None,
) -> IdentityCall:
    """``tenant``: the bot calling, for its fair share of the host's call slots."""
    token, unusable = _header_token_for(auth_url, header_token)
    headers, body = identity_request(
        header_token=token, access_token=access_token, request_fields=request_fields, visitor=visitor,
    )
    payload = json.dumps(body, separators=(",", ":")).encode()  # the exact bytes sent, and signed
    headers.update(sign(payload, signing_secrets))
    if unusable is not None:  # not called
        return IdentityCall(headers, body, None, None, unusable, 0.0, url=auth_url)
    started = time.perf_counter()
    response: OutboundResponse | None = None
    identity: Identity | None = None
    failure: AuthFailure | None = None
    try:
        response = await http.request("POST", auth_url, headers=headers, data=payload, tenant=tenant)
        identity = parse_identity_response(response.status, response.body, identify_method)
    except Exception as exc:
        if (kind := kind_of(exc)) is None:  # a crash: shared/failures.py says whether the stage retries it
            raise
        failure = exc if isinstance(exc, AuthFailure) else AuthFailure(kind, failed_call(kind, exc))
    elapsed = (time.perf_counter() - started) * 1000
    return IdentityCall(headers, body, response, identity, failure, elapsed, url=auth_url)
