"""The soak run's verdicts, from what it recorded: pure functions, no I/O (tests/unit/test_soak_checks.py).

Windows scale with the run's length: a 30-minute run has a 5-minute warm-up and compares the
p99 of its first and last 5 minutes; a 3-minute run, 30 s of each. A process's levels (RSS, file
descriptors, connections, asyncio tasks) are judged over its own life: a worker restarted half-way
is a new process with its own warm-up, and no window is taken while the rolling restart moves load
between the replicas.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .client import percentile

FULL_RUN = 1800.0  # seconds: the run the windows are stated for
RSS_GROWTH_MAX = 0.10
P99_RATIO_MAX = 1.5
LEVELS = ("rss", "fds", "conns", "tasks")


@dataclass(frozen=True)
class Windows:
    """The windows of a run of ``seconds``, scaled from the 30-minute run's."""

    seconds: float

    @property
    def scale(self) -> float:
        return self.seconds / FULL_RUN

    @property
    def warmup(self) -> float:
        return 300.0 * self.scale

    @property
    def latency(self) -> float:
        """The first and the last this many seconds are compared (p99)."""
        return 300.0 * self.scale

    @property
    def sample_every(self) -> float:
        return min(10.0, max(2.0, 10.0 * self.scale))

    @property
    def level(self) -> float:
        """A level is read over this many seconds of samples (at least five samples)."""
        return max(60.0 * self.scale, 5 * self.sample_every)


@dataclass(frozen=True)
class Sample:
    """One process at one time. File descriptors, connections and tasks are judged less the
    connections clients hold to it (``inbound``): a gateway keeps a socket and a handler task per
    client connection, and how many a client keeps open follows its load, not a leak. What is left
    (files, pipes, its own pools' connections, half-closed sockets, every other task) should be flat."""

    t: float  # seconds since the soak started
    proc: str  # e.g. "verifier#2.1": role, slot, generation
    rss: int  # bytes
    fds: int
    conns: int  # TCP sockets of the process not listening (established, closing...)
    tasks: int | None  # asyncio tasks, from the process's /metrics (None: not read)
    inbound: int = 0  # established connections to the process's listening ports

    def value(self, measure: str) -> float | None:
        if measure == "rss":
            return self.rss
        own = {"fds": self.fds, "conns": self.conns, "tasks": self.tasks}[measure]
        return None if own is None else own - self.inbound


@dataclass(frozen=True)
class Life:
    role: str
    started: float  # seconds since the soak started (negative: before it)
    stopped: float | None = None  # None: alive at the end


COUNT_SLACK = (0.10, 2)  # a count "grew" when its floor rose by more than 10 % plus 2


@dataclass(frozen=True)
class Level:
    """One measure of one process: its level after warm-up and at the end of its life."""

    baseline: float  # median of the first window after warm-up
    baseline_floor: float  # lowest sample of that window
    end: float  # median of the last window
    end_floor: float

    @property
    def growth(self) -> float:
        """RSS: how much the median grew."""
        return self.end / self.baseline - 1 if self.baseline else 0.0

    @property
    def grew(self) -> bool:
        """Counts (fds, connections, tasks) rise and fall with the work in hand, so they are judged by
        their floor, what the process holds when its load ebbs: a leak raises it, a burst does not."""
        ratio, plus = COUNT_SLACK
        return self.end_floor > self.baseline_floor * (1 + ratio) + plus


Span = tuple[float, float]
REST_MEASURES = ("fds", "conns", "tasks")


def lowest(readings: Iterable[Sample]) -> list[Sample]:
    """Each process's reading with the lowest counts, from several readings at rest (one per process)."""
    best: dict[str, Sample] = {}
    for s in readings:
        key = tuple(s.value(m) or 0 for m in REST_MEASURES)
        if s.proc not in best or key < tuple(best[s.proc].value(m) or 0 for m in REST_MEASURES):
            best[s.proc] = s
    return list(best.values())


def at_rest(before: Iterable[Sample | Mapping[str, Any]],
            after: Iterable[Sample | Mapping[str, Any]]) -> dict[str, dict[str, tuple[float, float] | None]]:
    """{role: {measure: (before, after)}}: the most any of the role's processes held at rest before the steady
    load (after the saturation phase was worked off) and after the drain, less clients' connections.
    Work in hand is nothing at rest, so here a count that grew is left behind: a leak. A worker restarted
    half-way is compared through its role (its predecessor was at rest before)."""
    def by_role(samples: Iterable[Sample | Mapping[str, Any]]) -> dict[str, list[Sample]]:
        out: dict[str, list[Sample]] = {}
        for x in samples:
            s = x if isinstance(x, Sample) else Sample(**x)
            out.setdefault(s.proc.split("#")[0], []).append(s)
        return out

    b, a = by_role(before), by_role(after)
    result: dict[str, dict[str, tuple[float, float] | None]] = {}
    for role in sorted(set(b) | set(a)):
        result[role] = {}
        for m in REST_MEASURES:
            was = [v for s in b.get(role, []) if (v := s.value(m)) is not None]
            now = [v for s in a.get(role, []) if (v := s.value(m)) is not None]
            result[role][m] = (max(was), max(now)) if was and now else None
    return result


