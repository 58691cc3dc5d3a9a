"""Reference 1: the least an aiohttp JSON POST endpoint can do. ``python -m bench.plain PORT``.

Same route and body as Doorman's widget open: read and parse the JSON body, check it is an
object with a bot_id, answer 202 with a new session id. Default asyncio loop, no access log:
the same server set-up as the gateway, without any of its work.
"""

from __future__ import annotations

import json
import secrets
import sys

from aiohttp import web


async def open_session(request: web.Request) -> web.Response:
    body = json.loads(await request.read())
    if not isinstance(body, dict) or "bot_id" not in body:
        return web.json_response({"error": "invalid_body"}, status=422)
    return web.json_response({"session_id": secrets.token_urlsafe(32), "status": "pending"}, status=202)


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


if __name__ == "__main__":
    app = web.Application()
    app.router.add_post("/v1/widget/sessions", open_session)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, backlog=1024)
