"""Webhooks to the business, against the real services: PUT|GET /v1/bots/{bot_id}/webhook, deliveries
recorded with the change (an outbox), POSTed by the verifier's own stage, signed with a stable
Doorman-Delivery, retried with back-off, dead for good on a 4xx, and never in the way of widget opens."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from uuid import UUID

import aio_pika
import pytest

from shared import messaging, webhook_outbox
from shared.events import WebhookDue
from shared.metrics import CONSUMER_IN_FLIGHT
from shared.signing import DELIVERY, SIGNATURE, TIMESTAMP, verify
from tests.conftest import (AMQP_URL, SESSION_DEADLINE, WEBHOOK_RETRY_DELAYS, Stack, admin_headers, await_outcome,
                            create_bot, open_session)
from tests.fake_customer import Answer, FakeCustomerAPI, Recorded, verified
from tests.integration.test_batched_events import settled
from tests.integration.test_workspaces import workspace_with_key
from tests.waits import stages_idle, wait_until, webhooks_heard

ALL = ["contact.created", "contact.updated", "contact.erased", "session.fell_back"]


async def put_webhook(stack: Stack, bot_id: str, body: Any, *, headers: dict[str, str] | None = None,
                      status: int = 200) -> dict[str, Any]:
    async with stack.http.put(f"{stack.gateway.url}/v1/bots/{bot_id}/webhook", json=body,
                              headers=headers or admin_headers()) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


async def deliveries(stack: Stack, bot_id: str, **query: Any) -> dict[str, Any]:
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot_id}/webhook/deliveries", params=query,
                              headers=admin_headers()) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def no_delivery_left(stack: Stack) -> None:
    """Until no webhook delivery waits anywhere: none queued, none backing off in a retry queue, none in the
    hands of the in-process verifier's webhook stage."""
    await stages_idle(AMQP_URL, stack.config["amqp_prefix"], (messaging.WEBHOOK_QUEUE,),
                      {messaging.WEBHOOK_QUEUE: WEBHOOK_RETRY_DELAYS})


def by_type(received: list[Recorded], type_: str) -> list[Recorded]:
    return [r for r in received if isinstance(r.body, dict) and r.body.get("type") == type_]


def identity_url(customer_api: FakeCustomerAPI) -> str:
    """An Authentication URL: token `ok-<id>` is visitor <id>, anything else is rejected."""
    def answer(body: Any) -> Answer:
        token = body["access_token"]
        if token.startswith("ok-"):
            return verified(id=token[3:], name=f"Visitor {token[3:]}", email=f"{token[3:]}@example.com")
        return Answer(status=401, json={"status": False, "message": "no"})
    return customer_api.responder(answer)


async def webhook_bot(stack: Stack, customer_api: FakeCustomerAPI, hook_url: str,
                      events: list[str] = ALL) -> tuple[str, str]:
    """A bot verifying through the fake business, with its webhook on; returns (bot_id, signing secret)."""
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=identity_url(customer_api))
    made = await put_webhook(stack, bot, {"url": hook_url, "events": events, "enabled": True})
    assert made["signing_secret"].startswith("whsec_") and made["signing_secret_set"] is True
    await webhooks_heard(bot)  # the contacts service heard of it (LISTEN/NOTIFY)
    return bot, made["signing_secret"]


async def open_and_wait(stack: Stack, bot: str, token: str) -> dict[str, Any]:
    session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot, "access_token": token})
    return await await_outcome(stack.http, stack.gateway.url, session_id)


def assert_signed(secret: str, call: Recorded, bot: str, type_: str) -> dict[str, Any]:
    assert verify(secret, call.headers, call.raw), call.headers
    body = json.loads(call.raw)
    assert set(body) == {"id", "type", "occurred_at", "bot_id", "data"}
    assert call.headers[DELIVERY] == body["id"] and body["type"] == type_ and body["bot_id"] == bot
    assert call.headers["Doorman-Event"] == type_
    return body


