"""``shared.batching.Batcher``: group commit without a timer.

The flush below is gated: each call records its batch and then waits until the test opens
the gate, so what is "in flight" and what arrives "during a flush" is decided by the test,
never by a clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import pytest

from shared.batching import Batcher

T = TypeVar("T")
HANG = 5.0  # seconds: not a performance bound, only how long a lost caller may hang before the test fails

class GatedFlush:
    """A flush function: records each batch, then waits until :meth:`release` lets it finish.

    Each result is ``("done", item)``; a batch holding ``"bad"`` raises :class:`Boom` instead."""

    def __init__(self, *, gated: bool = True) -> None:
        self.batches: list[list[object]] = []
        self.running = 0
        self.most_running = 0
        self._gate = asyncio.Event()
        if not gated:
            self._gate.set()

    async def __call__(self, items: Sequence[object]) -> list[object]:
        self.batches.append(list(items))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self._gate.wait()
        finally:
            self.running -= 1
        if "bad" in items:
            raise Boom(f"batch {list(items)!r} failed")
        return [("done", item) for item in items]

    def release(self) -> None:
        self._gate.set()

    def hold(self) -> None:
        self._gate.clear()


class Boom(Exception):
    pass


async def until(condition: Callable[[], bool], *, turns: int = 1000) -> None:
    """Let the loop run until ``condition`` holds (no clock: a bounded number of loop turns)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def settled(awaitable: Awaitable[T]) -> T:
    """``awaitable``'s result; a caller left hanging fails the test instead of hanging it."""
    return await asyncio.wait_for(awaitable, HANG)


def submit(batcher: Batcher, *items: object) -> list[asyncio.Task]:
    return [asyncio.create_task(batcher(item)) for item in items]


async def test_concurrent_callers_each_get_their_own_result() -> None:
    flush = GatedFlush(gated=False)
    batcher = Batcher(flush, name="test")

    results = await settled(asyncio.gather(*(batcher(n) for n in range(50))))

    assert results == [("done", n) for n in range(50)]
    assert sorted(item for batch in flush.batches for item in batch) == list(range(50))  # each flushed once


async def test_calls_during_a_flush_go_together_in_the_next_one() -> None:
    flush = GatedFlush()
    batcher = Batcher(flush, name="test")

    [first] = submit(batcher, "a")
    await until(lambda: flush.batches == [["a"]])  # "a" is flushed at once, alone: no timer
    later = submit(batcher, "b", "c", "d")
    await until(lambda: batcher.waiting == 3)
    assert flush.batches == [["a"]]  # nothing else starts while the one flush is in flight

    flush.release()
    assert await settled(first) == ("done", "a")
    assert await settled(asyncio.gather(*later)) == [("done", "b"), ("done", "c"), ("done", "d")]
    assert flush.batches == [["a"], ["b", "c", "d"]]


async def test_a_flush_carries_at_most_max_weight() -> None:
    flush = GatedFlush()
    batcher = Batcher(flush, name="test", max_weight=3)

    tasks = submit(batcher, "first")
    await until(lambda: len(flush.batches) == 1)
    tasks += submit(batcher, *range(7))
    await until(lambda: batcher.waiting == 7)
    flush.release()
    await settled(asyncio.gather(*tasks))

    assert flush.batches == [["first"], [0, 1, 2], [3, 4, 5], [6]]


async def test_weight_counts_per_item_and_a_heavy_item_still_goes_alone() -> None:
    flush = GatedFlush()
    batcher = Batcher(flush, name="test", max_weight=4, weight=len)

    tasks = submit(batcher, "x")
    await until(lambda: len(flush.batches) == 1)
    tasks += submit(batcher, "aa", "bb", "c", "heavy-item", "dd")
    await until(lambda: batcher.waiting == 5)
    flush.release()
    results = await settled(asyncio.gather(*tasks))

    assert flush.batches == [["x"], ["aa", "bb"], ["c"], ["heavy-item"], ["dd"]]
    assert results == [("done", item) for item in ("x", "aa", "bb", "c", "heavy-item", "dd")]


