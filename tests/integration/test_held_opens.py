"""The session row is the outbox of its open: with the broker path away, an open the database accepted is
answered (202, or its outcome within ``?wait``) and its event held in its row, the access token sealed; a
gateway's sweeper publishes it once the broker is back, once, and clears it. A session ended meanwhile is
never published; two sweepers share the backlog without publishing twice; admission control bounds it;
with PostgreSQL away, an open is still 503.

The broker path is cut for real: the verifier's queue is unbound from the exchange, so every publish of an
open comes back unroutable (the gateway's publisher raises, as it does when the broker is gone)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import aio_pika
import aiohttp
import asyncpg
import pytest

from doorman.migrate import migrate
from doorman.ops import RETRY_DELAYS
from services.gateway.keys import HUB, PUBLISH
from services.gateway.widget import held
from shared import messaging, sessions
from shared.crypto import Secrets
from shared.events import WidgetOpened, decode, utcnow
from tests.conftest import (
    AMQP_URL,
    PG_ROOT,
    Stack,
    await_outcome,
    create_bot,
    open_session,
    running_stack,
    service_config,
    start_gateway,
    store_pending,
)
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.waits import stages_idle, wait_until


async def fresh_database() -> str:
    url = f"{PG_ROOT}/doorman_held_{secrets.token_hex(4)}"
    await migrate(url)
    return url


async def drop_database(url: str) -> None:
    admin = await asyncpg.connect(f"{PG_ROOT}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def held_stack(module_prefix: Callable[[], str], secret_key: str) -> AsyncIterator[Stack]:
    """A stack on a database of its own: no other deployment's sweeper publishes what it holds, nor it theirs."""
    url = await fresh_database()
    try:
        async with running_stack(service_config(url, module_prefix(), secret_key)) as stack:
            yield stack
    finally:
        await drop_database(url)


def tokens_url(customer_api: FakeCustomerAPI) -> str:
    """Token `ok-<id>` is visitor <id>."""
    return customer_api.responder(lambda body: verified(id=body["access_token"][3:]) if body["access_token"].startswith(
        "ok-") else Answer(status=401, json={"status": False}))


@asynccontextmanager
async def broker_path_cut(stack: Stack) -> AsyncIterator[None]:
    """While inside: opens published to the exchange reach no queue (unroutable, so the publish raises)."""
    topology = messaging.Topology(stack.config["amqp_prefix"])
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel()
        queue = await channel.declare_queue(topology.queue(messaging.VERIFIER_QUEUE), passive=True)
        await queue.unbind(topology.exchange, routing_key=WidgetOpened.event_type)
        try:
            yield
        finally:
            await queue.bind(topology.exchange, routing_key=WidgetOpened.event_type)


async def held_body(stack: Stack, session_id: str) -> bytes | None:
    return await stack.pool.fetchval("SELECT unpublished FROM widget_sessions WHERE session_id = $1", session_id)


def tokens_called(customer_api: FakeCustomerAPI, url: str) -> Counter[str]:
    return Counter(r.body["access_token"] for r in customer_api.received(url))


async def pipeline_idle(stack: Stack) -> None:
    """Until no open is held and the verifier and contacts stages have nothing left: whatever a second copy of
    an open would do is done."""
    await wait_until(lambda: _none_held(stack), what="no open held")
    await stages_idle(AMQP_URL, stack.config["amqp_prefix"], (messaging.VERIFIER_QUEUE, messaging.CONTACTS_QUEUE),
                      RETRY_DELAYS)  # the stages' own (this stack sets none)


async def _none_held(stack: Stack) -> bool:
    return not await stack.pool.fetchval("SELECT count(*) FROM widget_sessions WHERE unpublished IS NOT NULL")


async def post_open(stack: Stack, gateway_url: str, body: dict[str, Any], wait: float | None = None) -> tuple[int, Any]:
    params = {"wait": str(wait)} if wait is not None else None
    async with stack.http.post(f"{gateway_url}/v1/widget/sessions", json=body, params=params) as resp:
        return resp.status, await resp.json()


