"""The broker holds no readable credential: a visitor's access token travels sealed with the key ring
(``DOORMAN_SECRET_KEY``), on the events exchange and in the dead-letter queue, and still verifies end to end."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from uuid import uuid4

import aio_pika
import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from pydantic_core import PydanticSerializationError

from shared import messaging
from shared.crypto import Secrets
from shared.events import WidgetOpened, decode, encode, utcnow
from tests.conftest import AMQP_URL, Stack, await_outcome, create_bot, open_session, store_pending
from tests.fake_customer import FakeCustomerAPI, verified
from tests.integration.test_batched_events import purge_dead_letters, settled
from tests.integration.test_failures import dead_letters
from tests.waits import wait_until


@asynccontextmanager
async def tapped(stack: Stack, routing_key: str) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """A queue of the test's own, bound to the events exchange: a copy of every message routed by ``routing_key``."""
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel()
        exchange = await channel.get_exchange(messaging.Topology(stack.config["amqp_prefix"]).exchange)
        tap = await channel.declare_queue(exclusive=True)
        await tap.bind(exchange, routing_key=routing_key)
        yield tap


async def message_naming(tap: aio_pika.abc.AbstractQueue, session_id: str,
                         timeout: float = 10) -> aio_pika.abc.AbstractIncomingMessage:
    """The tapped message carrying the event of ``session_id`` (alone, or in a batch)."""
    async def naming() -> aio_pika.abc.AbstractIncomingMessage | None:
        while (message := await tap.get(fail=False)) is not None:
            await message.ack()
            if session_id.encode() in message.body:
                return message
        return None

    return await wait_until(naming, timeout, "the widget.opened message")


def readable_in(message: aio_pika.abc.AbstractIncomingMessage, token: str) -> bool:
    """Whether the token's bytes are anywhere in the message: body, headers or properties."""
    return token.encode() in message.body or token in repr(message.properties)


async def test_the_access_token_never_travels_readable(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="sealed-1", name="Seal Ed"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    token = f"attack-{secrets.token_hex(16)}"

    async with tapped(stack, WidgetOpened.event_type) as tap:
        session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot, "access_token": token})
        outcome = await await_outcome(stack.http, stack.gateway.url, session_id)
        message = await message_naming(tap, session_id)

    assert not readable_in(message, token), "the access token is readable on the broker"
    # End to end: the verifier opened it and the business got it as the visitor sent it.
    assert outcome["status"] == "verified" and outcome["contact"]["name"] == "Seal Ed"
    assert [r.body["access_token"] for r in customer_api.received(url)] == [token]
    # Whoever holds the key ring reads it back (a replay works); without it, the message does not decode.
    [event] = [e for e in decode(message.type or "", message.body, secrets=Secrets(stack.config["secret_key"]))
               if e.session_id == session_id]
    assert isinstance(event, WidgetOpened) and event.access_token.get_secret_value() == token
    with pytest.raises(ValueError):
        decode(message.type or "", message.body)


async def test_a_dead_lettered_open_keeps_its_token_sealed(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="never"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, header_token="t0ken")
    # As if the key that encrypted its header token had been dropped: the verifier fails for good, dead-letters.
    await stack.pool.execute("UPDATE custom_auth_settings SET header_token_cipher = $2 WHERE bot_id = $1", bot, b"garbage")
    await purge_dead_letters(stack, messaging.VERIFIER_QUEUE)
    token = f"attack-{secrets.token_hex(16)}"

    session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot, "access_token": token})
    outcome = await await_outcome(stack.http, stack.gateway.url, session_id)

    assert (outcome["status"], outcome["fallback"]["reason"]) == ("fallback", "internal_error")
    await settled(messaging.VERIFIER_QUEUE)
    [dead] = await dead_letters(stack.config["amqp_prefix"], messaging.VERIFIER_QUEUE)
    assert session_id.encode() in dead.body and not readable_in(dead, token)


async def test_an_open_published_before_tokens_were_sealed_still_verifies(
        stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """A rolling upgrade: a gateway not yet upgraded (or a dead letter from then) sent the token as a JSON string."""
    url = customer_api.endpoint(verified(id="legacy-1"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    session_id, token = f"legacy-{uuid4()}", f"legacy-{secrets.token_hex(8)}"
    deadline = utcnow() + timedelta(seconds=30)
    assert await store_pending(stack.pool, session_id, bot, deadline_at=deadline)
    body = {"event_id": str(uuid4()), "occurred_at": utcnow().isoformat(), "correlation_id": "legacy",
            "session_id": session_id, "bot_id": bot, "access_token": token, "deadline_at": deadline.isoformat()}
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(messaging.Topology(stack.config["amqp_prefix"]).exchange)
        await exchange.publish(aio_pika.Message(json.dumps(body).encode(), type=WidgetOpened.event_type),
                               routing_key=WidgetOpened.event_type, mandatory=True)

    outcome = await await_outcome(stack.http, stack.gateway.url, session_id)

    assert outcome["status"] == "verified"
    assert [r.body["access_token"] for r in customer_api.received(url)] == [token]


def test_an_open_with_a_token_cannot_be_encoded_without_the_key_ring() -> None:
    """Nothing puts a readable token on the wire by mistake: encoding one without the key ring fails."""
    event = WidgetOpened(correlation_id="c", session_id="s", bot_id=uuid4(), access_token="plain-token",
                         deadline_at=utcnow())
    with pytest.raises(PydanticSerializationError):
        encode([event])
    assert b"plain-token" not in encode([event], secrets=Secrets(Fernet.generate_key().decode()))
    assert "plain-token" not in repr(event)


RING = Secrets(Fernet.generate_key().decode())
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                    max_leaves=6)


@given(token=JSON | st.fixed_dictionaries({"sealed": JSON}) | st.builds(lambda t: {"sealed": t},
                                                                          st.text().map(lambda t: RING.encrypt(t).decode())))
def test_any_access_token_off_the_wire_decodes_or_is_refused(token: object) -> None:
    """Whatever a message carries as the token: an event (its token opened) or a ValueError (the consumer
    dead-letters the message as undecodable), never another exception."""
    body = json.dumps({"correlation_id": "c", "session_id": "s", "bot_id": str(uuid4()), "access_token": token,
                       "deadline_at": utcnow().isoformat()}).encode()
    try:
        [event] = decode(WidgetOpened.event_type, body, secrets=RING)
    except ValueError:
        return
    assert isinstance(event, WidgetOpened)
    assert event.access_token is None or isinstance(event.access_token, SecretStr)
