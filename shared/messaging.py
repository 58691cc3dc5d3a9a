"""RabbitMQ topology, confirmed publishing and the consumer runner.

Topology (``P`` is ``DOORMAN_AMQP_PREFIX``):

* ``P.events``: durable topic exchange every event is published to, routing key = event type.
* ``P.dead``: durable direct exchange; each work queue dead-letters to it with its own name.
* one durable quorum queue per stage (:data:`WORK_QUEUES`), each with a delivery limit and
  a quorum dead-letter queue ``<queue>.dlq``.
* ``P.gateway.<replica>``: one exclusive, auto-deleted queue per gateway replica, bound to
  ``session.resolved.<replica>``. Outcomes go only to the replica holding the waiting
  widget; the database stays the source of truth, so losing one is harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError

from shared.events import ContactCollected, Event, IdentityVerified, SessionFellBack, WidgetOpened, decode
from shared.failures import is_transient

log = structlog.get_logger("doorman.messaging")

VERIFIER_QUEUE = "verifier.widget-opened"
CONTACTS_QUEUE = "contacts.outcomes"
WORK_QUEUES: dict[str, tuple[str, ...]] = {
    VERIFIER_QUEUE: (WidgetOpened.event_type,),
    CONTACTS_QUEUE: (IdentityVerified.event_type, SessionFellBack.event_type, ContactCollected.event_type),
}
DELIVERY_LIMIT = 5


@dataclass(frozen=True)
class Topology:
    prefix: str

    @property
    def exchange(self) -> str:
        return f"{self.prefix}.events"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}.dead"

    def queue(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def dead_letter_queue(self, name: str) -> str:
        return f"{self.queue(name)}.dlq"

    def all_queues(self) -> list[str]:
        return [q for name in WORK_QUEUES for q in (self.queue(name), self.dead_letter_queue(name))]


async def declare(channel: AbstractChannel, topology: Topology) -> AbstractExchange:
    """Declare every exchange and work queue (idempotent; every service does it at start)."""
    exchange = await channel.declare_exchange(topology.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    dead = await channel.declare_exchange(topology.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    for name, routing_keys in WORK_QUEUES.items():
        dlq = await channel.declare_queue(
            topology.dead_letter_queue(name), durable=True, arguments={"x-queue-type": "quorum"},
        )
        await dlq.bind(dead, routing_key=topology.queue(name))
        queue = await channel.declare_queue(
            topology.queue(name),
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": DELIVERY_LIMIT,
                "x-dead-letter-exchange": topology.dead_letter_exchange,
                "x-dead-letter-routing-key": topology.queue(name),
            },
        )
        for key in routing_keys:
            await queue.bind(exchange, routing_key=key)
    return exchange


@asynccontextmanager
async def connection(url: str, name: str) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    conn = await aio_pika.connect_robust(url, client_properties={"connection_name": name})
    try:
        yield conn
    finally:
        await conn.close()


class Publisher:
    """Publishes events and waits for the broker's confirm; unroutable messages raise."""

    def __init__(self, exchange: AbstractExchange, *, timeout: float = 5.0) -> None:
        self._exchange = exchange
        self._timeout = timeout

    @property
    def ready(self) -> bool:
        return not self._exchange.channel.is_closed

    async def __call__(self, event: Event, routing_key: str | None = None) -> None:
        message = aio_pika.Message(
            body=event.model_dump_json().encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            type=event.event_type,
            message_id=str(event.event_id),
            correlation_id=event.correlation_id,
            timestamp=event.occurred_at,
        )
        await self._exchange.publish(
            message, routing_key or event.event_type, mandatory=True, timeout=self._timeout,
        )


Publish = Callable[..., Awaitable[None]]


@asynccontextmanager
async def publisher(conn: aio_pika.abc.AbstractConnection, topology: Topology) -> AsyncIterator[Publisher]:
    channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
    try:
        exchange = await declare(channel, topology)
        yield Publisher(exchange)
    finally:
        await channel.close()


def delivery_count(message: AbstractIncomingMessage) -> int:
    """How many times the broker delivered this message before (quorum queues count)."""
    count = (message.headers or {}).get("x-delivery-count", 0)
    return int(count) if isinstance(count, int) else 0


Handler = Callable[[Event], Awaitable[None]]
BatchHandler = Callable[[Sequence[Event]], Awaitable[None]]
OnFailure = Callable[[Event, BaseException], Awaitable[None]]


@dataclass
class _InFlight:
    count: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    def enter(self) -> None:
        self.count += 1
        self.idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self.idle.set()


def _decode(message: AbstractIncomingMessage) -> Event | None:
    try:
        return decode(message.type or "", message.body)
    except (KeyError, ValidationError, ValueError):
        return None


