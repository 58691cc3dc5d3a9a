"""The circuit breaker's state machine, one per bot and host, on a fake clock (no I/O)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from yarl import URL

from services.verifier.breaker import BreakerClient, BreakerPolicy, Breakers, CircuitOpen, Transition
from shared.destinations import host_of
from services.verifier.outbound import NO_SLOT, HostBusy, OutboundResponse

HOST = "api.shop.example:443"
BOT = "bot-a"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**policy: float) -> tuple[Breakers, Clock, list[Transition]]:
    clock, seen = Clock(), []
    defaults = {"window_seconds": 10, "min_failures": 3, "failure_ratio": 0.5, "open_seconds": 5}
    return Breakers(BreakerPolicy(**{**defaults, **policy}), on_transition=seen.append, clock=clock), clock, seen


def call(breakers: Breakers, failed: bool | None, bot: str = BOT, host: str = HOST) -> None:
    probe = breakers.admit(bot, host)
    breakers.record(bot, host, failed=failed, probe=probe)


def test_opens_after_enough_failures_and_refuses_calls() -> None:
    breakers, _clock, seen = make()
    call(breakers, True)
    call(breakers, True)
    assert breakers.state(BOT, HOST) == "closed"
    call(breakers, True)
    assert breakers.state(BOT, HOST) == "open" and [t.state for t in seen] == ["open"]
    assert "3 of 3 calls failed" in (seen[0].detail or "")
    with pytest.raises(CircuitOpen, match="circuit breaker for api.shop.example:443 is open"):
        breakers.admit(BOT, HOST)


def test_successes_keep_it_closed_below_the_ratio() -> None:
    breakers, _clock, _ = make()
    for _ in range(5):
        call(breakers, False)
    for _ in range(4):
        call(breakers, True)
    assert breakers.state(BOT, HOST) == "closed"  # 4 of 9 failed: under half
    call(breakers, True)
    assert breakers.state(BOT, HOST) == "open"  # 5 of 10


def test_old_failures_leave_the_window() -> None:
    breakers, clock, _ = make()
    call(breakers, True)
    call(breakers, True)
    clock.now += 11
    call(breakers, True)
    assert breakers.state(BOT, HOST) == "closed"


def test_calls_never_made_count_for_nothing() -> None:
    breakers, _clock, _ = make()
    for _ in range(10):
        call(breakers, None)
    call(breakers, True)
    call(breakers, True)
    assert breakers.state(BOT, HOST) == "closed"


def test_half_open_lets_one_probe_through_and_success_closes() -> None:
    breakers, clock, seen = make()
    for _ in range(3):
        call(breakers, True)
    clock.now += 5
    assert breakers.admit(BOT, HOST) is True  # the probe
    assert breakers.state(BOT, HOST) == "half_open"
    with pytest.raises(CircuitOpen):
        breakers.admit(BOT, HOST)  # only one probe at a time
    breakers.record(BOT, HOST, failed=False, probe=True)
    assert breakers.state(BOT, HOST) == "closed"
    assert [t.state for t in seen] == ["open", "half_open", "closed"]
    call(breakers, True)  # a fresh window: one failure does not reopen it
    assert breakers.state(BOT, HOST) == "closed"


def test_a_failed_probe_opens_it_again_and_a_probe_not_made_lets_the_next_call_probe() -> None:
    breakers, clock, seen = make()
    for _ in range(3):
        call(breakers, True)
    clock.now += 5
    breakers.record(BOT, HOST, failed=None, probe=breakers.admit(BOT, HOST))
    assert breakers.state(BOT, HOST) == "half_open"
    breakers.record(BOT, HOST, failed=True, probe=breakers.admit(BOT, HOST))
    assert breakers.state(BOT, HOST) == "open" and seen[-1].opened == 2
    with pytest.raises(CircuitOpen):
        breakers.admit(BOT, HOST)


def test_one_bots_failures_never_open_another_bots_circuit_for_the_same_host() -> None:
    breakers, _clock, seen = make()
    call(breakers, False, bot="bot-b")
    for _ in range(3):
        call(breakers, True)
    assert breakers.state(BOT, HOST) == "open" and [(t.bot, t.host, t.state) for t in seen] == [(BOT, HOST, "open")]
    assert breakers.state("bot-b", HOST) == "closed"
    assert breakers.admit("bot-b", HOST) is False  # bot b still calls the host
    for _ in range(2):
        call(breakers, True, bot="bot-b")  # and its own failures count from zero
    assert breakers.state("bot-b", HOST) == "closed"
    call(breakers, True, bot="bot-b")
    assert breakers.state("bot-b", HOST) == "open"


def test_hosts_are_independent_and_keyed_like_the_call_cap() -> None:
    breakers, _clock, _ = make()
    for _ in range(3):
        call(breakers, True)
    assert breakers.state(BOT, "other.example:443") == "closed"
    assert breakers.admit(BOT, "other.example:443") is False
    assert host_of("https://API.shop.example/auth") == "api.shop.example:443"
    assert host_of("http://127.0.0.1:8090/x") == "127.0.0.1:8090"
    assert host_of("not a url") is None


def gauge(host: str, state: str) -> float:
    return REGISTRY.get_sample_value("doorman_breaker_state", {"host": host, "state": state}) or 0.0


def test_the_state_metric_counts_the_hosts_breakers_one_per_bot() -> None:
    host = "metrics.shop.example:443"  # a host of its own: the registry is the process's
    breakers, _clock, _ = make()
    for bot in ("a", "b", "c"):
        call(breakers, False, bot=bot, host=host)
    assert (gauge(host, "closed"), gauge(host, "open")) == (3, 0)
    for _ in range(3):
        call(breakers, True, bot="a", host=host)
    assert (gauge(host, "closed"), gauge(host, "open")) == (2, 1)


def test_idle_breakers_are_forgotten_and_an_idle_open_one_is_closed_first() -> None:
    host = "idle.shop.example:443"
    breakers, clock, seen = make()  # window 10 s, pause 5 s: forgotten 15 s without a call, looked for every 10 s
    for bot in ("quiet", "busy"):
        call(breakers, False, bot=bot, host=host)
    for _ in range(3):
        call(breakers, True, bot="failing", host=host)
    assert (gauge(host, "closed"), gauge(host, "open")) == (2, 1)
    for _ in range(19):
        clock.now += 1
        call(breakers, False, bot="busy", host=host)  # busy keeps calling; quiet and failing do not
    assert (gauge(host, "closed"), gauge(host, "open")) == (2, 1)  # idle 19 s, but last looked for at 10 s
    clock.now += 1
    call(breakers, False, bot="busy", host=host)  # 20 s: looked for again
    assert (gauge(host, "closed"), gauge(host, "open")) == (1, 0)  # only busy's breaker is left
    assert [(t.bot, t.state, t.detail) for t in seen][-1] == ("failing", "closed", "forgotten: no call for 15 s")
    assert breakers.admit("failing", host) is False  # counted afresh: not a probe
    call(breakers, True, bot="failing", host=host)
    assert breakers.state("failing", host) == "closed"


def test_a_probe_in_flight_is_never_forgotten() -> None:
    breakers, clock, _ = make()
    for _ in range(3):
        call(breakers, True)
    clock.now += 5
    assert breakers.admit(BOT, HOST) is True  # the probe, which hangs
    clock.now += 60
    call(breakers, False, bot="bot-b")  # another bot's call sweeps the idle breakers
    breakers.record(BOT, HOST, failed=True, probe=True)
    assert breakers.state(BOT, HOST) == "open"


class NoSlot:
    """An outbound client whose every call finds no call slot to the host (Doorman's own queueing)."""

    def check_url(self, url: str) -> URL:
        return URL(url)

    async def request(self, method: str, url: str, **kwargs: object) -> OutboundResponse:
        raise HostBusy(NO_SLOT)


async def test_a_call_that_found_no_slot_is_not_counted_as_the_business_failing() -> None:
    breakers, _clock, seen = make(min_failures=1)
    client = BreakerClient(NoSlot(), breakers)  # type: ignore[arg-type]
    for _ in range(5):
        with pytest.raises(HostBusy):
            await client.request("POST", "https://api.shop.example/auth", headers={}, tenant=BOT)
    assert breakers.state(BOT, HOST) == "closed" and seen == []
