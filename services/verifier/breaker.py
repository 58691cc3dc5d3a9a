"""A circuit breaker per bot and business host (host:port of the bot's Authentication URL), in each verifier
replica: one bot whose endpoint keeps failing stops its own calls to the host, never another bot's calls to the
same host (one bot cannot take another's capacity: docs/security.md, T3); each bot's circuit still spares the host that
bot's calls.

closed     calls go through; each one's result is counted in one-second buckets over the last
           ``window`` seconds, as :data:`.failures.VERDICTS` says: unavailable (a timeout, a connection
           error, HTTP 408/429/5xx) is a failure; any other HTTP answer (2xx, a 401/403 rejection, an answer
           that is not a valid identity) is a success; a call that was never made or whose answer could not
           be read (the host's call cap, a blocked address, a body over the bound) counts for nothing, and
           so does a cancelled call. At least ``min_failures`` failures that are at least ``failure_ratio``
           of the calls: open.
open       no call is made: :class:`CircuitOpen`, a failure of kind ``circuit_open`` (``auth_unavailable``
           at once, no retry: :mod:`.failures`).
half_open  after ``open_seconds``, one call (the probe) goes through, the others are still refused;
           the probe succeeding closes the circuit, failing opens it again for ``open_seconds``.

A breaker nothing happened to for ``window_seconds + open_seconds`` (no call admitted or counted, no probe in
flight) is forgotten, so memory holds only the pairs in use: a closed one's window is empty by then (forgetting it
changes nothing); an open one's failures are older than the window, so it is closed first (a transition like any
other) and the bot's next call is counted afresh.

:class:`BreakerClient` wraps the verifier's outbound client for the identity call (the composition
root passes it to ``verify``): :func:`handler.decide` calls through it as through any client, and learns of
an open circuit only as a failure of that kind. The whitelist API keeps the plain client (it has its own
last-good-list fallback), and the Testing panel, which calls with the gateway's own client, always calls.
Each transition is
counted in the metrics (``doorman_breaker_*``, labelled by host only: the gauge counts the host's
breakers, one per bot, in each state), logged, and written by :class:`~.breaker_log.BreakerLog` to the
``auth_breakers`` table, where the admin API reads the bot's own (state lives in memory; per replica is fine).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import structlog
from yarl import URL

from shared.events import utcnow
from shared.metrics import BREAKER_SHORT_CIRCUITS, BREAKER_STATE, BREAKER_TRANSITIONS, BotLabel

from .failures import VERDICTS, AuthFailure, Count, Kind, kind_of, status_kind
from .outbound import OutboundClient, OutboundResponse

log = structlog.get_logger("doorman.verifier.breaker")
State = Literal["closed", "open", "half_open"]
HOSTS = BotLabel()  # the same cap as bots: one host label per business, "other" past 200
Key = tuple[Hashable, str]  # (the bot calling, host:port)


class CircuitOpen(AuthFailure):
    """The bot's circuit for the host is open: the call was not made."""

    def __init__(self, host: str, why: str, retry_in: float) -> None:
        super().__init__(Kind.CIRCUIT_OPEN, f"the circuit breaker for {host} is open ({why}); the Authentication "
                         f"URL was not called, next probe in {max(retry_in, 0):.0f} s")
        self.host = host


@dataclass(frozen=True)
class BreakerPolicy:
    """When a bot's circuit for a host opens and for how long: the ``DOORMAN_BREAKER_*`` settings, whose
    defaults and meaning are declared once, in :class:`~.settings.VerifierSettings`."""

    window_seconds: float
    min_failures: int
    failure_ratio: float
    open_seconds: float


@dataclass(frozen=True)
class Transition:
    bot: Hashable
    host: str
    state: State
    since: datetime
    opened: int  # times this breaker opened (in this replica, since it was last forgotten)
    detail: str | None


@dataclass
class _Breaker:
    last: float  # when a call was last admitted or counted
    state: State = "closed"
    buckets: deque[list[int]] = field(default_factory=deque)  # [second, calls, failures], oldest first
    opened: int = 0
    why: str = ""
    probe_at: float = 0.0  # open: when the next call may probe
    probing: bool = False  # half_open: the probe is in flight


