"""One table from the results, with each target met or missed; the same in results/latest.json."""

from __future__ import annotations

from typing import Any

from .machine import line as machine_line


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        v = f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
    elif isinstance(v, int):
        v = f"{v:,}"
    return f"{v}{unit}"


def _met(value: float | None, target: float, *, at_least: bool) -> bool | None:
    if value is None:
        return None
    return value >= target if at_least else value <= target


def rows(r: dict[str, Any]) -> list[tuple[str, str, str, str, bool | None]]:
    """(test, measure, value, target, met)."""
    out: list[tuple[str, str, str, str, bool | None]] = []
    add = lambda *row: out.append(row)  # noqa: E731
    if p := r.get("post"):
        add("1", f"plain aiohttp JSON POST, req/s (c={p['concurrency']})", _fmt(p["plain"]["per_second"]), "", None)
        if a := p.get("gateway_alone"):
            add("1", "gateway POST alone (verifier, contacts stopped), req/s", _fmt(a["per_second"]), "", None)
            add("1", "  ratio gateway POST alone / plain", _fmt(p["ratio_alone"]), ">= 0.4",
                _met(p["ratio_alone"], 0.4, at_least=True))
        add("1", "gateway POST with verifier + contacts consuming, req/s", _fmt(p["gateway"]["per_second"]), "", None)
        add("1", "  ratio gateway POST combined / plain", _fmt(p["ratio"]), "", None)
        if a and "db" in a and "db" in p["gateway"]:
            add("1", "  sessions opened as busy (admission control): alone / combined",
                f"{_busy(a['db'])} / {_busy(p['gateway']['db'])}", "", None)
        if w := p.get("wrk"):
            add("1", "  combined with wrk (C client): plain / gateway req/s",
                f"{_fmt(w['plain']['per_second'])} / {_fmt((w.get('gateway') or {}).get('per_second'))}", "", None)
            add("1", "  wrk ratio gateway combined / plain", _fmt(w.get("ratio")), "", None)
    if e := r.get("e2e"):
        s, f = e["saturation"], e["fixed"]
        add("2", f"e2e opens resolved/s, 1 verifier + 1 contacts (c={s['concurrency']})", _fmt(s["per_second"]),
            ">= 1300", _met(s["per_second"], 1300, at_least=True))
        if (ratio := r["ratios"].get("e2e_vs_direct")) is not None:
            add("2", "  ratio e2e / direct (test 3)", _fmt(ratio), ">= 0.75", _met(ratio, 0.75, at_least=True))
        add("2", "  latency at saturation p50/p99 ms", f"{_fmt(s['p50_ms'])} / {_fmt(s['p99_ms'])}", "", None)
        if t := e.get("saturation_signed_token"):
            add("2", f"e2e signed-token opens resolved/s (HS256 JWT, no call; c={t['concurrency']})",
                _fmt(t["per_second"]), "", None)
            ratio = r["ratios"].get("e2e_signed_token_vs_callback")
            add("2", "  ratio signed token / callback (same run)", _fmt(ratio), ">= 1", _met(ratio, 1, at_least=True))
            add("2", "  signed token: latency p50/p99 ms", f"{_fmt(t['p50_ms'])} / {_fmt(t['p99_ms'])}", "", None)
            add("2", "  CPU ms per open, whole box / verifier: token vs callback",
                f"{_cpu(t, 'total')} / {_cpu(t, 'verifier')} vs {_cpu(s, 'total')} / {_cpu(s, 'verifier')}", "", None)
        if o := e.get("saturation_oidc"):
            add("2", f"e2e OpenID Connect opens resolved/s (userinfo at the provider; c={o['concurrency']})",
                _fmt(o["per_second"]), "", None)
            add("2", "  ratio OIDC userinfo / callback (same run; includes the provider's own CPU)",
                _fmt(r["ratios"].get("e2e_oidc_userinfo_vs_callback")), "", None)
            add("2", "  OIDC: of which verified, per s; latency p50/p99 ms",
                f"{_fmt(o.get('verified_per_second'))}; {_fmt(o['p50_ms'])} / {_fmt(o['p99_ms'])}", "", None)
            add("2", "  OIDC: opens not verified (by outcome)", _not_verified_by_outcome(o), "", None)
            add("2", "  OIDC: provider (1 Node.js process, same cores) cores busy",
                _fmt((o.get("cpu_cores") or {}).get("provider")), "", None)
            add("2", "  CPU ms per open, whole box / verifier / provider: OIDC vs callback",
                f"{_cpu(o, 'total')} / {_cpu(o, 'verifier')} / {_cpu(o, 'provider')} vs "
                f"{_cpu(s, 'total')} / {_cpu(s, 'verifier')}", "", None)
        if w := e.get("saturation_wait"):
            add("2", f"e2e with ?wait={w['wait_seconds']:g}, resolved/s (c={w['concurrency']})", _fmt(w["per_second"]), "", None)
            answered = w.get("answered", {})
            add("2", "  POSTs answered 200 with the outcome / 202 then stream",
                f"{_fmt(answered.get('200', 0))} / {_fmt(answered.get('202', 0))}", "", None)
        add("2", f"open->outcome at {f['offered_per_second']:.0f}/s: p50/p95/p99 ms",
            f"{_fmt(f.get('p50_ms'))} / {_fmt(f.get('p95_ms'))} / {_fmt(f.get('p99_ms'))}", "p99 <= 50",
            _met(f.get("p99_ms"), 50, at_least=False))
        add("2", "  (achieved rate; non-verified or failed)", f"{_fmt(f.get('per_second'))}/s; {_not_verified(f)}", "", None)
    if d := r.get("direct"):
        add("3", "direct single-process reference, resolved/s", _fmt(d["saturation"]["per_second"]), "", None)
        df = d["fixed"]
        add("3", f"  direct at {df['offered_per_second']:.0f}/s: p50/p95/p99 ms",
            f"{_fmt(df.get('p50_ms'))} / {_fmt(df.get('p95_ms'))} / {_fmt(df.get('p99_ms'))}", "", None)
    if b := r.get("drain"):
        add("4", f"contacts backlog drain ({b['doorman']['events']:,} events, 1 per message), events/s", _fmt(b["doorman"]["per_second"]), "", None)
        add("4", f"raw batched asyncpg upsert (batch {b['raw_upsert']['batch']}), rows/s", _fmt(b["raw_upsert"]["per_second"]), "", None)
        add("4", "  ratio drain / raw", _fmt(b["ratio"]), ">= 0.3", _met(b["ratio"], 0.3, at_least=True))
        if bb := b.get("doorman_batched"):
            add("4", f"  the same backlog as the verifier sends it ({bb['events_per_message']} per message), events/s; ratio",
                f"{_fmt(bb['per_second'])}; {_fmt(b['ratio_batched'])}", "", None)
    if i := r.get("isolation"):
        add("5", f"others' p99 at {i['offered_per_second']:.0f}/s, 1 bot in {round(1 / i['hanging_share'])}: before / during hang, ms",
            f"{_fmt(i['before']['others']['p99_ms'])} / {_fmt(i['during']['others']['p99_ms'])}", "", None)
        add("5", "  ratio during / before", _fmt(i["ratio"]), "<= 1.2", _met(i["ratio"], 1.2, at_least=False))
    if m := r.get("rss_rest_mb"):
        add("6", "RSS at rest, MB (gateway / verifier / contacts)",
            " / ".join(_fmt(m.get(k)) for k in ("gateway", "verifier", "contacts")), "", None)
    if e := r.get("e2e"):
        m = e["saturation"]["peak_rss_mb"]
        add("6", "RSS peak under e2e load, MB (gateway / verifier / contacts)",
            " / ".join(_fmt(m.get(k)) for k in ("gateway", "verifier", "contacts")), "", None)
    if s := r.get("streams"):
        target_ok = _met(s["gateway_rss_peak_mb"], 150, at_least=False) if s["open"] >= 10_000 else None
        add("6", f"gateway RSS with {s['open']:,}/{s['streams']:,} waiting SSE streams, MB",
            _fmt(s["gateway_rss_peak_mb"]), "<= 150 (10,000)", target_ok)
        add("6", "  gateway KB per stream; cores used by gateway while only holding them",
            f"{_fmt(s['gateway_kb_per_stream'])}; {_fmt(s['cpu_cores_while_holding'].get('gateway'))}", "", None)
        if (plain := s.get("plain")) and plain["held"]:
            add("6", f"  plain aiohttp holding {plain['held']:,} streams: RSS at rest / peak MB; KB per stream",
                f"{_fmt(plain['rss_before_mb'])} / {_fmt(plain['rss_peak_mb'])}; {_fmt(plain['kb_per_stream'])}", "", None)
            add("6", "  gateway at rest above plain, MB; KB per stream above plain",
                f"{_fmt(s['gateway_rss_before_mb'] - plain['rss_before_mb'])}; "
                f"{_fmt(s['gateway_kb_per_stream_above_plain'])}", "", None)
    if so := r.get("scale"):
        add("7", "e2e resolved/s, 2 verifiers + 2 contacts", _fmt(so["per_second"]), "", None)
        if r.get("e2e"):
            add("7", "  ratio 2+2 / 1+1", _fmt(r["ratios"]["scale_out"]), "", None)
    goodput_ratios = r["ratios"].get("overload_goodput_vs_e2e") or {}
    for path, o in (r.get("overload") or {}).items():
        _overload_rows(add, o, goodput_ratios.get(path))
    return out


