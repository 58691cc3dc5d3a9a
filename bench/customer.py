"""The fake business: a fast Authentication URL and a hanging one, on two ports of 127.0.0.1, and a
webhook endpoint that records what Doorman delivers.

``python -m bench.customer FAST_PORT HANG_PORT``. The fast one answers at once with the
visitor derived from the access token (``tok-42`` -> id ``v-42``; a token ``no-42`` is refused with
``status: false``); the hanging one never answers
within a visitor's patience (it sleeps ``HANG_SECONDS``, bounded). They are separate ports
because a real hanging business is a different host: the per-host connection limit is per
(host, port).

``POST /webhook`` on the fast port answers 200 at once and records each delivery (its
``Doorman-Delivery`` id, type, and what it is about); ``GET /webhook/log`` returns the records
(the soak run reads them to count deliveries per id).
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

try:
    import orjson

    loads, dumps = orjson.loads, orjson.dumps
except ImportError:  # pragma: no cover
    import json

    loads, dumps = json.loads, lambda v: json.dumps(v).encode()

HANG_SECONDS = 60.0


async def fast(request: web.Request) -> web.Response:
    token = loads(await request.read())["access_token"]
    n = token.rsplit("-", 1)[-1]
    if token.startswith("no-"):
        return web.Response(body=dumps({"status": False, "message": "unknown visitor"}), content_type="application/json")
    return web.Response(
        body=dumps({"status": True, "message": "ok", "data": {"id": f"v-{n}", "name": f"Visitor {n}"}}),
        content_type="application/json",
    )


async def hang(request: web.Request) -> web.Response:
    await request.read()
    await asyncio.sleep(HANG_SECONDS)
    return web.json_response({"status": False, "message": "too late"})


WEBHOOKS: web.AppKey[list[tuple[str, str, bool, str | None, str | None, str | None]]] = web.AppKey("webhooks", list)


async def webhook(request: web.Request) -> web.Response:
    """Record one delivery: (delivery id, type, signed, session id, contact id, bot:identifier)."""
    body = await request.read()
    event = loads(body)
    data = event.get("data") or {}
    identifier = data.get("identifier")
    request.app[WEBHOOKS].append((
        request.headers.get("Doorman-Delivery", ""), event.get("type", ""),
        "Doorman-Signature" in request.headers, data.get("session_id"), data.get("contact_id"),
        f"{event.get('bot_id')}:{identifier}" if identifier is not None else None,
    ))
    return web.Response(status=200)


async def webhook_log(request: web.Request) -> web.Response:
    return web.Response(body=dumps(request.app[WEBHOOKS]), content_type="application/json")


async def main(fast_port: int, hang_port: int) -> None:
    runners = []
    for handler, port in ((fast, fast_port), (hang, hang_port)):
        app = web.Application()
        app.router.add_post("/auth", handler)
        if handler is fast:
            app[WEBHOOKS] = []
            app.router.add_post("/webhook", webhook)
            app.router.add_get("/webhook/log", webhook_log)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        runners.append(runner)
    try:
        await asyncio.Event().wait()
    finally:
        for r in runners:
            await r.cleanup()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
    except KeyboardInterrupt:
        pass
