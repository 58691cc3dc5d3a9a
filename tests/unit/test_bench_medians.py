"""The targets over several bench runs are judged by their median (bench/medians.py), on synthetic runs."""

from __future__ import annotations

from typing import Any

from bench.medians import table


def _run(e2e: float, p99: float, sse_p99: float | None) -> dict[str, Any]:
    overload = {"wait": {"time_to_answer": {"p99_ms": 900.0}, "late": 0}}
    if sse_p99 is not None:
        overload["sse"] = {"time_to_answer": {"p99_ms": sse_p99}, "late": 3}
    return {"e2e": {"saturation": {"per_second": e2e}, "fixed": {"p99_ms": p99}}, "overload": overload,
            "ratios": {"overload_goodput_vs_e2e": {"wait": 0.9}}}


def _rows(text: str) -> dict[str, list[str]]:
    return {cells[1]: cells[2:] for line in text.splitlines()[2:]
            if (cells := [c.strip() for c in line.strip("|").split("|")])}


def test_the_median_of_three_runs_decides_not_the_best_one() -> None:
    rows = _rows(table([_run(1400, 60, 2500), _run(1200, 40, 1500), _run(1250, 45, 1900)]))
    assert rows["opens resolved end to end per s"] == ["1,400", "1,200", "1,250", "1,250", ">= 1,300", "**missed**"]
    assert rows["open to outcome at 300 opens/s, p99 ms"] == ["60", "40", "45", "45", "<= 50", "yes"]
    assert rows["overload, POST + SSE stream: time to an answer p99 ms"][3:] == ["1,900", "<= 2,000", "yes"]
    assert rows["overload, POST + SSE stream: sessions resolved late"][3:] == ["3", "= 0", "**missed**"]


def test_a_figure_no_run_measured_is_not_judged() -> None:
    rows = _rows(table([_run(1400, 60, None), _run(1300, 40, None)]))
    assert rows["overload, POST + polling GET: time to an answer p99 ms"] == ["-", "-", "-", "<= 2,000", "-"]
    assert rows["gateway POST alone / plain aiohttp"][-1] == "-"
    assert rows["overload, POST ?wait=3 (widget.js): verified goodput / saturation"] == ["0.90", "0.90", "0.90", ">= 0.8",
                                                                                      "yes"]
