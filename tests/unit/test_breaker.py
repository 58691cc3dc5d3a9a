"""The circuit breaker's state machine, on a fake clock (no I/O)."""

from __future__ import annotations

import pytest
from yarl import URL

from services.verifier.breaker import BreakerClient, BreakerPolicy, Breakers, CircuitOpen, Transition, host_of
from shared.http import NO_SLOT, HostBusy, OutboundResponse

HOST = "api.shop.example:443"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**policy: float) -> tuple[Breakers, Clock, list[Transition]]:
    clock, seen = Clock(), []
    defaults = {"window_seconds": 10, "min_failures": 3, "failure_ratio": 0.5, "open_seconds": 5}
    return Breakers(BreakerPolicy(**{**defaults, **policy}), on_transition=seen.append, clock=clock), clock, seen


def call(breakers: Breakers, failed: bool | None) -> None:
    probe = breakers.admit(HOST)
    breakers.record(HOST, failed=failed, probe=probe)


def test_opens_after_enough_failures_and_refuses_calls() -> None:
    breakers, _clock, seen = make()
    call(breakers, True)
    call(breakers, True)
    assert breakers.state(HOST) == "closed"
    call(breakers, True)
    assert breakers.state(HOST) == "open" and [t.state for t in seen] == ["open"]
    assert "3 of 3 calls failed" in (seen[0].detail or "")
    with pytest.raises(CircuitOpen, match="circuit breaker for api.shop.example:443 is open"):
        breakers.admit(HOST)


def test_successes_keep_it_closed_below_the_ratio() -> None:
    breakers, _clock, _ = make()
    for _ in range(5):
        call(breakers, False)
    for _ in range(4):
        call(breakers, True)
    assert breakers.state(HOST) == "closed"  # 4 of 9 failed: under half
    call(breakers, True)
    assert breakers.state(HOST) == "open"  # 5 of 10


def test_old_failures_leave_the_window() -> None:
    breakers, clock, _ = make()
    call(breakers, True)
    call(breakers, True)
    clock.now += 11
    call(breakers, True)
    assert breakers.state(HOST) == "closed"


def test_calls_never_made_count_for_nothing() -> None:
    breakers, _clock, _ = make()
    for _ in range(10):
        call(breakers, None)
    call(breakers, True)
    call(breakers, True)
    assert breakers.state(HOST) == "closed"


def test_half_open_lets_one_probe_through_and_success_closes() -> None:
    breakers, clock, seen = make()
    for _ in range(3):
        call(breakers, True)
    clock.now += 5
    assert breakers.admit(HOST) is True  # the probe
    assert breakers.state(HOST) == "half_open"
    with pytest.raises(CircuitOpen):
        breakers.admit(HOST)  # only one probe at a time
    breakers.record(HOST, failed=False, probe=True)
    assert breakers.state(HOST) == "closed"
    assert [t.state for t in seen] == ["open", "half_open", "closed"]
    call(breakers, True)  # a fresh window: one failure does not reopen it
    assert breakers.state(HOST) == "closed"


def test_a_failed_probe_opens_it_again_and_a_probe_not_made_lets_the_next_call_probe() -> None:
    breakers, clock, seen = make()
    for _ in range(3):
        call(breakers, True)
    clock.now += 5
    breakers.record(HOST, failed=None, probe=breakers.admit(HOST))
    assert breakers.state(HOST) == "half_open"
    breakers.record(HOST, failed=True, probe=breakers.admit(HOST))
    assert breakers.state(HOST) == "open" and seen[-1].opened == 2
    with pytest.raises(CircuitOpen):
        breakers.admit(HOST)


def test_hosts_are_independent_and_keyed_like_the_call_cap() -> None:
    breakers, _clock, _ = make()
    for _ in range(3):
        call(breakers, True)
    assert breakers.state("other.example:443") == "closed"
    assert breakers.admit("other.example:443") is False
    assert host_of("https://API.shop.example/auth") == "api.shop.example:443"
    assert host_of("http://127.0.0.1:8090/x") == "127.0.0.1:8090"
    assert host_of("not a url") is None


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
            await client.request("POST", "https://api.shop.example/auth", headers={}, tenant="bot")
    assert breakers.state(HOST) == "closed" and seen == []
