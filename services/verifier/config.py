"""A bot's Custom Authentication settings as the verifier needs them, cached per replica.

The cache is kept true by PostgreSQL LISTEN/NOTIFY: the gateway notifies
``doorman_config_changed`` with the bot id in the transaction that changes the
settings, and every verifier replica drops that bot's entry when it commits,
well within a second. While the listening connection is down the cache is
bypassed (and emptied), so a missed notification can never serve stale
settings; a TTL bounds an entry's life as a second safety net.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from uuid import UUID

import asyncpg
import structlog

from shared.auth_config import AuthConfig, load
from shared.crypto import Secrets
from shared import db
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

    async def _notified(self, payload: str) -> None:
        try:
            bot_id = UUID(payload)
        except ValueError:
            self.invalidate()
            return
        log.info("bot settings changed", bot_id=str(bot_id))
        self.invalidate(bot_id)

    async def _up(self) -> None:
        self.invalidate()
        self.listening = True

    def _down(self) -> None:
        """Until the listener is back, a change could go unheard: the cache is bypassed."""
        self.listening = False
        self.invalidate()

    async def listen_forever(self, dsn: str) -> None:
        await db.listen_forever(dsn, CONFIG_CHANNEL, notified=self._notified, up=self._up, down=self._down,
                                name="config (cache bypassed meanwhile)")


@asynccontextmanager
async def cached_config(pool: asyncpg.Pool, secrets: Secrets, dsn: str) -> AsyncIterator[ConfigCache]:
    cache = ConfigCache(pool, secrets)
    async with background(cache.listen_forever(dsn)):
        yield cache
