"""The admin API's bots (the operator's token or a workspace's key: ``auth="workspace"``): bots, Custom
Authentication settings, the Testing panel, contacts and the authentication activity log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID, uuid4

import re
import secrets

import asyncpg
from aiohttp import web
from pydantic import BaseModel
from yarl import URL

from shared.auth_config import NotBound
from shared.destinations import DestinationBlocked, Destinations
from shared.messaging import Topology
from shared.panel import TestResult
from shared.routes import Handler, Link, Response, Routes, links_to
from shared.sessions import end_contact_sessions
from shared.signing import new_secret as new_signing_secret

from ..access import NOT_FOUND_BOT, NOT_FOUND_WORKSPACE, principal, visible_bot
from ..http_errors import (
    BODY_ERRORS, QUERY_ERRORS, RETRY_AFTER, URL_BODY_ERRORS, Error, FieldError, error, json_response, read_model,
    read_query,
)
from ..keys import ASK, DESTINATIONS, HUB, POOL, PUBLISH, SECRETS, SETTINGS
from ..schemas import AuthEventQuery, BotQuery, ContactQuery, CustomAuthSettingsIn, NewBot, TestRequest
from ..widget.ending import tell_ended
from . import directory, store, testing
from .contact_views import AuthEventPage, ContactDetail, ContactPage, SessionsRevoked
from .views import AuthBreaker, Bot, BotPage, CustomAuthSettings, SigningSecret, TokenSecret

routes = Routes()
ADMIN_BODY_MAX_BYTES = 256 * 1024


# What a new bot's id leads to: configuring it, its visitors' sessions, what they leave (contacts, the activity
# log); each of those leads on (a saved setting to the Testing panel, a session to its form, a listed contact to
# its export and erasure).
BOT_LINKS = {
    **links_to("getBot", "putCustomAuth", "pushIdentity", "putWebhook", "listContacts", "listAuthEvents",
               bot_id="$response.body#/bot_id"),
    "openSession": Link("openSession", body={"bot_id": "$response.body#/bot_id"}),
}
# A listed contact (the newest), of the listed bot.
CONTACT_LINKS = links_to("getContact", "exportContact", "revokeContactSessions", "eraseContact",
                         bot_id="$request.path.bot_id", contact_id="$response.body#/contacts/0/contact_id")


@routes.post("/v1/bots", "createBot", "Create a bot", auth="workspace", tag="bots", body=NewBot, responses={
    201: Response("The new bot (Custom Authentication off).", Bot, links=BOT_LINKS),
    **NOT_FOUND_WORKSPACE, **BODY_ERRORS,
})
async def create_bot(request: web.Request) -> web.Response:
    body = await read_model(request, NewBot, max_bytes=ADMIN_BODY_MAX_BYTES)
    who = principal(request)
    workspace_id = body.workspace_id if who.operator else who.workspace_id
    if body.workspace_id not in (None, workspace_id) or (
            workspace_id and not await store.workspace_exists(request.app[POOL], workspace_id)):
        raise error(404, "workspace_not_found", "no workspace has this id")
    bot = await store.create_bot(request.app[POOL], body.name, workspace_id)
    return json_response(bot, status=201)


@routes.get("/v1/bots", "listBots", "List bots", auth="workspace", tag="bots", query=BotQuery,
            responses={200: ("Bots, newest first.", BotPage), 422: ("Bad query parameters.", Error)})
async def list_bots(request: web.Request) -> web.Response:
    query = read_query(request, BotQuery)
    who = principal(request)
    page = await store.list_bots(request.app[POOL], workspace_id=who.workspace_id, every_workspace=who.operator,
                                 limit=query.limit, cursor=query.cursor)
    return json_response(page)


def _read_of_bot(read: Callable[[asyncpg.Pool, UUID], Awaitable[BaseModel | None]]) -> Handler:
    """The handler answering what ``read`` finds for the path's bot (404 when it finds nothing)."""
    async def handler(request: web.Request) -> web.Response:
        found = await read(request.app[POOL], await visible_bot(request))
        if found is None:
            raise error(404, "bot_not_found", "no bot has this bot_id")
        return json_response(found)

    return handler


get_bot = routes.get("/v1/bots/{bot_id}", "getBot", "Read a bot", auth="workspace", tag="bots",
                     responses={200: ("The bot.", Bot), **NOT_FOUND_BOT})(_read_of_bot(store.get_bot))
get_custom_auth = routes.get(
    "/v1/bots/{bot_id}/custom-auth", "getCustomAuth", "Read Custom Authentication settings", auth="workspace",
    tag="custom-auth",
    responses={200: ("The settings, with `header_token_set` instead of the token.", CustomAuthSettings),
               **NOT_FOUND_BOT},
)(_read_of_bot(store.get_custom_auth))


@routes.put("/v1/bots/{bot_id}/custom-auth", "putCustomAuth", "Replace Custom Authentication settings",
            auth="workspace", tag="custom-auth", body=CustomAuthSettingsIn, responses={
    200: Response("The stored settings.", CustomAuthSettings, links=links_to(
        "getCustomAuth", "testCustomAuth", "getAuthBreaker", "rotateSigningSecret", "rotateTokenSecret",
        bot_id="$request.path.bot_id")),
    **NOT_FOUND_BOT, **URL_BODY_ERRORS,
    422: ("The body is not valid, or a URL in it names an address or a port Doorman will not call (loopback and "
          "private networks unless DOORMAN_ALLOW_PRIVATE_NETWORKS, special ranges never, ports other than "
          "DOORMAN_OUTBOUND_PORTS): `fields` says which fields and why. A stored header token is sent only to the "
          "origins (scheme, host, port) of the `auth_url` and whitelist `api_url` it was saved with: moving either "
          "to another origin, or adding an `api_url`, without a new `header_token` is refused (field `header_token`); "
          "so is moving `oidc.issuer` to another origin without a new `oidc.client_secret` (field "
          "`oidc.client_secret`). `oidc.issuer` is `https://`, or `http://` where private networks are allowed.",
          Error),
    409: (("`identity_source: oidc` with `method: introspection`, and no client secret given or stored "
           "(`invalid_state`; `fields` names `oidc.client_secret`)."), Error),
})
async def put_custom_auth(request: web.Request) -> web.Response:
    bot_id = await visible_bot(request)
    body = await read_model(request, CustomAuthSettingsIn, max_bytes=ADMIN_BODY_MAX_BYTES)
    _refuse_blocked_urls(request.app[DESTINATIONS], body)
    try:
        settings = await store.put_custom_auth(request.app[POOL], bot_id, body, request.app[SECRETS])
    except NotBound as exc:
        again = "the header token again for the new URL" if exc.field == "header_token" else \
            "the client secret again for the new issuer"
        raise error(422, "invalid_body", "the request body is not valid",
                    fields=[{"field": exc.field, "message": f"enter {again}"}]) from None
    except store.SecretNeeded as exc:
        raise error(409, "invalid_state", "the settings need a secret", fields=[{"field": exc.field, "message": str(exc)}]) from None
    if settings is None:
        raise error(404, "bot_not_found", "no bot has this bot_id")
    return json_response(settings)


def _refuse_blocked_urls(destinations: Destinations, body: CustomAuthSettingsIn) -> None:
    """Say now, as a field error, what the verifier would refuse at call time from the URL alone
    (scheme, port, an IP literal that is not public). Names that resolve to forbidden addresses
    are only known when called: destination_blocked then."""
    token = body.signed_token
    urls = {"auth_url": body.auth_url, "domain_whitelist.api_url": body.domain_whitelist.api_url,
            "signed_token.jwks_url": token.jwks_url}
    issuers = {"oidc.issuer": body.oidc.issuer if body.oidc else None,
               "signed_token.issuer": token.issuer if token.discovers_keys else None}  # discovery is read there
    problems: list[FieldError] = [
        {"field": field, "message": problem} for field, url in {**urls, **issuers}.items()
        if url and (problem := refused_url(destinations, url, issuer=field in issuers))
    ]
    if problems:
        raise error(422, "invalid_body", "the request body is not valid", fields=problems)


def refused_url(destinations: Destinations, url: str, *, issuer: bool = False) -> str | None:
    """Why the verifier would never call ``url`` (from the URL alone), as a field's message; None when it may."""
    try:
        destinations.check_url(url)
    except DestinationBlocked as exc:
        return f"Doorman will not call this URL: {exc}"
    if issuer and URL(url).scheme != "https" and not destinations.allow_private:
        return "an issuer is an https:// URL"
    return None