def grew_at_rest(before: float, after: float) -> bool:
    ratio, plus = COUNT_SLACK
    return after > before * (1 + ratio) + plus


def level(samples: Sequence[Sample], measure: str, life: Life, end_of_run: float, w: Windows,
          disturbed: Sequence[Span] = ()) -> Level | None:
    """The process's level of ``measure`` in its first window after warm-up and its last window,
    both outside the ``disturbed`` spans (the rolling restart, while the other replicas take the
    load); None when what is left is shorter than two windows or a window has no sample."""
    begin = max(life.started, 0.0) + w.warmup
    end = life.stopped if life.stopped is not None else end_of_run
    values = [(s.t, v) for s in samples if (v := s.value(measure)) is not None and begin <= s.t <= end
              and not any(a <= s.t <= b for a, b in disturbed)]
    if not values or values[-1][0] - values[0][0] < 2 * w.level:
        return None
    first = [v for t, v in values if t < values[0][0] + w.level]
    last = [v for t, v in values if t > values[-1][0] - w.level]
    return Level(baseline=statistics.median(first), baseline_floor=min(first), end=statistics.median(last),
                 end_floor=min(last))


def levels(samples: Iterable[Sample], lives: Mapping[str, Life], end_of_run: float,
           w: Windows, disturbed: Sequence[Span] = ()) -> dict[str, dict[str, Level | None]]:
    """{process: {measure: Level or None}} for every process that lived during the run."""
    by_proc: dict[str, list[Sample]] = {}
    for s in samples:
        by_proc.setdefault(s.proc, []).append(s)
    return {proc: {m: level(by_proc.get(proc, []), m, life, end_of_run, w, disturbed) for m in LEVELS}
            for proc, life in lives.items()}


def latency_windows(by_second: Mapping[int, Sequence[float]], seconds: float, w: Windows) -> dict[str, Any]:
    """p50/p99 of open->outcome for the opens scheduled in the first and in the last window."""
    first = [ms for s, xs in by_second.items() if s < w.latency for ms in xs]
    last = [ms for s, xs in by_second.items() if s >= seconds - w.latency for ms in xs]
    out = {"window_seconds": round(w.latency, 1),
           "first": {"opens": len(first), "p50_ms": percentile(first, 50), "p99_ms": percentile(first, 99)},
           "last": {"opens": len(last), "p50_ms": percentile(last, 50), "p99_ms": percentile(last, 99)}}
    a, b = out["first"]["p99_ms"], out["last"]["p99_ms"]
    out["ratio"] = round(b / a, 2) if a and b is not None else None
    return out


