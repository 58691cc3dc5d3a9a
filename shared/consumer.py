"""The consumer runner: decode, bind log context, handle, then settle the message.

Settling maps the failure kinds of :mod:`shared.failures`: transient failures are
parked in the queue's delay queues (``<queue>.retry.<ms>``) and come back after the
policy's back-off; when attempts (or the visitor's time) run out, the handler's
``outcome`` is emitted if it gave one, else the stage's fallback and the dead-letter
queue. A message is acked only after its work is done, or after its retry copy or its
fallback was confirmed by the broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError

from shared.events import Event, decode
from shared.failures import is_transient
from shared.messaging import ATTEMPT_HEADER, WORK_QUEUES, Topology, declare
from shared.metrics import CONSUMER_IN_FLIGHT, DEAD_LETTERS, RETRIES

log = structlog.get_logger("doorman.consumer")

Handler = Callable[[Event], Awaitable[None]]
BatchHandler = Callable[[Sequence[Event]], Awaitable[None]]
OnFailure = Callable[[Event, BaseException], Awaitable[None]]
CanRetry = Callable[[Event, float], bool]


def attempt_of(message: AbstractIncomingMessage) -> int:
    """1 for a first delivery; counts retries through the delay queues."""
    value = (message.headers or {}).get(ATTEMPT_HEADER, 1)
    return value if isinstance(value, int) and value >= 1 else 1


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


def _context(event: Event) -> dict[str, Any]:
    return {
        "correlation_id": event.correlation_id, "session_id": event.session_id,
        "bot_id": str(event.bot_id), "event_type": event.event_type, "event_id": str(event.event_id),
    }


def _always(_event: Event, _delay: float) -> bool:
    return True


class Consumer:
    """Runs a handler over one work queue.

    Messages are handled concurrently up to the channel's prefetch. With a
    ``batch_handler`` they are gathered (up to ``batch_size``, at most ``linger``
    seconds) and handled together; a failing batch is retried one event at a time
    so one bad event cannot sink the others.
    """

    def __init__(
        self,
        channel: AbstractChannel,
        queue: AbstractQueue,
        topology: Topology,
        name: str,
        *,
        handler: Handler,
        on_failure: OnFailure,
        can_retry: CanRetry = _always,
        batch_handler: BatchHandler | None = None,
        batch_size: int = 1,
        linger: float = 0.005,
    ) -> None:
        self._channel = channel
        self._queue = queue
        self._topology = topology
        self._name = name
        self._policy = WORK_QUEUES[name].retry
        self._handler = handler
        self._on_failure = on_failure
        self._can_retry = can_retry
        self._batch_handler = batch_handler
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
            try:
                await self._queue.cancel(self._tag)
            except Exception as exc:  # the channel is already gone: nothing more will arrive
                log.warning("consumer cancel failed", error=repr(exc))
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
            DEAD_LETTERS.labels(self._name).inc()
            return
        self._in_flight.enter()
        CONSUMER_IN_FLIGHT.labels(self._name).inc()
        if self._batch_handler is not None:
            self._pending.put_nowait((message, event))
            return
        try:
            await self._handle_one(message, event)
        finally:
            self._in_flight.leave()
            CONSUMER_IN_FLIGHT.labels(self._name).dec()

    async def _handle_one(self, message: AbstractIncomingMessage, event: Event) -> None:
        with structlog.contextvars.bound_contextvars(**_context(event)):
            try:
                await self._handler(event)
            except Exception as exc:
                await self._settle_failure(message, event, exc)
            else:
                await message.ack()

    async def _settle_failure(self, message: AbstractIncomingMessage, event: Event, exc: BaseException) -> None:
        attempt = attempt_of(message)
        try:
            if is_transient(exc) and attempt < self._policy.max_attempts:
                delay = self._policy.delay(attempt)
                if self._can_retry(event, delay):
                    await self._park(message, delay, attempt + 1)
                    RETRIES.labels(self._name).inc()
                    log.warning("transient failure, retrying", error=repr(exc), attempt=attempt, retry_in_s=delay)
                    await message.ack()
                    return
            outcome = getattr(exc, "outcome", None) if is_transient(exc) else None
            if outcome is None:
                log.error("failed for good, dead-lettering", error=repr(exc), attempt=attempt,
                          exc_info=None if is_transient(exc) else exc)
            await self._on_failure(event, exc)
        except Exception as settle_exc:  # could not park it nor emit the fallback: let the broker redeliver
            log.error("failure not settled, redelivering", error=repr(settle_exc))
            await message.nack(requeue=True)
            return
        if outcome is None:
            await message.reject(requeue=False)  # -> <queue>.dlq, for an operator to look at and replay
            DEAD_LETTERS.labels(self._name).inc()
        else:
            await message.ack()

    async def _park(self, message: AbstractIncomingMessage, delay: float, attempt: int) -> None:
        headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-") or k == ATTEMPT_HEADER}
        headers[ATTEMPT_HEADER] = attempt
        await self._channel.default_exchange.publish(
            aio_pika.Message(
                body=message.body, headers=headers, content_type=message.content_type, type=message.type,
                message_id=message.message_id, correlation_id=message.correlation_id, timestamp=message.timestamp,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=self._topology.retry_queue(self._name, delay), timeout=5,
        )

    async def _flush_forever(self) -> None:
        while True:
            batch = [await self._pending.get()]
            try:
                async with asyncio.timeout(self._linger):  # one timer per batch, not one per message
                    while len(batch) < self._batch_size:
                        while not self._pending.empty() and len(batch) < self._batch_size:
                            batch.append(self._pending.get_nowait())
                        if len(batch) < self._batch_size:
                            batch.append(await self._pending.get())
            except TimeoutError:
                pass
            try:
                await self._handle_batch(batch)
            except Exception as exc:  # e.g. the channel closed under an ack: the broker redelivers
                log.warning("batch not settled; the broker will redeliver it", size=len(batch), error=repr(exc))
            finally:
                for _ in batch:
                    self._in_flight.leave()
                CONSUMER_IN_FLIGHT.labels(self._name).dec(len(batch))

    async def _handle_batch(self, batch: list[tuple[AbstractIncomingMessage, Event]]) -> None:
        assert self._batch_handler is not None
        try:
            await self._batch_handler([event for _, event in batch])
        except Exception as exc:
            if len(batch) == 1:
                message, event = batch[0]
                with structlog.contextvars.bound_contextvars(**_context(event)):
                    await self._settle_failure(message, event, exc)
                return
            log.warning("batch failed, retrying one by one", size=len(batch), error=repr(exc))
            for message, event in batch:
                await self._handle_one(message, event)
            return
        # Batches are handled one at a time, in delivery order, on this channel: one ack for all.
        await max(batch, key=lambda item: item[0].delivery_tag or 0)[0].ack(multiple=True)


@asynccontextmanager
async def consuming(
    conn: aio_pika.abc.AbstractConnection,
    topology: Topology,
    name: str,
    *,
    prefetch: int,
    grace: float = 10.0,
    **consumer_options: Any,
) -> AsyncIterator[Consumer]:
    channel = await conn.channel(publisher_confirms=True)
    try:
        await channel.set_qos(prefetch_count=prefetch)
        await declare(channel, topology)
        queue = await channel.declare_queue(topology.queue(name), passive=True)
        consumer = Consumer(channel, queue, topology, name, **consumer_options)
        await consumer.start()
        try:
            yield consumer
        finally:
            await consumer.stop(grace)
    finally:
        await channel.close()
