"""Delivering outcomes to the widgets waiting on this replica.

Each gateway replica consumes its own exclusive queue, bound to
``session.resolved.<replica>``. A stream handler registers here, then records
itself as the session's watcher; the contacts service publishes the outcome
only to the watcher's routing key. No fan-out to every replica.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import aio_pika
import structlog
from aio_pika.abc import AbstractIncomingMessage

from shared.events import SessionResolved
from shared.messaging import Topology, declare

log = structlog.get_logger("doorman.gateway.outcomes")


def new_replica_id() -> str:
    return f"gw-{secrets.token_hex(6)}"


class OutcomeHub:
    def __init__(self, replica: str) -> None:
        self.replica = replica
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)

    @contextmanager
    def waiting(self, session_id: str) -> Iterator[asyncio.Event]:
        signal = asyncio.Event()
        self._waiters[session_id].add(signal)
        try:
            yield signal
        finally:
            waiters = self._waiters.get(session_id)
            if waiters is not None:
                waiters.discard(signal)
                if not waiters:
                    del self._waiters[session_id]

    def resolved(self, session_id: str) -> None:
        for signal in self._waiters.get(session_id, ()):
            signal.set()

    @property
    def waiting_count(self) -> int:
        return sum(len(w) for w in self._waiters.values())


@asynccontextmanager
async def consume_outcomes(
    conn: aio_pika.abc.AbstractConnection, topology: Topology, hub: OutcomeHub,
) -> AsyncIterator[None]:
    channel = await conn.channel()
    try:
        await channel.set_qos(prefetch_count=256)
        exchange = await declare(channel, topology)
        queue = await channel.declare_queue(
            topology.queue(f"gateway.{hub.replica}"), exclusive=True, auto_delete=True, durable=False,
        )
        await queue.bind(exchange, routing_key=f"{SessionResolved.event_type}.{hub.replica}")

        async def on_message(message: AbstractIncomingMessage) -> None:
            try:
                event = SessionResolved.model_validate_json(message.body)
            except ValueError:
                log.warning("undecodable outcome notification dropped")
            else:
                hub.resolved(event.session_id)

        tag = await queue.consume(on_message, no_ack=True)
        try:
            yield
        finally:
            try:
                await queue.cancel(tag)
            except Exception as exc:  # the broker is gone: there is nothing left to cancel
                log.warning("outcome consumer cancel failed", error=repr(exc))
    finally:
        await channel.close()
