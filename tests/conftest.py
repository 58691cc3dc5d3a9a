"""Fixtures: a throwaway database and broker namespace per run, the real services, a fake business."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import aio_pika
import aiohttp
import asyncpg
import pytest
from aiohttp import web
from cryptography.fernet import Fernet

from doorman.migrate import migrate
from doorman.ops import all_queues
from services.contacts.main import running as contacts_running
from services.contacts.settings import ContactsSettings
from services.gateway.app import SERVER_OPTIONS, init_app
from services.gateway.listening import AcceptingSite
from services.gateway.settings import GatewaySettings
from services.verifier.main import running as verifier_running
from services.verifier.settings import VerifierSettings
from shared import db, messaging, sessions
from shared.logging import configure
from tests.fake_customer import FakeCustomerAPI
from tests.waits import _webhook_listeners, wait_until  # noqa: F401 (a session fixture)

ADMIN_TOKEN = "test-admin-token-" + secrets.token_hex(8)
AMQP_URL = os.environ.get("DOORMAN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_ROOT = os.environ.get("DOORMAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
AUTH_TIMEOUT = 1.0
SESSION_DEADLINE = 5.0
WEBHOOK_RETRY_DELAYS = (0.2, 0.5, 1.0)


@pytest.fixture(scope="session", autouse=True)
def _logging() -> None:
    configure("info", json=True)


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    name = f"doorman_test_{secrets.token_hex(4)}"
    url = f"{PG_ROOT}/{name}"
    await migrate(url)
    yield url
    admin = await asyncpg.connect(f"{PG_ROOT}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _delete_topology(prefix: str) -> None:
    """Every queue and exchange of ``prefix``. Each quorum queue holds a few of the broker's file handles: a
    RabbitMQ 3.10 node with the usual limit of 1,024 descriptors accepts no new connection (each waits for a
    handle) once about 300 of them exist, so a test's queues go as soon as it is done, not at the session's end."""
    await asyncio.to_thread(_delete_queues, prefix)
    async with await aio_pika.connect(AMQP_URL, timeout=30) as conn:
        channel = await conn.channel()
        topology = messaging.Topology(prefix)
        for exchange in (topology.exchange, topology.dead_letter_exchange):
            await channel.exchange_delete(exchange)


def _delete_queues(prefix: str) -> None:
    """Every queue named ``prefix.*``, whatever delays or replicas a test tuned: by ``rabbitmqctl`` on this machine's
    broker (one call, no AMQP connection needed), else the queues a default stack declares, over AMQP."""
    script = ('[rabbit_amqqueue:delete(Q, false, false, <<"tests">>) || Q <- rabbit_amqqueue:list(<<"/">>), '
              f'binary:match(element(4, amqqueue:get_name(Q)), <<"{prefix}.">>) =:= {{0, {len(prefix) + 1}}}], ok.')
    try:
        subprocess.run(["rabbitmqctl", "eval", script], check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        asyncio.run(_delete_default_queues(prefix))


async def _delete_default_queues(prefix: str) -> None:
    topology = messaging.Topology(prefix)
    async with await aio_pika.connect(AMQP_URL, timeout=30) as conn:
        channel = await conn.channel()
        for queue in [*all_queues(topology), *topology.retry_queues(messaging.WEBHOOK_QUEUE, WEBHOOK_RETRY_DELAYS)]:
            await channel.queue_delete(queue)


@asynccontextmanager
async def _prefixes() -> AsyncIterator[Callable[[], str]]:
    """Hands out fresh queue-name prefixes; deletes their queues and exchanges when it closes."""
    made: list[str] = []

    def new() -> str:
        made.append(f"test-{secrets.token_hex(4)}")
        return made[-1]

    try:
        yield new
    finally:
        for prefix in made:
            await _delete_topology(prefix)


@pytest.fixture(scope="session")
async def broker_prefix() -> AsyncIterator[Callable[[], str]]:
    """Prefixes for the session's stacks, deleted at the session's end."""
    async with _prefixes() as new:
        yield new


@pytest.fixture(scope="module")
async def module_prefix() -> AsyncIterator[Callable[[], str]]:
    """Prefixes for a module's own stack, deleted at the module's end."""
    async with _prefixes() as new:
        yield new


@pytest.fixture
async def fresh_prefix() -> AsyncIterator[Callable[[], str]]:
    """Prefixes for one test, deleted when it ends."""
    async with _prefixes() as new:
        yield new


@pytest.fixture(scope="session")
def secret_key() -> str:
    return Fernet.generate_key().decode()


@asynccontextmanager
async def serving_business() -> AsyncIterator[FakeCustomerAPI]:
    """A fake business on 127.0.0.1, on a port of its own (so a host:port of its own)."""
    api = FakeCustomerAPI()
    # An answer still hanging when the business closes is cancelled at once (aiohttp would wait up to 60 s for it).
    runner = web.AppRunner(api.app(), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    api.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield api
    finally:
        await runner.cleanup()


@pytest.fixture(scope="session")
async def customer_api() -> AsyncIterator[FakeCustomerAPI]:
    async with serving_business() as api:
        yield api


@pytest.fixture
async def business() -> AsyncIterator[FakeCustomerAPI]:
    """A business of its own for one test (its own host:port: its own call slots and circuit breakers)."""
    async with serving_business() as api:
        yield api


@pytest.fixture(scope="session")
async def session_loop() -> asyncio.AbstractEventLoop:
    """The loop the services and the fake business run on (pytest-asyncio's session loop); idle while a
    sync test (a Hypothesis test: its examples run one by one on it) runs."""
    return asyncio.get_running_loop()


def service_config(database_url: str, prefix: str, secret_key: str) -> dict[str, Any]:
    """Settings shared by every service of one stack (as keyword arguments)."""
    return {
        "environment": "test", "database_url": database_url, "amqp_url": AMQP_URL, "amqp_prefix": prefix,
        "secret_key": secret_key, "admin_token": ADMIN_TOKEN, "allow_private_networks": True,
        "outbound_ports": "*", "rate_limit_opens_per_client": "100000/minute", "rate_limit_reads_per_client": "100000/minute",
        "auth_timeout_seconds": AUTH_TIMEOUT, "session_deadline_seconds": SESSION_DEADLINE, "verifier_port": 0, "contacts_port": 0, "db_pool_max": 5,
        # One open at a time whose retries back off (a business that blinks, on purpose) reads to admission
        # control as a standing queue; its own tests drive it directly (test_widget_wait, test_admission).
        "admission_target_seconds": 60,
        # Webhook deliveries back off for seconds here, not a day.
        "webhook_retry_delays": ",".join(str(d) for d in WEBHOOK_RETRY_DELAYS), "webhook_max_attempts": 4,
        "webhook_timeout_seconds": 2,
    }


def service_env(config: dict[str, Any]) -> dict[str, str]:
    """The same settings as environment variables, for services run as processes."""
    return {**os.environ, **{f"DOORMAN_{k.upper()}": str(v) for k, v in config.items()}, "DOORMAN_LOG_JSON": "true"}


@dataclass
class Gateway:
    url: str
    app: web.Application


async def start_gateway(stack: AsyncExitStack, config: dict[str, Any]) -> Gateway:
    # In the test process itself: freezing its objects for the collector would keep every earlier test's garbage.
    app = init_app(GatewaySettings(**{**config, "gc_young_threshold": 0}))
    runner = web.AppRunner(app, access_log=None, **SERVER_OPTIONS)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await AcceptingSite(runner, "127.0.0.1", 0).start()  # the site `doorman gateway` serves on
    return Gateway(f"http://127.0.0.1:{runner.addresses[0][1]}", app)


@dataclass
class Stack:
    config: dict[str, Any]
    gateway: Gateway
    pool: asyncpg.Pool
    http: aiohttp.ClientSession


@asynccontextmanager
async def running_stack(config: dict[str, Any]) -> AsyncIterator[Stack]:
    """Gateway, verifier and contacts in this process with ``config``, on the real broker and database."""
    async with AsyncExitStack() as es:
        gateway = await start_gateway(es, config)
        await es.enter_async_context(verifier_running(VerifierSettings(**config)))
        await es.enter_async_context(contacts_running(ContactsSettings(**config)))
        pool = await es.enter_async_context(db.pool(config["database_url"], max_size=4))
        http = await es.enter_async_context(aiohttp.ClientSession())
        yield Stack(config, gateway, pool, http)


@pytest.fixture(scope="session")
async def stack(database_url: str, broker_prefix: Callable[[], str], secret_key: str) -> AsyncIterator[Stack]:
    """Gateway, verifier and contacts in this process, on the real broker and database."""
    async with running_stack(service_config(database_url, broker_prefix(), secret_key)) as running:
        yield running


@pytest.fixture(scope="session")
async def strict_stack(database_url: str, broker_prefix: Callable[[], str], secret_key: str) -> AsyncIterator[Stack]:
    """A second stack on the same database whose outbound policy refuses private networks (production's
    default): its verifier answers ``destination_blocked`` for the fake business on 127.0.0.1.

    It runs no sweepers: one deployment per database is what they assume, and this stack's would publish the
    other stack's unpublished webhook deliveries (or held widget opens) on its own broker prefix, to a worker that
    refuses 127.0.0.1."""
    config = {**service_config(database_url, broker_prefix(), secret_key), "allow_private_networks": False,
              "contacts_sweepers": False, "gateway_sweepers": False}
    async with running_stack(config) as running:
        yield running


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def create_bot(http: aiohttp.ClientSession, gateway_url: str, **custom_auth: Any) -> str:
    """A new bot; with ``custom_auth`` given, its settings are PUT too."""
    async with http.post(f"{gateway_url}/v1/bots", json={"name": "test bot"}, headers=admin_headers()) as resp:
        assert resp.status == 201, await resp.text()
        bot_id = (await resp.json())["bot_id"]
    if custom_auth:
        async with http.put(f"{gateway_url}/v1/bots/{bot_id}/custom-auth", json=custom_auth, headers=admin_headers()) as resp:
            assert resp.status == 200, await resp.text()
    return bot_id


async def open_session(http: aiohttp.ClientSession, gateway_url: str, body: dict[str, Any], origin: str | None = None) -> str:
    headers = {"Origin": origin} if origin else {}
    async with http.post(f"{gateway_url}/v1/widget/sessions", json=body, headers=headers) as resp:
        assert resp.status == 202, await resp.text()
        data = await resp.json()
    assert data["status"] == "pending"
    return data["session_id"]


async def store_pending(pool: asyncpg.Pool, session_id: str, bot_id: Any, *, deadline_at: datetime) -> bool:
    """A pending session written straight to the database, as a gateway would open it."""
    new = sessions.NewSession(session_id=session_id, bot_id=UUID(str(bot_id)), origin=None, deadline_at=deadline_at)
    return session_id in await sessions.open_sessions(pool, [new])


async def await_outcome(http: aiohttp.ClientSession, gateway_url: str, session_id: str, timeout: float = 15) -> dict[str, Any]:
    """Read the session's SSE stream: exactly one ``outcome`` event, then the stream ends."""
    events: list[tuple[str, str]] = []
    event_name = ""
    async with http.get(f"{gateway_url}/v1/widget/sessions/{session_id}/events",
                        timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for raw in resp.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event_name = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                events.append((event_name, line.partition(":")[2].strip()))
    assert [name for name, _ in events] == ["outcome"], events
    return json.loads(events[0][1])


async def verify_once(stack: Stack, bot_id: str, *, origin: str | None = None, **fields: Any) -> dict[str, Any]:
    session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot_id, **fields}, origin=origin)
    return await await_outcome(stack.http, stack.gateway.url, session_id)


