"""Server-to-server identity push (OpenCX's verified mode): the business's server sends a visitor's
profile with its workspace key (or the operator's token) and gets a single-use, short-lived widget
token for the widget's ``data-token``. The verifier verifies an open with it from this profile, with
no call to the business (services/verifier/pushed.py). Only the token's keyed hash is stored.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from aiohttp import web
from pydantic import AfterValidator, Field, StrictStr, WithJsonSchema

from shared.events import IdentifyMethod
from shared.profiles import MAX_JSON_DEPTH, WIDGET_TOKEN_PREFIX, InvalidProfile, build_identity, depth_exceeds
from shared.routes import Routes

from .access import NOT_FOUND_BOT, visible_bot
from .admin import ADMIN_BODY_MAX_BYTES
from .http_errors import BODY_ERRORS, Error, error, json_response, read_model
from .keys import POOL, SECRETS
from .schemas import Strict
from .views import WidgetToken


def _string_or_integer(value: object) -> object:
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError("must be a string or an integer")


# One field error (not one per union member) when it is neither.
StringOrInteger = Annotated[Any, AfterValidator(_string_or_integer), WithJsonSchema({"type": ["string", "integer"]})]


class PushIdentity(Strict):
    """``POST /v1/bots/{bot_id}/identities``: a visitor's profile, pushed by the business's server. It is
    read as an Authentication URL's ``data`` is (bounded, normalised); it must hold the bot's identify
    method's field."""

    id: StringOrInteger | None = None
    email: StrictStr | None = None
    name: StrictStr | None = None
    phone_number: StrictStr | None = None
    country_code: StrictStr | None = None
    external_workspace_id: Annotated[str, Field(min_length=1, max_length=256, description=(
        "the business's own workspace (partition) this visitor belongs to; not a Doorman workspace"))] | None = None
    metadata: dict[str, Any] | None = None
    ttl_seconds: Annotated[int, Field(ge=60, le=86400, description=(
        "how long the widget token can be used, in seconds"))] = 600

routes = Routes()

# In the verifier's eyes the pushed profile is an answer's `data` (depth 2 of the answer document).
METADATA_DEPTH = MAX_JSON_DEPTH - 2


def new_widget_token() -> str:
    return WIDGET_TOKEN_PREFIX + secrets.token_urlsafe(32)


@routes.post("/v1/bots/{bot_id}/identities", "pushIdentity", "Push a visitor's identity; get a widget token",
             tag="custom-auth", body=PushIdentity, responses={
    201: ("A single-use widget token for the widget's `data-token`, and when it expires.", WidgetToken),
    **NOT_FOUND_BOT, **BODY_ERRORS,
    422: ("The body is not valid, or it lacks the bot's identify method's field: `fields` names them.", Error),
})
async def push_identity(request: web.Request) -> web.Response:
    bot_id = await visible_bot(request)
    body = await read_model(request, PushIdentity, max_bytes=ADMIN_BODY_MAX_BYTES)
    pool = request.app[POOL]
    profile = _profile(body, await _identify_method(pool, bot_id))
    token = new_widget_token()
    expires_at = await _store(pool, request.app[SECRETS].keyed_hash(token), bot_id, profile, body.ttl_seconds)
    return json_response(WidgetToken(widget_token=token, expires_at=expires_at), status=201)


async def _identify_method(pool: asyncpg.Pool, bot_id: UUID) -> IdentifyMethod:
    method = await pool.fetchval("SELECT identify_method FROM custom_auth_settings WHERE bot_id = $1", bot_id)
    return IdentifyMethod(method or IdentifyMethod.id)  # no settings saved yet: the default


def _invalid(field: str, message: str) -> web.HTTPException:
    return error(422, "invalid_body", "the request body is not valid", fields=[{"field": field, "message": message}])


def _profile(body: PushIdentity, method: IdentifyMethod) -> dict[str, Any]:
    """The profile to store: bounded and normalised exactly as the verifier reads an Authentication
    URL's ``data``, with the business's workspace beside it."""
    data = body.model_dump(exclude={"ttl_seconds", "external_workspace_id"})
    if body.metadata is not None:
        if depth_exceeds(body.metadata, METADATA_DEPTH):
            raise _invalid("metadata", f"metadata is nested deeper than {METADATA_DEPTH} levels")
        if "\\u0000" in json.dumps(body.metadata):
            raise _invalid("metadata", "metadata must not contain NUL characters")
    try:
        identity = build_identity(data, method, label=str)
    except InvalidProfile as exc:
        detail = str(exc)
        if detail.endswith(" is missing"):
            detail = f"{detail}: the bot identifies visitors by {exc.field}"
        raise _invalid(exc.field, detail) from None
    return {**identity.model_dump(exclude={"identifier"}), "external_workspace_id": body.external_workspace_id}


async def _store(pool: asyncpg.Pool, token_hash: bytes, bot_id: UUID, profile: dict[str, Any], ttl: int) -> datetime:
    try:
        return await pool.fetchval(
            """INSERT INTO pushed_identities (token_hash, bot_id, identity, expires_at)
               VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING expires_at""",
            token_hash, bot_id, profile, float(ttl),
        )
    except asyncpg.ForeignKeyViolationError:  # the bot was deleted meanwhile
        raise error(404, "bot_not_found", "no bot has this bot_id") from None
