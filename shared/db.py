"""PostgreSQL pool set-up shared by the services."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

# NOTIFYed with a bot id when its settings change (gateway); LISTENed to by every verifier.
CONFIG_CHANNEL = "doorman_config_changed"


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


@asynccontextmanager
async def pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=10,
    ) as p:
        yield p


async def answers(p: asyncpg.Pool, timeout: float = 1.0) -> bool:
    try:
        return await p.fetchval("SELECT true", timeout=timeout) is True
    except Exception:
        return False
