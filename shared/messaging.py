"""RabbitMQ topology and confirmed publishing. The consumer runner is in :mod:`shared.consumer`.

Topology (``P`` is ``DOORMAN_AMQP_PREFIX``):

* ``P.events``: durable topic exchange every event is published to, routing key = event type.
* one durable quorum queue per stage (:data:`WORK_QUEUES`; the stages themselves are declared in
  their services' composition roots) with a delivery limit (a message
  that keeps crashing its consumer cannot loop), dead-lettering at-least-once through
  ``P.dead`` to its quorum dead-letter queue ``<queue>.dlq``.
* per stage, delay queues ``<queue>.retry.<ms>`` (one per delay of the stage's retry policy,
  declared by its consumer): quorum queues with a message TTL that dead-letter back onto the
  stage's queue. A transient failure is retried by parking the
  message there, not by sleeping in the consumer.
* ``P.gateway.<replica>``: one exclusive, auto-deleted queue per gateway replica, bound to
  ``session.resolved.<replica>``. Outcomes go only to the replica holding the waiting
  widget; the database stays the source of truth, so losing one is harmless.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange
from aio_pika.exceptions import PublishError
from aio_pika.robust_connection import RobustConnection
from yarl import URL

from shared.crypto import Secrets
from shared.events import (
    ContactCollected,
    Event,
    IdentityVerified,
    SessionFellBack,
    SessionResolved,
    WebhookDue,
    WidgetOpened,
    encode,
)
from shared.metrics import PUBLISH_SECONDS

log = structlog.get_logger("doorman.messaging")


VERIFIER_QUEUE = "verifier.widget-opened"
CONTACTS_QUEUE = "contacts.outcomes"
WEBHOOK_QUEUE = "verifier.webhooks"  # webhook deliveries: the verifier's second stage, its own capacity
# The wiring every publisher relies on: each work queue and the event types routed to it. The
# stage consuming a queue (declared in its service's composition root) handles exactly these.
WORK_QUEUES: dict[str, tuple[str, ...]] = {
    VERIFIER_QUEUE: (WidgetOpened.event_type,),
    CONTACTS_QUEUE: (IdentityVerified.event_type, SessionFellBack.event_type, ContactCollected.event_type),
    WEBHOOK_QUEUE: (WebhookDue.event_type,),
}
DELIVERY_LIMIT = 10
ATTEMPT_HEADER = "x-doorman-attempt"
REPLAYED_HEADER = "doorman-replayed"  # set by `doorman dlq replay`: the work may have been done already
FAILURE_HEADER = "doorman-failure"  # on a dead letter: what the stage said when it gave up
DEAD_LETTERED_AT_HEADER = "doorman-dead-lettered-at"  # on a dead letter: when (Unix seconds) the stage gave up
# Dead-letter without loss: the broker keeps a message until the target queue has confirmed it.
AT_LEAST_ONCE = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}


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

    def retry_queue(self, name: str, delay: float) -> str:
        return f"{self.queue(name)}.retry.{round(delay * 1000)}ms"

    def retry_queues(self, name: str, delays: Sequence[float]) -> list[str]:
        return [self.retry_queue(name, d) for d in dict.fromkeys(delays)]

    def routing_keys(self, name: str) -> tuple[str, ...]:
        return WORK_QUEUES[name]

    def all_queues(self, retry_delays: Mapping[str, Sequence[float]]) -> list[str]:
        """Every work queue, dead-letter queue and, given each stage's delays, delay queue."""
        return [
            q for name in WORK_QUEUES
            for q in (self.queue(name), self.dead_letter_queue(name), *self.retry_queues(name, retry_delays.get(name, ())))
        ]


