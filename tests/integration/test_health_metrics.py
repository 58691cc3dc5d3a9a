"""Every service's /metrics counts the process's asyncio tasks at scrape time (the soak run reads it)."""

from __future__ import annotations

import asyncio
import re

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from shared.health import health_routes


async def _ready() -> dict[str, bool]:
    return {"database": True}


def _tasks(text: str) -> int:
    found = re.search(r"^doorman_asyncio_tasks (\S+)$", text, re.MULTILINE)
    assert found, "doorman_asyncio_tasks missing from /metrics"
    return int(float(found.group(1)))


async def test_metrics_count_the_asyncio_tasks_alive_at_scrape_time() -> None:
    app = web.Application()
    app.add_routes(health_routes(ready=_ready))
    async with TestClient(TestServer(app)) as client:
        before = _tasks(await (await client.get("/metrics")).text())
        never = asyncio.Event()
        parked = [asyncio.create_task(never.wait()) for _ in range(25)]
        try:
            during = _tasks(await (await client.get("/metrics")).text())
        finally:
            for task in parked:
                task.cancel()
            await asyncio.gather(*parked, return_exceptions=True)
        after = _tasks(await (await client.get("/metrics")).text())
    assert during - before == 25
    assert after == before
