"""Running a service process: logging, the health server, SIGTERM -> graceful stop."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
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


async def every(seconds: float, job: Callable[[], Awaitable[object]], *, failed: str) -> None:
    """Run ``job`` every ``seconds`` for ever (under :func:`background`); a failure is logged as
    ``failed`` and the next round comes (the database or the broker blinked)."""
    while True:
        try:
            await job()
        except Exception as exc:
            log.warning(failed, error=repr(exc))
        await asyncio.sleep(seconds)


def tune_gc(young: int) -> None:
    """Python's cyclic garbage collector for a long-running service, called once it has started: what exists
    then (modules, settings, pools, the app) is frozen out of every later collection, and a young collection
    waits for ``young`` allocations instead of 700 (0: Python's defaults, nothing frozen). Each collection of
    an older generation walks every object it holds; a gateway under twice its saturation holds hundreds of
    thousands (connections, requests, futures), and at the defaults spent a third to a half of its time
    collecting, in pauses of up to 0.6 s (docs/performance.md, "Garbage collection")."""
    if young <= 0:
        return
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)
    log.info("garbage collector tuned", young_threshold=young, frozen=gc.get_freeze_count())


async def run_until_signalled(service: Callable[[], AbstractAsyncContextManager[object]], name: str,
                              gc_young_threshold: int = 0) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with service():
        tune_gc(gc_young_threshold)
        log.info("service started", service=name)
        await stop.wait()
        log.info("service stopping", service=name)
    log.info("service stopped", service=name)
