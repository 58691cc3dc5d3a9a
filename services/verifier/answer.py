"""How the business's answer to the identity call is read.

Success means HTTP 2xx, a UTF-8 JSON object, ``status`` absent or true, and a ``data``
object holding the identify method's field, non-empty. Anything else is an
:class:`AuthFailure` of the kind :mod:`.failures` names, with a precise detail.

The ``data`` object becomes an Identity by :func:`shared.profiles.build_identity`, as a signed
identity token's claims (:mod:`.tokens`) and a pushed identity do, so every mode stores a visitor alike.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from shared.events import Identity, IdentifyMethod
from shared.profiles import MAX_JSON_DEPTH, InvalidProfile, build_identity, depth_exceeds

from .failures import AuthFailure, Kind, status_kind

MAX_MESSAGE = 200  # characters of the business's "message" quoted in a rejection


def _invalid(detail: str) -> NoReturn:
    raise AuthFailure(Kind.INVALID_ANSWER, detail)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


_STATUS_DETAILS = {
    Kind.REFUSED: "the Authentication URL refused the token (HTTP {status})",
    Kind.UNAVAILABLE: "the Authentication URL is unavailable (HTTP {status})",
    Kind.REDIRECT: "the Authentication URL answered HTTP {status}; redirects are not followed",
    Kind.CLIENT_ERROR: "unexpected HTTP {status}",
    Kind.ODD_STATUS: "unexpected HTTP {status}",
}


def _check_status(status: int) -> None:
    if (kind := status_kind(status)) is not None:
        raise AuthFailure(kind, _STATUS_DETAILS[kind].format(status=status))


def _decode(body: bytes) -> Any:
    try:
        # RFC 8259 lets a parser ignore a byte order mark, so utf-8-sig.
        return json.loads(body.decode("utf-8-sig"), parse_constant=_reject_constant)
    except RecursionError:
        _invalid(f"the response is nested deeper than {MAX_JSON_DEPTH} levels")
    except ValueError:  # UnicodeDecodeError, JSONDecodeError, NaN/Infinity, huge ints
        _invalid("response is not JSON")


def _check_outcome(document: dict[str, Any]) -> None:
    if "status" not in document or document["status"] is True:
        return
    if document["status"] is False:
        message = document.get("message")
        if isinstance(message, str) and message.strip():
            detail = f"the Authentication URL rejected the token: {message.strip()[:MAX_MESSAGE]}"
        else:
            detail = "the Authentication URL rejected the token (status false)"
        raise AuthFailure(Kind.REFUSED, detail)
    _invalid("status must be true or false")


def parse_identity_response(status: int, body: bytes, method: IdentifyMethod) -> Identity:
    """Turn the business's HTTP answer into an Identity, or raise AuthFailure."""
    _check_status(status)
    document = _decode(body)
    if depth_exceeds(document, MAX_JSON_DEPTH):
        _invalid(f"the response is nested deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(document, dict):
        _invalid("the response is not a JSON object")
    _check_outcome(document)

    data = document.get("data")
    if data is None:
        _invalid("data is missing")
    if not isinstance(data, dict):
        _invalid("data must be an object")
    try:
        return build_identity(data, method)
    except InvalidProfile as exc:
        _invalid(str(exc))
