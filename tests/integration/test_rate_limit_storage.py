"""The in-process rate-limit storage costs the same with one visitor or twenty thousand.

`limits`' own async memory storage starts a sweep of every counter after each hit made while no sweep runs:
at most one per turn of the event loop, each walking every client address counted in the window. Many
visitors (or one sender spreading over many addresses) then make every widget request cost more: with 20,000
addresses about 1 ms of CPU per hit, against 5 us with one. The gateway's storage
(services/gateway/widget/ratelimit.py: SweptMemoryStorage) sweeps at most once a second; expired counters
are dropped when read anyway, so the sweep only gives memory back. Counted here in sweeps, not timed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from services.gateway.keys import LIMITS
from services.gateway.widget.ratelimit import SweptMemoryStorage
from tests.conftest import Stack, create_bot, start_gateway

OPENS = 300


def count_sweeps(storage: MemoryStorage) -> Callable[[], int]:
    """Count the sweeps that ``storage`` runs (the library's private ``__expire_events``, name-mangled)."""
    sweep = storage._MemoryStorage__expire_events  # type: ignore[attr-defined]
    runs = [0]

    async def counted() -> None:
        runs[0] += 1
        await sweep()

    storage._MemoryStorage__expire_events = counted  # type: ignore[attr-defined]
    return lambda: runs[0]


async def test_opens_from_many_addresses_sweep_the_counters_at_most_once_a_second(stack: Stack) -> None:
    config = {**stack.config, "trust_forwarded_for": True, "rate_limit_opens_per_client": "5/minute"}
    bot = await create_bot(stack.http, stack.gateway.url)
    async with AsyncExitStack() as es:
        gateway = await start_gateway(es, config)
        sweeps = count_sweeps(gateway.app[LIMITS].storage)  # type: ignore[arg-type]
        started = time.monotonic()
        for n in range(OPENS):  # one visitor per address, as on a busy site
            headers = {"X-Forwarded-For": f"198.51.{n // 250}.{n % 250 + 1}"}
            async with stack.http.post(f"{gateway.url}/v1/widget/sessions", json={"bot_id": bot},
                                       headers=headers) as resp:
                assert resp.status == 202, await resp.text()
        took = time.monotonic() - started
    assert sweeps() <= took / SweptMemoryStorage.SWEEP_EVERY + 1, (sweeps(), took)


async def _hits_with_a_turn_between(storage: MemoryStorage, hits: int) -> None:
    limiter = SlidingWindowCounterRateLimiter(storage)
    item = parse("5/minute")
    for n in range(hits):
        await limiter.hit(item, "open", f"client-{n}")
        await asyncio.sleep(0)  # time is the subject: a turn of the event loop between two requests


async def test_the_librarys_own_storage_sweeps_after_every_turn_with_a_hit() -> None:
    """The control: what the test above would count without the gateway's storage. If a release of `limits`
    changes this, this test says so, and SweptMemoryStorage may no longer be needed."""
    storage = MemoryStorage()
    sweeps = count_sweeps(storage)
    await _hits_with_a_turn_between(storage, OPENS)
    assert sweeps() >= OPENS // 2


async def test_expired_counters_still_go() -> None:
    storage = SweptMemoryStorage()
    await _hits_with_a_turn_between(storage, 50)
    assert len(storage.expirations) == 50
    for key in storage.expirations:  # as if the window had passed
        storage.expirations[key] = time.time() - 1
    storage.swept_at = -SweptMemoryStorage.SWEEP_EVERY  # and the last sweep was a while ago
    await _hits_with_a_turn_between(storage, 1)
    await asyncio.sleep(0)  # time is the subject: the turn in which the sweep's task runs
    assert len(storage.expirations) == 1  # the fresh one only


def test_the_librarys_hook_is_still_there() -> None:
    """SweptMemoryStorage overrides `limits`' private ``__schedule_expiry``; renamed, the override would do
    nothing, silently."""
    hook: Any = getattr(MemoryStorage, "_MemoryStorage__schedule_expiry", None)
    assert hook is not None and asyncio.iscoroutinefunction(hook)
    assert SweptMemoryStorage._MemoryStorage__schedule_expiry is not hook  # type: ignore[attr-defined]
