"""Group commit: many concurrent callers, one round trip.

A :class:`Batcher` takes items from concurrent callers and hands them to its ``flush``
function together. Nothing waits on a clock: the first item after a quiet spell is
flushed at once; items that arrive while ``max_in_flight`` flushes are running wait
for the next free flush and go together (up to ``max_weight``). Under light load each
call costs one round trip, as before; under heavy load one round trip serves hundreds,
which is what lets a pipeline of confirmed publishes and committed writes keep up.
Each caller gets its own item's result, or the exception its flush raised.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from shared.metrics import BATCH_ITEMS

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[list[T]], Awaitable[Sequence[R]]]


class Batcher(Generic[T, R]):
    def __init__(
        self, flush: Flush[T, R], *, name: str, max_weight: int = 256, max_in_flight: int = 1,
        weight: Callable[[T], int] = lambda _item: 1,
    ) -> None:
        self._flush = flush
        self._sizes = BATCH_ITEMS.labels(name)
        self._max_weight = max_weight
        self._max_in_flight = max_in_flight
        self._weight = weight
        self._waiting: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._start_flushes()
        return await future

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _start_flushes(self) -> None:
        while self._waiting and len(self._running) < self._max_in_flight:
            batch, weight = [], 0
            while self._waiting and (not batch or weight + self._weight(self._waiting[0][0]) <= self._max_weight):
                item, future = self._waiting.popleft()
                batch.append((item, future))
                weight += self._weight(item)
            self._sizes.observe(weight)
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start_flushes()

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"flush returned {len(results)} results for {len(batch)} items")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # every caller of this batch learns what went wrong
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results):
            if not future.done():  # a caller that gave up (cancelled) has no one to tell
                future.set_result(result)

    async def drain(self) -> None:
        """Wait until every item handed in so far has been flushed (for a graceful stop)."""
        while self._running or self._waiting:
            if self._running:
                await asyncio.wait(set(self._running))
            else:
                self._start_flushes()