def per_minute(by_second: Mapping[int, Sequence[float]]) -> list[dict[str, Any]]:
    minutes: dict[int, list[float]] = {}
    for s, xs in by_second.items():
        minutes.setdefault(s // 60, []).extend(xs)
    return [{"minute": m, "opens": len(xs), "p50_ms": percentile(xs, 50), "p99_ms": percentile(xs, 99)}
            for m, xs in sorted(minutes.items())]


# -- lost and duplicated -----------------------------------------------------------------------------


def disagreements(seen: Mapping[str, str], stored: Mapping[str, str]) -> dict[str, int]:
    """Compare each accepted open's outcome as the client saw it (``seen``: session id -> v, f or e
    for verified, fallback, ended after a logout; ? when none reached it) with its row (``stored``:
    session id -> status). ``missing``: no row; ``pending``: still unresolved; ``differ``: another
    outcome than the client's."""
    status = {"v": "verified", "f": "fallback", "e": "ended"}
    counts = Counter({"missing": 0, "pending": 0, "differ": 0})
    for sid, code in seen.items():
        row = stored.get(sid)
        if row is None:
            counts["missing"] += 1
        elif row == "pending":
            counts["pending"] += 1
        elif code in status and row != status[code]:
            counts["differ"] += 1
    return dict(counts)


Delivery = tuple[str, str, bool, str | None, str | None, str | None]  # bench/customer.py's webhook record


def webhook_checks(received: Sequence[Delivery], stored: Mapping[str, str], erased: Mapping[str, str]) -> dict[str, int]:
    """The webhook endpoint's records against the deliveries table (``stored``: delivery id -> status)
    and the contacts erased during the run (``erased``: contact id -> "bot:identifier").

    * ``repeated``: a delivery id received more than once (the endpoint answers 200 at once, so no
      documented retry applies);
    * ``undelivered``: a stored delivery not ``delivered`` or never received;
    * ``unknown``: received but not stored, unless it is about a contact erased since (erasure
      removes the contact's deliveries);
    * ``unsigned``: received without a signature;
    * ``session_fell_back_twice``: more than one ``session.fell_back`` for a session;
    * ``contact_created_twice``: more than one ``contact.created`` for a contact id, or for a visitor
      (bot and identifier) more often than once plus the times its contact was erased.
    """
    ids = Counter(r[0] for r in received)
    first = {r[0]: r for r in received}
    erasures = Counter(erased.values())
    fell_back = Counter(r[3] for r in first.values() if r[1] == "session.fell_back")
    created_by_contact = Counter(r[4] for r in first.values() if r[1] == "contact.created")
    created_by_visitor = Counter(r[5] for r in first.values() if r[1] == "contact.created")
    return {
        "received": len(received), "stored": len(stored),
        "repeated": sum(n - 1 for n in ids.values() if n > 1),
        "undelivered": sum(1 for d, status in stored.items() if status != "delivered" or d not in ids),
        "unknown": sum(1 for d, r in first.items() if d not in stored and r[4] not in erased),
        "unsigned": sum(1 for r in received if not r[2]),
        "session_fell_back_twice": sum(n - 1 for n in fell_back.values() if n > 1),
        "contact_created_twice": sum(n - 1 for n in created_by_contact.values() if n > 1)
        + sum(max(0, n - 1 - erasures[v]) for v, n in created_by_visitor.items()),
    }


def unknown_deliveries(received: Sequence[Delivery], stored: Mapping[str, str], erased: Mapping[str, str],
                       limit: int = 20) -> list[dict[str, str | None]]:
    """The first ``limit`` deliveries that ``webhook_checks`` counts as ``unknown``, with what each was about
    (its event type, session, contact, visitor): what a failed row needs to be diagnosed after the run."""
    first = {r[0]: r for r in received}
    return [{"delivery_id": d, "event": r[1], "session_id": r[3], "contact_id": r[4], "visitor": r[5]}
            for d, r in first.items() if d not in stored and r[4] not in erased][:limit]


# -- the verdicts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    criterion: str
    value: str
    target: str
    met: bool | None  # None: nothing to judge


def _judged(levels_: Mapping[str, Mapping[str, Level | None]], measure: str) -> tuple[list[str], list[str]]:
    """(processes with a level of ``measure``, processes that did not live long enough for one)."""
    judged = sorted(p for p, ms in levels_.items() if ms.get(measure) is not None)
    return judged, sorted(p for p in levels_ if p not in judged)


def _level(x: Level | Mapping[str, float] | None) -> Level | None:
    """A Level, also from its JSON form (soak.json)."""
    if x is None or isinstance(x, Level):
        return x
    return Level(baseline=x["baseline"], baseline_floor=x["baseline_floor"], end=x["end"], end_floor=x["end_floor"])


def verdicts(result: Mapping[str, Any]) -> list[Verdict]:
    """Every criterion of the soak, met or not, with the figures behind it."""
    out: list[Verdict] = []
    lv = {proc: {m: _level(x) for m, x in ms.items()} for proc, ms in result["levels"].items()}
    judged, short = _judged(lv, "rss")
    if judged:
        worst = max(judged, key=lambda p: lv[p]["rss"].growth)  # type: ignore[union-attr]
        g = lv[worst]["rss"]
        assert g is not None
        out.append(Verdict(f"RSS growth after warm-up, worst process ({len(judged)} judged)",
                           f"{worst} {g.growth:+.1%} ({g.baseline / 2**20:.1f} -> {g.end / 2**20:.1f} MB)",
                           f"<= {RSS_GROWTH_MAX:.0%} each", all(lv[p]["rss"].growth <= RSS_GROWTH_MAX for p in judged)))  # type: ignore[union-attr]
    else:
        out.append(Verdict("RSS growth after warm-up", "no process lived long enough", f"<= {RSS_GROWTH_MAX:.0%}", None))
    for measure, name in (("fds", "open fds"), ("conns", "TCP connections"), ("tasks", "asyncio tasks")):
        judged, _ = _judged(lv, measure)
        grew = [p for p in judged if lv[p][measure].grew]  # type: ignore[union-attr]
        rise = sorted(judged, key=lambda p: lv[p][measure].end_floor - lv[p][measure].baseline_floor)  # type: ignore[union-attr]
        figures = ", ".join(f"{p} {lv[p][measure].baseline_floor:g}->{lv[p][measure].end_floor:g}"  # type: ignore[union-attr]
                            for p in (grew or rise[-2:]))
        # Tasks are one per event or call in hand: under load their floor follows the work, so they are judged
        # at rest (below); under load they are shown only.
        judge = measure != "tasks" or "at_rest" not in result
        out.append(Verdict(f"{name} less clients' connections: floor not grown" + ("" if judge else " (shown; judged at rest)"),
                           f"{len(grew)} of {len(judged)} grew" + (f"; {figures}" if figures else ""),
                           f"<= +{COUNT_SLACK[0]:.0%} + {COUNT_SLACK[1]}" if judge else "",
                           ((not grew) if judged else None) if judge else None))
    if "at_rest" in result:
        rest = at_rest(result["at_rest"]["before"], result["at_rest"]["after"])
        pairs = [(role, m, ba) for role, ms in rest.items() for m, ba in ms.items() if ba is not None]
        left = [(role, m, ba) for role, m, ba in pairs if grew_at_rest(*ba)]
        shown = left or [(role, m, ba) for role, m, ba in pairs if m == "tasks"]
        out.append(Verdict("at rest after the run vs before: fds, connections, tasks per role, less clients' connections",
                           f"{len(left)} of {len(pairs)} grew; "
                           + ", ".join(f"{role} {m} {ba[0]:g}->{ba[1]:g}" for role, m, ba in shown),
                           f"<= +{COUNT_SLACK[0]:.0%} + {COUNT_SLACK[1]}", (not left) if pairs else None))
    if short:
        out.append(Verdict("processes too short-lived after warm-up to judge", ", ".join(short), "", None))
    lat = result["latency"]
    out.append(Verdict(f"p99 open->outcome, last {lat['window_seconds']:g} s vs first",
                       f"{lat['last']['p99_ms']} vs {lat['first']['p99_ms']} ms ({lat['ratio']}x)",
                       f"<= {P99_RATIO_MAX}x", None if lat["ratio"] is None else lat["ratio"] <= P99_RATIO_MAX))
    lost = result["lost"]
    lost_n = lost["missing"] + lost["pending"] + lost["rows_pending"]
    out.append(Verdict("lost: accepted opens without one outcome in the database",
                       f"{lost_n} (no row {lost['missing']}, pending {lost['pending']}, other rows pending "
                       f"{lost['rows_pending']})", "0", lost_n == 0))
    out.append(Verdict("visitors left without an answer (after retrying the other gateway)",
                       f"{result['unanswered']} of {result['accepted']:,} accepted", "0", result["unanswered"] == 0))
    dup = result["duplicated"]
    dup_n = dup["differ"] + dup["streams_with_two_outcomes"] + dup["contacts"] + sum(
        result["webhooks"][k] for k in ("repeated", "session_fell_back_twice", "contact_created_twice"))
    out.append(Verdict("duplicated: outcomes, contacts, webhook deliveries",
                       f"{dup_n} (client vs row {dup['differ']}, two outcomes on a stream "
                       f"{dup['streams_with_two_outcomes']}, contacts {dup['contacts']}, webhook ids repeated "
                       f"{result['webhooks']['repeated']}, fell back twice {result['webhooks']['session_fell_back_twice']}, "
                       f"created twice {result['webhooks']['contact_created_twice']})", "0", dup_n == 0))
    wh = result["webhooks"]
    out.append(Verdict("webhooks delivered (stored deliveries received once, none unknown or unsigned)",
                       f"{wh['stored'] - wh['undelivered']:,} of {wh['stored']:,}; unknown {wh['unknown']}, "
                       f"unsigned {wh['unsigned']}", "all",
                       wh["stored"] > 0 and wh["undelivered"] == 0 and wh["unknown"] == 0 and wh["unsigned"] == 0))
    restarts = result["restarts"]
    clean = [r for r in restarts if r["exit_code"] == 0]
    out.append(Verdict("rolling restart: SIGTERM, exit 0, replacement ready",
                       f"{len(clean)} of {len(restarts)} ({', '.join(sorted({r['role'] for r in restarts}))})",
                       "all", bool(restarts) and len(clean) == len(restarts) and all(r["ready"] for r in restarts)))
    return out


def table(result: Mapping[str, Any]) -> str:
    rows = [(v.criterion, v.value, v.target, "" if v.met is None else ("yes" if v.met else "FAILED"))
            for v in verdicts(result)]
    heads = ("criterion", "measured", "target", "met")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    fmt = " | ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*heads), "-+-".join("-" * w for w in widths), *(fmt.format(*r) for r in rows)])


def passed(result: Mapping[str, Any]) -> bool:
    return all(v.met is not False for v in verdicts(result))
