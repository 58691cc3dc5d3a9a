"""``services.gateway.widget.admission.Admission``: a CoDel signal driving a rate, on a clock the test holds.

Every call passes ``now=``: intervals start at the first call and last ``INTERVAL``; an interval is
judged at the first call at or after its end.
"""

from __future__ import annotations

from services.gateway.widget.admission import Admission

TARGET = 0.5
INTERVAL = 0.1
MIN_SAMPLES = 4
SLOW = 2.0  # a delay well over TARGET
FAST = 0.1  # a delay under TARGET
T0 = 1000.0


def admission(**overrides: float) -> Admission:
    options = {"target": TARGET, "interval": INTERVAL, "min_samples": MIN_SAMPLES, "max_in_flight": 100,
               "floor_rate": 10.0, "decrease": 0.5, "increase": 0.5, "healthy_to_lift": 3, **overrides}
    return Admission(**options)  # type: ignore[arg-type]


def interval(a: Admission, start: float, delays: list[float], lag: float = 0.0) -> float:
    """Outcomes with ``delays`` (and the loop's lateness) inside the interval starting at ``start``,
    then the call that judges it; returns the next interval's start."""
    for i, delay in enumerate(delays):
        a.observe(delay, now=start + INTERVAL * (i + 1) / (len(delays) + 2))
    if lag:
        a.observe_lag(lag, now=start + INTERVAL * 0.95)
    end = start + INTERVAL
    a.admit(0, now=end)
    return end


def admitted(a: Admission, start: float, seconds: float, offered_per_second: float) -> int:
    """How many of ``offered_per_second`` opens, evenly spread over ``seconds``, are admitted."""
    n = int(seconds * offered_per_second)
    return sum(a.admit(0, now=start + i / offered_per_second) for i in range(1, n + 1))


def test_admits_everything_by_default() -> None:
    a = admission()
    assert admitted(a, T0, 1.0, 1000) == 1000 and not a.refusing


def test_a_standing_queue_limits_the_rate_just_under_what_was_completed() -> None:
    a = admission()
    a.admit(0, now=T0)  # the first interval starts
    start = interval(a, T0, [SLOW] * 20)  # 20 outcomes in 0.1 s: 200 completed per second
    assert a.refusing and a.rate == 200 * 0.5
    got = admitted(a, start + 0.001, 0.05, 2000)  # within the interval: no judgement on the way
    assert got == 5, got  # 100/s for 0.05 s, however many are offered


def test_one_quick_outcome_means_no_standing_queue() -> None:
    a = admission()
    a.admit(0, now=T0)
    interval(a, T0, [SLOW] * 10 + [FAST])
    assert not a.refusing


def test_too_few_outcomes_show_no_queue() -> None:
    a = admission()
    a.admit(0, now=T0)
    interval(a, T0, [SLOW] * (MIN_SAMPLES - 1))
    assert not a.refusing


def test_the_rate_shrinks_once_per_round_trip_while_the_queue_stands_never_below_the_floor() -> None:
    a = admission()
    a.admit(0, now=T0)
    start = interval(a, T0, [SLOW] * 20)
    rates = [a.rate]
    for _ in range(40):
        start = interval(a, start, [SLOW] * 5)
        rates.append(a.rate)
    assert rates == sorted(rates, reverse=True)
    cuts = [i for i in range(1, len(rates)) if rates[i] != rates[i - 1]]
    # A cut shows in the outcomes only after target + interval: never two cuts closer than that.
    assert all(b - a_ >= (TARGET + INTERVAL) / INTERVAL - 1e-9 for a_, b in zip(cuts, cuts[1:])), cuts
    assert len(cuts) >= 3 and rates[-1] == 10.0  # the floor: a trickle keeps measuring


def test_the_rate_grows_while_the_queue_is_gone_then_the_limit_is_lifted() -> None:
    a = admission()
    a.admit(0, now=T0)
    start = interval(a, T0, [SLOW] * 20)
    limited = a.rate
    assert limited is not None
    start = interval(a, start, [FAST] * 5)
    assert a.rate is not None and a.rate > limited
    for _ in range(3):  # healthy intervals with the rate far above what completes
        start = interval(a, start, [FAST] * 4)
    assert not a.refusing and a.rate is None


def test_a_replica_whose_event_loop_runs_late_limits_without_any_outcome() -> None:
    a = admission()
    a.admit(0, now=T0)
    interval(a, T0, [], lag=TARGET + 0.1)  # requests wait that long before being read
    assert a.refusing and a.rate == 10.0  # nothing completed: the floor


def test_loop_lag_adds_to_the_pipeline_delay() -> None:
    a = admission()
    a.admit(0, now=T0)
    interval(a, T0, [TARGET * 0.6] * MIN_SAMPLES, lag=TARGET * 0.6)
    assert a.refusing


def test_small_loop_lag_alone_never_refuses() -> None:
    a = admission()
    start = T0
    a.admit(0, now=start)
    for _ in range(50):
        start = interval(a, start, [], lag=0.01)
        assert a.admit(0, now=start + 0.001)


def test_max_in_flight_refuses_whatever_the_delay() -> None:
    a = admission(max_in_flight=5)
    assert a.admit(4, now=T0)
    assert not a.admit(5, now=T0 + 0.01) and not a.refusing  # a cap, not a judgement