async def test_opens_accepted_while_the_broker_path_is_cut_are_held_sealed_then_verified_once(
        held_stack: Stack, customer_api: FakeCustomerAPI, secret_key: str) -> None:
    stack = held_stack
    url = tokens_url(customer_api)
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    tokens = [f"ok-held-{i}-{secrets.token_hex(4)}" for i in range(5)]
    async with broker_path_cut(stack):
        ids = [await open_session(stack.http, stack.gateway.url, {"bot_id": bot, "access_token": t}) for t in tokens]
        waiting = asyncio.create_task(post_open(stack, stack.gateway.url, {"bot_id": bot, "access_token": tokens[0] + "w"},
                                                wait=15))
        bodies = {s: await held_body(stack, s) for s in ids}
        # For a second the sweeper tries (every 0.5 s) with the path still cut: nothing is lost, ?wait keeps waiting.
        await asyncio.sleep(1)  # time is the subject: a second of the broker path being away
        assert not waiting.done()  # ?wait keeps waiting: no outcome yet
        assert stack.gateway.app[HUB].in_flight >= len(ids)  # admission control counts them
    # Held while the path was cut: only the sealed token, which the key ring opens.
    ring = Secrets(secret_key)
    for (session_id, body), token in zip(bodies.items(), tokens, strict=True):
        assert body is not None, session_id
        assert token.encode() not in body and token[3:].encode() not in body
        [event] = json.loads(b"[" + body + b"]")
        assert event["session_id"] == session_id and set(event["access_token"]) == {"sealed"}
        assert ring.decrypt(event["access_token"]["sealed"].encode()) == token
    assert not set(tokens_called(customer_api, url)) & set(tokens)  # nothing reached the business while cut

    outcomes = [await await_outcome(stack.http, stack.gateway.url, s) for s in ids]
    assert [o["status"] for o in outcomes] == ["verified"] * len(ids), outcomes
    status, answer = await waiting
    assert status == 200 and answer["status"] == "verified", answer  # the widget's ?wait got its outcome
    assert [await held_body(stack, s) for s in ids] == [None] * len(ids)  # cleared once published
    await pipeline_idle(stack)  # a second publish would have been handled by now
    called = tokens_called(customer_api, url)
    assert all(called[t] == 1 for t in tokens), called  # published once each: one call, one outcome


async def test_an_open_ended_while_held_is_never_published(
        held_stack: Stack, customer_api: FakeCustomerAPI) -> None:
    stack = held_stack
    url = tokens_url(customer_api)
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    gone, kept = f"ok-gone-{secrets.token_hex(4)}", f"ok-kept-{secrets.token_hex(4)}"
    async with broker_path_cut(stack):
        ended = await open_session(stack.http, stack.gateway.url, {"bot_id": bot, "access_token": gone})
        later = await open_session(stack.http, stack.gateway.url, {"bot_id": bot, "access_token": kept})
        assert await held_body(stack, ended) is not None
        async with stack.http.delete(f"{stack.gateway.url}/v1/widget/sessions/{ended}") as resp:
            assert resp.status == 204
        assert await held_body(stack, ended) is None  # the end cleared it, token and all
    assert (await await_outcome(stack.http, stack.gateway.url, later))["status"] == "verified"  # the sweeper ran
    await pipeline_idle(stack)
    assert tokens_called(customer_api, url)[gone] == 0
    assert await stack.pool.fetchval("SELECT status FROM widget_sessions WHERE session_id = $1", ended) == "ended"