async def declare(channel: AbstractChannel, topology: Topology) -> AbstractExchange:
    """Declare the exchanges, work queues and dead-letter queues (idempotent; every service does
    it at start, so an event published before its consumer starts is kept)."""
    exchange = await channel.declare_exchange(topology.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    dead = await channel.declare_exchange(topology.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    for name, routing_keys in WORK_QUEUES.items():
        work = topology.queue(name)
        dlq = await channel.declare_queue(
            topology.dead_letter_queue(name), durable=True, arguments={"x-queue-type": "quorum"},
        )
        await dlq.bind(dead, routing_key=work)
        queue = await channel.declare_queue(work, durable=True, arguments={
            "x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": topology.dead_letter_exchange, "x-dead-letter-routing-key": work,
            **AT_LEAST_ONCE,
        })
        for key in routing_keys:
            await queue.bind(exchange, routing_key=key)
    return exchange


async def declare_retry_queues(channel: AbstractChannel, topology: Topology, name: str, delays: Sequence[float]) -> None:
    """The delay queues of ``name``'s stage: its consumer declares them, from its retry policy."""
    for delay in dict.fromkeys(delays):
        await channel.declare_queue(topology.retry_queue(name, delay), durable=True, arguments={
            "x-queue-type": "quorum", "x-message-ttl": round(delay * 1000),
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": topology.queue(name), **AT_LEAST_ONCE,
        })


CONNECT_TIMEOUT = 5.0  # one attempt at one node (TCP and AMQP handshake): a node that does not answer is skipped


def broker_urls(value: str) -> list[str]:
    """``DOORMAN_AMQP_URL``: one broker address, or several (the nodes of a cluster) separated by commas.

    Raises ValueError naming the position of a bad address, never the address (it holds a password)."""
    urls = [u.strip() for u in value.split(",")]
    for i, url in enumerate(urls, 1):
        try:
            parsed = URL(url)
            valid = parsed.scheme in ("amqp", "amqps") and bool(parsed.host) and parsed.port != 0
        except ValueError:  # its message may quote the address
            valid = False
        if not valid:
            raise ValueError(f"DOORMAN_AMQP_URL: address {i} of {len(urls)} is not amqp://user:password@host:port/vhost")
    return urls


def node_of(url: URL | str) -> str:
    """``host:port`` of a broker address: what may be logged of it."""
    url = URL(url)
    return f"{url.host}:{url.port or (5671 if url.scheme == 'amqps' else 5672)}"


class FailoverConnection(RobustConnection):
    """aio-pika's robust connection over several nodes of a cluster.

    aio-pika's reconnect loop (restore channels, queues, bindings and consumers; publisher
    confirms on the restored channels) is kept whole. Only its connection attempt changes: each
    attempt tries every node once, starting after the node it last used (the first attempt at a
    random node, so replicas spread over the cluster), and stops at the first that connects and
    restores its channels. When none does, the attempt fails and the loop retries after
    ``reconnect_interval``. The one hook is the attempt (``RobustConnection.__connect_transport``,
    aio-pika >= 10.2), checked when this module is imported.
    """

    def __init__(self, urls: Sequence[str], **kwargs: Any) -> None:
        super().__init__(URL(urls[0]), **kwargs)
        self.urls = [URL(u) for u in urls]
        self._next = random.randrange(len(self.urls))

    async def _RobustConnection__connect_transport(self) -> None:
        last: BaseException | None = None
        for _ in range(len(self.urls)):
            index = self._next
            self._next = (index + 1) % len(self.urls)
            self.url = self.urls[index]
            try:
                await _ATTEMPT(self)
            except Exception as exc:  # refused, timed out, or the node could not restore our channels
                last = exc
                if len(self.urls) > 1:
                    log.warning("broker node unavailable", host=node_of(self.url), error=type(exc).__name__)
                continue
            if len(self.urls) > 1:
                log.info("broker connected", host=node_of(self.url))
            return
        assert last is not None
        raise last


_ATTEMPT = getattr(RobustConnection, "_RobustConnection__connect_transport", None)
if _ATTEMPT is None:  # pragma: no cover - a different aio-pika: fail at start, not at the first failover
    raise ImportError("shared.messaging.FailoverConnection needs aio-pika's RobustConnection.__connect_transport (>= 10.2)")


@asynccontextmanager
async def connection(url: str, name: str) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    """A robust connection to the broker at ``url``: one address, or several comma-separated
    (the nodes of a cluster; see :class:`FailoverConnection`)."""
    # Reconnect every second (not aio-pika's 5 s): the gateway holds widget opens in the database meanwhile.
    conn = FailoverConnection(broker_urls(url), client_properties={"connection_name": name}, reconnect_interval=1)
    try:
        await conn.connect(timeout=CONNECT_TIMEOUT)
    except BaseException:
        await conn.close()
        raise
    try:
        yield conn
    finally:
        await conn.close()


def event_message(event: Event, headers: dict[str, int | str] | None = None, *,
                  secrets: Secrets | None = None) -> aio_pika.Message:
    return events_message([event], headers, secrets=secrets)


def events_message(events: Sequence[Event], headers: dict[str, int | str] | None = None, *,
                   secrets: Secrets | None = None) -> aio_pika.Message:
    """One persistent message carrying ``events`` (all of one type); each keeps its own id.

    A single event travels as itself (its id is the message id); several as a JSON array,
    under a message id of their own. Batching is the transport's business: consumers
    settle every event on its own (see :mod:`shared.consumer`). ``secrets`` (the key ring)
    seals the access tokens of ``widget.opened`` events (:func:`shared.events.encode`)."""
    first = events[0]
    return aio_pika.Message(
        body=encode(events, secrets=secrets),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        type=first.event_type,
        message_id=str(first.event_id) if len(events) == 1 else uuid4().hex,
        correlation_id=first.correlation_id if len(events) == 1 else None,
        timestamp=first.occurred_at,
        headers=headers or {},
    )


class Publisher:
    """Publishes events and waits for the broker's confirm (bounded); unroutable messages raise.
    With ``secrets`` (the key ring) it may publish ``widget.opened`` events: their access tokens sealed."""

    def __init__(self, exchange: AbstractExchange, *, timeout: float = 5.0, secrets: Secrets | None = None) -> None:
        self._exchange = exchange
        self._timeout = timeout
        self._secrets = secrets

    @property
    def ready(self) -> bool:
        return not self._exchange.channel.is_closed

    async def __call__(self, event: Event, routing_key: str | None = None) -> None:
        await self.many([event], routing_key)

    async def many(self, events: Sequence[Event], routing_key: str | None = None) -> None:
        """Publish ``events`` as one message per event type (routing key: the type, unless given)
        and return once the broker confirmed every one of them."""
        by_type: dict[str, list[Event]] = {}
        for event in events:
            by_type.setdefault(event.event_type, []).append(event)
        await asyncio.gather(*(self._one(group, routing_key or event_type) for event_type, group in by_type.items()))

    def sealed(self, events: Sequence[Event]) -> list[bytes]:
        """Each event's message body as it goes on the wire (access tokens sealed): what an outbox keeps
        for :meth:`stored` to publish later, with no key ring."""
        return [encode([event], secrets=self._secrets) for event in events]

    async def stored(self, event_type: str, bodies: Sequence[bytes], headers: dict[str, int | str] | None = None) -> None:
        """Publish bodies from :meth:`sealed` (events of ``event_type``) as one message, confirmed."""
        message = aio_pika.Message(
            body=b"[" + b",".join(bodies) + b"]", content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT, type=event_type, message_id=uuid4().hex,
            headers=headers or {},
        )
        with PUBLISH_SECONDS.labels(event_type).time():
            await self._exchange.publish(message, event_type, mandatory=True, timeout=self._timeout)

    async def _one(self, events: list[Event], routing_key: str) -> None:
        with PUBLISH_SECONDS.labels(events[0].event_type).time():
            await self._exchange.publish(
                events_message(events, secrets=self._secrets), routing_key, mandatory=True, timeout=self._timeout,
            )


@asynccontextmanager
async def publisher(
    conn: aio_pika.abc.AbstractConnection, topology: Topology, *, timeout: float = 5.0, confirmed: bool = True,
    secrets: Secrets | None = None,
) -> AsyncIterator[Publisher]:
    """Publishes on a channel of its own. ``confirmed=False`` is for notifications that may be
    lost (the receiver has another way to learn the news): they are written and not waited on.
    ``secrets``: the key ring, for a publisher of widget opens (see :class:`Publisher`)."""
    channel = await conn.channel(publisher_confirms=confirmed, on_return_raises=confirmed)
    try:
        exchange = await declare(channel, topology)
        yield Publisher(exchange, timeout=timeout, secrets=secrets)
    finally:
        await channel.close()


async def tell_replicas(told: Mapping[str, Sequence[SessionResolved]], publish: Publisher) -> None:
    """One ``session.resolved.<replica>`` message to each gateway replica named, carrying what it is
    told (outcomes, ends). Best effort: the database is the truth, and a waiting stream re-reads it now
    and then, so a lost notification only costs latency; a replica gone has no queue (unroutable)."""
    async def one(replica: str, events: Sequence[SessionResolved]) -> None:
        try:
            await publish.many(events, routing_key=f"{SessionResolved.event_type}.{replica}")
        except PublishError:
            log.info("gateway replica gone; left for polling", replica=replica, sessions=len(events))
        except Exception as exc:
            log.warning("session notification failed", replica=replica, sessions=len(events), error=repr(exc))

    await asyncio.gather(*(one(replica, events) for replica, events in told.items()))
