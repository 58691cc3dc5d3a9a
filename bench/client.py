"""The load generator: a minimal HTTP/1.1 keep-alive client on asyncio streams, and load shapes.

Deliberately lighter than aiohttp's client (no cookie jar, no header objects): on a 2-core
machine the client shares the CPU with everything it measures, so every microsecond it does
not spend is left to the system under test. Only loopback addresses are ever used.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

try:
    import orjson

    loads = orjson.loads
    dumps = orjson.dumps
except ImportError:  # pragma: no cover - orjson is optional
    import json

    loads = json.loads

    def dumps(v: object) -> bytes:  # type: ignore[misc]
        return json.dumps(v, separators=(",", ":")).encode()


class HttpError(Exception):
    pass


class Conn:
    """One keep-alive connection; requests are sent one after the other."""

    def __init__(self, host: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._host = f"{host}:{port}".encode()
        self.reader, self.writer = reader, writer
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int) -> "Conn":
        assert host.startswith("127.") or host in ("localhost", "::1"), "loopback only"
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(host, port, reader, writer)

    def send(self, method: bytes, path: bytes, body: bytes | None = None, headers: bytes = b"") -> None:
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\n%s" % (method, path, self._host, headers)
        if body is not None:
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        self.writer.write(head + b"\r\n" + (body or b""))

    async def read_head(self) -> tuple[int, bytes]:
        """(status, lower-cased header block) of the next response."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        return int(head[9:12]), head.lower()

    async def read_body(self, head: bytes) -> bytes:
        i = head.find(b"\r\ncontent-length:")
        if head[9:12] in (b"204", b"304"):  # no body, whatever the headers say (RFC 9110 6.4.1)
            body = b""
        elif i >= 0:
            n = int(head[i + 17:head.index(b"\r\n", i + 2)])
            body = await self.reader.readexactly(n)
        elif b"\r\ntransfer-encoding: chunked" in head:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")  # no trailers are sent
                    break
                parts.append((await self.reader.readexactly(size + 2))[:-2])
            body = b"".join(parts)
        else:
            body = await self.reader.read()
            self.closed = True
        if b"\r\nconnection: close" in head:
            self.closed = True
        return body

    async def request(self, method: bytes, path: bytes, body: bytes | None = None) -> tuple[int, bytes]:
        self.send(method, path, body)
        status, head = await self.read_head()
        return status, await self.read_body(head)

    def close(self) -> None:
        self.closed = True
        self.writer.close()


class Pool:
    """Idle connections to one address; a new one is opened whenever none is idle."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[Conn] = []

    async def acquire(self) -> Conn:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and not conn.reader.at_eof():
                return conn
        return await Conn.open(self.host, self.port)

    def release(self, conn: Conn) -> None:
        if not conn.closed:
            self._idle.append(conn)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


# -- operations ------------------------------------------------------------------------------------

Op = Callable[[Conn, int], Awaitable[str]]  # returns an outcome label ("verified", "http-503", ...)

# The widget's three ways to an outcome: POST ?wait=3 (then the stream on a 202, as widget.js does),
# POST then the SSE stream, POST then polling GET every POLL_EVERY seconds.
CLIENT_PATHS = ("wait", "sse", "poll")
POLL_EVERY = 0.2


def open_body(bot_id: str, i: int, visitors: int = 1000) -> bytes:
    return dumps({"bot_id": bot_id, "access_token": f"tok-{i % visitors}"})


def outcome_label(outcome: dict) -> str:
    if outcome.get("status") == "fallback":
        return f"fallback:{(outcome.get('fallback') or {}).get('reason')}"
    return str(outcome.get("status"))


def post_op(path: bytes, bot_id: str) -> Op:
    """POST an open and take the answer (no waiting for the outcome)."""
    async def op(conn: Conn, i: int) -> str:
        status, _ = await conn.request(b"POST", path, open_body(bot_id, i))
        return "accepted" if status == 202 else f"http-{status}"
    return op


async def stream_outcome(conn: Conn, session_id: bytes) -> str:
    """Read a session's SSE stream to its one ``outcome`` event; the outcome's label."""
    status, body = await conn.request(b"GET", b"/v1/widget/sessions/%s/events" % session_id)
    if status != 200:
        return f"sse-http-{status}"
    at = body.find(b"event: outcome")
    if at < 0:
        return "sse-no-outcome"
    data = body.find(b"data:", at)
    end = body.find(b"\n", data)
    return outcome_label(loads(body[data + 5:end if end >= 0 else None]))


def doorman_open_op(bot_for: Callable[[int], str]) -> Op:
    """The widget's whole flow: POST the open, then read the SSE stream to its one ``outcome``."""
    async def op(conn: Conn, i: int) -> str:
        status, body = await conn.request(b"POST", b"/v1/widget/sessions", open_body(bot_for(i), i))
        if status != 202:
            return f"http-{status}"
        return await stream_outcome(conn, loads(body)["session_id"].encode())
    return op


