"""``/healthz`` (the loop lives) and ``/readyz`` (dependencies answer) for every service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Check = Callable[[], Awaitable[dict[str, bool]]]


def health_routes(*, ready: Check) -> list[web.RouteDef]:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks = await ready()
        ok = all(checks.values())
        return web.json_response({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)

    return [web.get("/healthz", healthz), web.get("/readyz", readyz)]