async def logged_detail(stack: Stack, bot_id: str, session_id: str) -> str | None:
    """The session's precise ``detail`` as the admin activity log shows it (the widget's view carries only a
    visitor-safe message chosen by the reason)."""
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot_id}/auth-events", params={"limit": "100"},
                              headers=admin_headers()) as resp:
        assert resp.status == 200, await resp.text()
        [event] = [e for e in (await resp.json())["events"] if e["session_id"] == session_id]
    return event["detail"]


class Published:
    """Stands in for the publisher where a test calls a handler directly (no broker): records events."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.routing_keys: list[str | None] = []

    async def __call__(self, event: Any, routing_key: str | None = None) -> None:
        self.events.append(event)
        self.routing_keys.append(routing_key)

    async def many(self, events: Any, routing_key: str | None = None) -> None:
        for event in events:
            await self(event, routing_key)


async def wait_for_consumers(prefix: str, expected: dict[str, int], timeout: float = 30) -> None:
    """Until each named work queue has exactly the expected number of consumers."""
    topology = messaging.Topology(prefix)
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel()
        await messaging.declare(channel, topology)

        async def as_expected() -> bool:
            found = {}
            for name in expected:
                q = await channel.declare_queue(topology.queue(name), passive=True)
                found[name] = q.declaration_result.consumer_count
            return found == expected

        await wait_until(as_expected, timeout, f"consumers {expected}")


async def wait_ready(url: str, timeout: float = 30) -> None:
    """Until a gateway process answers /readyz with 200."""
    async with aiohttp.ClientSession() as http:
        async def ready() -> bool:
            try:
                async with http.get(f"{url}/readyz") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(ready, timeout, f"{url}/readyz to answer 200")
