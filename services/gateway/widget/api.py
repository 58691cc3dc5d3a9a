"""The widget API: open a session, read it, stream its outcome, end it (logout)."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta
from typing import Annotated, Literal
from uuid import uuid4

import structlog
from aiohttp import web
from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypedDict

from shared.domains import origin_header
from shared.events import ContactCollected, WidgetOpened, utcnow
from shared.logging import session_ref
from shared.metrics import WAITING_STREAMS
from shared.routes import Response, Routes, Stream, links_to
from shared.sessions import (
    NewSession, claim_collection, end_session, new_session_id, release_collection, watch_session,
)
from shared.widget_view import SessionView

from ..http_errors import BODY_ERRORS, RETRY_AFTER, UNAVAILABLE, Error, dumps, error, json_response, read_model, read_query
from ..keys import HUB, LIMITS, OPENS, POOL, PUBLISH, SETTINGS, VIEWS
from ..schemas import CollectedContact, OpenQuery, OpenSession
from .ending import tell_ended
from .opening import Busy, Open, Opened
from .outcomes import OutcomeHub, View
from .ratelimit import LIMITED
from .views import busy_view

log = structlog.get_logger("doorman.gateway.widget")
routes = Routes()

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{16,128}")
NO_SESSION = {404: ("No session has this id.", Error)}
# What a session's id leads to (the id in the answer's body).
SESSION_LINKS = links_to("getSession", "streamSession", "collectContact", "endSession",
                         session_id="$response.body#/session_id")


@with_config(ConfigDict(extra="forbid"))
class SessionCreated(TypedDict):
    session_id: Annotated[str, Field(description="256 random bits, URL-safe; the only key to the outcome")]
    status: Literal["pending"]


@with_config(ConfigDict(extra="forbid"))
class ContactAccepted(TypedDict):
    session_id: str
    status: Literal["accepted"]


def session_id_of(request: web.Request) -> str:
    """The path's session id; anything that cannot be one is simply not found (never sent to the database)."""
    session_id = request.match_info["session_id"]
    if not SESSION_ID.fullmatch(session_id):
        raise error(404, "session_not_found", "no session has this id")
    return session_id


@routes.post("/v1/widget/sessions", "openSession", "Open a widget session",
             auth="public", tag="widget", body=OpenSession, query=OpenQuery, responses={
    200: Response(
        "Only with `wait`: the outcome came within `wait` seconds; the session as `GET "
        "/v1/widget/sessions/{session_id}` returns it (verified, or fallback with the reason). An open refused "
        "by admission control answers here at once as fallback with reason `busy`.", SessionView, links=SESSION_LINKS),
    202: Response(
        "Accepted: the outcome arrives on the session's event stream (with `wait`: it did not come in time). "
        "When the gateway is too busy to answer in time (admission control), the open is still accepted but "
        "stored already resolved as fallback with reason `busy` and sent to no one: its stream and `GET` "
        "answer at once, and the Collect Information form may be sent for it.", SessionCreated, links=SESSION_LINKS),
    404: ("No bot has this `bot_id`.", Error),
    **BODY_ERRORS,
    422: ("The body or the `wait` query parameter is not valid: `fields` says which and why.", Error),
    **LIMITED, **UNAVAILABLE,
})
async def open_session(request: web.Request) -> web.Response:
    started = time.perf_counter()
    settings, limits, hub = request.app[SETTINGS], request.app[LIMITS], request.app[HUB]
    await limits.open_by_client(request)
    wait = read_query(request, OpenQuery).wait if request.query_string else None
    body = await read_model(request, OpenSession, max_bytes=settings.widget_body_max_bytes)
    await limits.open_for_bot(str(body.bot_id))
    session = NewSession(
        session_id=new_session_id(hub.replica), bot_id=body.bot_id, origin=origin_header(request.headers.get("Origin")),
        deadline_at=utcnow() + timedelta(seconds=settings.session_deadline_seconds),
        busy=not hub.admission.admit(hub.in_flight),
    )
    event = None if session.busy else WidgetOpened(
        correlation_id=uuid4().hex[:16], session_id=session.session_id, bot_id=body.bot_id, origin=session.origin,
        access_token=body.access_token, user_id=body.user_id, email=body.email, name=body.name,
        phone_number=body.phone_number, external_workspace_id=body.external_workspace_id,
        deadline_at=session.deadline_at,
    )
    opened: Opened | Busy
    try:
        opened = await request.app[OPENS](Open(session, event))
    except Exception as exc:  # the database (or the broker and then the database) is away
        log.error("widget open not stored", error=type(exc).__name__, bot_id=str(body.bot_id))
        opened = Opened.unavailable
    if opened is Opened.unknown_bot:
        raise error(404, "bot_not_found", "no bot has this bot_id")
    if opened is Opened.unavailable:
        raise error(503, "unavailable", "try again shortly", headers={"Retry-After": "1"})
    log.info("widget opened", session_ref=session_ref(session.session_id), bot_id=str(body.bot_id), busy=session.busy,
             correlation_id=event.correlation_id if event else None,
             latency_ms=round((time.perf_counter() - started) * 1000, 1))
    if wait is not None:
        view = (busy_view(session.session_id, opened.collect_information) if isinstance(opened, Busy)
                else await _outcome_within(hub, session.session_id, wait))
        if view is not None:
            return json_response(view)
    created: SessionCreated = {"session_id": session.session_id, "status": "pending"}
    return web.json_response(created, status=202)


