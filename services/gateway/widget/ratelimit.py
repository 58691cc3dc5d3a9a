"""Rate limits on the public widget API, per client address and per bot (the `limits` library).

Sliding window counters, in each gateway replica's memory by default; with
``DOORMAN_RATE_LIMIT_STORAGE=redis://...`` in Redis, so every replica counts against one
budget. 429 answers carry Retry-After. When the shared storage cannot be reached the
request is let through (and logged): the limits stop floods, they are not worth refusing
every visitor for while Redis restarts.
"""

from __future__ import annotations

import ipaddress
import math
import time

import structlog
from aiohttp import web
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from shared.metrics import SESSIONS_REFUSED
from shared.routes import Response

from ..http_errors import RETRY_AFTER, Error, error

LIMITED = {429: Response("Too many requests from this client address (or for this bot); retry after `Retry-After`.",
                         Error, RETRY_AFTER)}


log = structlog.get_logger("doorman.ratelimit")
STORAGE_SCHEMES = {"memory": "async+memory", "redis": "async+redis", "rediss": "async+rediss"}
STORAGE_ERROR_LOG_EVERY = 10.0  # seconds: a Redis outage is logged, not once per request


def storage_uri(value: str) -> str:
    """Settings validation: ``memory://`` or ``redis[s]://host:port/db``, as the `limits` library names
    its async storages (``async+redis://...``)."""
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in STORAGE_SCHEMES:
        raise ValueError("must be memory:// or a redis:// (rediss://) URL like redis://127.0.0.1:6379/0")
    return f"{STORAGE_SCHEMES[scheme]}://{rest}"


class SweptMemoryStorage(MemoryStorage):
    """`limits`' in-process storage, its expired counters swept at most once every :attr:`SWEEP_EVERY` seconds.

    The library's own storage starts a sweep of every counter it holds after each hit made while no sweep
    is running, so at most one per turn of the event loop, and a busy gateway turns its loop every
    millisecond or so. Each counter is one client address (or bot) in the window, so the cost grows with
    the number of visitors: with 20,000 distinct addresses a hit cost about 1 ms of CPU, against 5 us with
    one (``tests/integration/test_rate_limit_storage.py``). A counter that has expired is also dropped when
    it is read, so the sweep only gives memory back, and once a second is enough for that. This overrides
    the library's private hook ``__schedule_expiry`` (name-mangled); the test fails if it is renamed."""

    SWEEP_EVERY = 1.0

    def __init__(self) -> None:
        super().__init__("async+memory://")
        self.swept_at = -self.SWEEP_EVERY

    async def _MemoryStorage__schedule_expiry(self) -> None:
        if (now := time.monotonic()) - self.swept_at < self.SWEEP_EVERY:
            return
        self.swept_at = now
        await super()._MemoryStorage__schedule_expiry()  # type: ignore[misc]


def storage(uri: str) -> Storage:
    if uri.startswith("memory:"):
        return SweptMemoryStorage()
    # A Redis that hangs must not hold widget opens: a counter not read in time lets the request through.
    made = storage_from_string(storage_uri(uri), connect_timeout=0.5, stream_timeout=0.5)
    assert isinstance(made, Storage)
    return made


class WidgetLimits:
    def __init__(self, *, per_client: str, per_bot: str, reads_per_client: str, trust_forwarded_for: bool,
                 storage_uri: str = "memory://") -> None:
        self.storage = storage(storage_uri)
        self._limiter = SlidingWindowCounterRateLimiter(self.storage)
        self._storage_failed_at = -STORAGE_ERROR_LOG_EVERY
        self._per_client = parse(per_client)
        self._per_bot = parse(per_bot)
        self._reads = parse(reads_per_client)
        self._trust_forwarded_for = trust_forwarded_for

    def client(self, request: web.Request) -> str:
        """The caller's address; behind a trusted proxy, the address that proxy saw (last hop), when it
        is one (anything else in the header would be a counter of the sender's choosing)."""
        if self._trust_forwarded_for and (forwarded := request.headers.get("X-Forwarded-For")):
            last = forwarded.rsplit(",", 1)[-1].strip()
            try:
                return str(ipaddress.ip_address(last))
            except ValueError:
                pass
        return request.remote or "unknown"

    async def _hit(self, item: RateLimitItem, *key: str) -> None:
        try:
            if await self._limiter.hit(item, *key):
                return
        except Exception as exc:  # the shared storage is unreachable: let the request through
            if (now := time.monotonic()) - self._storage_failed_at >= STORAGE_ERROR_LOG_EVERY:
                self._storage_failed_at = now
                log.warning("rate-limit storage unavailable; requests are not limited meanwhile", error=repr(exc))
            return
        if key[0] != "read":
            SESSIONS_REFUSED.labels("rate_limited").inc()
        stats = await self._limiter.get_window_stats(item, *key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise error(429, "rate_limited", f"too many requests; try again in {retry_after} s",
                    headers={"Retry-After": str(retry_after)})

    async def open_by_client(self, request: web.Request) -> None:
        await self._hit(self._per_client, "open", self.client(request))

    async def open_for_bot(self, bot_id: str) -> None:
        await self._hit(self._per_bot, "bot", bot_id)

    async def read_by_client(self, request: web.Request) -> None:
        await self._hit(self._reads, "read", self.client(request))


def check_limit(value: str) -> str:
    """Settings validation: ``"120/minute"``, ``"10/second"``... as the limits library reads them."""
    try:
        parse(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a rate like '120/minute'") from None
    return value
