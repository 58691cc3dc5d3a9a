"""The outbound identity call: what is sent, and how the business's answer is read.

Used by the verifier for every widget open and by the gateway's Testing panel.
Success means HTTP 2xx, a UTF-8 JSON object, ``status`` absent or true, and a
``data`` object holding the identify method's field, non-empty. Anything else
is an :class:`AuthFailure` with the fallback reason and a precise detail.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import aiohttp
from pydantic import SecretStr

from shared.events import FallbackReason, Identity, IdentifyMethod
from shared.http import DestinationBlocked, HostBusy, InvalidResponse, OutboundClient, OutboundResponse
from shared.identifiers import (
    IDENTIFIER_FIELDS,
    InvalidIdentifier,
    normalise_email,
    normalise_identifier,
    normalise_phone,
)
from shared.signing import sign

MAX_STRING = 2048  # characters, for each profile field
MAX_METADATA_BYTES = 16384  # size of data.metadata re-serialised as compact UTF-8 JSON
MAX_JSON_DEPTH = 16  # nesting of objects/arrays; the top-level object is depth 1
MAX_MESSAGE = 200  # characters of the business's "message" quoted in a rejection

PROFILE_FIELDS = ("id", "name", "email", "phone_number", "country_code", "avatar", "label")


class AuthFailure(Exception):
    """The identity call did not verify the visitor; ``str(exc)`` is the detail. ``retry``: whether
    another attempt shortly may do better (the business blinked), by default for ``auth_unavailable``."""

    def __init__(self, reason: FallbackReason, detail: str, *, retry: bool | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry = reason is FallbackReason.auth_unavailable if retry is None else retry


def _invalid(detail: str) -> NoReturn:
    raise AuthFailure(FallbackReason.invalid_response, detail)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _check_status(status: int) -> None:
    if 200 <= status <= 299:
        return
    if status in (401, 403):
        raise AuthFailure(
            FallbackReason.auth_rejected, f"the Authentication URL refused the token (HTTP {status})"
        )
    if status in (408, 429) or 500 <= status <= 599:
        raise AuthFailure(
            FallbackReason.auth_unavailable, f"the Authentication URL is unavailable (HTTP {status})"
        )
    if 300 <= status <= 399:
        _invalid(f"the Authentication URL answered HTTP {status}; redirects are not followed")
    _invalid(f"unexpected HTTP {status}")


def _decode(body: bytes) -> Any:
    try:
        # RFC 8259 lets a parser ignore a byte order mark, so utf-8-sig.
        return json.loads(body.decode("utf-8-sig"), parse_constant=_reject_constant)
    except RecursionError:
        _invalid(f"the response is nested deeper than {MAX_JSON_DEPTH} levels")
    except ValueError:  # UnicodeDecodeError, JSONDecodeError, NaN/Infinity, huge ints
        _invalid("response is not JSON")


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether objects/arrays in ``value`` nest deeper than ``limit`` (iteratively)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _check_outcome(document: dict[str, Any]) -> None:
    if "status" not in document or document["status"] is True:
        return
    if document["status"] is False:
        message = document.get("message")
        if isinstance(message, str) and message.strip():
            detail = f"the Authentication URL rejected the token: {message.strip()[:MAX_MESSAGE]}"
        else:
            detail = "the Authentication URL rejected the token (status false)"
        raise AuthFailure(FallbackReason.auth_rejected, detail)
    _invalid("status must be true or false")


def _profile_field(data: dict[str, Any], field: str) -> str | int | None:
    """The field as received (strings stripped; blank is None), or invalid_response."""
    value = data.get(field)
    if value is None:
        return None
    if field == "id" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        kind = "a string or an integer" if field == "id" else "a string"
        _invalid(f"data.{field} must be {kind} or null")
    if len(value) > MAX_STRING:
        _invalid(f"data.{field} is longer than {MAX_STRING} characters")
    return value.strip() or None


def _metadata(data: dict[str, Any]) -> dict[str, Any]:
    metadata = data.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        _invalid("data.metadata must be an object or null")
    size = len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        _invalid(f"data.metadata is larger than {MAX_METADATA_BYTES} bytes")
    return metadata


def parse_identity_response(status: int, body: bytes, method: IdentifyMethod) -> Identity:
    """Turn the business's HTTP answer into an Identity, or raise AuthFailure."""
    _check_status(status)
    document = _decode(body)
    if _depth_exceeds(document, MAX_JSON_DEPTH):
        _invalid(f"the response is nested deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(document, dict):
        _invalid("the response is not a JSON object")
    _check_outcome(document)

    data = document.get("data")
    if data is None:
        _invalid("data is missing")
    if not isinstance(data, dict):
        _invalid("data must be an object")
    fields = {field: _profile_field(data, field) for field in PROFILE_FIELDS}
    metadata = _metadata(data)
    try:
        identifier = normalise_identifier(method, fields)
    except InvalidIdentifier as exc:
        _invalid(f"data.{exc}")

    profile: dict[str, str | None] = {
        field: None if value is None else str(value) for field, value in fields.items()
    }
    _tidy_contact_fields(profile)
    profile[IDENTIFIER_FIELDS[method]] = identifier
    return Identity(identifier=identifier, metadata=metadata, **profile)


def _tidy_contact_fields(profile: dict[str, str | None]) -> None:
    """Store email and phone in their normal form when they have one, so agents can search
    them; a value that does not normalise is kept as received (it is not the identifier)."""
    if profile["email"]:
        try:
            profile["email"] = normalise_email(profile["email"])
        except InvalidIdentifier:
            pass
    if profile["phone_number"]:
        try:
            profile["phone_number"] = normalise_phone(profile["phone_number"], profile["country_code"])
        except InvalidIdentifier:
            pass


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
    FallbackReason.busy: (
        "Doorman was too busy to verify this visitor in time and showed the form at once; nothing to fix "
        "on your side, it passes when the load does."
    ),
}


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


