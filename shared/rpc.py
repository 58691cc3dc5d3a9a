"""Request/reply over the broker, as RabbitMQ's RPC tutorial does it, with direct reply-to.

The asking side (:func:`asking`) consumes the pseudo-queue ``amq.rabbitmq.reply-to`` on a channel of its
own (no queue is declared for replies) and publishes each request there, with ``reply_to`` naming it and a
``correlation_id`` of its own; the answer comes back to that channel alone. A request is transient and
expires with the asker's patience: one nobody took by then is dropped by the broker, never answered late.
Nowhere to route it (no server has declared the queue) or no answer in time: :class:`Unanswered`.

The answering side (:func:`answering`) declares the request queue, consumes it on a channel of its own
with its own prefetch, and publishes each answer to the request's ``reply_to`` through the default exchange.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from uuid import uuid4

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aiormq.exceptions import PublishError

log = structlog.get_logger("doorman.rpc")

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
ANSWER, FAILED = "answer", "failed"  # the reply's message type: an answer, or the server failed on the request

Answer = Callable[[bytes], Awaitable[bytes | None]]
"""The server's handler: a request's body -> the answer's body, or None to send none (too late to matter)."""


class Unanswered(Exception):
    """No server took the request (its queue does not exist) or none answered in time."""


class Failed(Exception):
    """The server took the request and failed on it (its log says why)."""


class Asker:
    """Sends requests and waits for their answers (see the module's docstring)."""

    def __init__(self, channel: AbstractChannel) -> None:
        self._channel = channel
        self._waiting: dict[str, asyncio.Future[AbstractIncomingMessage]] = {}

    async def ask(self, queue: str, body: bytes, *, timeout: float, kind: str) -> bytes:
        """Send ``body`` (a request of type ``kind``) to ``queue`` and return the answer's body within
        ``timeout`` seconds, or raise :class:`Unanswered` (or :class:`Failed`)."""
        correlation_id = uuid4().hex
        answered = self._waiting[correlation_id] = asyncio.get_running_loop().create_future()
        request = aio_pika.Message(
            body, content_type="application/json", type=kind, correlation_id=correlation_id,
            reply_to=DIRECT_REPLY_TO, expiration=timeout, delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
        )
        try:
            async with asyncio.timeout(timeout):
                await self._channel.default_exchange.publish(request, routing_key=queue, mandatory=True)
                reply = await answered
        except PublishError:
            raise Unanswered(f"nothing serves {queue}") from None
        except TimeoutError:
            raise Unanswered(f"no answer from {queue} within {timeout:g} s") from None
        finally:
            del self._waiting[correlation_id]
        if reply.type == FAILED:
            raise Failed(f"{queue} failed on the request")
        return reply.body

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        waiting = self._waiting.get(message.correlation_id or "")
        if waiting is not None and not waiting.done():
            waiting.set_result(message)


@asynccontextmanager
async def asking(conn: aio_pika.abc.AbstractConnection) -> AsyncIterator[Asker]:
    """An :class:`Asker` on a channel of its own, for the life of the context."""
    channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
    try:
        asker = Asker(channel)
        replies = await channel.declare_queue(DIRECT_REPLY_TO, passive=True)  # kept across reconnects
        await replies.consume(asker._on_reply, no_ack=True)  # direct reply-to answers only unacknowledged consumers
        yield asker
    finally:
        await channel.close()


@asynccontextmanager
async def answering(
    conn: aio_pika.abc.AbstractConnection, declare: Callable[[AbstractChannel], Awaitable[AbstractQueue]],
    answer: Answer, *, prefetch: int, grace: float = 10.0,
) -> AsyncIterator[None]:
    """Answer the requests of the queue ``declare`` makes, ``prefetch`` at a time, on a channel of its own;
    on exit stop taking requests and let those in hand finish (at most ``grace`` seconds)."""
    channel = await conn.channel()
    in_hand: set[asyncio.Task[None]] = set()

    async def on_request(message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        in_hand.add(task)
        try:
            await _answer(channel, message, answer)
        finally:
            in_hand.discard(task)

    try:
        await channel.set_qos(prefetch_count=prefetch)
        queue = await declare(channel)
        tag = await queue.consume(on_request)
        try:
            yield
        finally:
            await queue.cancel(tag)
            if in_hand:
                await asyncio.wait(in_hand, timeout=grace)
    finally:
        await channel.close()


async def _answer(channel: AbstractChannel, message: AbstractIncomingMessage, answer: Answer) -> None:
    """Acked once answered (or found too late to answer); a request the handler fails on is answered
    ``failed`` at once, so the asker need not wait out its patience."""
    async with message.process(requeue=False, ignore_processed=True):
        kind: str = ANSWER
        try:
            body = await answer(message.body)
        except Exception:
            log.exception("request failed", queue=message.routing_key)
            kind, body = FAILED, b""
        if body is None or not message.reply_to:
            return
        await channel.default_exchange.publish(
            aio_pika.Message(body, content_type="application/json", type=kind, correlation_id=message.correlation_id,
                             delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT),
            routing_key=message.reply_to, mandatory=False,  # an asker gone meanwhile: nobody to tell
        )