async def test_a_held_open_that_reached_the_broker_after_all_has_one_outcome(
        held_stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """A confirm that timed out although the broker kept the message: the open is held and the sweeper publishes
    it again. The second copy is marked replayed (the verifier skips it once the session is resolved) and the
    contacts service resolves a session only while pending: one outcome, which the second copy does not change."""
    stack = held_stack
    url = tokens_url(customer_api)
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    token = f"ok-twice-{secrets.token_hex(4)}"
    publish = stack.gateway.app[PUBLISH]
    deadline = utcnow() + timedelta(seconds=10)
    event = WidgetOpened(correlation_id="twice", session_id=f"twice-{secrets.token_urlsafe(24)}", bot_id=UUID(bot),
                         access_token=token, deadline_at=deadline)
    assert await store_pending(stack.pool, event.session_id, bot, deadline_at=deadline)
    assert await sessions.hold_unpublished(stack.pool, dict(zip([event.session_id], publish.sealed([event])))) == {
        event.session_id}
    await publish.many([event])  # the copy the broker kept; the sweeper sends the held one within half a second
    await wait_until(lambda: _cleared(stack, event.session_id), what="the held copy published (or cleared)")
    row = await wait_until(lambda: _resolved(stack, event.session_id), what="the outcome")
    await pipeline_idle(stack)  # both copies handled by now
    again = await _resolved(stack, event.session_id)
    assert row["status"] == again["status"] == "verified"
    assert again["resolved_at"] == row["resolved_at"]  # the later copy changed nothing
    assert 1 <= tokens_called(customer_api, url)[token] <= 2
    assert await stack.pool.fetchval("SELECT count(*) FROM contacts WHERE bot_id = $1", UUID(bot)) == 1


async def _cleared(stack: Stack, session_id: str) -> bool:
    return await held_body(stack, session_id) is None


async def _resolved(stack: Stack, session_id: str) -> asyncpg.Record | None:
    return await stack.pool.fetchrow(
        "SELECT status, resolved_at FROM widget_sessions WHERE session_id = $1 AND status <> 'pending'", session_id)


async def test_admission_control_bounds_the_backlog(held_stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """Held opens count as in flight: past ``admission_max_in_flight`` an open falls back as busy at once."""
    stack = held_stack
    url = tokens_url(customer_api)
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    async with AsyncExitStack() as es:
        small = await start_gateway(es, {**stack.config, "admission_max_in_flight": 3, "gateway_sweepers": False})
        async with broker_path_cut(stack):
            answers = [await post_open(stack, small.url, {"bot_id": bot, "access_token": f"ok-bound-{i}"}, wait=0.2)
                       for i in range(5)]
        assert [status for status, _ in answers] == [202, 202, 202, 200, 200], answers
        assert [(a["status"], a["fallback"]["reason"]) for _, a in answers[3:]] == [("fallback", "busy")] * 2, answers
        # The sweeper of the other gateway publishes the three it holds.
        for _, answer in answers[:3]:
            assert (await await_outcome(stack.http, stack.gateway.url, answer["session_id"]))["status"] == "verified"


async def test_two_sweepers_publish_each_held_open_once(fresh_prefix: Callable[[], str], secret_key: str) -> None:
    """Two gateways' sweepers on one database (and no other), their own broker connections, a small chunk each:
    every held open reaches the verifier's queue exactly once, marked replayed, and is cleared."""
    url = await fresh_database()
    topology = messaging.Topology(fresh_prefix())
    ring = Secrets(secret_key)
    try:
        async with AsyncExitStack() as es:
            pool = await es.enter_async_context(asyncpg.create_pool(url, min_size=2, max_size=4))
            bot = await pool.fetchval("INSERT INTO bots (bot_id, name) VALUES ($1, 'two sweepers') RETURNING bot_id", uuid4())
            publishers = []
            for name in ("a", "b"):
                conn = await es.enter_async_context(messaging.connection(AMQP_URL, f"test-sweeper-{name}"))
                publishers.append(await es.enter_async_context(messaging.publisher(conn, topology, secrets=ring)))
            deadline = utcnow() + timedelta(seconds=60)
            events = [WidgetOpened(correlation_id=f"c{i}", session_id=f"two-{i}-{secrets.token_urlsafe(24)}",
                                   bot_id=bot, access_token=f"token-{i}", deadline_at=deadline) for i in range(200)]
            await sessions.open_sessions(pool, [sessions.NewSession(e.session_id, bot, None, deadline) for e in events])
            held_ids = await sessions.hold_unpublished(
                pool, dict(zip([e.session_id for e in events], publishers[0].sealed(events), strict=True)))
            assert len(held_ids) == len(events)

            swept = await asyncio.gather(*(held.republish(pool, p, chunk=10) for p in publishers))

            assert sum(swept) == len(events) and min(swept) > 0, swept  # both took part
            consumer = await es.enter_async_context(await aio_pika.connect(AMQP_URL))
            channel = await consumer.channel()
            queue = await channel.declare_queue(topology.queue(messaging.VERIFIER_QUEUE), passive=True)
            seen: Counter[str] = Counter()
            while (message := await queue.get(fail=False, no_ack=True)) is not None:
                assert message.headers.get(messaging.REPLAYED_HEADER) == 1
                for e in decode(WidgetOpened.event_type, message.body, secrets=ring):
                    assert isinstance(e, WidgetOpened) and e.access_token is not None
                    seen[e.session_id] += 1
            assert seen == Counter({e.session_id: 1 for e in events})
            assert await pool.fetchval("SELECT count(*) FROM widget_sessions WHERE unpublished IS NOT NULL") == 0
    finally:
        await drop_database(url)


async def test_with_postgresql_away_an_open_is_refused_503(fresh_prefix: Callable[[], str], secret_key: str,
                                                           customer_api: FakeCustomerAPI) -> None:
    """Nothing to hold an open in: 503 with Retry-After, and nothing published."""
    url = await fresh_database()
    name = url.rsplit("/", 1)[1]
    config = service_config(url, fresh_prefix(), secret_key)
    admin = await asyncpg.connect(f"{PG_ROOT}/postgres")
    try:
        async with AsyncExitStack() as es:
            gateway = await start_gateway(es, config)
            http = await es.enter_async_context(aiohttp.ClientSession())
            bot = await create_bot(http, gateway.url, enabled=True, auth_url=tokens_url(customer_api))
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
            async with http.post(f"{gateway.url}/v1/widget/sessions", json={"bot_id": bot, "access_token": "ok-x"}) as resp:
                assert resp.status == 503, await resp.text()
                assert resp.headers["Retry-After"] == "1"
                assert (await resp.json())["error"]["code"] == "unavailable"
            assert gateway.app[HUB].in_flight == 0
        async with await aio_pika.connect(AMQP_URL) as conn:
            channel = await conn.channel()
            topology = messaging.Topology(config["amqp_prefix"])
            queue = await channel.declare_queue(topology.queue(messaging.VERIFIER_QUEUE), passive=True)
            assert queue.declaration_result.message_count == 0
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
        await drop_database(url)
