"""The admin API: bots and their Custom Authentication settings (bearer admin token)."""

from __future__ import annotations

import hmac
from typing import Any
from uuid import UUID

from aiohttp import web

from . import store
from .http_errors import error, json_response, read_model
from .keys import POOL, SECRETS, SETTINGS
from .schemas import CustomAuthSettingsIn, NewBot

routes = web.RouteTableDef()
ADMIN_BODY_MAX_BYTES = 256 * 1024


@web.middleware
async def require_admin(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path.startswith("/v1/bots"):
        expected = request.app[SETTINGS].admin_token.get_secret_value().encode()
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise error(401, "unauthorized", "send Authorization: Bearer <admin token>",
                        headers={"WWW-Authenticate": 'Bearer realm="doorman-admin"'})
    return await handler(request)


def _bot_id(request: web.Request) -> UUID:
    try:
        return UUID(request.match_info["bot_id"])
    except ValueError:
        raise error(404, "bot_not_found", "no bot has this bot_id") from None


@routes.post("/v1/bots")
async def create_bot(request: web.Request) -> web.Response:
    body = await read_model(request, NewBot, max_bytes=ADMIN_BODY_MAX_BYTES)
    bot = await store.create_bot(request.app[POOL], body.name)
    return json_response(bot, status=201)


@routes.get("/v1/bots/{bot_id}")
async def get_bot(request: web.Request) -> web.Response:
    bot = await store.get_bot(request.app[POOL], _bot_id(request))
    if bot is None:
        raise error(404, "bot_not_found", "no bot has this bot_id")
    return json_response(bot)


@routes.get("/v1/bots/{bot_id}/custom-auth")
async def get_custom_auth(request: web.Request) -> web.Response:
    settings = await store.get_custom_auth(request.app[POOL], _bot_id(request))
    if settings is None:
        raise error(404, "bot_not_found", "no bot has this bot_id")
    return json_response(settings)


@routes.put("/v1/bots/{bot_id}/custom-auth")
async def put_custom_auth(request: web.Request) -> web.Response:
    bot_id = _bot_id(request)
    body = await read_model(request, CustomAuthSettingsIn, max_bytes=ADMIN_BODY_MAX_BYTES)
    settings = await store.put_custom_auth(request.app[POOL], bot_id, body, request.app[SECRETS])
    if settings is None:
        raise error(404, "bot_not_found", "no bot has this bot_id")
    return json_response(settings)
