"""Admission control: refuse an open at once rather than let it wait past what a visitor bears.

The signal is the pipeline's own delay, measured on every outcome this replica receives
for a session it opened: open to outcome, minus the time the business's API took to
answer (a slow business is not an overloaded Doorman; :mod:`.outcomes` measures it),
plus how late this replica's event loop runs (:func:`watch_lag`): a request waits that
long before the gateway even reads it, which no outcome can show.

As in CoDel, what counts is the *minimum* over a short interval: while even the quickest
open of an interval waited longer than ``target``, a queue has built up. Then, as in TCP's
congestion control, the replica admits opens at a rate (a token bucket) that starts
just under what the pipeline completed in that interval, shrinks by ``decrease`` while
intervals stay over the target (at most once per ``target`` + ``interval``, the time a cut
takes to show in the outcomes) and grows by ``increase`` while they are under it; the
pipeline is kept busy with a short queue instead of swinging between a long queue and an
idle one. Opens beyond the rate are refused as ``fallback(busy)``, the widget showing the
Collect Information form at once. A healthy second with the rate well above what is
completed lifts the limit. An interval with fewer than ``min_samples`` outcomes shows no
queue (one slow retry on a quiet site is not overload), unless this replica's event loop
runs later than the target: then it is behind in any case. A replica also refuses beyond
``max_in_flight`` opens of its own without an outcome (memory, and a pipeline that has
stopped answering at all).
"""

from __future__ import annotations

import asyncio
import math
import time

from shared.metrics import ADMISSION_DELAY, ADMISSION_REFUSING


class Admission:
    def __init__(self, *, target: float, interval: float = 0.1, max_in_flight: int = 20_000,
                 min_samples: int = 8, floor_rate: float = 20.0, decrease: float = 0.8,
                 increase: float = 0.1, healthy_to_lift: int = 10) -> None:
        self.target = target
        self.interval = interval
        self.max_in_flight = max_in_flight
        self.min_samples = min_samples
        self.floor_rate = floor_rate
        self.decrease = decrease
        self.increase = increase
        self.healthy_to_lift = healthy_to_lift
        self._ends = 0.0
        self._minimum = math.inf  # the current interval's quickest outcome
        self._samples = 0
        self._lag = 0.0  # the current interval's worst
        self.rate: float | None = None  # opens per second admitted; None: no limit
        self._tokens = 0.0
        self._filled = 0.0
        self._healthy = 0
        self._cut_at = -math.inf

    @property
    def refusing(self) -> bool:
        """Whether a limit is in force (some opens are being refused)."""
        return self.rate is not None

    def observe(self, delay: float, now: float | None = None) -> None:
        self._roll(time.monotonic() if now is None else now)
        self._minimum = min(self._minimum, delay)
        self._samples += 1

    def observe_lag(self, lag: float, now: float | None = None) -> None:
        """How late the event loop ran a timer just now (seconds)."""
        self._roll(time.monotonic() if now is None else now)
        self._lag = max(self._lag, lag)

    def admit(self, in_flight: int, now: float | None = None) -> bool:
        if in_flight >= self.max_in_flight:
            return False
        now = time.monotonic() if now is None else now
        self._roll(now)
        if self.rate is None:
            return True
        self._tokens = min(max(1.0, self.rate * self.interval), self._tokens + (now - self._filled) * self.rate)
        self._filled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def _roll(self, now: float) -> None:
        if now < self._ends:
            return
        completed = self._samples / self.interval  # outcomes per second in the interval just ended
        if self._samples >= self.min_samples:
            ADMISSION_DELAY.set(self._minimum + self._lag)
            self._judge(self._minimum + self._lag > self.target, completed, now)
        elif self._lag > self.target:  # this replica itself is behind, outcomes or not
            self._judge(True, completed, now)
        elif self.rate is not None:  # too few outcomes to see a queue, and the loop is on time
            self._judge(False, completed, now)
        self._minimum = math.inf
        self._samples = 0
        self._lag = 0.0
        self._ends = now + self.interval

    def _judge(self, over: bool, completed: float, now: float) -> None:
        if over:
            self._healthy = 0
            if now - self._cut_at < self.target + self.interval:
                return  # the last cut cannot show in the outcomes yet: cut once per round trip, as TCP does
            self._cut_at = now
            start = completed if self.rate is None else min(self.rate, max(completed, self.floor_rate))
            self._limit(max(self.floor_rate, start * self.decrease), now)
        elif self.rate is not None:
            self._healthy += 1
            if self._healthy >= self.healthy_to_lift and self.rate > 2 * completed:
                self._limit(None, now)  # the limit no longer binds: lift it
            else:
                self._limit(self.rate * (1 + self.increase), now)

    def _limit(self, rate: float | None, now: float) -> None:
        if self.rate is None and rate is not None:
            self._tokens, self._filled = 0.0, now
        self.rate = rate
        ADMISSION_REFUSING.set(0 if rate is None else 1)


async def watch_lag(admission: Admission, every: float = 0.025) -> None:
    """Forever: tell ``admission`` how late the event loop wakes a timer (one timer per replica)."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(every)
        admission.observe_lag(max(0.0, loop.time() - asked - every))
