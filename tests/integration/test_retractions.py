"""An open answered 503 leaves no session behind, even when the database committed it and its answer was lost.

The loss is made for real: the gateway reaches PostgreSQL through a relay (:mod:`tests.pg_cut`) that drops the
reply of the statement storing the open, after its commit, and closes the connection, as a database restart
can. The widget is told 503 (it shows the Collect Information form); the row it never heard of must go, once
the database answers again. The fault suite's "restart PostgreSQL" row counts the same thing as
``half_accepted``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from services.gateway.keys import RETRACTIONS
from tests.conftest import Stack, create_bot, start_gateway
from tests.pg_cut import CuttingRelay
from tests.waits import wait_until

OPEN_STORED = b"INSERT 0 1\x00"  # the command tag that ends the statement storing a batch of one open


@pytest.fixture
async def relay() -> AsyncIterator[CuttingRelay]:
    relay = CuttingRelay()
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


async def test_an_open_answered_503_is_retracted_once_the_database_answers(stack: Stack, relay: CuttingRelay) -> None:
    url = stack.config["database_url"].replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")
    assert url != stack.config["database_url"]
    bot = await create_bot(stack.http, stack.gateway.url)

    async def rows() -> int:
        return await stack.pool.fetchval("SELECT count(*) FROM widget_sessions WHERE bot_id = $1::uuid", bot)

    async with AsyncExitStack() as es:
        # Its own gateway, through the relay; no deployment-wide sweepers (the stack's own run).
        gateway = await start_gateway(es, {**stack.config, "database_url": url, "gateway_sweepers": False})
        relay.arm(OPEN_STORED)
        async with stack.http.post(f"{gateway.url}/v1/widget/sessions", json={"bot_id": bot}) as resp:
            assert resp.status == 503, await resp.text()
            assert (await resp.json())["error"]["code"] == "unavailable"
        assert relay.cut.is_set()
        relay.down = True  # and the database stays away: the row the widget was refused stays for now
        relay.drop_all()
        assert await rows() == 1
        await wait_until(lambda: relay.refused > 0, what="the gateway trying the database again")
        assert await rows() == 1 and len(gateway.app[RETRACTIONS]) == 1

        relay.down = False

        async def gone() -> bool:
            return await rows() == 0

        await wait_until(gone, what="the refused open's row deleted")
        assert len(gateway.app[RETRACTIONS]) == 0

        # The relay cuts once: the next open, its answer heard, is stored and kept.
        async with stack.http.post(f"{gateway.url}/v1/widget/sessions", json={"bot_id": bot}) as resp:
            assert resp.status == 202, await resp.text()
        assert await rows() == 1