async def _settle_failure(
    message: AbstractIncomingMessage, event: Event, exc: BaseException, on_failure: OnFailure,
) -> None:
    """Map a failed message to redeliver / fallback + dead-letter."""
    if is_transient(exc) and delivery_count(message) + 1 < DELIVERY_LIMIT:
        log.warning("transient failure, redelivering", error=repr(exc), deliveries=delivery_count(message) + 1)
        await message.nack(requeue=True)
        return
    log.error("permanent failure, dead-lettering", error=repr(exc), exc_info=exc)
    try:
        await on_failure(event, exc)
    except Exception as fallback_exc:  # the fallback could not be emitted: try the whole thing again
        log.error("fallback failed, redelivering", error=repr(fallback_exc))
        await message.nack(requeue=True)
        return
    await message.reject(requeue=False)


def _context(event: Event) -> dict[str, Any]:
    return {
        "correlation_id": event.correlation_id, "session_id": event.session_id,
        "bot_id": str(event.bot_id), "event_type": event.event_type, "event_id": str(event.event_id),
    }


class Consumer:
    """Runs a handler over a queue: decode, bind log context, handle, then ack.

    Messages are handled concurrently up to ``prefetch``. With ``batch_size`` > 1
    the handler receives lists of events, gathered for at most ``linger`` seconds;
    a failing batch is retried one event at a time so one bad event cannot sink
    the others.
    """

    def __init__(
        self,
        queue: AbstractQueue,
        *,
        handler: Handler,
        on_failure: OnFailure,
        batch_handler: BatchHandler | None = None,
        batch_size: int = 1,
        linger: float = 0.005,
    ) -> None:
        self._queue = queue
        self._handler = handler
        self._batch_handler = batch_handler
        self._on_failure = on_failure
        self._batch_size = batch_size
        self._linger = linger
        self._in_flight = _InFlight()
        self._pending: asyncio.Queue[tuple[AbstractIncomingMessage, Event]] = asyncio.Queue()
        self._flusher: asyncio.Task[None] | None = None
        self._tag: str | None = None

    async def start(self) -> None:
        if self._batch_handler is not None:
            self._flusher = asyncio.create_task(self._flush_forever())
        self._tag = await self._queue.consume(self._on_message)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking messages, let the in-flight ones finish (bounded), then return."""
        if self._tag is not None:
            await self._queue.cancel(self._tag)
            self._tag = None
        try:
            await asyncio.wait_for(self._in_flight.idle.wait(), grace)
        except TimeoutError:
            log.warning("shutdown grace expired; unacked messages will be redelivered", in_flight=self._in_flight.count)
        if self._flusher is not None:
            self._flusher.cancel()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        event = _decode(message)
        if event is None:
            log.error("undecodable message dead-lettered", message_type=message.type, message_id=message.message_id)
            await message.reject(requeue=False)
            return
        self._in_flight.enter()
        if self._batch_handler is not None:
            self._pending.put_nowait((message, event))
            return
        try:
            await self._handle_one(message, event)
        finally:
            self._in_flight.leave()

    async def _handle_one(self, message: AbstractIncomingMessage, event: Event) -> None:
        with structlog.contextvars.bound_contextvars(**_context(event)):
            try:
                await self._handler(event)
            except Exception as exc:
                await _settle_failure(message, event, exc, self._on_failure)
            else:
                await message.ack()

    async def _flush_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._pending.get()]
            until = loop.time() + self._linger
            while len(batch) < self._batch_size:
                timeout = until - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._pending.get(), timeout))
                except TimeoutError:
                    break
            try:
                await self._handle_batch(batch)
            except Exception as exc:  # e.g. the channel closed under an ack: the broker redelivers
                log.warning("batch not settled; the broker will redeliver it", size=len(batch), error=repr(exc))
            finally:
                for _ in batch:
                    self._in_flight.leave()

    async def _handle_batch(self, batch: list[tuple[AbstractIncomingMessage, Event]]) -> None:
        assert self._batch_handler is not None
        try:
            await self._batch_handler([event for _, event in batch])
        except Exception as exc:
            if len(batch) == 1:
                message, event = batch[0]
                with structlog.contextvars.bound_contextvars(**_context(event)):
                    await _settle_failure(message, event, exc, self._on_failure)
                return
            log.warning("batch failed, retrying one by one", size=len(batch), error=repr(exc))
            for message, event in batch:
                await self._handle_one(message, event)
            return
        for message, _ in batch:
            await message.ack()


@asynccontextmanager
async def consuming(
    conn: aio_pika.abc.AbstractConnection,
    topology: Topology,
    queue_name: str,
    *,
    prefetch: int,
    grace: float = 10.0,
    **consumer_options: Any,
) -> AsyncIterator[Consumer]:
    channel = await conn.channel()
    try:
        await channel.set_qos(prefetch_count=prefetch)
        await declare(channel, topology)
        queue = await channel.declare_queue(topology.queue(queue_name), passive=True)
        consumer = Consumer(queue, **consumer_options)
        await consumer.start()
        try:
            yield consumer
        finally:
            await consumer.stop(grace)
    finally:
        await channel.close()
