"""The widget API: open a session, read it, stream its outcome."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from datetime import timedelta
from uuid import uuid4

import structlog
from aiohttp import web
from aiohttp_sse import sse_response

from shared.events import ContactCollected, WidgetOpened, utcnow
from shared.metrics import SESSIONS_OPENED, SESSIONS_REFUSED, WAITING_STREAMS

from . import store
from .http_errors import dumps, error, json_response, read_model
from .keys import HUB, LIMITS, POOL, PUBLISH, SETTINGS
from .schemas import CollectedContact, OpenSession

log = structlog.get_logger("doorman.gateway.widget")
routes = web.RouteTableDef()

def new_session_id() -> str:
    return secrets.token_urlsafe(32)  # 256 bits: the id is the only key to the outcome


SESSION_ID = re.compile(r"[A-Za-z0-9_-]{16,128}")


def session_id_of(request: web.Request) -> str:
    """The path's session id; anything that cannot be one is simply not found (never sent to the database)."""
    session_id = request.match_info["session_id"]
    if not SESSION_ID.fullmatch(session_id):
        raise error(404, "session_not_found", "no session has this id")
    return session_id


@routes.post("/v1/widget/sessions")
async def open_session(request: web.Request) -> web.Response:
    started = time.perf_counter()
    settings, limits = request.app[SETTINGS], request.app[LIMITS]
    await limits.open_by_client(request)
    body = await read_model(request, OpenSession, max_bytes=settings.widget_body_max_bytes)
    await limits.open_for_bot(str(body.bot_id))
    pool = request.app[POOL]
    session_id = new_session_id()
    origin = request.headers.get("Origin")
    deadline_at = utcnow() + timedelta(seconds=settings.session_deadline_seconds)
    if not await store.open_session(pool, session_id=session_id, bot_id=body.bot_id, origin=origin, deadline_at=deadline_at):
        raise error(404, "bot_not_found", "no bot has this bot_id")
    event = WidgetOpened(
        correlation_id=uuid4().hex[:16], session_id=session_id, bot_id=body.bot_id, origin=origin,
        access_token=body.access_token, user_id=body.user_id, email=body.email, name=body.name,
        phone_number=body.phone_number, deadline_at=deadline_at,
    )
    try:
        await request.app[PUBLISH](event)
    except Exception as exc:
        await store.forget_session(pool, session_id)
        SESSIONS_REFUSED.labels("broker_unavailable").inc()
        log.error("widget open not published", error=type(exc).__name__, bot_id=str(body.bot_id))
        raise error(503, "unavailable", "try again shortly", headers={"Retry-After": "1"}) from None
    SESSIONS_OPENED.inc()
    log.info("widget opened", session_id=session_id, bot_id=str(body.bot_id), correlation_id=event.correlation_id,
             latency_ms=round((time.perf_counter() - started) * 1000, 1))
    return web.json_response({"session_id": session_id, "status": "pending"}, status=202)


@routes.post("/v1/widget/sessions/{session_id}/contact")
async def collect_contact(request: web.Request) -> web.Response:
    """The Collect Information form, once per fallen-back session: makes a non-verified contact."""
    settings, pool = request.app[SETTINGS], request.app[POOL]
    await request.app[LIMITS].open_by_client(request)
    body = await read_model(request, CollectedContact, max_bytes=settings.widget_body_max_bytes)
    session_id = session_id_of(request)
    bot_id, refusal = await store.claim_collection(pool, session_id)
    if refusal == "not_found":
        raise error(404, "session_not_found", "no session has this id")
    if refusal == "not_fallback":
        raise error(409, "not_fallback", "the form is only for sessions that fell back")
    if refusal == "already_collected":
        raise error(409, "already_collected", "this session's form was already sent")
    assert bot_id is not None
    event = ContactCollected(
        correlation_id=uuid4().hex[:16], session_id=session_id, bot_id=bot_id, name=body.name, email=body.email,
        phone_number=body.phone_number, country_code=body.country_code,
    )
    try:
        await request.app[PUBLISH](event)
    except Exception as exc:
        await store.release_collection(pool, session_id)
        log.error("collected contact not published", error=type(exc).__name__, bot_id=str(bot_id))
        raise error(503, "unavailable", "try again shortly", headers={"Retry-After": "1"}) from None
    log.info("contact collected", session_id=session_id, bot_id=str(bot_id), correlation_id=event.correlation_id)
    return json_response({"session_id": session_id, "status": "accepted"}, status=202)


@routes.get("/v1/widget/sessions/{session_id}")
async def read_session(request: web.Request) -> web.Response:
    await request.app[LIMITS].read_by_client(request)
    view = await store.session_view(request.app[POOL], session_id_of(request))
    if view is None:
        raise error(404, "session_not_found", "no session has this id")
    return json_response(view)


@routes.get("/v1/widget/sessions/{session_id}/events")
async def stream_session(request: web.Request) -> web.StreamResponse:
    """One ``outcome`` event when the session resolves, then the stream ends."""
    await request.app[LIMITS].read_by_client(request)
    session_id = session_id_of(request)
    try:
        return await _stream(request, session_id)
    except ConnectionResetError:  # the visitor left: nothing to tell anyone
        raise asyncio.CancelledError() from None


async def _stream(request: web.Request, session_id: str) -> web.StreamResponse:
    pool, hub, settings = request.app[POOL], request.app[HUB], request.app[SETTINGS]
    with hub.waiting(session_id) as signal, WAITING_STREAMS.track_inprogress():
        if await store.watch_session(pool, session_id, hub.replica) is None:
            raise error(404, "session_not_found", "no session has this id")
        async with sse_response(request, headers={"Access-Control-Allow-Origin": "*"}) as stream:
            stream.ping_interval = 15
            await stream.write(b": waiting\n\n")  # headers and a first byte now, not at the outcome
            view = await store.session_view(pool, session_id)
            while view is not None and view["status"] == "pending":
                # Woken by the outcome notification; re-read now and then in case it was lost.
                try:
                    await asyncio.wait_for(signal.wait(), settings.sse_poll_seconds)
                except TimeoutError:
                    pass
                signal.clear()
                view = await store.session_view(pool, session_id)
            if view is not None:
                await stream.send(dumps(view), event="outcome")
        return stream