def _cpu(phase: dict[str, Any], who: str) -> str:
    return _fmt((phase.get("cpu_ms_per_open") or {}).get(who))


def _not_verified(phase: dict[str, Any]) -> int:
    """Opens of a phase that ended in anything but ``verified``, client-side errors included."""
    return (sum(v for k, v in phase.get("outcomes", {}).items() if k != "verified")
            + sum(phase.get("errors", {}).values()))


def _not_verified_by_outcome(phase: dict[str, Any]) -> str:
    """``_not_verified`` with its split, e.g. ``217 (busy 200, auth_unavailable 17)``."""
    split = {k.removeprefix("fallback:"): v for k, v in phase.get("outcomes", {}).items() if k != "verified"}
    split |= phase.get("errors", {})
    detail = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(split.items()) if v)
    return f"{_fmt(_not_verified(phase))}" + (f" ({detail})" if detail else "")


def _busy(db: dict[str, Any]) -> str:
    return f"{_fmt(db['by_outcome'].get('fallback:busy', 0))} of {_fmt(db['sessions'])}"


PATH_NAMES = {"wait": "POST ?wait=3 (widget.js)", "sse": "POST + SSE stream", "poll": "POST + polling GET"}


def _overload_rows(add, o: dict[str, Any], goodput_ratio: float | None) -> None:  # type: ignore[no-untyped-def]
    t, c = o["time_to_answer"], o["counts"]
    add("8", f"overload, {PATH_NAMES[o['path']]}: offered {o['offered_per_second']:.0f} opens/s for {o['seconds']:g} s "
             f"({o['rate_source']})",
        _fmt(o["offered"]), "", None)
    add("8", "  time to an answer p50/p95/p99 ms", f"{_fmt(t['p50_ms'])} / {_fmt(t['p95_ms'])} / {_fmt(t['p99_ms'])}",
        "p99 <= 2000", _met(t["p99_ms"], 2000, at_least=False))
    if by := o.get("time_to_answer_by_outcome"):
        add("8", "    by outcome, p50/p99 ms", "; ".join(
            f"{label.removeprefix('fallback:')} {_fmt(v['p50_ms'])}/{_fmt(v['p99_ms'])}" for label, v in sorted(by.items())),
            "", None)
    if lag := o.get("client_start_lag_ms"):
        add("8", "    of which the load client's own lateness, p50/p99 ms", f"{_fmt(lag['p50'])} / {_fmt(lag['p99'])}", "", None)
    add("8", "  verified / busy / other fallback / 503 / errors / unfinished",
        " / ".join(_fmt(c[k]) for k in ("verified", "fallback:busy", "fallback:other", "http-503", "errors", "unfinished")),
        "", None)
    add("8", "  verified goodput in the window, per s", _fmt(o["goodput_per_second"]), "", None)
    add("8", "  ratio goodput / e2e saturation (test 2)", _fmt(goodput_ratio), ">= 0.8",
        _met(goodput_ratio, 0.8, at_least=True))
    add("8", f"  late sessions (resolved > deadline + {o['db']['late_grace_seconds']:g} s), of all in the phase",
        f"{_fmt(o['late'])} of {_fmt(o['db']['sessions'])}", "= 0", _met(o["late"], 0, at_least=False))
    if tcp := o.get("tcp"):
        add("8", "  kernel (whole box): accept-queue overflows / SYN retransmits",
            f"{_fmt(tcp.get('ListenOverflows'))} / {_fmt(tcp.get('TCPSynRetrans'))}", "", None)


