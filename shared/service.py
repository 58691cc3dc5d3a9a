"""Running a service process: logging, the health server, SIGTERM -> graceful stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg
import structlog
from aiohttp import web

from shared.health import Check, health_routes

log = structlog.get_logger("doorman.service")


@asynccontextmanager
async def health_server(host: str, port: int, *, ready: Check, pool: asyncpg.Pool | None = None) -> AsyncIterator[int]:
    """Serve /healthz, /readyz and /metrics; yields the bound port (useful when ``port`` is 0)."""
    app = web.Application()
    app.add_routes(health_routes(ready=ready, pool=lambda: pool))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        log.info("health and metrics served", health_port=bound)
        yield bound
    finally:
        await runner.cleanup()


@asynccontextmanager
async def background(coro: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``coro`` as a task for the life of the context; cancel and await it on exit."""
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


async def run_until_signalled(service: Callable[[], AbstractAsyncContextManager[object]], name: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with service():
        log.info("service started", service=name)
        await stop.wait()
        log.info("service stopping", service=name)
    log.info("service stopped", service=name)
