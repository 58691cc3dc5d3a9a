"""``services.gateway.admission.Admission``: CoDel-style admission control, on a clock the test holds.

Every call passes ``now=``: intervals start at the first call and last ``INTERVAL``; an interval is
judged at the first call at or after its end.
"""

from __future__ import annotations

from services.gateway.admission import Admission

TARGET = 0.5
INTERVAL = 0.1
MIN_SAMPLES = 4
PROBE_EVERY = 4
SLOW = 2.0  # a delay well over TARGET
FAST = 0.1  # a delay under TARGET
T0 = 1000.0


def admission(**overrides: float) -> Admission:
    options = {"target": TARGET, "interval": INTERVAL, "min_samples": MIN_SAMPLES, "probe_every": PROBE_EVERY,
               "max_in_flight": 100, **overrides}
    return Admission(**options)  # type: ignore[arg-type]


def within_interval(n: int, start: float = T0) -> list[float]:
    """``n`` instants inside the interval starting at ``start`` (before its end)."""
    return [start + INTERVAL * (i + 1) / (n + 2) for i in range(n)]


def refusing_admission() -> tuple[Admission, float]:
    """An admission that has just judged an interval of slow outcomes (and so refuses); and now."""
    a = admission()
    assert a.admit(0, now=T0)  # starts the first interval
    for at in within_interval(MIN_SAMPLES):
        a.observe(SLOW, now=at)
    now = T0 + INTERVAL
    a.admit(0, now=now)  # the interval's end: judged
    assert a.refusing
    return a, now


def admitted(a: Admission, opens: int, now: float) -> int:
    return sum(a.admit(0, now=now) for _ in range(opens))


def test_admits_by_default() -> None:
    a = admission()
    assert not a.refusing
    assert all(a.admit(0, now=T0 + i * INTERVAL / 3) for i in range(100))
    assert not a.refusing


def test_an_interval_whose_quickest_outcome_is_slow_makes_it_refuse() -> None:
    a = admission()
    assert a.admit(0, now=T0)
    for at in within_interval(MIN_SAMPLES):
        a.observe(SLOW, now=at)
    # Not before the interval is over: a queue is judged on a whole interval.
    assert not a.refusing
    assert a.admit(0, now=T0 + INTERVAL * 0.99)

    a.admit(0, now=T0 + INTERVAL)
    assert a.refusing
    assert admitted(a, PROBE_EVERY * 3, now=T0 + INTERVAL * 1.5) == 3  # only probes from now on


def test_one_quick_outcome_in_the_interval_means_no_standing_queue() -> None:
    a = admission()
    a.admit(0, now=T0)
    instants = within_interval(MIN_SAMPLES * 2)
    for at in instants[:-1]:
        a.observe(SLOW, now=at)
    a.observe(FAST, now=instants[-1])  # the minimum is what counts, not the mean

    assert a.admit(0, now=T0 + INTERVAL)
    assert not a.refusing


def test_an_interval_with_too_few_outcomes_is_not_judged() -> None:
    a = admission()
    a.admit(0, now=T0)
    for at in within_interval(MIN_SAMPLES - 1):
        a.observe(SLOW * 10, now=at)  # however slow: a slow retry on a quiet site is not overload

    assert a.admit(0, now=T0 + INTERVAL)
    assert not a.refusing
    assert admitted(a, 20, now=T0 + INTERVAL * 1.5) == 20


def test_refusing_still_admits_one_open_in_probe_every() -> None:
    a, now = refusing_admission()
    opens = [a.admit(0, now=now + INTERVAL * 0.1) for _ in range(PROBE_EVERY * 5)]

    assert sum(opens) == 5
    assert not any(opens[i] and opens[i + 1] for i in range(len(opens) - 1))  # spread out, not in a burst
    assert a.refusing


def test_slow_outcomes_keep_it_refusing() -> None:
    a, now = refusing_admission()
    for at in within_interval(MIN_SAMPLES, start=now):
        a.observe(SLOW, now=at)
    a.admit(0, now=now + INTERVAL)

    assert a.refusing


def test_a_quick_outcome_ends_refusal_at_once() -> None:
    a, now = refusing_admission()
    a.observe(SLOW, now=now + 0.01)
    assert a.refusing
    a.observe(TARGET, now=now + 0.02)  # at the target is not over it

    assert not a.refusing  # without waiting for the interval's end
    assert admitted(a, 10, now=now + 0.03) == 10


def test_a_quiet_spell_ends_refusal() -> None:
    a, now = refusing_admission()
    # Neither opens nor outcomes for more than ten intervals: nothing can be piling up.
    assert a.admit(0, now=now + INTERVAL + 10 * INTERVAL + 0.01)
    assert not a.refusing


def test_a_short_pause_does_not_end_refusal() -> None:
    a, now = refusing_admission()
    a.admit(0, now=now + 5 * INTERVAL)

    assert a.refusing


def test_max_in_flight_refuses_whatever_the_delay() -> None:
    a = admission(max_in_flight=3)
    assert a.admit(2, now=T0)
    assert not a.admit(3, now=T0)
    assert not a.admit(50, now=T0)
    assert not a.refusing  # a full replica is not a judgement on the delay
    assert a.admit(0, now=T0)

    closed = admission(max_in_flight=0)  # how the integration tests force refusals
    assert not any(closed.admit(0, now=T0 + i) for i in range(PROBE_EVERY * 3))


def test_max_in_flight_refuses_probes_too() -> None:
    a, now = refusing_admission()
    a.max_in_flight = 1
    assert not any(a.admit(1, now=now) for _ in range(PROBE_EVERY * 3))


def test_a_replica_whose_event_loop_runs_late_refuses_without_any_outcome() -> None:
    a = admission()
    assert a.admit(0, now=T0)
    a.observe_lag(TARGET + 0.1, now=T0 + INTERVAL / 2)  # requests wait that long before being read
    assert not a.admit(0, now=T0 + INTERVAL) and a.refusing


def test_loop_lag_adds_to_the_pipeline_delay() -> None:
    a = admission()
    assert a.admit(0, now=T0)
    for at in within_interval(MIN_SAMPLES):
        a.observe(TARGET * 0.6, now=at)  # under the target on its own...
    a.observe_lag(TARGET * 0.6, now=T0 + INTERVAL * 0.9)  # ...but not with the loop's lateness
    a.admit(0, now=T0 + INTERVAL)
    assert a.refusing


def test_a_fast_outcome_does_not_end_refusal_while_the_loop_is_late() -> None:
    a, now = refusing_admission()
    a.observe_lag(TARGET, now=now + INTERVAL / 4)
    a.observe(FAST, now=now + INTERVAL / 2)
    assert a.refusing
    a.observe_lag(0.0, now=now + INTERVAL)  # next interval: the loop is on time again
    a.observe(FAST, now=now + INTERVAL * 2.5)
    assert not a.refusing


def test_small_loop_lag_alone_never_refuses() -> None:
    a = admission()
    for i in range(50):
        a.observe_lag(0.01, now=T0 + i * INTERVAL / 2)
        assert a.admit(0, now=T0 + i * INTERVAL / 2 + 0.001)