async def _outcome_within(hub: OutcomeHub, session_id: str, seconds: float) -> View | None:
    future = hub.watch(session_id)
    try:
        return await asyncio.wait_for(future, seconds) or None
    except TimeoutError:
        return None
    finally:
        hub.unwatch(session_id, future)


@routes.post("/v1/widget/sessions/{session_id}/contact", "collectContact", "Send the Collect Information form",
             auth="public", tag="widget", body=CollectedContact, responses={
    202: Response("Accepted: a non-verified contact is made (it never overwrites a verified one).", ContactAccepted,
                  links=links_to("getSession", session_id="$response.body#/session_id")),
    **NO_SESSION,
    409: ("The session did not fall back (`not_fallback`), its form was already sent (`already_collected`), or it "
          "fell back with `collect_information: off`, so no form was offered (`collect_information_off`).", Error),
    **BODY_ERRORS, **LIMITED, **UNAVAILABLE,
})
async def collect_contact(request: web.Request) -> web.Response:
    """The Collect Information form, once per fallen-back session: makes a non-verified contact."""
    settings, pool = request.app[SETTINGS], request.app[POOL]
    await request.app[LIMITS].open_by_client(request)
    body = await read_model(request, CollectedContact, max_bytes=settings.widget_body_max_bytes)
    session_id = session_id_of(request)
    bot_id, refusal = await claim_collection(pool, session_id)
    if refusal == "not_found":
        raise error(404, "session_not_found", "no session has this id")
    if refusal == "not_fallback":
        raise error(409, "not_fallback", "the form is only for sessions that fell back")
    if refusal == "collect_information_off":
        raise error(409, "collect_information_off", "this bot offers no Collect Information form (collect_information is off)")
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
        await release_collection(pool, session_id)
        log.error("collected contact not published", error=type(exc).__name__, bot_id=str(bot_id))
        raise error(503, "unavailable", "try again shortly", headers={"Retry-After": "1"}) from None
    request.app[HUB].changed(session_id)  # now collected: a view remembered here would say otherwise
    log.info("contact collected", session_ref=session_ref(session_id), bot_id=str(bot_id),
             correlation_id=event.correlation_id)
    accepted: ContactAccepted = {"session_id": session_id, "status": "accepted"}
    return json_response(accepted, status=202)


@routes.get("/v1/widget/sessions/{session_id}", "getSession", "Read a widget session",
            auth="public", tag="widget", responses={
    200: ("The session: pending, verified (with the contact), fallback (with the reason) or ended (logged out or "
          "revoked: no contact).", SessionView),
    **NO_SESSION, **LIMITED,
})
async def read_session(request: web.Request) -> web.Response:
    await request.app[LIMITS].read_by_client(request)
    view = await request.app[VIEWS](session_id_of(request))
    if view is None:
        raise error(404, "session_not_found", "no session has this id")
    return json_response(view)