def table(r: dict[str, Any]) -> str:
    data = rows(r)
    heads = ("#", "measure", "value", "target", "met")
    cells = [(t, m, v, g, "" if ok is None else ("yes" if ok else "MISSED")) for t, m, v, g, ok in data]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(heads)]
    fmt = " | ".join(f"{{:{'>' if i == 2 else '<'}{w}}}" for i, w in enumerate(widths))
    lines = [machine_line(r["machine"]), fmt.format(*heads), "-+-".join("-" * w for w in widths)]
    lines += [fmt.format(*c) for c in cells]
    for name, cores in _cores(r):
        if cores:
            lines.append(f"cores busy during {name}: " + ", ".join(f"{k} {v}" for k, v in cores.items() if v))
    provider = ", the OpenID Provider (test 2's OIDC variant)" if (r.get("e2e") or {}).get("saturation_oidc") else ""
    lines.append(f"Client (this process), RabbitMQ, PostgreSQL, the fake customer API{provider} and every service share "
                 f"the {r['machine']['cores']} cores: figures are for this whole box, not one service alone.")
    return "\n".join(lines)


def _cores(r: dict[str, Any]) -> list[tuple[str, dict[str, float] | None]]:
    """(phase, average cores per component) of the phases at saturation or overload."""
    post, e2e, direct, scale, over = (r.get(k) or {} for k in ("post", "e2e", "direct", "scale", "overload"))
    return [
        ("post alone at saturation", (post.get("gateway_alone") or {}).get("cpu_cores")),
        ("post combined at saturation", (post.get("gateway") or {}).get("cpu_cores")),
        ("e2e at saturation", (e2e.get("saturation") or {}).get("cpu_cores")),
        ("e2e OIDC at saturation", (e2e.get("saturation_oidc") or {}).get("cpu_cores")),
        ("direct at saturation", (direct.get("saturation") or {}).get("cpu_cores")),
        ("scale at saturation", scale.get("cpu_cores")),
        *((f"overload's offered window ({path})", o.get("cpu_cores")) for path, o in over.items()),
    ]


def targets(r: dict[str, Any]) -> dict[str, bool | None]:
    return {m.strip(): ok for _, m, _, g, ok in rows(r) if g}
