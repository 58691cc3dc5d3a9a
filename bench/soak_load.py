"""The soak's traffic: the widget's three ways to an outcome, logouts, across the gateways.

Open ``i`` goes to bot ``i % len(bots)`` (7 bots: coprime with the 3 paths and the 1-in-10 logouts, so
every bot sees every mix) by one of the paths: ``POST ?wait=3`` (then the SSE stream on a 202, as
widget.js does), ``POST`` then the SSE stream, ``POST`` then polling ``GET`` every 0.2 s. One open in
10 logs out (``DELETE``) once it has its outcome. Callback bots refuse one visitor token in 25
(``no-<n>``: a fallback). Signed-token bots get an HS256 JWT minted at the open.

A gateway that the harness is restarting is taken out of the rotation first (as a load balancer
does on a failing readiness probe); a request that still fails on a connection error is sent again
to another gateway, up to three times (a widget reconnects its stream the same way).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import jwt

from .client import CLIENT_PATHS as PATHS
from .client import POLL_EVERY, Conn, Pool, dumps, loads, outcome_label

WAIT = b"/v1/widget/sessions?wait=3"
OPEN = b"/v1/widget/sessions"
ANSWER_TIMEOUT = 30.0  # the sessions' deadline is 15 s: a working stack answers every open well before
LOGOUT_EVERY = 10
REFUSED_EVERY = 25
ATTEMPTS = 4
CONNECTION_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError)


@dataclass(frozen=True)
class Bot:
    bot_id: str
    signed: tuple[str, str] | None = None  # (kid, secret) of a signed-token bot


class Gateways:
    """Connection pools to each gateway, and which of them take new requests."""

    def __init__(self, ports: list[int]) -> None:
        self.pools = [Pool("127.0.0.1", p) for p in ports]
        self.out: set[int] = set()
        self.failovers = 0

    def pick(self, i: int, avoid: int | None = None) -> int:
        up = [k for k in range(len(self.pools)) if k not in self.out and k != avoid] or \
             [k for k in range(len(self.pools)) if k not in self.out] or list(range(len(self.pools)))
        return up[i % len(up)]

    async def request(self, i: int, method: bytes, path: bytes, body: bytes | None = None) -> tuple[int, bytes]:
        """One request on the gateway ``i`` picks; on a connection error, again on another."""
        k = self.pick(i)
        for attempt in range(ATTEMPTS):
            conn: Conn | None = None
            try:
                conn = await self.pools[k].acquire()
                status, answer = await conn.request(method, path, body)
                self.pools[k].release(conn)
                return status, answer
            except CONNECTION_ERRORS:
                if conn is not None:
                    conn.close()
                if attempt == ATTEMPTS - 1:
                    raise
                self.failovers += 1
                k = self.pick(i + attempt + 1, avoid=k)
                await asyncio.sleep(0.2)
        raise AssertionError("unreachable")

    def close(self) -> None:
        for pool in self.pools:
            pool.close()


@dataclass
class Record:
    """What the client saw, for the soak's checks."""

    seen: dict[str, str] = field(default_factory=dict)  # session id -> v, f, e (logged out) or ? (no answer)
    latencies_by_second: dict[int, list[float]] = field(default_factory=dict)  # scheduled second -> ms
    by_path: dict[str, list[float]] = field(default_factory=dict)
    outcomes: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    two_outcomes: int = 0  # a stream that carried more than one outcome event
    refused: Counter = field(default_factory=Counter)  # POSTs answered neither 200 nor 202
    logouts: Counter = field(default_factory=Counter)  # DELETE statuses

    @property
    def accepted(self) -> int:
        return len(self.seen)

    @property
    def unanswered(self) -> int:
        """Accepted opens whose outcome never reached the client."""
        return sum(1 for code in self.seen.values() if code == "?")


def _token(bot: Bot, i: int) -> str:
    n = i % 1000
    if bot.signed is None:
        return f"no-{n}" if i % REFUSED_EVERY == 7 else f"tok-{n}"
    kid, secret = bot.signed
    now = int(time.time())
    return jwt.encode({"sub": f"v-{n}", "name": f"Visitor {n}", "aud": bot.bot_id, "iat": now, "exp": now + 600},
                      secret, algorithm="HS256", headers={"kid": kid})


