"""The Testing panel runs in the verifier: the gateway asks a running verifier over the broker and shows
its answer. No verifier, or none that answers in time: 503 ``verifier_unavailable``, and nobody called
the business. A backlog of widget opens in front of the verifier does not hold the panel up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from uuid import UUID

import aio_pika
import aiohttp

from shared import messaging, panel
from tests.conftest import (
    AMQP_URL, Gateway, admin_headers, create_bot, open_session, running_stack, serving_business,
    service_config, start_gateway,
)
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.waits import wait_until

ANSWER_SECONDS = 1.5  # the gateway's DOORMAN_VERIFIER_ANSWER_SECONDS in these tests (10 by default)


@asynccontextmanager
async def gateway_alone(config: dict[str, Any]) -> AsyncIterator[tuple[Gateway, aiohttp.ClientSession]]:
    """A gateway on a broker prefix no verifier serves."""
    async with AsyncExitStack() as es:
        gateway = await start_gateway(es, {**config, "verifier_answer_seconds": ANSWER_SECONDS})
        http = await es.enter_async_context(aiohttp.ClientSession())
        yield gateway, http


async def run_panel(http: aiohttp.ClientSession, gateway_url: str, bot_id: str) -> tuple[int, Any, float]:
    started = time.monotonic()
    async with http.post(f"{gateway_url}/v1/bots/{bot_id}/custom-auth/test", json={"access_token": "panel-t"},
                         headers=admin_headers()) as resp:
        return resp.status, await resp.json(), time.monotonic() - started


def assert_unavailable(status: int, body: Any) -> None:
    assert status == 503, body
    assert body["error"]["code"] == "verifier_unavailable"
    assert "verifier" in body["error"]["message"]


async def test_with_no_verifier_running_the_panel_says_so(database_url: str, fresh_prefix: Callable[[], str],
                                                          secret_key: str, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="nobody-asked"))
    async with gateway_alone(service_config(database_url, fresh_prefix(), secret_key)) as (gateway, http):
        bot_id = await create_bot(http, gateway.url, enabled=True, auth_url=url)
        status, body, took = await run_panel(http, gateway.url, bot_id)
    assert_unavailable(status, body)
    assert took < ANSWER_SECONDS  # at once: no verifier has declared the panel's queue, so nothing would answer
    assert customer_api.received(url) == []  # the gateway called no one itself


async def test_a_verifier_that_does_not_answer_in_time_is_unavailable(
        database_url: str, fresh_prefix: Callable[[], str], secret_key: str, customer_api: FakeCustomerAPI) -> None:
    """The panel's queue is there and a consumer takes the request, but never answers: the gateway waits
    DOORMAN_VERIFIER_ANSWER_SECONDS, not for ever."""
    prefix = fresh_prefix()
    url = customer_api.endpoint(verified(id="never-answered"))
    taken: list[aio_pika.abc.AbstractIncomingMessage] = []
    async with (
        await aio_pika.connect(AMQP_URL) as conn,
        gateway_alone(service_config(database_url, prefix, secret_key)) as (gateway, http),
    ):
        channel = await conn.channel()
        queue = await panel.declare_queue(channel, messaging.Topology(prefix))

        async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            taken.append(message)  # held, never answered

        await queue.consume(take)
        bot_id = await create_bot(http, gateway.url, enabled=True, auth_url=url)
        status, body, took = await run_panel(http, gateway.url, bot_id)
    assert_unavailable(status, body)
    assert ANSWER_SECONDS <= took < ANSWER_SECONDS + 1.5
    assert len(taken) == 1 and b"panel-t" not in taken[0].body  # the access token travels sealed
    assert customer_api.received(url) == []


async def test_a_backlog_of_widget_opens_does_not_delay_the_panel(
        database_url: str, fresh_prefix: Callable[[], str], secret_key: str, customer_api: FakeCustomerAPI) -> None:
    """The verifier decides one open at a time here, and each open waits out the call timeout of a business
    that hangs (then retries): the opens queue up for many seconds. The panel has a queue, a channel and an
    outbound client of its own, so it answers at once all the same."""
    config = {**service_config(database_url, fresh_prefix(), secret_key), "verifier_prefetch": 1,
              "verifier_concurrency": 1, "session_deadline_seconds": 60}
    opens = 20
    async with serving_business() as hanging, running_stack(config) as stack:
        slow_url = hanging.endpoint(Answer(delay=3, json={}))  # past the call timeout (1 s)
        slow = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=slow_url)
        fast = await create_bot(stack.http, stack.gateway.url, enabled=True,
                                auth_url=customer_api.endpoint(verified(id="panel-fast")))
        await asyncio.gather(*(open_session(stack.http, stack.gateway.url, {"bot_id": slow, "access_token": f"o-{i}"})
                               for i in range(opens)))
        await wait_until(lambda: hanging.received(slow_url), what="the verifier to be busy with the first open")

        status, result, took = await run_panel(stack.http, stack.gateway.url, fast)

        assert status == 200 and result["ok"] is True and result["identity"]["identifier"] == "panel-fast"
        assert took < 3, f"the panel waited {took:.1f} s behind the widget opens"
        waiting = await stack.pool.fetchval(
            "SELECT count(*) FROM widget_sessions WHERE bot_id = $1 AND status = 'pending'", UUID(slow))
        assert waiting >= opens - 5, f"the backlog was gone ({waiting} opens left): the test proved nothing"