async def test_no_more_than_max_in_flight_flushes_run_at_once() -> None:
    flush = GatedFlush()
    batcher = Batcher(flush, name="test", max_in_flight=2)

    tasks = submit(batcher, "a")
    await until(lambda: flush.running == 1)
    tasks += submit(batcher, "b")
    await until(lambda: flush.running == 2)  # a second flush starts while the first is in flight
    tasks += submit(batcher, "c", "d")
    await until(lambda: batcher.waiting == 2)
    assert flush.running == 2 and flush.batches == [["a"], ["b"]]

    flush.release()
    assert await settled(asyncio.gather(*tasks)) == [("done", x) for x in "abcd"]
    assert flush.most_running == 2
    assert flush.batches == [["a"], ["b"], ["c", "d"]]


async def test_a_failed_flush_fails_exactly_its_own_callers() -> None:
    flush = GatedFlush()
    batcher = Batcher(flush, name="test")

    first = submit(batcher, "a")
    await until(lambda: len(flush.batches) == 1)
    failing = submit(batcher, "b", "bad")
    await until(lambda: batcher.waiting == 2)
    flush.release()
    results = await settled(asyncio.gather(*first, *failing, return_exceptions=True))

    assert flush.batches == [["a"], ["b", "bad"]]
    assert results[0] == ("done", "a")
    assert all(isinstance(r, Boom) for r in results[1:]), results
    assert results[1] is results[2]  # the flush's own exception, told to each caller of that batch

    # The batcher is not wedged: later calls are flushed and answered.
    assert await settled(asyncio.gather(batcher("c"), batcher("d"))) == [("done", "c"), ("done", "d")]


async def test_a_cancelled_caller_does_not_break_the_others() -> None:
    flush = GatedFlush()
    batcher = Batcher(flush, name="test")

    [x] = submit(batcher, "x")
    await until(lambda: flush.batches == [["x"]])
    a, b, c = submit(batcher, "a", "b", "c")
    await until(lambda: batcher.waiting == 3)
    a.cancel()  # gives up before its item is flushed
    await until(a.done)
    flush.release()  # lets the held flush of "x" finish, and only that one:
    flush.hold()
    assert await settled(x) == ("done", "x")
    await until(lambda: flush.batches == [["x"], ["a", "b", "c"]] and flush.running == 1)
    b.cancel()  # gives up while its item is being flushed
    await until(b.done)
    flush.release()

    assert await settled(c) == ("done", "c")
    for cancelled in (a, b):
        with pytest.raises(asyncio.CancelledError):
            await settled(cancelled)
    assert await settled(batcher("d")) == ("done", "d")


async def test_drain_waits_until_everything_handed_in_is_flushed() -> None:
    flush = GatedFlush()
    batcher = Batcher(flush, name="test", max_weight=2)

    tasks = submit(batcher, *range(5))
    await until(lambda: flush.running == 1 and batcher.waiting == 4)
    drained = asyncio.create_task(batcher.drain())
    for _ in range(20):  # some turns of the loop: drain must not return while the flush is held
        await asyncio.sleep(0)
    assert not drained.done()

    flush.release()
    await settled(drained)

    assert all(task.done() for task in tasks)
    assert sorted(item for batch in flush.batches for item in batch) == list(range(5))
    assert [await task for task in tasks] == [("done", n) for n in range(5)]
    assert batcher.waiting == 0


async def test_a_flush_that_answers_the_wrong_number_of_results_fails_every_caller() -> None:
    gate = asyncio.Event()

    async def short(items: list[int]) -> list[int]:
        await gate.wait()
        return items[:1]  # one result, whatever the batch

    batcher: Batcher[int, int] = Batcher(short, name="test")
    first = asyncio.ensure_future(batcher(1))  # flushed alone, at once, and held
    await asyncio.sleep(0)
    late = [asyncio.ensure_future(batcher(i)) for i in (2, 3)]  # wait together for the next flush
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.wait_for(first, HANG) == 1
    outcomes = await asyncio.wait_for(asyncio.gather(*late, return_exceptions=True), HANG)
    assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes
