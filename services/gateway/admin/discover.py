"""The admin page's Discover action: what an OpenID Provider publishes at ``{issuer}/.well-known/openid-configuration``,
read by a verifier (the gateway calls no one itself) before the admin saves the issuer.

``POST /v1/bots/{bot_id}/custom-auth/oidc/discover`` sends the issuer (the one given, else the bot's saved one) to
the verifiers' Discover queue (:mod:`shared.discover`) and returns the verifier's answer. A provider that cannot be
used is a diagnosis (200, ``ok: false``), as in the Testing panel; an issuer Doorman would not save is a 422 as on
``PUT .../custom-auth``; no verifier answering in time is 503 ``verifier_unavailable``.
"""

from __future__ import annotations

from uuid import UUID

from aiohttp import web

from shared.discover import DISCOVER_QUEUE, REQUEST_TYPE, DiscoverRequest, DiscoverResult
from shared.messaging import Topology
from shared.routes import Response, Routes
from shared.rpc import Failed, Unanswered

from ..access import NOT_FOUND_BOT, visible_bot
from ..http_errors import BODY_ERRORS, RETRY_AFTER, Error, error, json_response, read_model
from ..keys import ASK, DESTINATIONS, POOL, SETTINGS
from ..schemas import DiscoverIssuer
from . import store
from .bots import ADMIN_BODY_MAX_BYTES, refused_url

routes = Routes()


@routes.post("/v1/bots/{bot_id}/custom-auth/oidc/discover", "discoverOidcProvider",
             "Read an OpenID Provider's discovery document", auth="workspace", tag="custom-auth", body=DiscoverIssuer,
             responses={
    200: ("What the provider publishes (its issuer, endpoints, client authentication methods, signing algorithms, "
          "logout support), whether `userinfo` and `introspection` would work with it, and a verdict in plain words. "
          "A provider that cannot be used is a diagnosis, not an error: `ok: false`, `failure` and `verdict` say "
          "why (an address Doorman will not call, no answer, not JSON, another issuer...).", DiscoverResult),
    **NOT_FOUND_BOT, **BODY_ERRORS,
    422: ("The body is not valid, or `issuer` is one `PUT .../custom-auth` would refuse as `oidc.issuer` (an address or "
          "port Doorman will not call, `http://` where private networks are not allowed): `fields` says why.", Error),
    409: ("No `issuer` given, and the bot has no OpenID Provider saved (`invalid_state`; `fields` names `issuer`).",
          Error),
    503: Response(("The document is read by a verifier (the gateway calls no one itself): no verifier answered within "
                   "`DOORMAN_VERIFIER_ANSWER_SECONDS` (`verifier_unavailable`), or the broker is unavailable "
                   "(`unavailable`). Retry after `Retry-After` seconds."), Error, RETRY_AFTER),
})
async def discover_oidc_provider(request: web.Request) -> web.Response:
    bot_id = await visible_bot(request)
    body = await read_model(request, DiscoverIssuer, max_bytes=ADMIN_BODY_MAX_BYTES)
    issuer = body.issuer or await _saved_issuer(request, bot_id)
    if problem := refused_url(request.app[DESTINATIONS], issuer, issuer=True):
        raise error(422, "invalid_body", "the request body is not valid", fields=[{"field": "issuer", "message": problem}])
    settings = request.app[SETTINGS]
    patience = settings.verifier_answer_seconds
    asked = DiscoverRequest(bot_id=bot_id, issuer=issuer, patience_seconds=patience)
    try:
        answer = await request.app[ASK].ask(Topology(settings.amqp_prefix).queue(DISCOVER_QUEUE),
                                            asked.model_dump_json().encode(), timeout=patience, kind=REQUEST_TYPE)
    except (Unanswered, Failed):  # Failed: the verifier's log says why
        raise error(503, "verifier_unavailable", (
            f"no verifier answered within {patience:g} s: the discovery document is read by the verifier service; "
            "check that a verifier is running, then try again"), headers={"Retry-After": "5"}) from None
    return json_response(DiscoverResult.model_validate_json(answer))


async def _saved_issuer(request: web.Request, bot_id: UUID) -> str:
    saved = await store.get_custom_auth(request.app[POOL], bot_id)
    if saved is None or saved.oidc is None:
        raise error(409, "invalid_state", "no issuer given, and the bot has no OpenID Provider saved",
                    fields=[{"field": "issuer", "message": "enter the issuer to discover"}])
    return saved.oidc.issuer
