"""Redeliveries change nothing and emit no second outcome; sessions that never resolve are swept."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import aio_pika


from services.contacts.handler import record
from services.contacts.housekeeping import sweep
from services.verifier.handler import already_done, decide
from services.verifier.whitelist import ApiWhitelist
from shared import messaging, sessions
from shared.auth_config import AuthConfig
from shared.crypto import Secrets
from shared.events import IdentifyMethod, WidgetOpened, utcnow
from services.verifier.outbound import outbound_client
from shared.metrics import SKIPPED
from tests.conftest import store_pending, AMQP_URL, Published, Stack, await_outcome, create_bot, logged_detail
from tests.fake_customer import FakeCustomerAPI, verified
from tests.waits import wait_until


async def test_a_redelivered_widget_open_is_not_processed_twice(stack: Stack, customer_api: FakeCustomerAPI,
                                                               secret_key: str) -> None:
    url = customer_api.endpoint(verified(id="once"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    session_id = f"redelivered-{uuid4()}"
    deadline = utcnow() + timedelta(seconds=30)
    assert await store_pending(stack.pool, session_id, bot, deadline_at=deadline)
    event = WidgetOpened(correlation_id="c", session_id=session_id, bot_id=bot, access_token="t", deadline_at=deadline)
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(messaging.Topology(stack.config["amqp_prefix"]).exchange)
        await exchange.publish(messaging.event_message(event, secrets=Secrets(secret_key)), routing_key=event.event_type)
    outcome = await await_outcome(stack.http, stack.gateway.url, session_id)
    assert outcome["status"] == "verified"

    # The broker delivers it again (here: a retry copy, as after a lost ack): the verifier sees the
    # session is resolved, calls no one and emits nothing.
    assert await already_done([event], pool=stack.pool) == {event.event_id}
    topology = messaging.Topology(stack.config["amqp_prefix"])
    skipped = SKIPPED.labels(messaging.VERIFIER_QUEUE)
    before = skipped._value.get()
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            messaging.event_message(event, {messaging.ATTEMPT_HEADER: 2}, secrets=Secrets(secret_key)),
            routing_key=topology.queue(messaging.VERIFIER_QUEUE))
    # The verifier runs in this process.
    await wait_until(lambda: skipped._value.get() != before, what="the retry copy to be skipped")
    assert len(customer_api.received(url)) == 1


async def test_two_runs_of_one_widget_open_record_one_outcome(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """Redelivered before its outcome was recorded, both runs call the business; the outcomes share an id,
    so the contacts service's inbox records the first and skips the second."""
    url = customer_api.endpoint(verified(id="twice", name="First"), verified(id="twice", name="Second"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    session_id = f"twice-{uuid4()}"
    deadline = utcnow() + timedelta(seconds=30)
    assert await store_pending(stack.pool, session_id, bot, deadline_at=deadline)
    event = WidgetOpened(correlation_id="c", session_id=session_id, bot_id=bot, access_token="t", deadline_at=deadline)
    config = AuthConfig(enabled=True, auth_url=url, header_token=None, identify_method=IdentifyMethod.id,
                        request_fields=(), whitelist_enabled=False, whitelist_source="manual", whitelist_domains=(),
                        whitelist_api_url=None)
    async with outbound_client(allow_private=True, timeout=1, max_body=65536, limit_per_host=4) as http:
        first = (await decide(event, config, http=http, whitelist=ApiWhitelist(http))).outcome
        second = (await decide(event, config, http=http, whitelist=ApiWhitelist(http))).outcome
    assert first.event_id == second.event_id

    await record([first], pool=stack.pool, publish=Published())
    await record([second], pool=stack.pool, publish=Published())

    contact = await stack.pool.fetchrow("SELECT name FROM contacts WHERE bot_id = $1", bot)
    assert contact["name"] == "First"  # the second run changed nothing


async def test_a_session_that_never_resolves_ends_in_internal_error(stack: Stack) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)
    session_id = f"lost-{uuid4()}"
    # As if the widget-opened event had been lost for good: nobody will ever resolve it.
    assert await store_pending(stack.pool, session_id, bot, deadline_at=utcnow() - timedelta(seconds=10))

    outcome = await await_outcome(stack.http, stack.gateway.url, session_id)  # the read (or the sweeper) ends it

    assert outcome["status"] == "fallback"
    assert outcome["fallback"]["reason"] == "internal_error"
    assert await logged_detail(stack, bot, session_id) == "the session was not resolved in time"
    assert await sweep(stack.pool, Published()) == 0  # nothing left to sweep: one outcome


async def test_the_sweeper_ends_overdue_sessions_and_tells_the_waiting_gateway(stack: Stack) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)
    session_id = f"overdue-{uuid4()}"
    assert await store_pending(stack.pool, session_id, bot, deadline_at=utcnow() - timedelta(seconds=10))
    await sessions.watch_session(stack.pool, session_id, "gw-waiting")
    published = Published()

    swept = await sweep(stack.pool, published)

    row = await stack.pool.fetchrow("SELECT status, reason FROM widget_sessions WHERE session_id = $1", session_id)
    assert (row["status"], row["reason"]) == ("fallback", "internal_error")
    # The stack's own contacts service sweeps every second too: whichever swept it told the watcher once.
    told = [(e.session_id, e.status, key) for e, key in zip(published.events, published.routing_keys)]
    assert swept == len(told) and (swept == 0 or told == [(session_id, "fallback", "session.resolved.gw-waiting")])
