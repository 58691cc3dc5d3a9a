"""Doorman as separate processes on the machine's RabbitMQ and PostgreSQL, in a namespace of its own.

Own database (``doorman_bench_<random>``, created by ``doorman.migrate``, dropped at the end) and own
queue prefix (``bench-<random>``, its queues and exchanges deleted at the end), so nothing collides
with the tests or a running Doorman. Services are configured only by DOORMAN_* variables.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aio_pika
import aiohttp
import asyncpg
from cryptography.fernet import Fernet

from doorman.migrate import migrate
from doorman.ops import all_queues
from doorman.up import wait_ready
from shared import messaging

from .procs import Child, python_child

AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_ROOT = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
HUGE = "100000000/minute"
# Set by the harness; any other DOORMAN_* variable in the harness's environment is passed through
# (e.g. DOORMAN_DB_POOL_MAX=20 python -m bench), and recorded in the results.
OWNED = {"DOORMAN_AMQP_URL", "DOORMAN_AMQP_PREFIX", "DOORMAN_DATABASE_URL", "DOORMAN_SECRET_KEY",
         "DOORMAN_ADMIN_TOKEN", "DOORMAN_GATEWAY_PORT", "DOORMAN_GATEWAY_HOST", "DOORMAN_VERIFIER_PORT",
         "DOORMAN_CONTACTS_PORT"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def overrides() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("DOORMAN_") and k not in OWNED}


@dataclass
class Stack:
    log_dir: Path
    tag: str = field(default_factory=lambda: secrets.token_hex(4))
    gateway_port: int = field(default_factory=free_port)
    admin_token: str = field(default_factory=lambda: "bench-admin-" + secrets.token_hex(12))
    secret_key: str = field(default_factory=lambda: Fernet.generate_key().decode())
    children: list[Child] = field(default_factory=list)
    pool: asyncpg.Pool | None = None
    amqp: aio_pika.abc.AbstractConnection | None = None
    channel: aio_pika.abc.AbstractChannel | None = None

    @property
    def database(self) -> str:
        return f"doorman_bench_{self.tag}"

    @property
    def database_url(self) -> str:
        return f"{PG_ROOT}/{self.database}"

    @property
    def prefix(self) -> str:
        return f"bench-{self.tag}"

    @property
    def topology(self) -> messaging.Topology:
        return messaging.Topology(self.prefix)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("DOORMAN_")}
        return {
            **base,
            "DOORMAN_ENVIRONMENT": "production", "DOORMAN_LOG_LEVEL": "warning", "DOORMAN_LOG_JSON": "true",
            "DOORMAN_ALLOW_PRIVATE_NETWORKS": "true", "DOORMAN_OUTBOUND_PORTS": "*",
            "DOORMAN_RATE_LIMIT_OPENS_PER_CLIENT": HUGE, "DOORMAN_RATE_LIMIT_OPENS_PER_BOT": HUGE,
            "DOORMAN_RATE_LIMIT_READS_PER_CLIENT": HUGE,
            # Test 1 measures accepting opens with the workers stopped (tens of thousands pending):
            # the in-flight cap would turn it into a measure of cheap busy refusals.
            "DOORMAN_ADMISSION_MAX_IN_FLIGHT": "10000000",
            **overrides(),
            "DOORMAN_AMQP_URL": AMQP_URL, "DOORMAN_AMQP_PREFIX": self.prefix,
            "DOORMAN_DATABASE_URL": self.database_url, "DOORMAN_SECRET_KEY": self.secret_key,
            "DOORMAN_ADMIN_TOKEN": self.admin_token, "DOORMAN_GATEWAY_HOST": "127.0.0.1",
            "DOORMAN_GATEWAY_PORT": str(self.gateway_port), "DOORMAN_VERIFIER_PORT": "0", "DOORMAN_CONTACTS_PORT": "0",
        }

    # -- life cycle ----------------------------------------------------------------------------

    async def setup(self) -> None:
        await migrate(self.database_url)
        self.pool = await asyncpg.create_pool(self.database_url, min_size=1, max_size=4)
        self.amqp = await aio_pika.connect(AMQP_URL, client_properties={"connection_name": f"bench-{self.tag}"})
        self.channel = await self.amqp.channel()
        await messaging.declare(self.channel, self.topology)

    async def start(self, role: str, env: dict[str, str] | None = None) -> Child:
        """Start a service process; ``env`` overrides some of its variables (a second gateway's port)."""
        child = python_child(role, ["doorman.cli", role], {**self.env(), **(env or {})}, self.log_dir)
        await child.start()
        self.children.append(child)
        return child

    def running(self, role: str) -> list[Child]:
        return [c for c in self.children if c.role == role and c.alive]

    async def stop(self, child: Child) -> None:
        await child.stop()
        if child in self.children:
            self.children.remove(child)

    async def scale(self, verifiers: int, contacts: int, timeout: float = 60.0) -> None:
        """Start or stop workers until there are exactly this many of each, consuming."""
        for role, want in (("verifier", verifiers), ("contacts", contacts)):
            have = self.running(role)
            for _ in range(want - len(have)):
                await self.start(role)
            for child in have[want:] if len(have) > want else []:
                await self.stop(child)
        await self.wait_consumers({messaging.VERIFIER_QUEUE: verifiers, messaging.CONTACTS_QUEUE: contacts}, timeout)

    async def queue_state(self, name: str) -> tuple[int, int]:
        """(messages ready, consumers) of a work queue, by a passive declare."""
        assert self.channel is not None
        q = await self.channel.declare_queue(self.topology.queue(name), passive=True)
        return q.declaration_result.message_count, q.declaration_result.consumer_count

    async def wait_consumers(self, expected: dict[str, int], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            got = {name: (await self.queue_state(name))[1] for name in expected}
            if got == expected:
                return
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not consuming: want {expected}, have {got} (logs in {self.log_dir})")
            await asyncio.sleep(0.05)

    async def wait_gateway(self, timeout: float = 60.0) -> None:
        await wait_ready(f"{self.gateway_url}/readyz", self._check_alive, timeout)

    def _check_alive(self) -> None:
        dead = [c for c in self.children if not c.alive]
        if dead:
            raise RuntimeError(f"{dead[0].role} exited with {dead[0].proc.returncode}; see {dead[0].log}")

    async def quiet(self, timeout: float = 60.0) -> bool:
        """Wait until the work queues are empty and no session of this run is pending (or the
        pending ones are the long-deadline sessions of the streams test). True when quiet."""
        assert self.pool is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = sum([(await self.queue_state(n))[0] for n in messaging.WORK_QUEUES])
            pending = await self.pool.fetchval(
                "SELECT count(*) FROM widget_sessions WHERE status = 'pending' AND deadline_at < now() + interval '1 minute'")
            if ready == 0 and pending == 0:
                return True
            await asyncio.sleep(0.2)
        return False

    async def teardown(self, keep_database: bool = False) -> None:
        await asyncio.gather(*(c.stop() for c in self.children), return_exceptions=True)
        self.children.clear()
        if self.pool is not None:
            await self.pool.close()
        if self.amqp is not None:
            try:
                channel = await self.amqp.channel()
                for queue in all_queues(self.topology):
                    await channel.queue_delete(queue)
                for exchange in (self.topology.exchange, self.topology.dead_letter_exchange):
                    await channel.exchange_delete(exchange)
            finally:
                await self.amqp.close()
        if not keep_database:
            admin = await asyncpg.connect(f"{PG_ROOT}/postgres")
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            finally:
                await admin.close()

    # -- admin API and direct set-up ---------------------------------------------------------------

    async def admin(self, method: str, path: str, body: Any) -> Any:
        async with aiohttp.ClientSession() as http:
            async with http.request(method, f"{self.gateway_url}{path}", json=body,
                                    headers={"Authorization": f"Bearer {self.admin_token}"}) as resp:
                if resp.status not in (200, 201):
                    raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
                return await resp.json()

    async def create_bot(self, name: str, auth_url: str) -> str:
        bot = await self.admin("POST", "/v1/bots", {"name": name})
        await self.set_auth_url(bot["bot_id"], auth_url)
        return bot["bot_id"]

    async def set_auth_url(self, bot_id: str, auth_url: str) -> None:
        await self.admin("PUT", f"/v1/bots/{bot_id}/custom-auth", {
            "enabled": True, "auth_url": auth_url, "header_token": "Bearer bench-header-token",
            "identify_method": "id", "request_fields": [],
            "domain_whitelist": {"enabled": False, "source": "manual", "domains": []},
        })

    async def insert_bot(self, name: str) -> UUID:
        """A bot made directly in the database (for the raw-upsert reference and inserted sessions)."""
        assert self.pool is not None
        bot_id = uuid4()
        await self.pool.execute("INSERT INTO bots (bot_id, name) VALUES ($1, $2)", bot_id, name)
        await self.pool.execute("INSERT INTO custom_auth_settings (bot_id) VALUES ($1)", bot_id)
        return bot_id

    async def insert_pending_sessions(self, bot_id: UUID, count: int, *, deadline_in: float) -> list[str]:
        assert self.pool is not None
        deadline = datetime.now(UTC) + timedelta(seconds=deadline_in)
        ids = [secrets.token_urlsafe(32) for _ in range(count)]
        await self.pool.copy_records_to_table(
            "widget_sessions", records=[(s, bot_id, deadline) for s in ids],
            columns=["session_id", "bot_id", "deadline_at"],
        )
        return ids


DB_COUNTERS = ("xact_commit", "tup_returned", "tup_fetched", "tup_inserted", "tup_updated", "tup_deleted")


class DbMeter:
    """PostgreSQL's own counters for this run's database over a phase (pg_stat_database):
    transactions (each autocommit statement is one) and rows touched, per unit of work."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self.delta: dict[str, int] = {}

    async def _sample(self) -> dict[str, int]:
        assert self._stack.pool is not None
        # Backends publish their counters when idle, at most about once a second (PostgreSQL 15).
        await asyncio.sleep(1.1)
        async with self._stack.pool.acquire() as conn:
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            row = await conn.fetchrow(
                f"SELECT {', '.join(DB_COUNTERS)} FROM pg_stat_database WHERE datname = $1", self._stack.database)
        return dict(row)

    async def __aenter__(self) -> "DbMeter":
        self._start = await self._sample()
        return self

    async def __aexit__(self, *_: object) -> None:
        end = await self._sample()
        self.delta = {k: end[k] - self._start[k] for k in DB_COUNTERS}

    def per(self, count: int) -> dict[str, float]:
        return {k: round(v / count, 2) for k, v in self.delta.items()} if count else {}
