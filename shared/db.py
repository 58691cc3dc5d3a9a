"""PostgreSQL pool set-up shared by the services."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import structlog

log = structlog.get_logger("doorman.db")

# NOTIFYed with a bot id when its settings change (gateway); LISTENed to by every verifier.
CONFIG_CHANNEL = "doorman_config_changed"


class PooledConnection(asyncpg.Connection):
    """Pooled connections skip asyncpg's reset query (``RESET ALL``, ``UNLISTEN *``, advisory
    unlocks...) on every release: an extra round trip and transaction per checkout, measured at
    almost half of the database's transactions per widget open. Pooled connections here never
    change session state; LISTEN and advisory locks use connections of their own. An open
    transaction is still rolled back by asyncpg on release."""

    def get_reset_query(self) -> str:
        return ""


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


@asynccontextmanager
async def pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=10,
        connection_class=PooledConnection,
    ) as p:
        yield p


async def answers(p: asyncpg.Pool, timeout: float = 1.0) -> bool:
    try:
        return await p.fetchval("SELECT true", timeout=timeout) is True
    except Exception:
        return False


async def listen_forever(
    dsn: str, channel: str, *, notified: Callable[[str], Awaitable[None]], up: Callable[[], Awaitable[None]],
    down: Callable[[], None], name: str, retry: float = 1.0, ping_every: float = 15.0,
) -> None:
    """Hold a LISTEN connection on ``channel`` for ever, on a connection of its own. ``up`` runs once
    it listens (reload what may have changed meanwhile), ``notified`` for each payload, in order, and
    ``down`` whenever the connection is lost (until it is back, whatever the listener keeps must not
    be trusted). A silent network drop is found by a ping every ``ping_every`` seconds."""
    while True:
        payloads: asyncio.Queue[str | None] = asyncio.Queue()  # None: the connection ended
        try:
            conn = await asyncpg.connect(dsn)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning(f"{name} listener cannot connect", error=repr(exc))
            await asyncio.sleep(retry)
            continue
        try:
            conn.add_termination_listener(lambda _c: payloads.put_nowait(None))
            await conn.add_listener(channel, lambda _c, _pid, _ch, payload: payloads.put_nowait(payload))
            await up()
            while True:
                try:
                    payload = await asyncio.wait_for(payloads.get(), ping_every)
                except TimeoutError:
                    await conn.fetchval("SELECT 1", timeout=5)
                    continue
                if payload is None:
                    log.warning(f"{name} listener lost")
                    break
                await notified(payload)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning(f"{name} listener failed", error=repr(exc))
        finally:
            down()
            if not conn.is_closed():
                await conn.close()
