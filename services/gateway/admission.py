"""Admission control: refuse an open at once rather than let it wait past what a visitor bears.

The signal is the pipeline's own delay, measured on every outcome this replica receives
for a session it opened: open to outcome, minus the time the business's API took to
answer (a slow business is not an overloaded Doorman; :mod:`.outcomes` measures it),
plus how late this replica's event loop runs (:func:`watch_lag`): a request waits that
long before the gateway even reads it, which no outcome can show.
As in CoDel, what counts is the *minimum* over a short interval: while even the quickest
open of the last interval waited longer than ``target``, a queue has built up that the
pipeline cannot work off in time, and new opens are refused as ``fallback(busy)``, the
widget showing the Collect Information form at once. One open in ``probe_every`` is
still admitted while refusing, so the delay keeps being measured and admission resumes
as soon as the quickest open is back under the target. An interval with fewer than
``min_samples`` outcomes is not judged (one slow retry on a quiet site is not overload): the
state it found stays, until a fast outcome, or ten intervals without a single open or outcome. A replica also refuses beyond ``max_in_flight`` opens of
its own without an outcome (memory, and a pipeline that has stopped answering at all).
"""

from __future__ import annotations

import asyncio
import math
import time

from shared.metrics import ADMISSION_DELAY, ADMISSION_REFUSING


class Admission:
    def __init__(self, *, target: float, interval: float = 0.1, max_in_flight: int = 20_000,
                 probe_every: int = 8, min_samples: int = 8) -> None:
        self.target = target
        self.min_samples = min_samples
        self.interval = interval
        self.max_in_flight = max_in_flight
        self.probe_every = probe_every
        self._ends = 0.0
        self._minimum = math.inf  # the current interval's
        self._samples = 0
        self._lag = 0.0  # the current interval's worst
        self._last_lag = 0.0  # the last interval's
        self._refusing = False
        self._count = 0

    @property
    def refusing(self) -> bool:
        return self._refusing

    def observe(self, delay: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._roll(now)
        self._minimum = min(self._minimum, delay)
        self._samples += 1
        if self._refusing and delay + max(self._lag, self._last_lag) <= self.target:
            self._set(False)  # the queue is gone: no need to wait for the interval's end

    def observe_lag(self, lag: float, now: float | None = None) -> None:
        """How late the event loop ran a timer just now (seconds)."""
        self._roll(time.monotonic() if now is None else now)
        self._lag = max(self._lag, lag)

    def admit(self, in_flight: int, now: float | None = None) -> bool:
        if in_flight >= self.max_in_flight:
            return False
        self._roll(time.monotonic() if now is None else now)
        if not self._refusing:
            return True
        self._count += 1
        return self._count % self.probe_every == 0

    def _roll(self, now: float) -> None:
        if now < self._ends:
            return
        if self._samples >= self.min_samples:  # a busy interval: judge it
            ADMISSION_DELAY.set(self._minimum + self._lag)
            self._set(self._minimum + self._lag > self.target)
        elif self._lag > self.target:  # this replica itself is behind, outcomes or not
            self._set(True)
        elif now > self._ends + 10 * self.interval:  # nothing at all for a while: nothing is piling up
            self._set(False)
        self._last_lag = self._lag
        self._minimum = math.inf
        self._samples = 0
        self._lag = 0.0
        self._ends = now + self.interval

    def _set(self, refusing: bool) -> None:
        self._refusing = refusing
        ADMISSION_REFUSING.set(1 if refusing else 0)


async def watch_lag(admission: Admission, every: float = 0.025) -> None:
    """Forever: tell ``admission`` how late the event loop wakes a timer (one timer per replica)."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(every)
        admission.observe_lag(max(0.0, loop.time() - asked - every))
