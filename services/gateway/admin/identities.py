"""Server-to-server identity push (OpenCX's verified mode): the business's server sends a visitor's
profile with its workspace key (or the operator's token) and gets a single-use, short-lived widget
token for the widget's ``data-token``. The verifier verifies an open with it from this profile, with
no call to the business (services/verifier/pushed.py). Only the token's keyed hash is stored.
"""

from __future__ import annotations

import secrets
import sys
from datetime import datetime
from typing import Annotated, Any, Union
from uuid import UUID

import asyncpg
from aiohttp import web
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    field_validator,
)
from typing_extensions import TypeAliasType

from shared.events import IdentifyMethod
from shared.identifiers import IDENTIFIER_FIELDS, normalise_email, normalise_phone
from shared.profiles import (
    MAX_JSON_DEPTH, MAX_METADATA_BYTES, MAX_STRING, WIDGET_TOKEN_PREFIX, InvalidProfile, build_identity, depth_exceeds,
)
from shared.routes import Link, Response, Routes

from ..access import NOT_FOUND_BOT, visible_bot
from ..constraints import EMAIL, NO_NUL, NOT_BLANK, NUL, PHONE_NUMBER_SCHEMA, one_filled
from ..http_errors import BODY_ERRORS, Error, error, json_response, read_model
from ..keys import POOL, SECRETS
from ..schemas import Strict, integral, no_nul
from .bots import ADMIN_BODY_MAX_BYTES
from .views import WidgetToken


def _string_or_integer(value: object) -> object:
    value = integral(value)
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError("must be a string or an integer")


# One field error (not one per union member) when it is neither.
StringOrInteger = Annotated[Any, AfterValidator(_string_or_integer), WithJsonSchema(
    {"type": ["string", "integer"], "maxLength": MAX_STRING, "pattern": NO_NUL})]
ProfileText = Annotated[StrictStr, Field(max_length=MAX_STRING)]


# What metadata may hold, at any depth: what PostgreSQL's jsonb stores (finite numbers, text without NUL), as sent.
MetadataText = Annotated[str, StringConstraints(strip_whitespace=False), AfterValidator(no_nul),
                         WithJsonSchema({"type": "string", "pattern": NO_NUL})]
FiniteNumber = Annotated[float, Field(allow_inf_nan=False, ge=-sys.float_info.max, le=sys.float_info.max)]
# A key is stated as "contains no NUL" (not as a pattern, which JSON Schema would read as patternProperties).
MetadataKey = Annotated[str, StringConstraints(strip_whitespace=False), AfterValidator(no_nul),
                        WithJsonSchema({"type": "string", "not": {"pattern": NUL}})]
MetadataValue = TypeAliasType(  # type: ignore[misc]
    "MetadataValue",
    Union[None, bool, int, FiniteNumber, MetadataText, list["MetadataValue"], dict[MetadataKey, "MetadataValue"]],
)


def _metadata_as_one_error(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """One field error for metadata, not one per member of each nested union."""
    try:
        return handler(value)
    except ValidationError:
        raise ValueError("must be a JSON object of finite numbers, booleans, nulls, arrays, objects and text "
                         "without NUL characters") from None


Metadata = Annotated[dict[MetadataKey, MetadataValue], WrapValidator(_metadata_as_one_error)]
IDENTIFIERS = tuple(IDENTIFIER_FIELDS.values())
# In the verifier's eyes the pushed profile is an answer's `data` (depth 2 of the answer document).
METADATA_DEPTH = MAX_JSON_DEPTH - 2


class PushIdentity(Strict):
    """``POST /v1/bots/{bot_id}/identities``: a visitor's profile, pushed by the business's server. It is
    read as an Authentication URL's ``data`` is (bounded, normalised). It holds at least one identifier;
    which one the bot needs is the bot's setting (lacking it: 409 ``invalid_state``)."""

    model_config = ConfigDict(json_schema_extra=one_filled(
        id={"anyOf": [{"type": "integer"}, {"type": "string", "pattern": NOT_BLANK}]},
        email={"type": "string"}, phone_number=PHONE_NUMBER_SCHEMA))

    id: StringOrInteger | None = None
    email: Annotated[StrictStr, Field(max_length=MAX_STRING, json_schema_extra={"pattern": EMAIL})] | None = None
    name: ProfileText | None = None
    country_code: ProfileText | None = None
    phone_number: Annotated[StrictStr, Field(max_length=MAX_STRING), WithJsonSchema(PHONE_NUMBER_SCHEMA)] | None = (
        Field(None, description=f"valid for its country, at most {MAX_STRING} characters; a national number is read "
                                "with `country_code`"))
    external_workspace_id: Annotated[str, Field(min_length=1, max_length=256, description=(
        "the business's own workspace (partition) this visitor belongs to; not a Doorman workspace"))] | None = None
    metadata: Metadata | None = Field(None, description=(
        f"any JSON object, nested at most {METADATA_DEPTH} levels and at most {MAX_METADATA_BYTES} bytes as "
        "compact JSON"))
    ttl_seconds: Annotated[int, Field(ge=60, le=86400, description=(
        "how long the widget token can be used, in seconds")), BeforeValidator(integral)] = 600

    # An email or a phone number, the identifier or not, must be one: it is stored, and searched, as one.
    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None:
            normalise_email(value)  # InvalidIdentifier is a ValueError: the field's error
        return value

    @field_validator("phone_number")
    @classmethod
    def _phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value:
            normalise_phone(value, info.data.get("country_code"))
        return value

    def filled(self, field: str) -> bool:
        """Whether the identifier ``field`` holds a value (a blank string is none)."""
        value = getattr(self, field)
        return value is not None and value != ""


routes = Routes()


def new_widget_token() -> str:
    return WIDGET_TOKEN_PREFIX + secrets.token_urlsafe(32)


@routes.post("/v1/bots/{bot_id}/identities", "pushIdentity", "Push a visitor's identity; get a widget token",
             auth="workspace", tag="custom-auth", body=PushIdentity, responses={
    201: Response("A single-use widget token for the widget's `data-token`, and when it expires.", WidgetToken,
                  links={"openSession": Link("openSession", body={
                      "bot_id": "$request.path.bot_id", "access_token": "$response.body#/widget_token"})}),
    **NOT_FOUND_BOT, **BODY_ERRORS,
    409: ("The body holds an identifier, but not the one the bot identifies visitors by (`invalid_state`): "
          "`fields` names it.", Error),
    422: ("The body is not valid (it holds no identifier at all: `fields` names the bot's).", Error),
})
async def push_identity(request: web.Request) -> web.Response:
    bot_id = await visible_bot(request)
    body = await read_model(request, PushIdentity, max_bytes=ADMIN_BODY_MAX_BYTES)
    pool = request.app[POOL]
    method = await _identify_method(pool, bot_id)
    field = IDENTIFIER_FIELDS[method]
    if not body.filled(field):
        missing = {"field": field, "message": f"{field} is missing: the bot identifies visitors by {field}"}
        if any(body.filled(f) for f in IDENTIFIERS):  # a valid profile; the bot's setting wants another identifier
            raise error(409, "invalid_state", "the bot identifies visitors by another field", fields=[missing])
        raise error(422, "invalid_body", "the request body is not valid", fields=[missing])
    profile = _profile(body, method)
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
    if body.metadata is not None and depth_exceeds(body.metadata, METADATA_DEPTH):
        raise _invalid("metadata", f"metadata is nested deeper than {METADATA_DEPTH} levels")
    try:
        identity = build_identity(data, method, label=str)
    except InvalidProfile as exc:
        raise _invalid(exc.field, str(exc)) from None
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
