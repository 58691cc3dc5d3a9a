"""A bot's Custom Authentication settings as the verifier needs them, cached per replica.

The cache is kept true by PostgreSQL LISTEN/NOTIFY: the gateway notifies
``doorman_config_changed`` with the bot id in the transaction that changes the
settings, and every verifier replica drops that bot's entry when it commits,
well within a second. While the listening connection is down the cache is
bypassed (and emptied), so a missed notification can never serve stale
settings; a TTL bounds an entry's life as a second safety net.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from uuid import UUID

import asyncpg
import structlog

from shared.auth_config import AuthConfig, load
from shared.crypto import Secrets
from shared.db import CONFIG_CHANNEL
from shared.service import background

log = structlog.get_logger("doorman.verifier.config")


class ConfigCache:
    def __init__(self, pool: asyncpg.Pool, secrets: Secrets, *, ttl: float = 300.0, max_entries: int = 10_000) -> None:
        self._pool = pool
        self._secrets = secrets
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: OrderedDict[UUID, tuple[float, AuthConfig | None]] = OrderedDict()
        self._generation = 0  # bumped by every invalidation; a load that raced one is not cached
        self.listening = False
        self.on_change: list[Callable[[UUID | None], None]] = []  # None: every bot

    async def get(self, bot_id: UUID) -> AuthConfig | None:
        if self.listening and (entry := self._entries.get(bot_id)) is not None and entry[0] > time.monotonic():
            self._entries.move_to_end(bot_id)
            return entry[1]
        generation = self._generation
        config = await load(self._pool, self._secrets, bot_id)
        if self.listening and generation == self._generation:
            self._entries[bot_id] = (time.monotonic() + self._ttl, config)
            self._entries.move_to_end(bot_id)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return config

    def invalidate(self, bot_id: UUID | None = None) -> None:
        self._generation += 1
        if bot_id is None:
            self._entries.clear()
        else:
            self._entries.pop(bot_id, None)
        for callback in self.on_change:
            callback(bot_id)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            bot_id = UUID(payload)
        except ValueError:
            self.invalidate()
            return
        log.info("bot settings changed", bot_id=str(bot_id))
        self.invalidate(bot_id)

    async def listen_forever(self, dsn: str, *, retry: float = 1.0) -> None:
        """Hold a LISTEN connection; reconnect when it drops (cache bypassed meanwhile)."""
        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("config listener cannot connect; cache bypassed", error=repr(exc))
                await asyncio.sleep(retry)
                continue
            try:
                conn.add_termination_listener(lambda _c: lost.set())
                await conn.add_listener(CONFIG_CHANNEL, self._notified)
                self.invalidate()
                self.listening = True
                while not lost.is_set():
                    try:
                        await asyncio.wait_for(lost.wait(), 15)
                    except TimeoutError:  # a silent network drop shows only when we ask
                        await conn.fetchval("SELECT 1", timeout=5)
                log.warning("config listener lost; cache bypassed until it reconnects")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("config listener failed; cache bypassed until it reconnects", error=repr(exc))
            finally:
                self.listening = False
                self.invalidate()
                if not conn.is_closed():
                    await conn.close()


@asynccontextmanager
async def cached_config(pool: asyncpg.Pool, secrets: Secrets, dsn: str) -> AsyncIterator[ConfigCache]:
    cache = ConfigCache(pool, secrets)
    async with background(cache.listen_forever(dsn)):
        yield cache