class Breakers:
    """Every (bot, host) breaker in this replica. ``admit`` before a call (True: this call is the probe),
    ``record`` after it (failed: True/False, or None when no call was made)."""

    def __init__(self, policy: BreakerPolicy, *, on_transition: Callable[[Transition], None] = lambda t: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._on_transition = on_transition
        self._clock = clock
        self._breakers: dict[Key, _Breaker] = {}
        self._sweep_at = clock() + policy.window_seconds

    def state(self, bot: Hashable, host: str) -> State:
        entry = self._breakers.get((bot, host))
        return entry.state if entry else "closed"

    def admit(self, bot: Hashable, host: str) -> bool:
        """Whether the bot's call may go (True: it is the half-open probe); raises :class:`CircuitOpen` if not."""
        entry = self._breakers.get((bot, host))
        if entry is None:
            return False
        now = entry.last = self._clock()
        if entry.state == "closed":
            return False
        if entry.state == "open" and now >= entry.probe_at:
            self._enter((bot, host), entry, "half_open", "probing with one call")
        if entry.state == "half_open" and not entry.probing:
            entry.probing = True
            return True
        BREAKER_SHORT_CIRCUITS.labels(HOSTS(host)).inc()
        raise CircuitOpen(host, entry.why, entry.probe_at - now)

    def record(self, bot: Hashable, host: str, *, failed: bool | None, probe: bool) -> None:
        key = (bot, host)
        self._forget_idle()
        entry = self._breakers.get(key)
        if entry is not None:
            entry.last = self._clock()
        if probe and entry is not None and entry.state == "half_open":
            entry.probing = False
            if failed is True:
                self._open(key, entry, "the probe failed")
            elif failed is False:
                entry.buckets.clear()
                self._enter(key, entry, "closed", "the probe succeeded")
            return  # no call was made: the next call probes
        if failed is None or (entry is not None and entry.state != "closed"):
            return  # only the probe decides while the circuit is not closed
        if entry is None:
            entry = self._breakers[key] = _Breaker(last=self._clock())
            BREAKER_STATE.labels(HOSTS(host), "closed").inc()
        calls, failures = self._count(entry, failed)
        if failed and failures >= self.policy.min_failures and failures >= self.policy.failure_ratio * calls:
            self._open(key, entry, f"{failures} of {calls} calls failed in the last {self.policy.window_seconds:g} s")

    def _forget_idle(self) -> None:
        """At most once a window: drop the breakers nothing happened to for a window and a pause."""
        now = self._clock()
        if now < self._sweep_at:
            return
        self._sweep_at = now + self.policy.window_seconds
        idle = self.policy.window_seconds + self.policy.open_seconds
        for key, entry in [(k, e) for k, e in self._breakers.items() if e.last <= now - idle and not e.probing]:
            if entry.state != "closed":
                self._enter(key, entry, "closed", f"forgotten: no call for {idle:g} s")
            del self._breakers[key]
            BREAKER_STATE.labels(HOSTS(key[1]), "closed").dec()

    def _count(self, entry: _Breaker, failed: bool) -> tuple[int, int]:
        second = int(self._clock())
        buckets = entry.buckets
        while buckets and buckets[0][0] <= second - self.policy.window_seconds:
            buckets.popleft()
        if not buckets or buckets[-1][0] != second:
            buckets.append([second, 0, 0])
        buckets[-1][1] += 1
        buckets[-1][2] += failed
        return sum(b[1] for b in buckets), sum(b[2] for b in buckets)

    def _open(self, key: Key, entry: _Breaker, why: str) -> None:
        entry.opened += 1
        entry.why = why
        entry.probe_at = self._clock() + self.policy.open_seconds
        entry.buckets.clear()
        self._enter(key, entry, "open", why)

    def _enter(self, key: Key, entry: _Breaker, state: State, detail: str) -> None:
        bot, host = key
        label = HOSTS(host)
        BREAKER_STATE.labels(label, entry.state).dec()
        BREAKER_STATE.labels(label, state).inc()
        BREAKER_TRANSITIONS.labels(label, state).inc()
        entry.state = state
        (log.warning if state == "open" else log.info)("circuit breaker " + state.replace("_", "-"), host=host,
                                                       bot_id=str(bot), detail=detail, opened=entry.opened)
        self._on_transition(Transition(bot, host, state, utcnow(), entry.opened, detail))


class BreakerClient:
    """The outbound client with a breaker in front of each bot's calls to each host: what the verifier calls through."""

    def __init__(self, inner: OutboundClient, breakers: Breakers) -> None:
        self._inner = inner
        self.breakers = breakers

    def check_url(self, url: str) -> URL:
        return self._inner.check_url(url)

    async def request(self, method: str, url: str, *, tenant: Hashable, **kwargs: Any) -> OutboundResponse:
        """``tenant``: the bot calling; its own breaker for the host decides, and counts the call."""
        target = self._inner.check_url(url)
        host = f"{target.host}:{target.port}"
        probe = self.breakers.admit(tenant, host)
        counted = Count.NOTHING  # what a cancelled call counts for
        try:
            response = await self._inner.request(method, url, tenant=tenant, **kwargs)
            kind = status_kind(response.status)
            counted = Count.SUCCESS if kind is None else VERDICTS[kind].breaker
            return response
        except Exception as exc:
            kind = kind_of(exc)
            counted = Count.NOTHING if kind is None else VERDICTS[kind].breaker
            raise
        finally:
            self.breakers.record(tenant, host, failed=counted.value, probe=probe)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