def doorman_wait_op(bot_for: Callable[[int], str], wait: float, answered: Counter | None = None) -> Op:
    """The widget's one-request mode: POST the open with ``?wait=<seconds>``; a 200 carries the
    outcome view (as GET /v1/widget/sessions/{id}), a 202 means "pending": read the SSE stream as
    before. ``answered`` counts how each open was answered ("200" in the POST, "202" then stream)."""
    path = b"/v1/widget/sessions?wait=%s" % f"{wait:g}".encode()

    async def op(conn: Conn, i: int) -> str:
        status, body = await conn.request(b"POST", path, open_body(bot_for(i), i))
        if answered is not None:
            answered[str(status)] += 1
        if status == 200:
            return outcome_label(loads(body))
        if status != 202:
            return f"http-{status}"
        return await stream_outcome(conn, loads(body)["session_id"].encode())
    return op


def doorman_poll_op(bot_for: Callable[[int], str], every: float) -> Op:
    """The documented two-request path without a stream: POST the open, then ``GET`` the session every
    ``every`` seconds until it is no longer ``pending`` (what a server-side renderer or a mobile app
    without SSE does)."""
    async def op(conn: Conn, i: int) -> str:
        status, body = await conn.request(b"POST", b"/v1/widget/sessions", open_body(bot_for(i), i))
        if status not in (200, 202):
            return f"http-{status}"
        view = loads(body)
        path = b"/v1/widget/sessions/%s" % view["session_id"].encode()
        while view.get("status") == "pending":
            await asyncio.sleep(every)
            status, body = await conn.request(b"GET", path)
            if status != 200:
                return f"poll-http-{status}"
            view = loads(body)
        return outcome_label(view)
    return op


def direct_op(bot_id: str) -> Op:
    """The single-process baseline: one POST answered with the outcome."""
    async def op(conn: Conn, i: int) -> str:
        status, body = await conn.request(b"POST", b"/direct", open_body(bot_id, i))
        return outcome_label(loads(body)) if status == 200 else f"http-{status}"
    return op


# -- load shapes -----------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank ``p``th percentile (None for no values)."""
    if not values:
        return None
    xs = sorted(values)
    return round(xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs))) - 1))], 1)


@dataclass
class Run:
    seconds: float
    completed: int = 0  # inside the measured window
    outcomes: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    unfinished: int = 0
    # Open loop only: outcomes of the operations that finished before the schedule's end, and how
    # long each operation still running at the drain timeout had waited when it was cancelled.
    in_window: Counter = field(default_factory=Counter)
    cancelled_after_ms: list[float] = field(default_factory=list)
    latencies_by_outcome_ms: dict[str, list[float]] = field(default_factory=dict)  # open loop only
    start_lag_ms: list[float] = field(default_factory=list)  # open loop only: scheduled -> started here
    by_second_ms: dict[int, list[float]] = field(default_factory=dict)  # open loop only: second of the schedule -> latencies

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float | None:
        return percentile(self.latencies_ms, p)

    def summary(self) -> dict:
        return {
            "seconds": round(self.seconds, 2), "completed": self.completed, "per_second": round(self.rate, 1),
            "p50_ms": self.percentile(50), "p95_ms": self.percentile(95), "p99_ms": self.percentile(99),
            "max_ms": round(max(self.latencies_ms), 1) if self.latencies_ms else None,
            "outcomes": dict(self.outcomes), "errors": dict(self.errors), "unfinished": self.unfinished,
        }


