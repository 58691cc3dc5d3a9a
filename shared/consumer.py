"""The consumer runner: the broker side of a :class:`shared.stages.Stage`.

A message carries one event or a batch of them (:func:`shared.events.encode`); the batch is
only the transport. Each event is handled by the stage's handler for its type and settled on
its own by :func:`shared.stages.settle`: acked, parked alone in the stage's delay queue
(``<queue>.retry.<ms>``), answered with the outcome its :class:`~shared.stages.Retry` carried,
or given up on (the stage's ``give_up``) and copied to the dead-letter queue. Whatever a handler,
a batch handler or a give-up returns, and a Retry's outcome, goes one way: :meth:`Consumer._emit`,
the stage's ``emit`` (confirmed), before the ack. The message is acked only once every one of its
events is settled; if one cannot be (the broker went away), the whole message is requeued, and the
events already done are recognised on the redelivery (``already_done``) or by the next stage's inbox.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError

from shared.batching import Batcher
from shared.crypto import Secrets
from shared.events import Event, decode, utcnow
from shared.failures import FailedForGood, broker_away, is_transient
from shared.logging import session_ref
from shared.messaging import (
    ATTEMPT_HEADER, DEAD_LETTERED_AT_HEADER, FAILURE_HEADER, REPLAYED_HEADER, Topology, declare, declare_retry_queues,
    events_message,
)
from shared.metrics import CONSUMER_IN_FLIGHT, DEAD_LETTERS, RETRIES, SKIPPED
from shared.stages import Action, Emitted, Failure, Retry, Stage, emitted, settle

log = structlog.get_logger("doorman.consumer")
BROKER_AWAY_PAUSE = 0.5  # seconds an event waits before it is handed back while the broker is away



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


@dataclass(frozen=True)
class _Delivery:
    message: AbstractIncomingMessage
    events: list[Event]


def _decode(message: AbstractIncomingMessage, secrets: Secrets | None) -> list[Event] | None:
    try:
        return decode(message.type or "", message.body, secrets=secrets)
    except (KeyError, ValidationError, ValueError):
        return None


def _context(event: Event) -> dict[str, Any]:
    return {
        "correlation_id": event.correlation_id, "session_ref": session_ref(event.session_id),
        "bot_id": str(event.bot_id), "event_type": event.event_type, "event_id": str(event.event_id),
    }


class Consumer:
    """Runs a :class:`Stage` over its work queue.

    Messages are handled concurrently up to the channel's prefetch, and the events of a
    message concurrently (at most ``stage.max_events`` at once). With a batch handler the
    events of every message waiting are handled together (up to ``stage.batch_size``,
    group-commit style: no timer); a failing batch is retried one event at a time so one bad
    event cannot sink the others.
    """

    def __init__(self, channel: AbstractChannel, queue: AbstractQueue, topology: Topology, stage: Stage,
                 *, secrets: Secrets | None = None) -> None:
        self._channel = channel
        self._secrets = secrets
        self._queue = queue
        self._topology = topology
        self._stage = stage
        self._name = stage.queue
        self._batches: Batcher[_Delivery, None] = Batcher(
            self._handle_batch, name=stage.queue, max_weight=stage.batch_size, max_in_flight=stage.batch_flushes,
            weight=lambda d: len(d.events),
        )
        self._event_slots = asyncio.Semaphore(stage.max_events) if stage.max_events else None
        self._in_flight = _InFlight()
        self._in_flight_gauge = CONSUMER_IN_FLIGHT.labels(stage.queue)
        self._unsettled: set[int] = set()  # delivery tags handed to us and not yet acked, requeued or rejected
        self._tag: str | None = None

    async def start(self) -> None:
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

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        events = _decode(message, self._secrets)
        if events is None:
            log.error("undecodable message dead-lettered", message_type=message.type, message_id=message.message_id)
            await message.reject(requeue=False)
            DEAD_LETTERS.labels(self._name).inc()
            return
        self._in_flight.enter()
        self._in_flight_gauge.inc(len(events))
        tag = message.delivery_tag or 0
        self._unsettled.add(tag)
        try:
            delivery = _Delivery(message, await self._not_done(message, events))
            if self._stage.batch is not None and delivery.events:
                await self._batches(delivery)
            else:
                await self._settle(delivery)
        except Exception as exc:  # e.g. the channel closed under an ack: the broker redelivers
            log.warning("message not settled; the broker will redeliver it", error=repr(exc))
        finally:
            self._unsettled.discard(tag)
            self._in_flight.leave()
            self._in_flight_gauge.dec(len(events))

    async def _not_done(self, message: AbstractIncomingMessage, events: list[Event]) -> list[Event]:
        """A first delivery is new by construction; a redelivery, a retry or a replay may have been done already."""
        fresh = not message.redelivered and attempt_of(message) == 1 and REPLAYED_HEADER not in (message.headers or {})
        if self._stage.already_done is None or fresh:
            return events
        try:
            done = await self._stage.already_done(events)
        except Exception as exc:  # cannot tell: handle them; the next stage's inbox keeps it idempotent
            log.warning("could not tell which events are done", error=repr(exc))
            return events
        if done:
            SKIPPED.labels(self._name).inc(len(done))
            log.info("already done; skipped", events=len(done))
        return [e for e in events if e.event_id not in done]

    async def _settle(self, delivery: _Delivery) -> None:
        """Handle each event on its own; ack once all are settled, else requeue the message."""
        settled = await asyncio.gather(*(self._handle_one(delivery.message, e) for e in delivery.events))
        if all(settled):
            await delivery.message.ack()
        else:
            await delivery.message.nack(requeue=True)

    async def _handle_one(self, message: AbstractIncomingMessage, event: Event) -> bool:
        if self._event_slots is None:
            return await self._handle_one_now(message, event)
        async with self._event_slots:
            return await self._handle_one_now(message, event)

    async def _handle_one_now(self, message: AbstractIncomingMessage, event: Event) -> bool:
        attempt = attempt_of(message)
        with structlog.contextvars.bound_contextvars(**_context(event)):
            failure = None
            try:
                result = await self._stage.handles[type(event)](event)
                if isinstance(result, Retry):
                    failure = Failure.retry(result)
                    log.warning("not now; another attempt may do better", detail=result.detail, attempt=attempt)
                else:
                    await self._emit(result)
            except Exception as exc:
                if broker_away(exc):  # not the event's fault: the broker redelivers it once it is back
                    log.warning("broker away; redelivering", error=repr(exc), attempt=attempt)
                    await asyncio.sleep(BROKER_AWAY_PAUSE)  # time is the subject: no hot loop while it comes back
                    return False
                failure = Failure.of(exc, transient=is_transient(exc))
                if failure.transient:
                    log.warning("transient failure", error=repr(exc), attempt=attempt)
                elif isinstance(exc, FailedForGood):  # a handler's verdict, not a crash
                    log.warning("failed for good", error=str(exc), attempt=attempt)
                else:
                    log.error("handler crashed", error=repr(exc), attempt=attempt, exc_info=exc)
            if failure is None:  # settle's ack: nothing more to do for this event
                return True
            return await self._carry_out(message, event, failure, attempt)

    async def _carry_out(self, message: AbstractIncomingMessage, event: Event, failure: Failure, attempt: int) -> bool:
        """Do what :func:`settle` decided; False when it could not be done (the message is requeued)."""
        policy = self._stage.retry
        time_left = None if policy.deadline is None else (policy.deadline(event) - utcnow()).total_seconds()
        decision = settle(failure, attempt, policy, time_left=time_left)
        try:
            if decision.action is Action.PARK:
                await self._republish(message, event, self._topology.retry_queue(self._name, decision.delay),
                                      {ATTEMPT_HEADER: attempt + 1})
                RETRIES.labels(self._name).inc()
                log.info("parked for another attempt", attempt=attempt, retry_in_s=decision.delay)
            elif decision.action is Action.ANSWER:
                await self._emit(failure.answer)
            elif decision.action is Action.DEAD_LETTER:
                log.error("failed for good, dead-lettering", attempt=attempt, failure=failure.kind)
                await self._emit(await self._stage.give_up(event))
                await self._republish(message, event, self._topology.dead_letter_queue(self._name),
                                      {ATTEMPT_HEADER: attempt, FAILURE_HEADER: failure.kind,
                                       DEAD_LETTERED_AT_HEADER: int(time.time())})
                DEAD_LETTERS.labels(self._name).inc()
        except Exception as exc:  # could not park it nor emit the outcome: let the broker redeliver
            log.error("failure not settled, redelivering", error=repr(exc))
            return False
        return True

    async def _emit(self, result: Emitted) -> None:
        """What a handler, a batch handler or a give-up returned (or a Retry's outcome), published by the stage's
        ``emit``: the one way a stage's output leaves, before the event is acked (a failure here fails the event)."""
        if not (events := emitted(result)):
            return
        if self._stage.emit is None:
            raise TypeError(f"stage {self._name} emitted {events[0].event_type} but has no emit")
        await self._stage.emit(events)

    async def _republish(
        self, message: AbstractIncomingMessage, event: Event, queue: str, extra: dict[str, int | str],
    ) -> None:
        """One event alone, confirmed, onto ``queue`` (a delay queue or the dead-letter queue)."""
        headers = {k: v for k, v in (message.headers or {}).items()
                   if not k.startswith("x-") and k not in (FAILURE_HEADER, DEAD_LETTERED_AT_HEADER)}
        await self._channel.default_exchange.publish(
            events_message([event], {**headers, **extra}, secrets=self._secrets), routing_key=queue, timeout=5,
        )

    async def _handle_batch(self, deliveries: list[_Delivery]) -> list[None]:
        assert self._stage.batch is not None
        try:
            await self._emit(await self._stage.batch([e for d in deliveries for e in d.events]))
        except Exception as exc:
            log.warning("batch failed, retrying one by one", size=sum(len(d.events) for d in deliveries),
                        error=repr(exc))
            await asyncio.gather(*(self._settle(d) for d in deliveries))
        else:
            await self._ack_all([d.message for d in deliveries])
        return [None] * len(deliveries)

    async def _ack_all(self, messages: list[AbstractIncomingMessage]) -> None:
        """One ``multiple`` ack when these are the channel's oldest unsettled deliveries (the usual
        case: batches are written in delivery order), else one ack each."""
        tags = {m.delivery_tag or 0 for m in messages}
        last = max(messages, key=lambda m: m.delivery_tag or 0)
        if all(t in tags for t in self._unsettled if t <= (last.delivery_tag or 0)):
            await last.ack(multiple=True)
            self._unsettled.difference_update(tags)
        else:
            for m in messages:
                await m.ack()


@asynccontextmanager
async def consuming(
    conn: aio_pika.abc.AbstractConnection,
    topology: Topology,
    stage: Stage,
    *,
    prefetch: int,
    grace: float = 10.0,
    secrets: Secrets | None = None,
) -> AsyncIterator[Consumer]:
    """Consume ``stage``'s work queue until the context exits. ``secrets`` (the key ring) opens and seals the
    access tokens of ``widget.opened`` events."""
    channel = await conn.channel(publisher_confirms=True)
    try:
        await channel.set_qos(prefetch_count=prefetch)
        await declare(channel, topology)
        await declare_retry_queues(channel, topology, stage.queue, stage.retry.delays)
        queue = await channel.declare_queue(topology.queue(stage.queue), passive=True)
        bound = set(topology.routing_keys(stage.queue))
        if bound != set(stage.event_types):  # a stage handling what its queue does not receive, or the reverse
            raise ValueError(f"stage {stage.queue} handles {sorted(stage.event_types)} but its queue receives {sorted(bound)}")
        consumer = Consumer(channel, queue, topology, stage, secrets=secrets)
        await consumer.start()
        try:
            yield consumer
        finally:
            await consumer.stop(grace)
    finally:
        await channel.close()
