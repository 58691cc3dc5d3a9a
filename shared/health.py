"""``/healthz`` (the loop lives), ``/readyz`` (dependencies answer) and ``/metrics`` for every service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

import asyncpg
from aiohttp import web
from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypedDict

from shared.metrics import ASYNCIO_TASKS, DB_POOL, exposition
from shared.routes import Routes

Check = Callable[[], Awaitable[dict[str, bool]]]


@with_config(ConfigDict(extra="forbid"))
class Health(TypedDict):
    status: Literal["ok"]


@with_config(ConfigDict(extra="forbid"))
class Readiness(TypedDict):
    status: Literal["ok", "unavailable"]
    checks: Annotated[dict[str, bool], Field(description="each dependency (`database`, `broker`) and whether it answers")]


def health_routes(*, ready: Check, pool: Callable[[], asyncpg.Pool | None] | None = None) -> list[web.RouteDef]:
    routes = Routes()

    @routes.get("/healthz", "healthz", "Liveness: the event loop answers", auth="public", tag="operations",
                responses={200: ("Alive.", Health)})
    async def healthz(_: web.Request) -> web.Response:
        alive: Health = {"status": "ok"}
        return web.json_response(alive)

    @routes.get("/readyz", "readyz", "Readiness: the database answers and the broker channel is open",
                auth="public", tag="operations",
                responses={200: ("Ready.", Readiness), 503: ("A dependency is not ready: `checks` says which.", Readiness)})
    async def readyz(_: web.Request) -> web.Response:
        checks = await ready()
        ok = all(checks.values())
        readiness: Readiness = {"status": "ok" if ok else "unavailable", "checks": checks}
        return web.json_response(readiness, status=200 if ok else 503)

    def at_scrape() -> None:
        """What is read at scrape time: the process's asyncio tasks and its database pool's usage."""
        ASYNCIO_TASKS.set(len(asyncio.all_tasks()))
        p = pool() if pool else None
        if p is not None:
            size, idle = p.get_size(), p.get_idle_size()
            DB_POOL.labels("in_use").set(size - idle)
            DB_POOL.labels("idle").set(idle)
            DB_POOL.labels("max").set(p.get_max_size())

    @routes.unlisted("GET", "/metrics", auth="public")
    async def metrics(_: web.Request) -> web.Response:
        body, content_type = exposition(at_scrape)
        return web.Response(body=body, headers={"Content-Type": content_type})

    return list(routes)