def _sse_outcome(body: bytes) -> tuple[dict | None, int]:
    """The stream's outcome (or ended) event's data, and how many such events it carried."""
    events = body.count(b"event: outcome") + body.count(b"event: ended")
    at = body.find(b"event: ")
    if at < 0:
        return None, 0
    data = body.find(b"data:", at)
    end = body.find(b"\n", data)
    return loads(body[data + 5:end if end >= 0 else None]), events


class Widgets:
    """The soak's operation: one open by its path, to its outcome, and a logout for some."""

    def __init__(self, gateways: Gateways, bots: list[Bot], record: Record) -> None:
        self.gateways, self.bots, self.record = gateways, bots, record

    async def open(self, i: int) -> str:
        """Open ``i``'s whole flow; its outcome label (``verified``, ``fallback:<reason>``, ``http-<n>``...)."""
        bot = self.bots[i % len(self.bots)]
        path = PATHS[i % len(PATHS)]
        body = dumps({"bot_id": bot.bot_id, "access_token": _token(bot, i)})
        status, answer = await self.gateways.request(i, b"POST", WAIT if path == "wait" else OPEN, body)
        if status not in (200, 202):
            self.record.refused[status] += 1
            return f"http-{status}"
        view = loads(answer)
        sid = view["session_id"]
        self.record.seen[sid] = "?"
        if status == 202:
            view = await (self._poll(i, sid) if path == "poll" else self._stream(i, sid))
        if view is None or view.get("status") == "pending":
            return "unanswered"
        label = outcome_label(view)
        self.record.seen[sid] = {"verified": "v", "fallback": "f", "ended": "e"}.get(view["status"], "?")
        if i % LOGOUT_EVERY == 0:
            gone, _ = await self.gateways.request(i, b"DELETE", b"/v1/widget/sessions/" + sid.encode())
            self.record.logouts[gone] += 1
            if gone == 204:
                self.record.seen[sid] = "e"
        return label

    async def _stream(self, i: int, sid: str) -> dict | None:
        status, body = await self.gateways.request(i, b"GET", b"/v1/widget/sessions/%s/events" % sid.encode())
        if status != 200:
            self.record.errors[f"sse-http-{status}"] += 1
            return None
        view, events = _sse_outcome(body)
        if events > 1:
            self.record.two_outcomes += 1
        return view

    async def _poll(self, i: int, sid: str) -> dict | None:
        path = b"/v1/widget/sessions/" + sid.encode()
        while True:
            await asyncio.sleep(POLL_EVERY)
            status, body = await self.gateways.request(i, b"GET", path)
            if status != 200:
                self.record.errors[f"poll-http-{status}"] += 1
                return None
            view = loads(body)
            if view.get("status") != "pending":
                return view


async def steady(widgets: Widgets, *, rate: float, seconds: float, first: int = 0,
                 max_in_flight: int = 20_000) -> int:
    """Start open ``first + n`` at t0 + n/rate for ``seconds`` whatever the others do (open loop, no
    coordinated omission); latency counts from the scheduled time. Finished tasks are dropped at once
    (a 30-minute run starts a million). Returns how many opens were started."""
    loop = asyncio.get_running_loop()
    record = widgets.record
    running: set[asyncio.Task[None]] = set()
    t0 = loop.time() + 0.05
    total = int(rate * seconds)

    async def one(i: int, scheduled: float) -> None:
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT):
                label = await widgets.open(i)
        except TimeoutError:
            record.errors["no answer in 30 s"] += 1
            return
        except CONNECTION_ERRORS + (ValueError, KeyError) as exc:
            record.errors[type(exc).__name__] += 1
            return
        ms = (loop.time() - scheduled) * 1000
        record.outcomes[label] += 1
        if label.startswith(("verified", "fallback", "ended")):
            record.latencies_by_second.setdefault(int(scheduled - t0), []).append(ms)
            record.by_path.setdefault(PATHS[i % len(PATHS)], []).append(ms)

    for n in range(total):
        scheduled = t0 + n / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(running) >= max_in_flight:
            record.errors["not started: client at its in-flight cap"] += 1
            continue
        task = asyncio.create_task(one(first + n, scheduled))
        running.add(task)
        task.add_done_callback(running.discard)
    if running:
        await asyncio.wait(running, timeout=ANSWER_TIMEOUT + 5)
    return total
