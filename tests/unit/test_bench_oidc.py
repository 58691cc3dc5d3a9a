"""Test 2's OpenID Connect variant in the bench: the provider's ready line, the open bodies, and its rows in the
report (bench/oidc.py, bench/report.py), on synthetic data."""

from __future__ import annotations

import json
from typing import Any

from bench.oidc import open_bodies, ready
from bench.report import rows, table


def test_the_ready_line_is_found_among_other_output() -> None:
    doc = {"issuer": "http://127.0.0.1:4321", "clients": [{"client_id": "c", "client_secret": "s"}],
           "redirect_uri": "https://shop.example.com/callback"}
    output = "(node:1) ExperimentalWarning: something\n{not json\n" + json.dumps(doc) + "\n"
    assert ready(output) == doc


def test_no_ready_line_before_the_provider_listens() -> None:
    assert ready("") is None
    assert ready('{"listening": true}\n') is None  # a signal's answer, not the ready line
    assert ready('{"issuer": "http://127.0.0.1:1"') is None  # half written


def test_each_visitor_opens_with_its_own_token_at_every_bot() -> None:
    bots, tokens = ["b0", "b1"], ["t0", "t1", "t2"]
    pairs = [(d["bot_id"], d["access_token"]) for d in map(json.loads, open_bodies(bots, tokens))]
    # i % bots, i % visitors, as the callback variant walks them: every pair once.
    assert pairs == [("b0", "t0"), ("b1", "t1"), ("b0", "t2"), ("b1", "t0"), ("b0", "t1"), ("b1", "t2")]


def test_as_many_bodies_as_visitors_when_the_bots_divide_them() -> None:
    assert len(open_bodies([f"b{i}" for i in range(10)], [f"t{n}" for n in range(1000)])) == 1000


def _phase(per_second: float, **more: Any) -> dict[str, Any]:
    return {"per_second": per_second, "concurrency": 128, "p50_ms": 90.0, "p99_ms": 200.0,
            "outcomes": {"verified": 100}, "errors": {}, "peak_rss_mb": {}, **more}


def _results(oidc: dict[str, Any] | None, ratio: float | None) -> dict[str, Any]:
    e2e = {"saturation": _phase(1000.0, cpu_ms_per_open={"total": 1.7, "verifier": 0.5}),
           "saturation_oidc": oidc,
           "fixed": {"offered_per_second": 300.0, "per_second": 300.0, "outcomes": {}, "errors": {}}}
    return {"e2e": e2e, "ratios": {} if ratio is None else {"e2e_oidc_userinfo_vs_callback": ratio},
            "machine": {"cores": 2, "ram_gib": 8, "cpu_model": "test", "python": "3.11"}}


def test_the_report_gives_the_oidc_figure_its_ratio_and_the_providers_cost() -> None:
    oidc = _phase(620.0, outcomes={"verified": 90, "fallback:auth_unavailable": 7}, errors={"timeout": 1},
                  verified_per_second=560.0,
                  cpu_cores={"provider": 0.74, "verifier": 0.4},
                  cpu_ms_per_open={"total": 2.9, "verifier": 0.6, "provider": 1.2})
    by_measure = {m.strip(): v for _, m, v, _, _ in rows(_results(oidc, 0.62))}
    assert by_measure["e2e OpenID Connect opens resolved/s (userinfo at the provider; c=128)"] == "620.0"
    assert by_measure["ratio OIDC userinfo / callback (same run; includes the provider's own CPU)"] == "0.62"
    assert by_measure["OIDC: of which verified, per s; latency p50/p99 ms"] == "560.0; 90.0 / 200.0"
    assert by_measure["OIDC: opens not verified (by outcome)"] == "8 (auth_unavailable 7, timeout 1)"
    assert by_measure["OIDC: provider (1 Node.js process, same cores) cores busy"] == "0.74"
    assert by_measure["CPU ms per open, whole box / verifier / provider: OIDC vs callback"] == "2.90 / 0.60 / 1.20 vs 1.70 / 0.50"
    assert "the OpenID Provider (test 2's OIDC variant)" in table(_results(oidc, 0.62))


def test_every_open_verified_says_zero() -> None:
    by_measure = {m.strip(): v for _, m, v, _, _ in rows(_results(_phase(900.0), 0.9))}
    assert by_measure["OIDC: opens not verified (by outcome)"] == "0"


def test_a_skipped_oidc_variant_leaves_no_row_and_no_provider_in_the_note() -> None:
    r = _results(None, None)
    assert not [m for _, m, _, _, _ in rows(r) if "OIDC" in m or "OpenID" in m]
    assert "OpenID Provider" not in table(r)