@routes.post("/v1/bots/{bot_id}/custom-auth/test", "testCustomAuth", "Run the Testing panel",
             auth="workspace", tag="custom-auth", body=TestRequest, responses={
    200: ("The request sent (tokens masked), the answer received, the identity parsed or the precise failure; "
          "with `identity_source: signed_token` the pasted JWT's header, claims and the check that failed.",
          TestResult),
    **NOT_FOUND_BOT, **BODY_ERRORS,
    409: ("The bot cannot be tested as it is: identity source `auth_url` and no `auth_url` yet (`invalid_state`; "
          "`fields` names the setting).", Error),
    503: Response(("The test runs in a verifier (the gateway calls no business itself): no verifier answered within "
                   "`DOORMAN_VERIFIER_ANSWER_SECONDS` (10 by default; `verifier_unavailable`), or the broker is "
                   "unavailable (`unavailable`). Retry after `Retry-After` seconds."), Error, RETRY_AFTER),
})
async def test_custom_auth(request: web.Request) -> web.Response:
    bot_id = await visible_bot(request)
    sample = await read_model(request, TestRequest, max_bytes=ADMIN_BODY_MAX_BYTES)
    settings = request.app[SETTINGS]
    result = await testing.run_test(request.app[ASK], Topology(settings.amqp_prefix), request.app[SECRETS], bot_id,
                                    sample, patience=settings.verifier_answer_seconds)
    return json_response(result)


@routes.get("/v1/bots/{bot_id}/contacts", "listContacts", "List and search contacts", auth="workspace", tag="contacts",
            query=ContactQuery,
            responses={200: Response("A page of contacts, newest first.", ContactPage, links=CONTACT_LINKS),
                       **NOT_FOUND_BOT, **QUERY_ERRORS})
async def list_contacts(request: web.Request) -> web.Response:
    bot_id = await visible_bot(request)
    query = read_query(request, ContactQuery)
    page = await directory.list_contacts(request.app[POOL], bot_id, q=query.q, limit=query.limit, cursor=query.cursor)
    return json_response(page)


@routes.get("/v1/bots/{bot_id}/contacts/{contact_id}", "getContact", "Read a contact",
            auth="workspace", tag="contacts", responses={
    200: ("The contact, with `metadata` and where each field came from.", ContactDetail),
    404: ("No bot has this `bot_id`, or no contact of that bot has this id.", Error),
})
async def get_contact(request: web.Request) -> web.Response:
    bot_id = await visible_bot(request)
    try:
        contact_id = UUID(request.match_info["contact_id"])
    except ValueError:
        raise error(404, "contact_not_found", "no contact has this id") from None
    contact = await directory.get_contact(request.app[POOL], bot_id, contact_id)
    if contact is None:
        raise error(404, "contact_not_found", "no contact has this id")
    return json_response(contact)


@routes.post("/v1/bots/{bot_id}/contacts/{contact_id}/revoke", "revokeContactSessions",
             "End every session of a contact", auth="workspace", tag="contacts", responses={
    200: (("Every session of the contact not already ended (verified with it, or whose Collect Information form made "
           "it) is now `ended`, on every gateway replica; a stream still waiting gets one `ended` event."),
          SessionsRevoked),
    404: ("No bot has this `bot_id`, or no contact of that bot has this id.", Error),
})
async def revoke_contact_sessions(request: web.Request) -> web.Response:
    bot_id = await visible_bot(request)
    contact_id = _contact_id(request)
    pool = request.app[POOL]
    if not await pool.fetchval("SELECT true FROM contacts WHERE bot_id = $1 AND contact_id = $2", bot_id, contact_id):
        raise error(404, "contact_not_found", "no contact has this id")
    ended = await end_contact_sessions(pool, bot_id, contact_id)
    await tell_ended(ended, by="revoked", hub=request.app[HUB], publish=request.app[PUBLISH],
                     correlation_id=uuid4().hex[:16])
    return json_response(SessionsRevoked(ended=len(ended)))


def _contact_id(request: web.Request) -> UUID:
    try:
        return UUID(request.match_info["contact_id"])
    except ValueError:
        raise error(404, "contact_not_found", "no contact has this id") from None


