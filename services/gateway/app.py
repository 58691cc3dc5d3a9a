"""The gateway's composition root: ``init_app(settings)`` wires everything, nothing at import.

Its routes, by audience, each one hop from here: the public widget API (:mod:`.widget.api`), the admin API
(:mod:`.admin`: bots, the Discover action, workspaces, identities, erasure, webhooks), the pages
(:mod:`.pages.browser`), health and the API document (:mod:`.openapi`). Each route declares who may call it; :func:`edge` enforces it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import nullcontext
from functools import partial
from typing import Any

from aiohttp import web

from shared import db, messaging, rpc
from shared.health import health_routes
from shared.service import background, every, tune_gc
from shared.sessions import EXPIRE_GRACE_SECONDS, new_replica_id

from . import access, openapi
from .admin import bots, discover, erasure, identities, webhooks, workspaces
from .http_errors import as_json_error
from .keys import ASK, DESTINATIONS, HUB, LIMITS, OPENS, POOL, PUBLISH, RETRACTIONS, SECRETS, SETTINGS, VIEWS
from .pages import browser
from .settings import GatewaySettings
from .widget import api as widget_api
from .widget import backchannel, held, opening
from .widget.admission import Admission, watch_lag
from .widget.outcomes import OutcomeHub, consume_outcomes, tick_forever
from .widget.ratelimit import WidgetLimits
from .widget.views import session_views, view_reader

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
}


@web.middleware
async def edge(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every request's policies, in one layer: CORS on the widget API (called from any site;
    nothing else is), who may call the route as it declares (``auth=``, :func:`access.admit`), errors
    as JSON. One layer, not three: a waiting widget holds its request's frames as long as it waits,
    10,000 of them at a time."""
    widget = request.path.startswith("/v1/widget/")
    if widget and request.method == "OPTIONS":
        return web.Response(status=204, headers=CORS_HEADERS)
    try:
        await access.admit(request, access.audience(request))
        response = await handler(request)
    except Exception as exc:
        answer = as_json_error(request, exc)
        if widget:
            answer.headers.update(CORS_HEADERS)
        if answer is exc:
            raise
        raise answer from None
    if widget and not response.prepared:
        response.headers.update(CORS_HEADERS)
    return response


async def _database(app: web.Application) -> AsyncIterator[None]:
    s = app[SETTINGS]
    async with db.pool(s.database_url.get_secret_value(), min_size=s.db_pool_min, max_size=s.db_pool_max) as pool:
        app[POOL] = pool
        app[VIEWS] = view_reader(pool)
        yield


async def _broker(app: web.Application) -> AsyncIterator[None]:
    s = app[SETTINGS]
    topology = messaging.Topology(s.amqp_prefix)
    hub = app[HUB]
    retractions = app[RETRACTIONS]
    async with (
        messaging.connection(s.amqp_url.get_secret_value(), f"doorman-gateway-{hub.replica}") as conn,
        messaging.publisher(conn, topology, secrets=app[SECRETS]) as publish,  # seals widget opens' access tokens
        rpc.asking(conn) as ask,  # the Testing panel and logout tokens are checked in a verifier: asked over the broker
        consume_outcomes(conn, topology, hub),
        background(tick_forever(hub, partial(session_views, app[POOL]), poll_seconds=s.sse_poll_seconds,
                                forget_after=s.session_deadline_seconds + EXPIRE_GRACE_SECONDS + 5)),
        background(watch_lag(hub.admission)),
        background(every(held.EVERY, partial(held.republish, app[POOL], publish), failed="held opens not published"))
        if s.gateway_sweepers else nullcontext(),
        background(every(opening.Retractions.EVERY, partial(retractions.sweep, app[POOL]),
                         failed="opens answered 503 not yet retracted")),  # this replica's own: always
    ):
        app[PUBLISH] = publish
        app[ASK] = ask
        opens = opening.Opens(partial(opening.flush, pool=app[POOL], publish=publish, hub=hub, retractions=retractions),
                              max_weight=s.open_batch_max, max_in_flight=s.open_flushes)
        app[OPENS] = opens
        yield
        await opens.drain()


# Request lines and headers up to 16 KiB (aiohttp's default is 8 KiB): room for every documented query.
SERVER_OPTIONS = {"max_line_size": 16 * 1024, "max_field_size": 16 * 1024}


def init_app(settings: GatewaySettings) -> web.Application:
    app = web.Application(middlewares=[edge], client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app[SECRETS] = settings.secrets()
    app[DESTINATIONS] = settings.destinations()
    app[HUB] = OutcomeHub(new_replica_id(), Admission(
        target=settings.admission_target_seconds, max_in_flight=settings.admission_max_in_flight,
    ))
    app[RETRACTIONS] = opening.Retractions()
    app[LIMITS] = WidgetLimits(
        per_client=settings.rate_limit_opens_per_client, per_bot=settings.rate_limit_opens_per_bot,
        reads_per_client=settings.rate_limit_reads_per_client, trust_forwarded_for=settings.trust_forwarded_for,
        storage_uri=settings.rate_limit_storage.get_secret_value(),
    )
    app.cleanup_ctx.extend([_database, _broker])
    app.on_startup.append(openapi.publish)
    app.on_startup.append(_tune_gc)  # last: once the pools, the consumers and the document exist
    app.add_routes(widget_api.routes)  # public
    app.add_routes(backchannel.routes)  # public: the bots' OpenID Providers
    app.add_routes(bots.routes)  # the admin API
    app.add_routes(discover.routes)
    app.add_routes(workspaces.routes)
    app.add_routes(identities.routes)
    app.add_routes(erasure.routes)
    app.add_routes(webhooks.routes)
    app.add_routes(browser.routes)  # pages, public
    app.add_routes(openapi.routes)
    app.add_routes(health_routes(ready=lambda: _ready(app), pool=lambda: app.get(POOL)))
    if undeclared := access.undeclared(app):
        raise ValueError(f"routes declared without who may call them (auth=): {undeclared}")
    return app


async def _tune_gc(app: web.Application) -> None:
    tune_gc(app[SETTINGS].gc_young_threshold)


async def _ready(app: web.Application) -> dict[str, bool]:
    return {"database": await db.answers(app[POOL]), "broker": app[PUBLISH].ready}
