"""Where the admin API sees the verifier's circuit breakers: each transition written to
``auth_breakers`` (bot, host, replica, state), off the call's path."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import structlog

from shared.service import background

from .breaker import BreakerClient, BreakerPolicy, Breakers, Transition
from .outbound import OutboundClient

log = structlog.get_logger("doorman.verifier.breaker")


def replica_id() -> str:
    """This verifier replica, as the admin API shows it: the pod's or machine's name, and a nonce."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(2)}"


_UPSERT = """
INSERT INTO auth_breakers (bot_id, host, replica, state, since, opened, detail, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, now())
ON CONFLICT (bot_id, host, replica) DO UPDATE SET
    state = EXCLUDED.state, since = EXCLUDED.since, opened = EXCLUDED.opened, detail = EXCLUDED.detail,
    updated_at = now()
"""


class BreakerLog:
    """Writes transitions to ``auth_breakers`` in order, off the call's path (a transition is rare; a
    failed write is logged and the next transition writes the state again)."""

    def __init__(self, pool: asyncpg.Pool, replica: str) -> None:
        self._pool = pool
        self.replica = replica
        self._queue: asyncio.Queue[Transition] = asyncio.Queue(maxsize=10_000)

    def __call__(self, transition: Transition) -> None:
        try:
            self._queue.put_nowait(transition)
        except asyncio.QueueFull:
            log.warning("breaker transitions not recorded: the writer is behind", host=transition.host,
                        bot_id=str(transition.bot))

    async def _write(self, t: Transition) -> None:
        try:
            await self._pool.execute(_UPSERT, t.bot, t.host, self.replica, t.state, t.since, t.opened, t.detail)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("breaker transition not recorded", host=t.host, bot_id=str(t.bot), state=t.state,
                        error=repr(exc))

    async def drain(self) -> None:
        while not self._queue.empty():
            await self._write(self._queue.get_nowait())

    async def run(self) -> None:
        while True:
            await self._write(await self._queue.get())

    async def forget_replica(self) -> None:
        """On a graceful stop this replica's breakers go with its memory."""
        try:
            await self._pool.execute("DELETE FROM auth_breakers WHERE replica = $1", self.replica)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("breaker rows of this replica not removed", error=repr(exc))


@asynccontextmanager
async def breaker_client(inner: OutboundClient, pool: asyncpg.Pool, policy: BreakerPolicy) -> AsyncIterator[BreakerClient]:
    """The guarded client for the life of the context, its transitions written as they happen."""
    record = BreakerLog(pool, replica_id())
    async with background(record.run()):
        yield BreakerClient(inner, Breakers(policy, on_transition=record))
    await record.drain()
    await record.forget_replica()
