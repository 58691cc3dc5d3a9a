"""Rate limits on the public widget API, per client address and per bot (the `limits` library).

Counters live in each gateway replica's memory (sliding window counters): with N
replicas behind a load balancer a client can get up to N times the limit, which is
what these limits are for (stopping floods), not exact quotas. 429 answers carry
Retry-After.
"""

from __future__ import annotations

import ipaddress
import math
import time

from aiohttp import web
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from shared.metrics import SESSIONS_REFUSED
from shared.routes import Response

from .http_errors import RETRY_AFTER, Error, error

LIMITED = {429: Response("Too many requests from this client address (or for this bot); retry after `Retry-After`.",
                         Error, RETRY_AFTER)}


class WidgetLimits:
    def __init__(self, *, per_client: str, per_bot: str, reads_per_client: str, trust_forwarded_for: bool) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
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
        if await self._limiter.hit(item, *key):
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
