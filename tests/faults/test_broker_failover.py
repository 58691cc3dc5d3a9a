"""Several broker addresses (shared.messaging.connection): connect to a live node, fail over when it goes.

Two real, independent brokers: the suite's own node (A, which these tests stop and start) and
the machine's RabbitMQ (B). Queues declared on A are declared again on B by aio-pika's channel
restore, so publishing (with confirms) and consuming resume there, as after a reconnect.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import aio_pika
import pytest
from yarl import URL

from shared import messaging
from tests.conftest import AMQP_URL
from tests.faults.infra import RabbitNode, free_port
from tests.waits import wait_until


def _dead_url() -> str:
    return f"amqp://guest:guest@127.0.0.1:{free_port()}/"  # nothing listens there


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"failover-{secrets.token_hex(3)}"
    yield name
    async with await aio_pika.connect(AMQP_URL) as conn:  # what the test left on the machine's broker
        channel = await conn.channel()
        await channel.queue_delete(f"{name}.work")
        await channel.exchange_delete(f"{name}.events")


async def test_a_dead_first_address_is_skipped(rabbit: RabbitNode) -> None:
    for _ in range(4):  # the first node tried is random: whichever it is, the live one is used
        async with messaging.connection(f"{_dead_url()},{rabbit.url}", "test-failover") as conn:
            assert URL(str(conn.url)).port == rabbit.port
            channel = await conn.channel()
            await channel.declare_queue(exclusive=True)


async def test_no_live_address_fails_fast_without_the_password() -> None:
    urls = f"amqp://doorman:s3cret-pass@127.0.0.1:{free_port()}/,amqp://doorman:s3cret-pass@127.0.0.1:{free_port()}/"
    started = asyncio.get_running_loop().time()
    with pytest.raises(ConnectionError) as refused:
        async with messaging.connection(urls, "test-failover"):
            pass
    assert asyncio.get_running_loop().time() - started < messaging.CONNECT_TIMEOUT
    assert "s3cret-pass" not in str(refused.value) and "s3cret-pass" not in repr(refused.value)


async def test_fails_over_when_its_node_stops_and_resumes_publishing_and_consuming(
    rabbit: RabbitNode, prefix: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(messaging.random, "randrange", lambda n: 0)  # start on A, the node we stop
    received: asyncio.Queue[bytes] = asyncio.Queue()
    try:
        async with messaging.connection(f"{rabbit.url},{AMQP_URL}", "test-failover") as conn:
            assert URL(str(conn.url)).port == rabbit.port
            channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.declare_exchange(f"{prefix}.events", aio_pika.ExchangeType.TOPIC, durable=True)
            queue = await channel.declare_queue(f"{prefix}.work", durable=True, arguments={"x-queue-type": "quorum"})
            await queue.bind(exchange, routing_key="widget.opened")

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                async with message.process():
                    await received.put(message.body)

            await queue.consume(on_message)
            reconnected = asyncio.Event()
            conn.reconnect_callbacks.add(lambda *_: reconnected.set())

            await exchange.publish(aio_pika.Message(b"before"), "widget.opened", mandatory=True, timeout=5)
            assert await asyncio.wait_for(received.get(), 10) == b"before"

            await rabbit.stop()
            await asyncio.wait_for(reconnected.wait(), 30)
            assert URL(str(conn.url)).port == URL(AMQP_URL).port, "not failed over to the live node"

            # Confirmed publishing resumes on B, and the restored consumer gets the message.
            async def published() -> bool:
                try:
                    await exchange.publish(aio_pika.Message(b"after"), "widget.opened", mandatory=True, timeout=5)
                except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError):
                    return False
                return True

            await wait_until(published, 20, "a confirmed publish on the live node")
            assert await asyncio.wait_for(received.get(), 10) == b"after"
    finally:
        if not rabbit.running:
            await rabbit.start()  # the suite's other tests use node A
