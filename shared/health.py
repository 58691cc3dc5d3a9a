"""``/healthz`` (the loop lives), ``/readyz`` (dependencies answer) and ``/metrics`` for every service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from shared.metrics import DB_POOL, exposition

Check = Callable[[], Awaitable[dict[str, bool]]]


def health_routes(*, ready: Check, pool: Callable[[], asyncpg.Pool | None] | None = None) -> list[web.RouteDef]:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks = await ready()
        ok = all(checks.values())
        return web.json_response({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)

    def pool_usage() -> None:
        p = pool() if pool else None
        if p is not None:
            size, idle = p.get_size(), p.get_idle_size()
            DB_POOL.labels("in_use").set(size - idle)
            DB_POOL.labels("idle").set(idle)
            DB_POOL.labels("max").set(p.get_max_size())

    async def metrics(_: web.Request) -> web.Response:
        body, content_type = exposition(pool_usage)
        return web.Response(body=body, headers={"Content-Type": content_type})

    return [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics)]