async def call_identity(
    http: OutboundClient, *, auth_url: str, identify_method: IdentifyMethod, header_token: SecretStr | None,
    access_token: str, request_fields: Sequence[str], visitor: Mapping[str, str | None],
    signing_secrets: Sequence[str] = (),
) -> IdentityCall:
    headers, body = identity_request(
        header_token=header_token, access_token=access_token, request_fields=request_fields, visitor=visitor,
    )
    payload = json.dumps(body, separators=(",", ":")).encode()  # the exact bytes sent, and signed
    headers.update(sign(payload, signing_secrets))
    started = time.perf_counter()
    response: OutboundResponse | None = None
    identity: Identity | None = None
    failure: AuthFailure | None = None
    try:
        response = await http.request("POST", auth_url, headers=headers, data=payload)
        identity = parse_identity_response(response.status, response.body, identify_method)
    except AuthFailure as exc:
        failure = exc
    except DestinationBlocked as exc:
        failure = AuthFailure(FallbackReason.destination_blocked, str(exc))
    except HostBusy as exc:
        # As many calls to this business as allowed are already waiting on it: another attempt in a
        # moment would find them still there, and every retry costs the other businesses' visitors.
        failure = AuthFailure(FallbackReason.auth_unavailable, f"the Authentication URL is busy ({exc})", retry=False)
    except InvalidResponse as exc:
        failure = AuthFailure(FallbackReason.invalid_response, str(exc))
    except (TimeoutError, asyncio.TimeoutError):
        failure = AuthFailure(FallbackReason.auth_unavailable, "the Authentication URL did not answer in time")
    except aiohttp.ClientError as exc:
        failure = AuthFailure(
            FallbackReason.auth_unavailable, f"could not reach the Authentication URL ({type(exc).__name__})",
        )
    elapsed = (time.perf_counter() - started) * 1000
    return IdentityCall(headers, body, response, identity, failure, elapsed)
