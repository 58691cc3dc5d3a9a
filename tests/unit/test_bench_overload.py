"""Test 8 of the bench on each client path: the polling client's operation against a stand-in gateway on
127.0.0.1, the ``--overload-paths`` option, and one block of rows per path in the report (bench/client.py,
bench/__main__.py, bench/report.py), on synthetic data."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from aiohttp import web

from bench.__main__ import _client_paths
from bench.client import CLIENT_PATHS, Conn, doorman_poll_op
from bench.report import rows, table

GETS = web.AppKey("gets", list)


async def _stand_in(answers: list[tuple[int, dict[str, Any]]], post: tuple[int, dict[str, Any]]) -> web.AppRunner:
    """A gateway that answers the POST with ``post`` and each GET with the next of ``answers``."""
    async def open_session(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(post[1], status=post[0])

    async def get_session(request: web.Request) -> web.Response:
        status, body = answers.pop(0)
        request.app[GETS].append(request.match_info["sid"])
        return web.json_response(body, status=status)

    app = web.Application()
    app[GETS] = []
    app.router.add_post("/v1/widget/sessions", open_session)
    app.router.add_get("/v1/widget/sessions/{sid}", get_session)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def _poll_once(answers: list[tuple[int, dict[str, Any]]],
                     post: tuple[int, dict[str, Any]]) -> tuple[str, list[str]]:
    runner = await _stand_in(answers, post)
    port = runner.addresses[0][1]
    conn = await Conn.open("127.0.0.1", port)
    try:
        label = await doorman_poll_op(lambda i: "bot", 0.001)(conn, 7)
    finally:
        conn.close()
        gets = runner.app[GETS]
        await runner.cleanup()
    return label, gets


PENDING = {"session_id": "s1", "status": "pending"}


async def test_polling_gets_the_session_until_it_is_no_longer_pending() -> None:
    verified = {"session_id": "s1", "status": "verified"}
    label, gets = await _poll_once([(200, PENDING), (200, PENDING), (200, verified)], (202, PENDING))
    assert (label, gets) == ("verified", ["s1", "s1", "s1"])


async def test_a_busy_open_is_labelled_by_its_fallback_reason() -> None:
    busy = {"session_id": "s1", "status": "fallback", "fallback": {"reason": "busy"}}
    label, gets = await _poll_once([(200, busy)], (202, PENDING))
    assert (label, gets) == ("fallback:busy", ["s1"])


async def test_a_refused_post_is_not_polled() -> None:
    label, gets = await _poll_once([], (503, {"error": "unavailable"}))
    assert (label, gets) == ("http-503", [])


async def test_a_failing_get_ends_the_open_with_its_status() -> None:
    label, _ = await _poll_once([(200, PENDING), (404, {"error": "session_not_found"})], (202, PENDING))
    assert label == "poll-http-404"


def test_overload_paths_default_to_all_three_and_refuse_others() -> None:
    assert _client_paths(",".join(CLIENT_PATHS)) == ["wait", "sse", "poll"]
    assert _client_paths(" poll ,wait") == ["poll", "wait"]
    for bad in ("", "websocket", "wait,ws"):
        with pytest.raises(argparse.ArgumentTypeError):
            _client_paths(bad)


def _overload(path: str, p99: float, late: int) -> dict[str, Any]:
    return {"path": path, "offered_per_second": 2000.0, "rate_source": "2x test 2's saturation", "seconds": 20.0,
            "offered": 40_000, "time_to_answer": {"p50_ms": 100.0, "p95_ms": 500.0, "p99_ms": p99},
            "counts": {"verified": 30_000, "fallback:busy": 9_000, "fallback:other": 0, "http-503": 0, "errors": 0,
                       "unfinished": 0},
            "goodput_per_second": 1_000.0, "late": late, "db": {"late_grace_seconds": 2.0, "sessions": 40_000},
            "cpu_cores": {"gateway": 0.9}}


def test_each_client_path_has_its_own_rows_and_verdicts() -> None:
    r = {"overload": {p: _overload(p, p99, late) for p, p99, late in (("wait", 900.0, 0), ("sse", 2500.0, 0),
                                                                         ("poll", 1500.0, 3))},
         "ratios": {"overload_goodput_vs_e2e": {"wait": 0.9, "sse": 0.7, "poll": 0.85}},
         "machine": {"cores": 2, "ram_gib": 8, "cpu_model": "test", "python": "3.11"}}
    found = [(m.strip(), v, ok) for t, m, v, _, ok in rows(r) if t == "8"]
    heads = [m for m, _, _ in found if m.startswith("overload, ")]
    assert [h.split(":")[0] for h in heads] == ["overload, POST ?wait=3 (widget.js)", "overload, POST + SSE stream",
                                                "overload, POST + polling GET"]
    p99s = [ok for m, _, ok in found if m == "time to an answer p50/p95/p99 ms"]
    goodputs = [ok for m, _, ok in found if m == "ratio goodput / e2e saturation (test 2)"]
    lates = [ok for m, _, ok in found if m.startswith("late sessions")]
    assert (p99s, goodputs, lates) == ([True, False, True], [True, False, True], [True, True, False])
    assert "overload's offered window (poll): gateway 0.9" in table(r)