@routes.get("/v1/bots/{bot_id}/auth-events", "listAuthEvents", "The authentication activity log",
            auth="workspace", tag="contacts", query=AuthEventQuery, responses={
    200: Response("A page of widget sessions, newest first, with why each ended as it did.", AuthEventPage,
                  links=links_to("getSession", session_id="$response.body#/events/0/session_id")),
    **NOT_FOUND_BOT, **QUERY_ERRORS,
})
async def auth_events(request: web.Request) -> web.Response:
    bot_id = await visible_bot(request)
    query = read_query(request, AuthEventQuery)
    page = await directory.auth_events(
        request.app[POOL], bot_id, reason=query.reason.value if query.reason else None, status=query.status,
        limit=query.limit, cursor=query.cursor,
    )
    return json_response(page)


@routes.get("/v1/bots/{bot_id}/custom-auth/breaker", "getAuthBreaker",
            "The bot's circuit breaker for its Authentication URL's host", auth="workspace", tag="custom-auth",
            responses={
    200: ("Its state as the verifier replicas last recorded it (each replica keeps its own breaker per bot and host: "
          "only this bot's failed calls open it, never another bot's on the same host).", AuthBreaker),
    **NOT_FOUND_BOT,
})
async def get_auth_breaker(request: web.Request) -> web.Response:
    bot_id = await visible_bot(request)
    return json_response(await directory.auth_breaker(request.app[POOL], bot_id))


@routes.post("/v1/bots/{bot_id}/custom-auth/signing-secret", "rotateSigningSecret",
             "Create or rotate the bot's signing secret", auth="workspace", tag="custom-auth", responses={
    201: (("The new secret, shown this once; the previous one keeps signing (a second signature) until "
           "`previous_valid_until`."), SigningSecret),
    **NOT_FOUND_BOT,
})
async def rotate_signing_secret(request: web.Request) -> web.Response:
    """A new signing secret, shown this once; the previous one keeps signing for 24 hours."""
    bot_id = await visible_bot(request)
    secret = new_signing_secret()
    previous_until = await store.rotate_signing_secret(request.app[POOL], bot_id, secret, request.app[SECRETS])
    return json_response(SigningSecret(signing_secret=secret, previous_valid_until=previous_until), status=201)


TOKEN_SECRET_PREFIX = "dmts_"
TOKEN_SECRET_KID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what a kid made below can be (secrets.token_urlsafe)


@routes.post("/v1/bots/{bot_id}/custom-auth/token-secret", "rotateTokenSecret",
             "Create or rotate the bot's HS256 token secret", auth="workspace", tag="custom-auth", responses={
    201: (("The new secret and its `kid`, shown this once. Tokens signed with the previous secret (its own `kid`) "
           "keep verifying for 24 hours."), TokenSecret),
    **NOT_FOUND_BOT,
})
async def rotate_token_secret(request: web.Request) -> web.Response:
    """A new HS256 secret for signed identity tokens, shown once; the previous one verifies for 24 hours."""
    bot_id = await visible_bot(request)
    made = TokenSecret(kid=secrets.token_urlsafe(9), secret=TOKEN_SECRET_PREFIX + secrets.token_urlsafe(32))
    if not await store.rotate_token_secret(request.app[POOL], bot_id, made.kid, made.secret, request.app[SECRETS]):
        raise error(404, "bot_not_found", "no bot has this bot_id")
    return json_response(made, status=201)


@routes.delete("/v1/bots/{bot_id}/custom-auth/token-secret/{kid}", "deleteTokenSecret",
               "Delete one of the bot's HS256 token secrets", auth="workspace", tag="custom-auth", responses={
    204: (("Deleted: from the next widget open on, a token naming this `kid` fails `unknown_kid`. Deleting the only "
           "secret leaves the bot without one until `POST .../token-secret` makes a new one."), None),
    404: (("No bot has this `bot_id`, or it belongs to another workspace (`bot_not_found`); or neither of the bot's "
           "token secrets (the current one, the previous one while it still verifies) has this `kid` "
           "(`token_secret_not_found`)."), Error),
})
async def delete_token_secret(request: web.Request) -> web.Response:
    """Cut a (leaked) HS256 secret off at once, without waiting for a rotation's 24 hours."""
    bot_id = await visible_bot(request)
    kid = request.match_info["kid"]
    # Anything no kid can be is simply not found (never sent to the database).
    if not TOKEN_SECRET_KID.fullmatch(kid) or not await store.delete_token_secret(request.app[POOL], bot_id, kid):
        raise error(404, "token_secret_not_found", "the bot has no token secret with this kid")
    return web.Response(status=204)