async def closed_loop(pool: Pool, op: Op, *, concurrency: int, seconds: float, warmup: float = 1.0,
                      expect: str | None = None) -> Run:
    """``concurrency`` workers, each on its own connection, one operation after another.

    Counts what completes inside [warmup, warmup + seconds]; operations still running at the
    end are awaited (bounded) so the next phase starts on a quiet system.
    """
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    start, stop = t0 + warmup, t0 + warmup + seconds
    run = Run(seconds)
    counter = iter(range(1 << 62))

    async def worker() -> None:
        conn: Conn | None = None
        try:
            while loop.time() < stop:
                if conn is None or conn.closed:
                    conn = await pool.acquire()
                began = loop.time()
                try:
                    label = await op(conn, next(counter))
                except (OSError, asyncio.IncompleteReadError, ValueError, KeyError) as exc:
                    conn.close()
                    conn = None
                    run.errors[type(exc).__name__] += 1
                    await asyncio.sleep(0.05)
                    continue
                done = loop.time()
                if start <= done <= stop:
                    run.completed += 1
                    run.outcomes[label] += 1
                    run.latencies_ms.append((done - began) * 1000)
        finally:
            if conn is not None:
                pool.release(conn)

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    done, pending = await asyncio.wait(tasks, timeout=warmup + seconds + 30)
    for t in pending:
        t.cancel()
    run.unfinished = len(pending)
    if expect is not None and run.completed and run.outcomes[expect] == 0:
        run.errors[f"no {expect} outcome"] += 1
    return run


async def open_loop(pool: Pool, op: Op, *, rate: float, seconds: float, label_of: Callable[[int], str] | None = None,
                    drain_timeout: float = 25.0, skip: Callable[[int], bool] | None = None) -> dict[str, Run]:
    """Start operation i at t0 + i/rate whatever happened to the others (no coordinated omission);
    latency counts from the scheduled time. Results are grouped by ``label_of(i)`` (default "all").
    Operations for which ``skip(i)`` is true are started but neither awaited nor measured."""
    loop = asyncio.get_running_loop()
    runs: dict[str, Run] = {}
    total = int(rate * seconds)
    t0 = loop.time() + 0.05
    measured: list[asyncio.Task[None]] = []
    unmeasured: list[asyncio.Task[None]] = []

    async def one(i: int, scheduled: float, run: Run | None) -> None:
        conn = None
        try:
            if run is not None:  # how late this client itself started the open (its own CPU share)
                run.start_lag_ms.append((loop.time() - scheduled) * 1000)
            conn = await pool.acquire()
            label = await op(conn, i)
            pool.release(conn)
            conn = None
            if run is not None:
                done = loop.time()
                run.completed += 1
                run.outcomes[label] += 1
                run.latencies_ms.append((done - scheduled) * 1000)
                run.latencies_by_outcome_ms.setdefault(label, []).append((done - scheduled) * 1000)
                run.by_second_ms.setdefault(int(scheduled - t0), []).append((done - scheduled) * 1000)
                if done <= t0 + seconds:
                    run.in_window[label] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError, KeyError) as exc:
            if run is not None:
                run.errors[type(exc).__name__] += 1
        except asyncio.CancelledError:
            if run is not None:
                run.cancelled_after_ms.append((loop.time() - scheduled) * 1000)
            raise
        finally:
            if conn is not None:
                conn.close()

    for i in range(total):
        scheduled = t0 + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if skip is not None and skip(i):
            unmeasured.append(asyncio.create_task(one(i, scheduled, None)))
            continue
        key = label_of(i) if label_of else "all"
        run = runs.setdefault(key, Run(seconds))
        measured.append(asyncio.create_task(one(i, scheduled, run)))
    if measured:
        _, pending = await asyncio.wait(measured, timeout=drain_timeout)
        for t in pending:
            t.cancel()
        if pending:
            runs.setdefault("all", Run(seconds)).unfinished += len(pending)
    for t in unmeasured:
        t.cancel()
    await asyncio.gather(*measured, *unmeasured, return_exceptions=True)
    return runs


async def hold_streams(host: str, port: int, session_ids: list[str], *, connect_concurrency: int = 200,
                       timeout: float = 120.0) -> tuple[list[Conn], Counter, float]:
    """Open one connection per session and send its SSE request; returns the connections (kept
    open), what went wrong, and how long sending took. The gateway sends the stream's headers
    only with its first event, so whether it holds a stream is read from the database (the
    session's ``watcher``), not from the response."""
    sem = asyncio.Semaphore(connect_concurrency)
    conns: list[Conn] = []
    problems: Counter = Counter()
    started = time.monotonic()

    async def one(sid: str) -> None:
        async with sem:
            try:
                conn = await Conn.open(host, port)
                conns.append(conn)
                conn.send(b"GET", b"/v1/widget/sessions/%s/events" % sid.encode())
                await conn.writer.drain()
            except OSError as exc:
                problems[type(exc).__name__] += 1

    tasks = [asyncio.create_task(one(s)) for s in session_ids]
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in pending:
        t.cancel()
    if pending:
        problems["not sent in time"] += len(pending)
    return conns, problems, time.monotonic() - started