@routes.delete("/v1/widget/sessions/{session_id}", "endSession", "End a widget session (the visitor logged out)",
               auth="public", tag="widget", responses={
    204: ("Ended (or it already was): the session's status is `ended` from now on, on every gateway replica, and a "
          "stream still waiting gets one `ended` event and closes. Ending a pending session is final: a verification "
          "that comes later still updates the contact, but the session stays `ended`.", None),
    **NO_SESSION, **LIMITED,
    503: Response("The database is unavailable; retry after `Retry-After` seconds.", Error, RETRY_AFTER),
})
async def end_widget_session(request: web.Request) -> web.Response:
    await request.app[LIMITS].read_by_client(request)
    session_id = session_id_of(request)
    ended = await end_session(request.app[POOL], session_id)  # the database away: 503 (as_json_error)
    if ended is None:
        raise error(404, "session_not_found", "no session has this id")
    if ended != "ended":
        await tell_ended([ended], by="visitor", hub=request.app[HUB], publish=request.app[PUBLISH],
                         correlation_id=uuid4().hex[:16])
    return web.Response(status=204)


WAITING = b": waiting\n\n"  # every stream's first line (a comment: EventSource ignores it)
SSE_HEADERS = {
    "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
    "Access-Control-Allow-Origin": "*",
}


def _event(view: View) -> bytes:
    """The stream's one event for ``view`` (none for ``{}``: the session is gone)."""
    if not view:
        return b""
    name = b"ended" if view.get("status") == "ended" else b"outcome"
    return b"event: %s\ndata: %s\n\n" % (name, dumps(view).encode())


@routes.get("/v1/widget/sessions/{session_id}/events", "streamSession", "Stream a widget session's outcome",
            auth="public", tag="widget", responses={
    200: Response("Server-Sent Events.", stream=Stream(
        "Exactly one event, `event: outcome`, sent when the session resolves (at once if it already has, as an open "
        "refused with reason `busy` has); its `data` is the session as JSON, the same object "
        "`GET /v1/widget/sessions/{session_id}` returns (schema `SessionView`). A session ended before it resolved "
        "(the visitor logged out, `DELETE /v1/widget/sessions/{session_id}`, or was revoked) sends `event: ended` "
        "instead, its `data` the ended session. "
        "Then the stream ends. Comment pings keep the connection open while the session is pending.",
        events={"outcome": SessionView, "ended": SessionView})),
    **NO_SESSION, **LIMITED,
})
async def stream_session(request: web.Request) -> web.StreamResponse:
    """One ``outcome`` event when the session resolves, then the stream ends.

    Sessions opened here are waited on in memory; any other is first recorded as watched by
    this replica (so the contacts service tells us), or found already resolved. The stream is
    a plain streamed response: one event and comment pings from the hub's tick need no more,
    and a waiting widget costs no task or timer of its own (aiohttp-sse starts a ping task per
    stream: 10,000 waiting widgets, 10,000 tasks)."""
    await request.app[LIMITS].read_by_client(request)
    session_id = session_id_of(request)
    pool, hub = request.app[POOL], request.app[HUB]
    future = hub.watch(session_id)
    WAITING_STREAMS.inc()
    try:
        if not future.done() and not hub.pending_here(session_id):
            status = await watch_session(pool, session_id, hub.replica)
            if status is None:
                raise error(404, "session_not_found", "no session has this id")
            if status != "pending":
                resolved = await request.app[VIEWS](session_id)
                if not future.done():
                    future.set_result(resolved or {})
        if future.done():  # known already (an open refused as busy, an outcome told before the question)
            # The whole stream in one write, as a waiting one reads: the comment line, then the event.
            return web.Response(body=WAITING + _event(future.result()), headers=SSE_HEADERS)
        stream = web.StreamResponse(headers=SSE_HEADERS)
        await stream.prepare(request)
        hub.streaming(stream)
        try:
            await stream.write(WAITING)  # headers and a first byte now, not at the outcome
            view = await future
        finally:
            hub.done_streaming(stream)
        await stream.write_eof(_event(view))  # the event and the stream's end in one write
        return stream
    except ConnectionResetError:  # the visitor left: nothing to tell anyone
        raise asyncio.CancelledError() from None
    finally:
        WAITING_STREAMS.dec()
        hub.unwatch(session_id, future)
