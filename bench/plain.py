"""References 1 and 6: the least an aiohttp server can do. ``python -m bench.plain PORT``.

Test 1: same route and body as Doorman's widget open: read and parse the JSON body, check it is an
object with a bot_id, answer 202 with a new session id. Test 6: the session's event stream, held
open with one future per stream and nothing sent until it is resolved (as the gateway holds a
waiting widget); ``GET /held`` says how many are held. Default asyncio loop, no access log: the
same server set-up as the gateway, without any of its work.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys

from aiohttp import web


async def open_session(request: web.Request) -> web.Response:
    body = json.loads(await request.read())
    if not isinstance(body, dict) or "bot_id" not in body:
        return web.json_response({"error": "invalid_body"}, status=422)
    return web.json_response({"session_id": secrets.token_urlsafe(32), "status": "pending"}, status=202)


WAITING = web.AppKey("waiting", dict)


async def session_events(request: web.Request) -> web.Response:
    waiting: dict[str, asyncio.Future[None]] = request.app[WAITING]
    session_id = request.match_info["session_id"]
    waiting[session_id] = future = asyncio.get_running_loop().create_future()
    try:
        await future  # resolved by no one: the bench closes the connection, then stops this process
    finally:
        waiting.pop(session_id, None)
    return web.Response()


async def release(app: web.Application) -> None:
    """On shutdown: end every held stream, so stopping does not wait out aiohttp's shutdown timeout."""
    for future in app[WAITING].values():
        future.done() or future.set_result(None)


async def held(request: web.Request) -> web.Response:
    return web.json_response({"held": len(request.app[WAITING])})


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app() -> web.Application:
    app = web.Application()
    app[WAITING] = {}
    app.router.add_post("/v1/widget/sessions", open_session)
    app.router.add_get("/v1/widget/sessions/{session_id}/events", session_events)
    app.router.add_get("/held", held)
    app.router.add_get("/healthz", healthz)
    app.on_shutdown.append(release)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, backlog=1024)
