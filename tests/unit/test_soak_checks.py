"""The soak run's verdicts (bench/soak_checks.py) on synthetic records: each criterion passes on a
steady run and fails on the fault it is there to catch."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bench.soak_checks import (
    Life,
    Sample,
    Windows,
    at_rest,
    disagreements,
    latency_windows,
    levels,
    lowest,
    passed,
    unknown_deliveries,
    verdicts,
    webhook_checks,
)

MB = 2**20
W = Windows(180.0)  # a 3-minute run: 30 s warm-up, 30 s latency windows, a sample every 2 s, 10 s levels


def series(proc: str, *, rss=lambda t: 80 * MB, fds=lambda t: 50, conns=lambda t: 20, tasks=lambda t: 30,  # type: ignore[no-untyped-def]
           start: float = 0.0, stop: float = 180.0) -> list[Sample]:
    t, out = start, []
    while t <= stop:
        out.append(Sample(t, proc, int(rss(t)), int(fds(t)), int(conns(t)), int(tasks(t))))
        t += W.sample_every
    return out


def steady(**overrides: Any) -> dict[str, Any]:
    """A soak that met every criterion; ``overrides`` replace parts of it."""
    samples = series("gateway#1.1") + series("verifier#1.1", stop=72.0) + series("verifier#1.2", start=74.0)
    lives = {"gateway#1.1": Life("gateway", 0.0), "verifier#1.1": Life("verifier", 0.0, 72.0),
             "verifier#1.2": Life("verifier", 74.0)}
    by_second = {s: [20.0 + (s % 5)] * 50 for s in range(180)}
    result: dict[str, Any] = {
        "levels": levels(samples, lives, 180.0, W),
        "latency": latency_windows(by_second, 180.0, W),
        "lost": {"missing": 0, "pending": 0, "rows_pending": 0},
        "unanswered": 0, "accepted": 9000,
        "duplicated": {"differ": 0, "streams_with_two_outcomes": 0, "contacts": 0},
        "webhooks": webhook_checks([("d1", "contact.created", True, None, "c1", "b:v-1")], {"d1": "delivered"}, {}),
        "restarts": [{"role": "verifier", "exit_code": 0, "ready": True}],
    }
    result.update(overrides)
    return result


def failed(result: dict[str, Any]) -> list[str]:
    return [v.criterion for v in verdicts(result) if v.met is False]


def test_a_steady_run_passes_every_criterion() -> None:
    result = steady()
    assert failed(result) == []
    assert passed(result)
    assert all(v.met is not None for v in verdicts(result) if "too short" not in v.criterion)


def test_windows_scale_with_the_run() -> None:
    full, short = Windows(1800.0), Windows(180.0)
    assert (full.warmup, full.latency, full.sample_every, full.level) == (300.0, 300.0, 10.0, 60.0)
    assert (short.warmup, short.latency, short.sample_every, short.level) == (30.0, 30.0, 2.0, 10.0)


def test_rss_growing_more_than_ten_percent_after_warm_up_fails() -> None:
    leaking = series("gateway#1.1", rss=lambda t: 80 * MB * (1 + 0.002 * max(0.0, t - 30)))  # +30 % by the end
    result = steady(levels=levels(leaking, {"gateway#1.1": Life("gateway", 0.0)}, 180.0, W))
    assert failed(result) == ["RSS growth after warm-up, worst process (1 judged)"]


def test_rss_growing_during_warm_up_only_passes() -> None:
    warming = series("gateway#1.1", rss=lambda t: 60 * MB + min(t, 30.0) * MB)  # 60 -> 90 MB, then flat
    assert failed(steady(levels=levels(warming, {"gateway#1.1": Life("gateway", 0.0)}, 180.0, W))) == []


@pytest.mark.parametrize(("measure", "criterion"), [
    ("fds", "open fds less clients' connections"), ("conns", "TCP connections less clients' connections"),
    ("tasks", "asyncio tasks less clients' connections")])
def test_a_count_that_keeps_growing_fails(measure: str, criterion: str) -> None:
    leak = {measure: lambda t: 40 + t / 4}  # one more every 4 s
    result = steady(levels=levels(series("verifier#1.2", **leak, start=74.0), {"verifier#1.2": Life("verifier", 74.0)},
                                  180.0, W))
    assert failed(result) == [f"{criterion}: floor not grown"]


def test_a_count_that_moves_with_the_load_but_does_not_grow_passes() -> None:
    # Bursts of work in hand (more tasks for a few seconds, as in the restart's or a busy box's latency
    # spikes) up to the end; the floor stays.
    noisy = series("gateway#1.1", conns=lambda t: 100 + (t * 7) % 40, tasks=lambda t: 80 if int(t) % 8 == 6 else 14)
    assert failed(steady(levels=levels(noisy, {"gateway#1.1": Life("gateway", 0.0)}, 180.0, W))) == []


def test_connections_clients_hold_open_do_not_count_but_a_leak_beside_them_does() -> None:
    # A gateway keeps a socket, an fd and a task per client connection; the client's pool grows with its load.
    def busier(t: float) -> int:
        return 100 + int(t)

    def sample(t: float, extra: int) -> Sample:
        return Sample(t, "gateway#1.1", 80 * MB, fds=30 + busier(t) + extra, conns=10 + busier(t) + extra,
                      tasks=20 + busier(t) + extra, inbound=busier(t))

    lives = {"gateway#1.1": Life("gateway", 0.0)}
    ticks = [float(t) for t in range(0, 181, 2)]
    following_the_load = levels([sample(t, 0) for t in ticks], lives, 180.0, W)
    assert failed(steady(levels=following_the_load)) == []
    leaking = levels([sample(t, int(t / 10)) for t in ticks], lives, 180.0, W)  # one more of each every 10 s
    assert len(failed(steady(levels=leaking))) == 3


def test_no_window_is_taken_during_the_rolling_restart() -> None:
    # The surviving replica takes the whole load while the other restarts: more tasks, for a while.
    busy_while_restarting = series("verifier#2.1", tasks=lambda t: 90 if 72 <= t <= 130 else 30)
    lives = {"verifier#2.1": Life("verifier", 0.0)}
    assert failed(steady(levels=levels(busy_while_restarting, lives, 130.0, W)))
    assert failed(steady(levels=levels(busy_while_restarting, lives, 130.0, W, disturbed=[(72.0, 136.0)]))) == []


def test_a_process_too_short_lived_after_warm_up_is_named_not_judged() -> None:
    result = steady(levels=levels(series("verifier#1.1", stop=40.0), {"verifier#1.1": Life("verifier", 0.0, 40.0)},
                                  180.0, W))
    short = [v for v in verdicts(result) if "too short" in v.criterion]
    assert short and short[0].value == "verifier#1.1"


def test_p99_of_the_last_window_above_one_and_a_half_times_the_first_fails() -> None:
    slower = {s: [20.0] * 50 if s < 150 else [20.0] * 45 + [80.0] * 5 for s in range(180)}
    result = steady(latency=latency_windows(slower, 180.0, W))
    assert result["latency"]["ratio"] == 4.0
    assert [c.split(",")[0] for c in failed(result)] == ["p99 open->outcome"]


def test_lost_opens_fail() -> None:
    assert failed(steady(lost={"missing": 0, "pending": 1, "rows_pending": 0})) == [
        "lost: accepted opens without one outcome in the database"]
    assert failed(steady(lost={"missing": 0, "pending": 0, "rows_pending": 2})) == [
        "lost: accepted opens without one outcome in the database"]


def test_an_open_without_an_answer_at_the_client_fails() -> None:
    assert failed(steady(unanswered=1)) == ["visitors left without an answer (after retrying the other gateway)"]


def test_the_client_and_the_database_disagreeing_is_a_duplicate() -> None:
    seen = {"a": "v", "b": "f", "c": "e", "d": "?", "e": "v", "f": "v"}
    stored = {"a": "verified", "b": "fallback", "c": "ended", "d": "verified", "e": "fallback", "f": "pending"}
    counts = disagreements(seen, stored)
    assert counts == {"missing": 0, "pending": 1, "differ": 1}
    assert disagreements({"x": "v"}, {})["missing"] == 1
    result = steady(duplicated={"differ": counts["differ"], "streams_with_two_outcomes": 0, "contacts": 0})
    assert failed(result) == ["duplicated: outcomes, contacts, webhook deliveries"]


def test_webhook_repeats_and_double_creations_are_duplicates_but_a_recreation_after_erasure_is_not() -> None:
    stored = {"d1": "delivered", "d2": "delivered", "d3": "delivered", "d4": "delivered"}
    received = [("d1", "contact.created", True, None, "c1", "b:v-1"), ("d1", "contact.created", True, None, "c1", "b:v-1"),
                ("d2", "session.fell_back", True, "s1", None, None), ("d3", "session.fell_back", True, "s1", None, None),
                ("d4", "contact.created", True, None, "c2", "b:v-1")]
    checks = webhook_checks(received, stored, {})
    assert (checks["repeated"], checks["session_fell_back_twice"], checks["contact_created_twice"]) == (1, 1, 1)
    assert webhook_checks(received, stored, {"c1": "b:v-1"})["contact_created_twice"] == 0
    result = steady(webhooks=checks)
    assert failed(result) == ["duplicated: outcomes, contacts, webhook deliveries"]


def test_webhooks_not_delivered_unknown_or_unsigned_fail() -> None:
    criterion = "webhooks delivered (stored deliveries received once, none unknown or unsigned)"
    pending = webhook_checks([], {"d1": "pending"}, {})
    assert pending["undelivered"] == 1 and failed(steady(webhooks=pending)) == [criterion]
    unknown = webhook_checks([("d9", "contact.updated", True, None, "c9", "b:v-9")], {}, {})
    assert unknown["unknown"] == 1
    assert unknown_deliveries([("d9", "contact.updated", True, None, "c9", "b:v-9")], {}, {}) == [
        {"delivery_id": "d9", "event": "contact.updated", "session_id": None, "contact_id": "c9", "visitor": "b:v-9"}]
    assert unknown_deliveries([("d9", "contact.updated", True, None, "c9", "b:v-9")], {}, {"c9": "b:v-9"}) == []
    assert webhook_checks([("d9", "contact.updated", True, None, "c9", "b:v-9")], {}, {"c9": "b:v-9"})["unknown"] == 0
    unsigned = webhook_checks([("d1", "contact.updated", False, None, "c1", "b:v-1")], {"d1": "delivered"}, {})
    assert failed(steady(webhooks=unsigned)) == [criterion]
    assert failed(steady(webhooks=webhook_checks([], {}, {}))) == [criterion]  # nothing was sent at all


def test_a_restart_that_did_not_exit_cleanly_fails() -> None:
    killed = [{"role": "gateway", "exit_code": -9, "ready": True}]
    assert failed(steady(restarts=killed)) == ["rolling restart: SIGTERM, exit 0, replacement ready"]
    assert failed(steady(restarts=[])) == ["rolling restart: SIGTERM, exit 0, replacement ready"]


def test_the_verdicts_read_the_json_form_too() -> None:
    from dataclasses import asdict

    result = steady()
    as_json = copy.deepcopy(result)
    as_json["levels"] = {p: {m: asdict(lv) if lv else None for m, lv in ms.items()} for p, ms in result["levels"].items()}
    assert verdicts(as_json) == verdicts(result)


def _rest(proc: str, tasks: int, *, fds: int = 50, conns: int = 20, inbound: int = 0) -> dict[str, Any]:
    return {"t": 0.0, "proc": proc, "rss": 80 * MB, "fds": fds, "conns": conns, "tasks": tasks, "inbound": inbound}


def _at_rest(after_tasks: int) -> dict[str, Any]:
    return {"before": [_rest("gateway#1.1", 24, inbound=3), _rest("verifier#1.1", 16)],
            "after": [_rest("gateway#1.2", 27, inbound=3), _rest("verifier#1.2", after_tasks)]}


def test_tasks_that_follow_the_work_in_hand_are_judged_at_rest_not_under_load() -> None:
    busy = series("verifier#1.2", tasks=lambda t: 60 if int(t) % 20 < 10 else 16 + t / 4, start=74.0)
    lives = {"verifier#1.2": Life("verifier", 74.0)}
    noisy = levels(busy, lives, 180.0, W)
    assert noisy["verifier#1.2"]["tasks"].grew  # type: ignore[union-attr]
    # Without readings at rest the floor under load is the verdict; with them, it is shown only.
    assert failed(steady(levels=noisy)) == ["asyncio tasks less clients' connections: floor not grown"]
    assert failed(steady(levels=noisy, at_rest=_at_rest(17))) == []
    shown = [v for v in verdicts(steady(levels=noisy, at_rest=_at_rest(17))) if v.criterion.startswith("asyncio")]
    assert [v.met for v in shown] == [None]


def test_counts_left_behind_at_rest_fail() -> None:
    result = steady(at_rest=_at_rest(40))  # 16 tasks at rest before, 40 after: 24 left behind
    assert failed(result) == ["at rest after the run vs before: fds, connections, tasks per role, less clients' connections"]
    rest = next(v for v in verdicts(result) if v.criterion.startswith("at rest"))
    assert rest.value.startswith("1 of 6 grew; verifier tasks 16->40")


def test_at_rest_the_lowest_of_several_readings_counts() -> None:
    readings = [Sample(0.0, "gateway#1.1", 80 * MB, 60, 30, 40), Sample(1.0, "gateway#1.1", 80 * MB, 50, 20, 30),
                Sample(2.0, "gateway#1.1", 80 * MB, 55, 20, 31)]
    assert lowest(readings) == [readings[1]]
    assert at_rest(readings[1:2], readings[2:3]) == {"gateway": {"fds": (50, 55), "conns": (20, 20), "tasks": (30, 31)}}
