"""A message carrying several events: each event is settled on its own.

The batch is only the transport (``shared.messaging.events_message``): one verified, one rejected
and one that fails for good, all in one message, each get their own outcome, and only the failing
one goes to the dead-letter queue, alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID, uuid4

import aio_pika

from shared import messaging
from shared.messaging import FAILURE_HEADER
from shared.crypto import Secrets
from shared.events import Event, IdentifyMethod, Identity, IdentityVerified, WidgetOpened, decode, utcnow
from shared.metrics import CONSUMER_IN_FLIGHT
from tests.conftest import AMQP_URL, Stack, await_outcome, create_bot, store_pending
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.integration.test_failures import dead_letters
from tests.waits import wait_until


async def publish_one_message(stack: Stack, events: Sequence[Event]) -> None:
    """``events`` in ONE message to the events exchange (routing key: their type), broker-confirmed."""
    topology = messaging.Topology(stack.config["amqp_prefix"])
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.exchange)
        await exchange.publish(messaging.events_message(events, secrets=Secrets(stack.config["secret_key"])),
                               routing_key=events[0].event_type, mandatory=True)


async def purge_dead_letters(stack: Stack, queue: str) -> None:
    """Start from an empty dead-letter queue (the stack is shared with other tests)."""
    topology = messaging.Topology(stack.config["amqp_prefix"])
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel()
        dlq = await channel.declare_queue(topology.dead_letter_queue(queue), passive=True)
        await dlq.purge()


async def settled(queue: str, timeout: float = 10) -> None:
    """Until the in-process consumer of ``queue`` holds no message (each acked after every event of
    it was settled, dead-letter copies confirmed included)."""
    gauge = CONSUMER_IN_FLIGHT.labels(queue)
    await wait_until(lambda: gauge._value.get() == 0, timeout, f"{queue} to hold no message in flight")


async def pending_sessions(stack: Stack, bots: Sequence[str]) -> list[str]:
    deadline = utcnow() + timedelta(seconds=30)
    ids = []
    for bot in bots:
        session_id = f"batched-{uuid4()}"
        assert await store_pending(stack.pool, session_id, bot, deadline_at=deadline)
        ids.append(session_id)
    return ids


async def test_each_widget_open_of_one_message_gets_its_own_outcome(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    verifying_url = customer_api.endpoint(verified(id="batch-ok", name="Batch Verified"))
    rejecting_url = customer_api.endpoint(Answer(status=401, body=b"no", content_type="text/plain"))
    broken_url = customer_api.endpoint(verified(id="never"))
    verifying = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=verifying_url)
    rejecting = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=rejecting_url)
    broken = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=broken_url, header_token="t0ken")
    # As if the key that encrypted its header token had been dropped: a permanent failure.
    await stack.pool.execute("UPDATE custom_auth_settings SET header_token_cipher = $2 WHERE bot_id = $1",
                             broken, b"garbage")
    await purge_dead_letters(stack, messaging.VERIFIER_QUEUE)

    bots = [verifying, rejecting, broken]
    sessions = await pending_sessions(stack, bots)
    events = [
        WidgetOpened(correlation_id=f"batch-{n}", session_id=session_id, bot_id=bot, access_token=f"tok-{n}",
                     deadline_at=utcnow() + timedelta(seconds=30))
        for n, (session_id, bot) in enumerate(zip(sessions, bots))
    ]
    await publish_one_message(stack, events)

    ok, rejected, failed = [await await_outcome(stack.http, stack.gateway.url, s) for s in sessions]
    assert ok["status"] == "verified" and ok["contact"]["name"] == "Batch Verified", ok
    assert (rejected["status"], rejected["fallback"]["reason"]) == ("fallback", "auth_rejected"), rejected
    assert (failed["status"], failed["fallback"]["reason"]) == ("fallback", "internal_error"), failed
    # Each business was asked once, with its own visitor's token; the broken bot's never.
    assert [r.body["access_token"] for r in customer_api.received(verifying_url)] == ["tok-0"]
    assert [r.body["access_token"] for r in customer_api.received(rejecting_url)] == ["tok-1"]
    assert customer_api.received(broken_url) == []

    await settled(messaging.VERIFIER_QUEUE)
    [dead] = await dead_letters(stack.config["amqp_prefix"], messaging.VERIFIER_QUEUE)
    [dead_event] = decode(dead.type or "", dead.body, secrets=Secrets(stack.config["secret_key"]))  # the failing event alone, not the batch
    assert (dead_event.session_id, dead_event.event_id) == (events[2].session_id, events[2].event_id)
    assert dead.message_id == str(events[2].event_id)
    assert dead.headers.get(FAILURE_HEADER)


async def test_one_message_of_verified_identities_resolves_every_session(stack: Stack) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)
    visitors = ["ann", "bob", "cat", "ann"]  # "ann" twice: two sessions of one visitor, one contact
    sessions = await pending_sessions(stack, [bot] * len(visitors))
    now = utcnow()
    events = [
        IdentityVerified(correlation_id=f"ids-{n}", session_id=session_id, bot_id=UUID(bot),
                         identify_method=IdentifyMethod.id,
                         identity=Identity(identifier=f"{visitor}-{bot}", id=f"{visitor}-{bot}",
                                           name=f"{visitor.title()} #{n}"),
                         observed_at=now + timedelta(milliseconds=n))
        for n, (session_id, visitor) in enumerate(zip(sessions, visitors))
    ]
    await publish_one_message(stack, events)

    outcomes = [await await_outcome(stack.http, stack.gateway.url, s) for s in sessions]
    assert [o["status"] for o in outcomes] == ["verified"] * len(visitors), outcomes
    assert [o["session_id"] for o in outcomes] == sessions
    contact_ids = [o["contact"]["contact_id"] for o in outcomes]
    assert contact_ids[0] == contact_ids[3] and len(set(contact_ids)) == 3

    rows = await stack.pool.fetch("SELECT identifier, name, verified FROM contacts WHERE bot_id = $1", bot)
    names = {r["identifier"].split("-")[0]: r["name"] for r in rows}
    assert names == {"ann": "Ann #3", "bob": "Bob #1", "cat": "Cat #2"}  # the newer of ann's identities wins
    assert all(r["verified"] for r in rows)
    recorded = await stack.pool.fetchval(
        "SELECT count(*) FROM processed_events WHERE event_id = ANY($1::uuid[])", [e.event_id for e in events])
    assert recorded == len(events)
