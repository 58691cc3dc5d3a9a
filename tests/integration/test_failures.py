"""Failures inside Doorman still end the session; poison messages land in the dead-letter queue."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import aio_pika
import pytest

from shared.auth_config import AuthConfig
from services.verifier.handler import decide
from services.verifier.whitelist import ApiWhitelist
from shared import messaging
from shared.crypto import Secrets
from shared.events import IdentifyMethod, WidgetOpened, encode, utcnow
from services.verifier.outbound import NO_SLOT, outbound_client
from shared.metrics import SKIPPED
from tests.conftest import (
    store_pending, AMQP_URL, Stack, admin_headers, await_outcome, create_bot, logged_detail, verify_once,
)
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.waits import wait_until


async def dead_letters(prefix: str, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    topology = messaging.Topology(prefix)
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel()
        dlq = await channel.declare_queue(topology.dead_letter_queue(queue), passive=True)
        found: list[aio_pika.abc.AbstractIncomingMessage] = []

        async def drained() -> list[aio_pika.abc.AbstractIncomingMessage]:
            while (message := await dlq.get(fail=False)) is not None:
                await message.ack()
                found.append(message)
            return found

        return await wait_until(drained, what=f"a dead letter of {queue}")


async def test_unreadable_header_token_ends_in_internal_error_and_dead_letter(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="1"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, header_token="t0ken")
    # As if the key that encrypted it had been dropped from DOORMAN_SECRET_KEY.
    await stack.pool.execute("UPDATE custom_auth_settings SET header_token_cipher = $2 WHERE bot_id = $1", bot, b"garbage")

    outcome = await verify_once(stack, bot, access_token="t")

    assert outcome["fallback"]["reason"] == "internal_error"
    [dead] = await dead_letters(stack.config["amqp_prefix"], messaging.VERIFIER_QUEUE)
    assert dead.type == "widget.opened"
    assert customer_api.received(url) == []


async def test_a_saved_header_token_that_cannot_be_sent_ends_opens_misconfigured(
    stack: Stack, customer_api: FakeCustomerAPI,
) -> None:
    """A token with a line break, saved before such tokens were refused (422): not one request goes
    out (aiohttp would refuse it; a line break would inject a header), the visitor gets the form with
    reason `misconfigured` naming the setting, and nothing is dead-lettered per visitor."""
    from shared.metrics import DEAD_LETTERS

    url = customer_api.endpoint(verified(id="never"))
    listing = customer_api.endpoint(Answer(json={"domains": ["shop.example.com"]}))
    bots = [await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, header_token="Bearer fine"),
            await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, header_token="Bearer fine",
                             domain_whitelist={"enabled": True, "source": "api", "api_url": listing})]
    cipher = Secrets(stack.config["secret_key"]).encrypt("Bearer x\r\nX-Injected: yes")
    dead_before = DEAD_LETTERS.labels(messaging.VERIFIER_QUEUE)._value.get()
    for bot in bots:
        await stack.pool.execute("UPDATE custom_auth_settings SET header_token_cipher = $2 WHERE bot_id = $1", bot, cipher)

        outcome = await verify_once(stack, bot, access_token="t", origin="https://shop.example.com")

        assert outcome["fallback"]["reason"] == "misconfigured", outcome
        assert (await logged_detail(stack, bot, outcome["session_id"]) or "").startswith("header_token: ")
        async with stack.http.post(f"{stack.gateway.url}/v1/bots/{bot}/custom-auth/test", json={"access_token": "t"},
                                   headers=admin_headers()) as resp:
            panel = await resp.json()
        assert panel["failure"]["reason"] == "misconfigured" and panel["failure"]["detail"].startswith("header_token: ")
        assert panel["visitor_outcome"]["reason"] == "misconfigured" and "save it again" in panel["failure"]["hint"]
        assert "X-Injected" not in str(panel)
    assert customer_api.received(url) == [] and customer_api.received(listing) == []
    assert DEAD_LETTERS.labels(messaging.VERIFIER_QUEUE)._value.get() == dead_before


async def test_undecodable_message_is_dead_lettered(stack: Stack) -> None:
    topology = messaging.Topology(stack.config["amqp_prefix"])
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.exchange)
        await exchange.publish(aio_pika.Message(b"{not json", type="widget.opened", message_id=str(uuid4())),
                               routing_key="widget.opened", mandatory=True)

    [dead] = await dead_letters(stack.config["amqp_prefix"], messaging.VERIFIER_QUEUE)
    assert dead.body == b"{not json"


def _config(auth_url: str) -> AuthConfig:
    return AuthConfig(enabled=True, auth_url=auth_url, header_token=None, identify_method=IdentifyMethod.id,
                      request_fields=(), whitelist_enabled=False, whitelist_source="manual", whitelist_domains=(),
                      whitelist_api_url=None)


async def test_private_destinations_refused_unless_allowed(customer_api: FakeCustomerAPI) -> None:
    event = WidgetOpened(correlation_id="c", session_id="s", bot_id=uuid4(), access_token="t",
                         deadline_at=utcnow() + timedelta(seconds=5))
    url = customer_api.endpoint(verified(id="1"))
    localhost_url = url.replace("127.0.0.1", "localhost")
    async with outbound_client(allow_private=False, timeout=1, max_body=65536, limit_per_host=4) as http:
        for target in (url, localhost_url, "http://10.0.0.1/auth", "http://169.254.169.254/latest/meta-data"):
            outcome = (await decide(event, _config(target), http=http, whitelist=ApiWhitelist(http))).outcome
            assert outcome.reason.value == "destination_blocked", target
    assert customer_api.received(url) == []
    async with outbound_client(allow_private=True, timeout=1, max_body=65536, limit_per_host=4) as http:
        outcome = (await decide(event, _config(url), http=http, whitelist=ApiWhitelist(http))).outcome
    assert outcome.event_type == "identity.verified"


async def test_dlq_replay_puts_dead_letters_back_to_work(stack: Stack, customer_api: FakeCustomerAPI, capsys) -> None:
    from doorman.ops import replay
    from shared.settings import DoormanSettings

    url = customer_api.endpoint(verified(id="replayed"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    session_id = f"replay-{uuid4()}"
    deadline = utcnow() + timedelta(seconds=30)
    assert await store_pending(stack.pool, session_id, bot, deadline_at=deadline)
    event = WidgetOpened(correlation_id="c", session_id=session_id, bot_id=bot, access_token="t", deadline_at=deadline)
    prefix = stack.config["amqp_prefix"]
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(encode([event], secrets=Secrets(stack.config["secret_key"])), type=event.event_type,
                             content_type="application/json"),
            routing_key=messaging.Topology(prefix).dead_letter_queue(messaging.VERIFIER_QUEUE),
        )

    await replay(DoormanSettings(amqp_url=AMQP_URL, amqp_prefix=prefix), messaging.VERIFIER_QUEUE)

    assert "replayed 1 message(s)" in capsys.readouterr().out
    outcome = await await_outcome(stack.http, stack.gateway.url, session_id)
    assert outcome["status"] == "verified" and len(customer_api.received(url)) == 1


async def test_a_replayed_dead_letter_of_a_resolved_session_calls_no_one(stack: Stack, customer_api: FakeCustomerAPI,
                                                                         capsys) -> None:
    """The session already ended (its fallback went out when the event was dead-lettered): replaying
    the dead letter must not call the business a second time."""
    from doorman.ops import replay
    from shared.settings import DoormanSettings

    url = customer_api.endpoint(verified(id="late-replay"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    session_id = f"replay-done-{uuid4()}"
    deadline = utcnow() + timedelta(seconds=30)
    assert await store_pending(stack.pool, session_id, bot, deadline_at=deadline)
    await stack.pool.execute("UPDATE widget_sessions SET status = 'fallback', reason = 'internal_error', "
                             "resolved_at = now() WHERE session_id = $1", session_id)
    event = WidgetOpened(correlation_id="c", session_id=session_id, bot_id=bot, access_token="t", deadline_at=deadline)
    prefix = stack.config["amqp_prefix"]
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            messaging.event_message(event, secrets=Secrets(stack.config["secret_key"])),
            routing_key=messaging.Topology(prefix).dead_letter_queue(messaging.VERIFIER_QUEUE),
        )
    skipped = SKIPPED.labels(messaging.VERIFIER_QUEUE)
    before = skipped._value.get()

    await replay(DoormanSettings(amqp_url=AMQP_URL, amqp_prefix=prefix), messaging.VERIFIER_QUEUE)

    assert "replayed 1 message(s)" in capsys.readouterr().out
    # The verifier runs in this process.
    await wait_until(lambda: skipped._value.get() != before, what="the replayed event to be skipped")
    assert customer_api.received(url) == []


async def test_queue_stats_without_the_management_api(stack: Stack) -> None:
    from doorman.ops import QueueSettings, queue_stats

    settings = QueueSettings(amqp_url=AMQP_URL, amqp_prefix=stack.config["amqp_prefix"],
                             rabbitmq_management_url="http://127.0.0.1:9")  # nothing listens there
    stats = {s.queue: s for s in await queue_stats(settings)}

    verifier = stats[messaging.Topology(stack.config["amqp_prefix"]).queue(messaging.VERIFIER_QUEUE)]
    assert verifier.consumers == 1 and verifier.unacked is None  # the stack's verifier; unacked unknown


async def test_a_hanging_business_holds_at_most_its_share_of_calls(customer_api: FakeCustomerAPI) -> None:
    """Calls to one host beyond the per-host cap fail at once (HostBusy) instead of queueing, so the
    verifier ends those opens and keeps serving other businesses."""
    import asyncio as aio

    from services.verifier.outbound import HostBusy

    hanging = customer_api.endpoint(Answer(json={}, delay=2))
    fast = customer_api.endpoint(verified(id="1"))
    async with outbound_client(allow_private=True, timeout=5, max_body=65536, limit_per_host=2) as http:
        stuck = [aio.create_task(http.request("POST", hanging, headers={}, json={})) for _ in range(2)]
        await wait_until(lambda: len(customer_api.received(hanging)) >= 2, 5, "both calls to reach the business")
        try:
            with pytest.raises(HostBusy):
                await http.request("POST", hanging, headers={}, json={})
            # Same host and port as the hanging one (the fake serves both), so it is busy too...
            with pytest.raises(HostBusy):
                await http.request("POST", fast, headers={}, json={})
        finally:
            for task in stuck:
                task.cancel()
            await aio.gather(*stuck, return_exceptions=True)
        # ...and free again once they are done.
        assert (await http.request("POST", fast, headers={}, json={})).status == 200


async def test_a_business_already_at_its_call_cap_ends_the_open_without_retries(customer_api: FakeCustomerAPI) -> None:
    """One more attempt in a moment would find the bot's own calls hanging: auth_unavailable at once, no retry
    churn; a business that blinked (timeout, 5xx) is retried instead."""
    import asyncio as aio

    hanging = customer_api.endpoint(Answer(json={}, delay=2))
    event = WidgetOpened(correlation_id="c", session_id="s", bot_id=uuid4(), access_token="t",
                         deadline_at=utcnow() + timedelta(seconds=30))
    async with outbound_client(allow_private=True, timeout=1, max_body=65536, limit_per_host=1) as http:
        stuck = aio.create_task(http.request("POST", hanging, headers={}, json={}, tenant=event.bot_id))
        await wait_until(lambda: customer_api.received(hanging), 5, "the call to reach the business")
        try:
            busy = await decide(event, _config(hanging), http=http, whitelist=ApiWhitelist(http))
        finally:
            stuck.cancel()
            await aio.gather(stuck, return_exceptions=True)
        assert busy.outcome.reason.value == "auth_unavailable" and NO_SLOT in busy.outcome.detail
        assert not busy.retry
        # Now free: the call itself times out, worth a retry.
        blinked = await decide(event, _config(hanging), http=http, whitelist=ApiWhitelist(http))
        assert blinked.retry and blinked.outcome.reason.value == "auth_unavailable"


async def test_an_open_picked_up_after_its_deadline_is_not_sent_to_the_business(
    stack: Stack, customer_api: FakeCustomerAPI,
) -> None:
    """A backlog's stale opens end at once (the visitor stopped waiting) instead of delaying the fresh ones."""
    url = customer_api.endpoint(verified(id="stale"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    session_id = f"stale-{uuid4()}"
    assert await store_pending(stack.pool, session_id, bot, deadline_at=utcnow() + timedelta(seconds=30))
    event = WidgetOpened(correlation_id="c", session_id=session_id, bot_id=bot, access_token="t",
                         deadline_at=utcnow() - timedelta(seconds=1))  # as if it waited in the queue that long
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(messaging.Topology(stack.config["amqp_prefix"]).exchange)
        await exchange.publish(messaging.event_message(event, secrets=Secrets(stack.config["secret_key"])),
                               routing_key=event.event_type, mandatory=True)

    outcome = await await_outcome(stack.http, stack.gateway.url, session_id)

    assert outcome["fallback"]["reason"] == "internal_error"
    assert await logged_detail(stack, bot, session_id) == "the session was not resolved in time"
    assert customer_api.received(url) == []