async def test_put_and_get_make_the_signing_secret_once(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot}/webhook", headers=admin_headers()) as resp:
        assert resp.status == 200
        assert await resp.json() == {"url": None, "events": [], "enabled": False, "signing_secret_set": False,
                                     "signing_secret": None, "updated_at": None}
    off = await put_webhook(stack, bot, {"url": customer_api.endpoint(), "events": ["contact.created"], "enabled": False})
    assert off["signing_secret"] is None and off["signing_secret_set"] is False  # disabled: nothing made
    on = await put_webhook(stack, bot, {"url": customer_api.endpoint(), "events": ["contact.created"], "enabled": True})
    assert on["signing_secret"].startswith("whsec_")
    again = await put_webhook(stack, bot, {"url": on["url"], "events": ALL, "enabled": True})
    assert again["signing_secret"] is None and again["signing_secret_set"] is True and again["events"] == ALL
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot}/webhook", headers=admin_headers()) as resp:
        shown = await resp.json()
    assert shown["enabled"] is True and shown["signing_secret"] is None and on["signing_secret"] not in json.dumps(shown)
    # A bot that already has a signing secret keeps it: enabling makes none.
    other = await create_bot(stack.http, stack.gateway.url)
    async with stack.http.post(f"{stack.gateway.url}/v1/bots/{other}/custom-auth/signing-secret",
                               headers=admin_headers()) as resp:
        assert resp.status == 201
    kept = await put_webhook(stack, other, {"url": on["url"], "events": ALL, "enabled": True})
    assert kept["signing_secret"] is None and kept["signing_secret_set"] is True


@pytest.mark.parametrize(("body", "fields"), [
    ({"enabled": True, "events": ["contact.created"]}, {"url"}),
    ({"enabled": True, "url": "https://example.com/hook"}, {"events"}),
    ({"enabled": True, "url": "ftp://example.com/hook", "events": ["contact.created"]}, {"url"}),
    ({"enabled": True, "url": "https://u:p@example.com/hook", "events": ["contact.created"]}, {"url"}),
    ({"enabled": False, "url": "https://example.com/hook", "events": ["contact.deleted"]}, {"events.0"}),
    ({"enabled": False, "url": "https://example.com/hook", "events": ["contact.created", "contact.created"]},
     {"events"}),
    ({"url": "https://example.com/hook", "events": []}, {"enabled"}),
    ({"enabled": "yes please", "url": "https://example.com/hook"}, {"enabled"}),
    ({"enabled": False, "extra": 1}, {"extra"}),
    ([], {"body"}),
])
async def test_bad_bodies_are_422_with_fields(stack: Stack, body: Any, fields: set[str]) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)
    answer = await put_webhook(stack, bot, body, status=422)
    assert {f["field"] for f in answer["error"]["fields"]} == fields, answer


async def test_workspace_isolation(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    _, key_a = await workspace_with_key(stack, "hooks")
    _, key_b = await workspace_with_key(stack, "hooks")
    mine = {"Authorization": f"Bearer {key_a}"}
    theirs = {"Authorization": f"Bearer {key_b}"}
    async with stack.http.post(f"{stack.gateway.url}/v1/bots", json={"name": "a"}, headers=mine) as resp:
        bot = (await resp.json())["bot_id"]
    body = {"url": customer_api.endpoint(), "events": ALL, "enabled": True}
    made = await put_webhook(stack, bot, body, headers=mine)
    assert made["signing_secret"]
    await put_webhook(stack, bot, body, headers=theirs, status=404)
    for path in ("webhook", "webhook/deliveries"):
        async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot}/{path}", headers=theirs) as resp:
            assert resp.status == 404
        async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot}/{path}", headers=mine) as resp:
            assert resp.status == 200


