"""Every stage publishes what it emits one way (``shared.consumer``): whatever a handler, a batch handler or a
give-up returns goes to the stage's ``emit``, and the event is acked only once that returned. Run on the real
broker with a stage of the test's own (no database)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from uuid import uuid4

import aio_pika
import aiormq.exceptions
import pytest

from shared import messaging
from shared.consumer import consuming
from shared.events import (
    ContactCollected, Event, FallbackReason, IdentityVerified, SessionFellBack, WebhookDue, utcnow,
)
from shared.stages import RetryPolicy, Stage
from tests.conftest import AMQP_URL
from tests.waits import wait_until

BOT = uuid4()


def fell_back(n: int) -> SessionFellBack:
    return SessionFellBack(correlation_id=f"c{n}", session_id=f"s{n}", bot_id=BOT,
                           reason=FallbackReason.auth_unavailable, detail="down")


def announced(event: Event) -> WebhookDue:
    return WebhookDue(correlation_id=event.correlation_id, session_id=event.session_id, bot_id=BOT,
                      webhook_type="session.fell_back")


class Emits:
    """The stage's emit: fails ``failures`` times (the broker refused the publish), then keeps what it is given."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.events: list[Event] = []

    async def __call__(self, events: Sequence[Event]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the broker went away")
        self.events.extend(events)


async def run(prefix: str, stage: Stage, events: list[Event], done: Callable[[], bool]) -> None:
    topology = messaging.Topology(prefix)
    async with (
        messaging.connection(AMQP_URL, "test-stage-emits") as conn,
        messaging.publisher(conn, topology) as publish,
        consuming(conn, topology, stage, prefetch=len(events) * 2),
    ):
        await publish.many(events)
        await wait_until(done, what="the stage to emit it all")


def contacts_stage(handle: Callable, give_up: Callable, emit: Emits, **options: object) -> Stage:
    """A stage on the contacts service's queue (which receives fallbacks), with the test's handlers."""
    return Stage(queue=messaging.CONTACTS_QUEUE,
                 handles={IdentityVerified: handle, SessionFellBack: handle, ContactCollected: handle},
                 retry=RetryPolicy((0.1,), max_attempts=3), give_up=give_up, emit=emit, **options)  # type: ignore[arg-type]


async def test_what_a_batch_returns_is_emitted_before_the_ack(fresh_prefix: Callable[[], str]) -> None:
    """The first emit fails: the events were not acked, so they are handled again (one at a time) and emitted."""
    events = [fell_back(n) for n in range(5)]
    emit, batches, singles = Emits(failures=1), [], []

    async def batch(got: Sequence[Event]) -> list[Event]:
        batches.append(len(got))
        return [announced(e) for e in got]

    async def one(event: Event) -> Event:
        singles.append(event.event_id)
        return announced(event)

    stage = contacts_stage(one, give_up=one, emit=emit, batch=batch, batch_size=10)
    await run(fresh_prefix(), stage, events, lambda: len(emit.events) == len(events))
    assert sorted(e.session_id for e in emit.events) == sorted(e.session_id for e in events)
    assert all(isinstance(e, WebhookDue) for e in emit.events)
    assert sum(batches) >= 1 and sorted(singles) == sorted(e.event_id for e in events)


@pytest.mark.parametrize("batched", [False, True], ids=["one by one", "batched"])
async def test_what_a_give_up_returns_is_emitted_and_the_event_dead_lettered(
        fresh_prefix: Callable[[], str], batched: bool) -> None:
    prefix = fresh_prefix()
    event, emit = fell_back(0), Emits()

    async def broken(_: object) -> None:
        raise KeyError("a bug")

    async def give_up(failed: Event) -> Event:
        return announced(failed)

    stage = contacts_stage(broken, give_up=give_up, emit=emit, **({"batch": broken, "batch_size": 10} if batched else {}))
    await run(prefix, stage, [event], lambda: bool(emit.events))
    assert [(type(e), e.session_id) for e in emit.events] == [(WebhookDue, event.session_id)]
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel()
        dlq = messaging.Topology(prefix).dead_letter_queue(messaging.CONTACTS_QUEUE)
        assert (await channel.declare_queue(dlq, passive=True)).declaration_result.message_count == 1


async def test_a_broker_blip_past_the_deadline_is_redelivered_not_dead_lettered(fresh_prefix: Callable[[], str]) -> None:
    """The stage's channel closes under its emit (a RabbitMQ restart) after the event's deadline has passed:
    nothing is wrong with the event, so it is redelivered and its own outcome emitted once the broker answers,
    neither given up nor dead-lettered (CI's "restart RabbitMQ" row counted 5 dead letters this way)."""
    prefix = fresh_prefix()
    event, given_up = fell_back(0), []

    class BrokerBlip(Emits):
        async def __call__(self, events: Sequence[Event]) -> None:
            if self.failures:
                self.failures -= 1
                raise aiormq.exceptions.ChannelInvalidStateError("<RobustChannel> closed")
            self.events.extend(events)

    emit = BrokerBlip(failures=1)

    async def one(got: Event) -> Event:
        return announced(got)

    async def give_up(failed: Event) -> Event:
        given_up.append(failed.event_id)
        return announced(failed)

    stage = Stage(queue=messaging.CONTACTS_QUEUE,
                  handles={IdentityVerified: one, SessionFellBack: one, ContactCollected: one},
                  retry=RetryPolicy((0.1,), max_attempts=3, deadline=lambda _: utcnow() - timedelta(seconds=1)),
                  give_up=give_up, emit=emit)  # type: ignore[arg-type]
    await run(prefix, stage, [event], lambda: bool(emit.events))
    assert [(type(e), e.session_id) for e in emit.events] == [(WebhookDue, event.session_id)]
    assert given_up == []
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel()
        dlq = messaging.Topology(prefix).dead_letter_queue(messaging.CONTACTS_QUEUE)
        assert (await channel.declare_queue(dlq, passive=True)).declaration_result.message_count == 0
