"""Reference 3: Custom Authentication without a broker, in one process.

``python -m bench.direct PORT DATABASE_URL AUTH_URL``. One aiohttp handler reads the open,
calls the business's Authentication URL, upserts the contact inline with asyncpg (Doorman's
own upsert statement, plus RETURNING) and answers with the outcome. No session row, no
queue, no second hop: the floor Doorman's architecture is compared against. Same pool size
and per-host connection limit as Doorman's defaults; default asyncio loop like the services.
"""

from __future__ import annotations

import json
import secrets
import sys
from datetime import UTC, datetime
from uuid import UUID, uuid4

import aiohttp
from aiohttp import web

from services.contacts.repository import UPSERT_VERIFIED
from shared import db

UPSERT = UPSERT_VERIFIED.rstrip() + "\nRETURNING contact_id"
POOL = web.AppKey("pool", object)
HTTP = web.AppKey("http", aiohttp.ClientSession)
AUTH_URL = web.AppKey("auth_url", str)


async def open_direct(request: web.Request) -> web.Response:
    body = json.loads(await request.read())
    bot_id = UUID(body["bot_id"])
    async with request.app[HTTP].post(
        request.app[AUTH_URL], data=json.dumps({"access_token": body["access_token"]}),
        headers={"Authorization": "Bearer bench", "Content-Type": "application/json"},
    ) as resp:
        answer = json.loads(await resp.read())
    data = answer["data"]
    identifier = str(data["id"]).strip()
    now = datetime.now(UTC)
    contact_id = await request.app[POOL].fetchval(
        UPSERT, bot_id, "id", identifier, identifier, data.get("name"), None, None, None, None, None, {},
        now, uuid4(), {"external_id": "api", "name": "api"},
        None, False, [], None,  # no business workspace, not degraded, no tombstone hashes, no session to record
    )
    return web.json_response({
        "session_id": secrets.token_urlsafe(32), "status": "verified", "fallback": None,
        "contact": {"contact_id": str(contact_id), "name": data.get("name"), "verified": True},
    })


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app(dsn: str, auth_url: str) -> web.Application:
    app = web.Application()
    app[AUTH_URL] = auth_url

    async def resources(app: web.Application):  # type: ignore[no-untyped-def]
        async with db.pool(dsn, min_size=1, max_size=10) as pool, aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=32),
        ) as http:
            app[POOL], app[HTTP] = pool, http
            yield

    app.cleanup_ctx.append(resources)
    app.router.add_post("/direct", open_direct)
    app.router.add_get("/healthz", healthz)
    return app


if __name__ == "__main__":
    web.run_app(make_app(sys.argv[2], sys.argv[3]), host="127.0.0.1", port=int(sys.argv[1]),
                access_log=None, print=None, backlog=1024)
