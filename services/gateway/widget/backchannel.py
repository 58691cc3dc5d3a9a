"""OpenID Connect Back-Channel Logout 1.0: the bot's ``backchannel_logout_uri``, posted a logout token by the
business's OpenID Provider when a user logs out there.

The gateway calls no one: a verifier checks the token against the provider's keys (:mod:`shared.logout`); the
gateway then records its ``jti`` (a replay is refused on every replica) and ends the bot's sessions for the token's
``sub`` (or only ``sid``) in one transaction, and tells the replicas holding their streams, as a logout does.
Every answer carries ``Cache-Control: no-store``; a token that is not valid for this bot is ``400
{"error": "invalid_request", "error_description": ...}`` (the OAuth error shape the spec asks for) and ends nothing.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal
from urllib.parse import parse_qsl
from uuid import UUID, uuid4

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from shared.failures import is_transient
from shared.logout import (
    LOGOUT_QUEUE,
    REQUEST_TYPE,
    LogoutAnswer,
    LogoutClaims,
    LogoutRequest,
    first_seen,
)
from shared.messaging import Topology
from shared.routes import Response, Routes
from shared.rpc import Failed, Unanswered
from shared.sessions import end_provider_sessions

from ..http_errors import RETRY_AFTER, Error, error
from ..keys import ASK, HUB, LIMITS, POOL, PUBLISH, SECRETS, SETTINGS
from .ending import tell_ended
from .ratelimit import LIMITED

log = structlog.get_logger("doorman.gateway.backchannel")
routes = Routes()

NO_STORE = {"Cache-Control": "no-store"}
NO_STORE_HEADER = {"Cache-Control": "`no-store`"}
FORM = "application/x-www-form-urlencoded"
MAX_FIELDS = 10


class LogoutForm(BaseModel):
    """The form the provider posts (``application/x-www-form-urlencoded``)."""

    model_config = ConfigDict(extra="allow")

    logout_token: str = Field(description=(
        "the logout token: a JWT signed by the bot's OpenID Provider (`typ` `logout+jwt` or none), for the bot's "
        "`oidc.client_id`, naming a `sub` and/or `sid`"))


@with_config(ConfigDict(extra="forbid"))
class LogoutError(TypedDict):
    """A logout request that is not valid (OAuth 2.0's error shape, as Back-Channel Logout 1.0 asks)."""

    error: Literal["invalid_request"]
    error_description: Annotated[str, Field(description=(
        "which check failed: the form, the token's header, signature or a claim, a replayed `jti`, or a bot that "
        "does not verify visitors with an OpenID Provider"))]


@with_config(ConfigDict(extra="forbid"))
class LogoutDone(TypedDict):
    ended: Annotated[int, Field(description="sessions of this bot ended now (those already ended are not counted)")]


class _Invalid(web.HTTPBadRequest):
    def __init__(self, description: str) -> None:
        body: LogoutError = {"error": "invalid_request", "error_description": description}
        super().__init__(text=json.dumps(body), content_type="application/json", headers=NO_STORE)


@routes.post("/v1/bots/{bot_id}/oidc/backchannel-logout", "backchannelLogout",
             "Back-channel logout: the bot's OpenID Provider says a user logged out", auth="public", tag="widget",
             form=LogoutForm, responses={
    200: Response("The logout token is valid: the bot's sessions verified for its `sub` (or, with only a `sid`, "
                  "carrying that provider session id) are `ended` now (`ended_by: backchannel_logout`), on every "
                  "gateway replica; a stream still waiting gets its `ended` event.", LogoutDone, NO_STORE_HEADER),
    400: Response("Not a valid logout token for this bot (forged, replayed, expired, for another client or issuer, "
                  "with a nonce, without the logout event or a sub/sid, or a malformed form): nothing is ended.",
                  LogoutError, NO_STORE_HEADER),
    413: Response("The body is too large.", Error, NO_STORE_HEADER),
    429: Response(LIMITED[429].description, Error, {**RETRY_AFTER, **NO_STORE_HEADER}),
    503: Response("No verifier answered within `DOORMAN_VERIFIER_ANSWER_SECONDS` (`verifier_unavailable`), the "
                  "provider's keys cannot be fetched now (`jwks_unavailable`), or the database is unavailable "
                  "(`unavailable`): send it again after `Retry-After` seconds.", Error,
                  {**RETRY_AFTER, **NO_STORE_HEADER}),
})
async def backchannel_logout(request: web.Request) -> web.Response:
    try:
        return await _logout(request)
    except web.HTTPException as exc:
        exc.headers.update(NO_STORE)
        raise
    except Exception as exc:
        if not is_transient(exc):
            raise
        log.warning("back-channel logout not done: a dependency is unavailable", error=repr(exc))
        raise error(503, "unavailable", "try again shortly", headers={"Retry-After": "1", **NO_STORE}) from None


async def _logout(request: web.Request) -> web.Response:
    await request.app[LIMITS].open_by_client(request)
    bot_id = _bot_id(request)
    token = await _logout_token(request, request.app[SETTINGS].widget_body_max_bytes)
    claims = await _checked(request, bot_id, token)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        if not await first_seen(conn, claims.issuer, claims.jti):
            log.info("logout token refused: replayed", bot_id=str(bot_id))
            raise _Invalid("the logout token's jti was already used")
        ended = await end_provider_sessions(conn, bot_id, sub=claims.sub, sid=claims.sid)
    correlation_id = uuid4().hex[:16]
    await tell_ended(ended, by="backchannel_logout", hub=request.app[HUB], publish=request.app[PUBLISH],
                     correlation_id=correlation_id)
    log.info("back-channel logout", bot_id=str(bot_id), ended=len(ended), by_sub=claims.sub is not None,
             correlation_id=correlation_id)
    done: LogoutDone = {"ended": len(ended)}
    return web.json_response(done, headers=NO_STORE)


def _bot_id(request: web.Request) -> UUID:
    try:
        return UUID(request.match_info["bot_id"])
    except ValueError:
        raise _Invalid("the path's bot_id is not a UUID") from None


async def _logout_token(request: web.Request, max_bytes: int) -> str:
    """The form's one ``logout_token``."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise error(413, "body_too_large", f"request body is larger than {max_bytes} bytes")
    body = await request.content.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise error(413, "body_too_large", f"request body is larger than {max_bytes} bytes")
    if request.content_type != FORM:
        raise _Invalid(f"send the logout token as {FORM}")
    try:
        fields = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body),
                           max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise _Invalid("the body is not a form") from None
    tokens = [value for name, value in fields if name == "logout_token"]
    if len(tokens) != 1 or not tokens[0]:
        raise _Invalid("the form must carry one logout_token")
    return tokens[0]


async def _checked(request: web.Request, bot_id: UUID, token: str) -> LogoutClaims:
    """The token's claims, as a verifier checked them against the bot's provider."""
    settings, secrets = request.app[SETTINGS], request.app[SECRETS]
    patience = settings.verifier_answer_seconds
    asked = LogoutRequest.sealed(secrets, logout_token=token, bot_id=bot_id, patience_seconds=patience)
    try:
        body = await request.app[ASK].ask(Topology(settings.amqp_prefix).queue(LOGOUT_QUEUE),
                                          asked.model_dump_json().encode(), timeout=patience, kind=REQUEST_TYPE)
    except (Unanswered, Failed):
        raise error(503, "verifier_unavailable", (
            f"no verifier answered within {patience:g} s: logout tokens are checked in the verifier service, which "
            "fetches your provider's keys; send it again shortly"), headers={"Retry-After": "5"}) from None
    answer = LogoutAnswer.model_validate_json(body)
    if answer.unavailable is not None:
        raise error(503, "jwks_unavailable", f"the provider's keys cannot be fetched now ({answer.unavailable})",
                    headers={"Retry-After": "30"})
    if answer.claims is None:
        raise _Invalid(answer.refused or "the logout token is not valid")
    return answer.claims
