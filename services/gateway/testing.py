"""The Testing panel: run the real identity call with a bot's current settings, write nothing."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from shared.auth_config import AuthConfig
from shared.identity import IdentityCall, call_identity, describe
from shared.http import OutboundClient

from . import directory
from .schemas import TestRequest

RESPONSE_BODY_SHOWN = 4096  # characters of the business's answer echoed back
HIDDEN_RESPONSE_HEADERS = frozenset({"set-cookie", "authorization", "proxy-authorization"})
VISITOR_FIELDS = ("user_id", "email", "name", "phone_number")


def mask(secret: str) -> str:
    """``Bearer abc...`` -> ``Bearer ****`` (a leading auth scheme is kept; nothing else)."""
    scheme, sep, _rest = secret.partition(" ")
    shown = f"{scheme} " if sep and scheme.isalpha() and len(scheme) <= 16 else ""
    return f"{shown}**** ({len(secret)} characters)"


def _request_view(config: AuthConfig, call: IdentityCall) -> dict[str, Any]:
    headers = dict(call.headers)
    if "Authorization" in headers:
        headers["Authorization"] = mask(headers["Authorization"])
    body = dict(call.body)
    body["access_token"] = mask(body["access_token"] or "")
    return {"method": "POST", "url": config.auth_url, "headers": headers, "body": body}


def _response_view(call: IdentityCall) -> dict[str, Any] | None:
    if call.response is None:
        return None
    text = call.response.body.decode("utf-8", errors="replace")
    return {
        "status": call.response.status,
        "headers": {k: v for k, v in call.response.headers.items() if k.lower() not in HIDDEN_RESPONSE_HEADERS},
        "body": text[:RESPONSE_BODY_SHOWN],
        "body_truncated": len(text) > RESPONSE_BODY_SHOWN,
        "body_bytes": len(call.response.body),
    }


async def run_test(pool: asyncpg.Pool, http: OutboundClient, bot_id: UUID, config: AuthConfig, sample: TestRequest) -> dict[str, Any]:
    assert config.auth_url is not None
    call = await call_identity(
        http, auth_url=config.auth_url, identify_method=config.identify_method, header_token=config.header_token,
        access_token=sample.access_token, request_fields=config.request_fields,
        visitor={f: getattr(sample, f) for f in VISITOR_FIELDS}, signing_secrets=config.signing_secrets(),
    )
    match = None
    if call.identity is not None:
        existing = await directory.find_contact(pool, bot_id, config.identify_method.value, call.identity.identifier)
        match = {"action": "update", "contact_id": existing} if existing else {"action": "create", "contact_id": None}
    failure = None
    if call.failure is not None:
        failure = {"reason": call.failure.reason.value, "detail": call.failure.detail, "hint": describe(call.failure.reason)}
    return {
        "ok": call.failure is None,
        "enabled": config.enabled,
        "identify_method": config.identify_method.value,
        "request": _request_view(config, call),
        "response": _response_view(call),
        "identity": call.identity.model_dump() if call.identity else None,
        "match": match,
        "elapsed_ms": round(call.elapsed_ms, 1),
        "failure": failure,
    }