async def test_every_event_type_is_delivered_and_signed(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    hook = customer_api.endpoint(Answer(json={"ok": True}))
    bot, secret = await webhook_bot(stack, customer_api, hook)
    received = lambda: customer_api.received(hook)  # noqa: E731

    first = await open_and_wait(stack, bot, "ok-alice")
    assert first["status"] == "verified"
    [created] = await wait_until(lambda: by_type(received(), "contact.created"), what="contact.created")
    body = assert_signed(secret, created, bot, "contact.created")
    assert body["data"]["contact_id"] == first["contact"]["contact_id"] and body["data"]["identifier"] == "alice"
    assert body["data"]["verified"] is True and body["data"]["email"] == "alice@example.com"

    await open_and_wait(stack, bot, "ok-alice")
    [updated] = await wait_until(lambda: by_type(received(), "contact.updated"), what="contact.updated")
    assert assert_signed(secret, updated, bot, "contact.updated")["data"]["contact_id"] == first["contact"]["contact_id"]

    fell = await open_and_wait(stack, bot, "forged")
    assert fell["status"] == "fallback"
    [fallback] = await wait_until(lambda: by_type(received(), "session.fell_back"), what="session.fell_back")
    data = assert_signed(secret, fallback, bot, "session.fell_back")["data"]
    assert data["session_id"] == fell["session_id"] and data["reason"] == "auth_rejected"

    # The visitor who fell back fills in the form: a non-verified contact is created.
    async with stack.http.post(f"{stack.gateway.url}/v1/widget/sessions/{fell['session_id']}/contact",
                               json={"name": "Bob", "email": "bob@example.com"}) as resp:
        assert resp.status in (200, 201, 202), await resp.text()
    typed = await wait_until(lambda: [r for r in by_type(received(), "contact.created")
                                      if r.body["data"]["verified"] is False], what="collected contact.created")
    assert assert_signed(secret, typed[0], bot, "contact.created")["data"]["email"] == "bob@example.com"

    # Erasing the contact (DELETE .../contacts/{id}) records contact.erased in its transaction, published after it.
    contact_id = UUID(first["contact"]["contact_id"])
    async with stack.http.delete(f"{stack.gateway.url}/v1/bots/{bot}/contacts/{contact_id}",
                                 headers=admin_headers()) as resp:
        assert resp.status == 204, await resp.text()
    # The contact's earlier deliveries (their bodies hold its personal data) are gone; contact.erased stays.
    assert await stack.pool.fetchval("SELECT array_agg(type) FROM webhook_deliveries WHERE contact_id = $1",
                                     contact_id) == ["contact.erased"]
    [erased] = await wait_until(lambda: by_type(received(), "contact.erased"), what="contact.erased")
    assert assert_signed(secret, erased, bot, "contact.erased")["data"] == {"contact_id": first["contact"]["contact_id"]}

    # alice's created and updated deliveries went with her erasure: bob's created, the fallback, the erasure remain
    log = await wait_until(lambda: _all_delivered(stack, bot, 3), what="the delivery log")
    assert sorted(d["type"] for d in log) == ["contact.created", "contact.erased", "session.fell_back"]
    assert all(d["attempts"] == 1 and d["last_error"] is None and d["delivered_at"] for d in log)
    assert len({r.headers[DELIVERY] for r in received()}) == len(received()) == 5  # one POST each


async def _all_delivered(stack: Stack, bot: str, count: int) -> list[dict[str, Any]] | None:
    found = (await deliveries(stack, bot))["deliveries"]
    return found if len(found) == count and all(d["status"] == "delivered" for d in found) else None


async def test_only_the_chosen_events_and_nothing_when_disabled(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    hook = customer_api.endpoint()
    bot, _ = await webhook_bot(stack, customer_api, hook, events=["session.fell_back"])
    await open_and_wait(stack, bot, "ok-carol")
    await open_and_wait(stack, bot, "forged")
    await wait_until(lambda: by_type(customer_api.received(hook), "session.fell_back"), what="session.fell_back")
    # Disabled: no wait for the contacts service to hear, since recording a delivery reads the webhook row itself.
    await put_webhook(stack, bot, {"url": hook, "events": ALL, "enabled": False})
    await open_and_wait(stack, bot, "ok-dave")
    await open_and_wait(stack, bot, "forged")
    # Each outcome was written in the transaction that would have recorded its delivery. A marker after them, on
    # again: its fall-back is the only other POST, so the two opens made none.
    await put_webhook(stack, bot, {"url": hook, "events": ["session.fell_back"], "enabled": True})
    await webhooks_heard(bot)
    marker = await open_and_wait(stack, bot, "forged")
    calls = await wait_until(lambda: len(customer_api.received(hook)) >= 2 and customer_api.received(hook),
                             what="the marker's fall-back")
    assert [(r.body["type"], r.body["data"]["session_id"]) for r in calls][1:] == [("session.fell_back",
                                                                                  marker["session_id"])]
    assert len((await deliveries(stack, bot))["deliveries"]) == 2


async def test_a_retry_after_a_500_carries_the_same_delivery_id(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    hook = customer_api.endpoint(Answer(status=500, json={}), Answer(status=503, json={}), Answer(json={}))
    bot, secret = await webhook_bot(stack, customer_api, hook, events=["contact.created"])
    await open_and_wait(stack, bot, "ok-erin")
    calls = await wait_until(lambda: len(customer_api.received(hook)) >= 3 and customer_api.received(hook),
                             what="three attempts")
    assert len({c.headers[DELIVERY] for c in calls}) == 1  # the same id on every attempt
    assert len({c.raw for c in calls}) == 1  # the same bytes
    for call in calls:
        assert verify(secret, call.headers, call.raw)
    [log] = await wait_until(lambda: _all_delivered(stack, bot, 1), what="delivered")
    assert log["attempts"] == 3 and log["delivery_id"] == calls[0].headers[DELIVERY]
    await no_delivery_left(stack)
    assert len(customer_api.received(hook)) == 3  # delivered: no more


async def test_a_4xx_is_dead_for_good(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    hook = customer_api.endpoint(Answer(status=410, json={}))
    bot, _ = await webhook_bot(stack, customer_api, hook, events=["contact.created"])
    await open_and_wait(stack, bot, "ok-frank")

    async def dead() -> list[dict[str, Any]] | None:
        found = (await deliveries(stack, bot))["deliveries"]
        return found if found and found[0]["status"] == "dead" else None

    [log] = await wait_until(dead, what="dead")
    assert log["attempts"] == 1 and log["last_error"] == "HTTP 410" and log["delivered_at"] is None
    await no_delivery_left(stack)
    assert len(customer_api.received(hook)) == 1  # no retry


@pytest.mark.parametrize("status", [408, 429, 500])
async def test_retried_statuses_until_dead_after_the_last_attempt(stack: Stack, customer_api: FakeCustomerAPI,
                                                                   status: int) -> None:
    hook = customer_api.endpoint(Answer(status=status, json={}))
    bot, _ = await webhook_bot(stack, customer_api, hook, events=["contact.created"])
    await open_and_wait(stack, bot, "ok-gina")
    max_attempts = stack.config["webhook_max_attempts"]

    async def dead() -> list[dict[str, Any]] | None:
        found = (await deliveries(stack, bot))["deliveries"]
        return found if found and found[0]["status"] == "dead" else None

    [log] = await wait_until(dead, timeout=20, what="dead after the last attempt")
    assert log["attempts"] == max_attempts == len(customer_api.received(hook)) and log["last_error"] == f"HTTP {status}"
    # Its copy waits in the dead-letter queue, for `doorman dlq replay verifier.webhooks`.
    topology = messaging.Topology(stack.config["amqp_prefix"])
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel()
        dlq = await channel.declare_queue(topology.dead_letter_queue(messaging.WEBHOOK_QUEUE), passive=True)
        ids = []
        while (message := await dlq.get(fail=False, no_ack=False)) is not None:
            ids.append(message.message_id)  # left unacked: back in the queue when the channel closes
        assert log["delivery_id"] in ids


async def test_deliveries_survive_a_publish_failure(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """The outbox: with the webhook queue unbound, publishing after the commit fails (unroutable); the rows
    stay, and the sweeper publishes them once it is back."""
    hook = customer_api.endpoint()
    bot, secret = await webhook_bot(stack, customer_api, hook, events=["contact.created"])
    topology = messaging.Topology(stack.config["amqp_prefix"])
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel()
        queue = await channel.declare_queue(topology.queue(messaging.WEBHOOK_QUEUE), passive=True)
        await queue.unbind(topology.exchange, routing_key=WebhookDue.event_type)
        try:
            await open_and_wait(stack, bot, "ok-hank")
            await settled(messaging.CONTACTS_QUEUE)  # its publish, after the commit, was tried (and failed)
            row = await stack.pool.fetchrow("SELECT published_at, status FROM webhook_deliveries WHERE bot_id = $1",
                                            UUID(bot))
            assert row is not None and row["published_at"] is None and row["status"] == "pending"
            assert customer_api.received(hook) == []
        finally:
            await queue.bind(topology.exchange, routing_key=WebhookDue.event_type)
    [call] = await wait_until(lambda: customer_api.received(hook), timeout=20, what="the swept delivery")
    assert assert_signed(secret, call, bot, "contact.created")["data"]["identifier"] == "hank"
    await wait_until(lambda: _all_delivered(stack, bot, 1), what="delivered")
    assert await stack.pool.fetchval("SELECT published_at IS NOT NULL FROM webhook_deliveries WHERE bot_id = $1",
                                     UUID(bot))


async def test_a_hanging_endpoint_does_not_slow_widget_opens(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """Open->outcome latency with and without a hanging webhook endpoint (the same host as the
    Authentication URL): the opens all resolve well within the visitor's deadline either way."""
    quick = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=identity_url(customer_api))

    async def opens(bot: str, n: int, tag: str) -> list[float]:
        async def one(i: int) -> float:
            started = time.monotonic()
            outcome = await open_and_wait(stack, bot, f"ok-{tag}-{i}")
            assert outcome["status"] == "verified", outcome
            return time.monotonic() - started
        return list(await asyncio.gather(*(one(i) for i in range(n))))

    before = await opens(quick, 20, "before")
    # Hangs past the webhook timeout (2 s here) on every attempt; not longer, so the fake business stops promptly.
    hanging = customer_api.endpoint(Answer(json={}, delay=8))
    noisy, _ = await webhook_bot(stack, customer_api, hanging)
    await opens(noisy, 60, "noise")  # 60+ deliveries now hang on the endpoint, filling the webhook stage
    await wait_until(lambda: len(customer_api.received(hanging)) >= 8, what="hanging deliveries")
    during_noisy = await opens(noisy, 20, "during")
    during = await opens(quick, 20, "during")
    assert len(customer_api.received(hanging)) >= 8  # the webhook stage was busy all along
    assert max(during + during_noisy) < SESSION_DEADLINE, (before, during, during_noisy)
    print(f"open->outcome p50 before {sorted(before)[10]:.3f}s, during {sorted(during)[10]:.3f}s")
    await put_webhook(stack, noisy, {"url": hanging, "events": ALL, "enabled": False})  # its retries stop


async def test_deliveries_page(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    hook = customer_api.endpoint()
    bot, _ = await webhook_bot(stack, customer_api, hook, events=["contact.created"])
    for name in ("ivy", "jack", "kim"):
        await open_and_wait(stack, bot, f"ok-{name}")
    await wait_until(lambda: _all_delivered(stack, bot, 3), what="three delivered")
    first = await deliveries(stack, bot, limit=2)
    assert len(first["deliveries"]) == 2 and first["next_cursor"]
    second = await deliveries(stack, bot, limit=2, cursor=first["next_cursor"])
    assert len(second["deliveries"]) == 1 and second["next_cursor"] is None
    ids = [d["delivery_id"] for d in first["deliveries"] + second["deliveries"]]
    assert len(set(ids)) == 3
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot}/webhook/deliveries", params={"cursor": "nope"},
                              headers=admin_headers()) as resp:
        assert resp.status == 422 and (await resp.json())["error"]["fields"][0]["field"] == "cursor"


def test_signing_keeps_identity_calls_unique_and_webhooks_stable() -> None:
    from shared.signing import sign
    one, two = sign(b"{}", ["whsec_x"]), sign(b"{}", ["whsec_x"])
    assert one[DELIVERY] != two[DELIVERY]  # identity calls: a new id per call
    a, b = sign(b"{}", ["whsec_x"], delivery="d-1"), sign(b"{}", ["whsec_x"], delivery="d-1", now=time.time() + 60)
    assert a[DELIVERY] == b[DELIVERY] == "d-1" and a[SIGNATURE] != b[SIGNATURE] and TIMESTAMP in a
    assert verify("whsec_x", a, b"{}")


async def test_a_swept_session_is_announced_as_fell_back(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """A session nobody resolved is ended by the contacts service's sweep (internal_error): its bot's webhook hears."""
    from datetime import timedelta

    from services.contacts.housekeeping import sweep
    from shared.events import utcnow
    from shared.sessions import new_replica_id, new_session_id
    from tests.conftest import Published, store_pending

    hook = customer_api.endpoint()
    bot, _ = await webhook_bot(stack, customer_api, hook, events=["session.fell_back"])
    session_id = new_session_id(new_replica_id())
    assert await store_pending(stack.pool, session_id, bot, deadline_at=utcnow() - timedelta(seconds=30))
    published = Published()
    outbox = webhook_outbox.Outbox(stack.pool, webhook_outbox.Subscriptions(stack.pool), published)  # type: ignore[arg-type]
    await sweep(stack.pool, Published(), outbox)  # type: ignore[arg-type]
    [due] = published.events
    assert isinstance(due, WebhookDue) and due.session_id == session_id and due.webhook_type == "session.fell_back"
    body = json.loads(await stack.pool.fetchval("SELECT body FROM webhook_deliveries WHERE delivery_id = $1", due.event_id))
    assert body["data"]["session_id"] == session_id and body["data"]["reason"] == "internal_error"


async def test_a_dead_delivery_is_sent_again_by_a_dlq_replay(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """`doorman dlq replay verifier.webhooks`: the business fixed its endpoint; its dead deliveries go out again,
    under the same id."""
    from doorman.ops import replay
    from shared.settings import DoormanSettings

    hook = customer_api.endpoint(Answer(status=404, json={}), Answer(json={}))  # broken, then fixed
    bot, secret = await webhook_bot(stack, customer_api, hook, events=["contact.created"])
    await open_and_wait(stack, bot, "ok-lena")

    async def status_is(wanted: str) -> list[dict[str, Any]] | None:
        found = (await deliveries(stack, bot))["deliveries"]
        return found if found and found[0]["status"] == wanted else None

    [dead] = await wait_until(lambda: status_is("dead"), what="dead")
    await replay(DoormanSettings(amqp_url=AMQP_URL, amqp_prefix=stack.config["amqp_prefix"]), "verifier.webhooks")
    [delivered] = await wait_until(lambda: status_is("delivered"), what="delivered after the replay")
    assert delivered["delivery_id"] == dead["delivery_id"] and delivered["attempts"] == 2
    first, second = customer_api.received(hook)[:2]
    assert first.headers[DELIVERY] == second.headers[DELIVERY] == dead["delivery_id"]
    assert verify(secret, second.headers, second.raw)


async def retry(stack: Stack, bot: str, delivery_id: str) -> tuple[int, dict[str, Any]]:
    async with stack.http.post(f"{stack.gateway.url}/v1/bots/{bot}/webhook/deliveries/{delivery_id}/retry",
                               headers=admin_headers()) as resp:
        return resp.status, await resp.json()


async def test_a_dead_delivery_retried_through_the_api_is_delivered(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """`POST .../deliveries/{delivery_id}/retry` (the admin page's Retry button): the business fixed its endpoint;
    that one dead delivery goes out again under the same id, and only a dead one can be retried."""
    hook = customer_api.endpoint(Answer(status=404, json={}), Answer(json={}))  # broken, then fixed
    bot, secret = await webhook_bot(stack, customer_api, hook, events=["contact.created"])
    other, _ = await webhook_bot(stack, customer_api, customer_api.endpoint(Answer(json={})), events=["contact.created"])
    await open_and_wait(stack, bot, "ok-rita")

    async def status_is(wanted: str) -> list[dict[str, Any]] | None:
        found = (await deliveries(stack, bot))["deliveries"]
        return found if found and found[0]["status"] == wanted else None

    [dead] = await wait_until(lambda: status_is("dead"), what="dead")
    assert len(customer_api.received(hook)) == 1
    # Another bot's path, an unknown id, a malformed id: not found; nothing is sent.
    assert (await retry(stack, other, dead["delivery_id"]))[0] == 404
    assert (await retry(stack, bot, "00000000-0000-4000-8000-000000000000"))[1]["error"]["code"] == "delivery_not_found"
    assert (await retry(stack, bot, "not-a-uuid"))[0] == 404

    status, body = await retry(stack, bot, dead["delivery_id"])
    assert (status, body) == (202, {"delivery_id": dead["delivery_id"], "status": "pending"})
    [delivered] = await wait_until(lambda: status_is("delivered"), what="delivered after the retry")
    assert delivered["delivery_id"] == dead["delivery_id"] and delivered["attempts"] == 2
    first, second = customer_api.received(hook)
    assert first.headers[DELIVERY] == second.headers[DELIVERY] == dead["delivery_id"]
    assert second.raw == first.raw and verify(secret, second.headers, second.raw)

    # Delivered: a retry is refused, and nothing more is sent.
    status, body = await retry(stack, bot, dead["delivery_id"])
    assert status == 409 and body["error"]["code"] == "invalid_state"
    await no_delivery_left(stack)
    assert len(customer_api.received(hook)) == 2
