"""Waiting on a condition, not on the clock.

A test that needs something to have happened (a row written, a message consumed, a call received)
waits until it has, within a bound, and fails naming what never came; it never sleeps a guessed while.
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest

from shared.webhook_outbox import Subscriptions

POLL_SECONDS = 0.02


async def wait_until(check: Callable[[], Any], timeout: float = 10, what: str = "the condition") -> Any:
    """Until ``check()`` (a function or a coroutine function) returns something truthy; returns it.
    After ``timeout`` seconds the test fails with a ``TimeoutError`` naming ``what``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        if asyncio.get_running_loop().time() >= deadline:
            raise TimeoutError(f"{what} never came within {timeout:g} s (last seen: {found!r})")
        await asyncio.sleep(POLL_SECONDS)  # time is the subject: the pause between two looks at the condition


_listeners: weakref.WeakSet[Subscriptions] = weakref.WeakSet()


@pytest.fixture(scope="session", autouse=True)
def _webhook_listeners() -> Iterator[None]:
    """Notes every contacts service's in-memory webhook subscriptions made in this process (a spy: they behave
    as they would), so that a test can wait until they heard of a change (:func:`webhooks_heard`)."""
    made = Subscriptions.__init__

    def noting(self: Subscriptions, *args: Any, **kwargs: Any) -> None:
        made(self, *args, **kwargs)
        _listeners.add(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Subscriptions, "__init__", noting)
        yield


async def webhooks_heard(bot_id: str, timeout: float = 10) -> None:
    """Until every contacts service running in this process counts ``bot_id`` among the bots with a webhook
    enabled (it heard of the change by LISTEN/NOTIFY; one not listening counts every bot as subscribed)."""
    bot = UUID(str(bot_id))
    await wait_until(lambda: _listeners and all(s.among({bot}) == {bot} for s in _listeners), timeout,
                     f"the contacts services to hear of bot {bot_id}'s webhook")


async def stages_idle(amqp_url: str, prefix: str, queues: tuple[str, ...], delays: dict[str, tuple[float, ...]],
                      timeout: float = 10) -> None:
    """Until nothing waits for the in-process stages of ``queues`` (work-queue names): none queued, none backing
    off in a retry queue, none in a consumer's hands. What a test checks after this cannot still be on its way."""
    import aio_pika

    from shared import messaging
    from shared.metrics import CONSUMER_IN_FLIGHT

    topology = messaging.Topology(prefix)
    names = [q for name in queues for q in (topology.queue(name), *topology.retry_queues(name, delays.get(name, ())))]
    async with await aio_pika.connect(amqp_url) as conn:
        channel = await conn.channel()

        async def idle() -> bool:
            queued = [(await channel.declare_queue(q, passive=True)).declaration_result.message_count for q in names]
            return not any(queued) and all(CONSUMER_IN_FLIGHT.labels(name)._value.get() == 0 for name in queues)

        await wait_until(idle, timeout=timeout, what=f"{', '.join(queues)} idle")
