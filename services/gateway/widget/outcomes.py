"""Delivering outcomes to the widgets waiting on this replica.

Each gateway replica consumes its own exclusive queue, bound to
``session.resolved.<replica>``. The contacts service sends every outcome to the replica
that opened the session (its id says which; see :mod:`shared.sessions`) and, when a
stream for it is held elsewhere, to that replica too; the widget's view travels in the
notification, so a waiting stream or ``?wait`` answers without reading the database.

The hub keeps, per replica: the sessions it opened that are still pending (the input
of admission control), the streams and requests waiting, and outcomes that came before
anyone asked (briefly). One tick for the whole hub re-reads the sessions waited on for
a while, in one query, in case a notification was lost, and pings the waiting streams:
no timer or task per stream.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web

from shared.events import SessionResolved, decode
from shared.messaging import Topology, declare

from .admission import Admission

log = structlog.get_logger("doorman.gateway.outcomes")

View = Mapping[str, Any]  # a session's view (shared.widget_view.SessionView), as told or read; {}: no such session
PING = b": ping\n\n"
ReadViews = Callable[[Sequence[str]], Awaitable[Mapping[str, View]]]


@dataclass
class _Waiting:
    since: float
    futures: list[asyncio.Future[View]] = field(default_factory=list)


class OutcomeHub:
    def __init__(self, replica: str, admission: Admission, *, recent_seconds: float = 60.0,
                 recent_max: int = 50_000, ping_seconds: float = 15.0) -> None:
        self.replica = replica
        self.admission = admission
        self._opened: dict[str, float] = {}  # session id -> when this replica opened it (monotonic)
        self._held: set[str] = set()  # of those, the ones whose event waited in the database for the broker
        self._waiting: dict[str, _Waiting] = {}
        self._recent: OrderedDict[str, tuple[float, View]] = OrderedDict()  # told before anyone asked
        self._recent_seconds = recent_seconds
        self._recent_max = recent_max
        self._streams: set[web.StreamResponse] = set()
        self._ping_seconds = ping_seconds
        self._pinged = time.monotonic()

    # -- sessions opened here ----------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Sessions this replica opened that have no outcome yet."""
        return len(self._opened)

    def opened(self, session_ids: Sequence[str], arrived: Sequence[float] | None = None) -> None:
        """Sessions opened here, each since ``arrived`` (monotonic; default now): when its request came in,
        so that admission control's delay includes the wait for the batch that stores it."""
        now = time.monotonic()
        for session_id, at in zip(session_ids, arrived if arrived is not None else [now] * len(session_ids),
                                  strict=True):
            self._opened[session_id] = at

    def held(self, session_ids: Sequence[str]) -> None:
        """These opens wait in the database for the broker: still in flight (admission control counts them),
        but their delay measures the broker's absence, not a queue in the pipeline, so it is not observed."""
        self._held.update(s for s in session_ids if s in self._opened)

    def forget(self, session_ids: Sequence[str]) -> None:
        for session_id in session_ids:
            self._opened.pop(session_id, None)
            self._held.discard(session_id)

    def pending_here(self, session_id: str) -> bool:
        return session_id in self._opened

    # -- waiting -------------------------------------------------------------------------------------

    def watch(self, session_id: str) -> asyncio.Future[View]:
        """A future for the session's outcome view (already done if it came before the question).
        Cancel it (or let :meth:`unwatch` do it) when no longer interested."""
        future: asyncio.Future[View] = asyncio.get_running_loop().create_future()
        known = self._recent.get(session_id)
        if known is not None:
            future.set_result(known[1])
            return future
        self._waiting.setdefault(session_id, _Waiting(time.monotonic())).futures.append(future)
        return future

    def unwatch(self, session_id: str, future: asyncio.Future[View]) -> None:
        waiting = self._waiting.get(session_id)
        if waiting is not None:
            if future in waiting.futures:
                waiting.futures.remove(future)
            if not waiting.futures:
                del self._waiting[session_id]
        future.cancel()

    def streaming(self, stream: web.StreamResponse) -> None:
        """Keep ``stream`` alive with the hub's pings while it waits (until :meth:`done_streaming`)."""
        self._streams.add(stream)

    def done_streaming(self, stream: web.StreamResponse) -> None:
        self._streams.discard(stream)

    async def _ping(self) -> None:
        """A comment line on every waiting stream, so proxies and browsers keep them open."""
        results = await asyncio.gather(*(s.write(PING) for s in list(self._streams)), return_exceptions=True)
        if gone := sum(isinstance(r, Exception) for r in results):
            log.info("streams gone while pinging", streams=gone)

    def resolved(self, told: SessionResolved) -> None:
        """An outcome, or an end (``ended``: the visitor logged out or was revoked, whichever replica
        was asked): a waiting stream gets it, and a later question here is answered with it."""
        opened_at = self._opened.pop(told.session_id, None)
        held = told.session_id in self._held
        self._held.discard(told.session_id)
        # A logout says nothing about the pipeline's delay, nor does an open that waited for the broker.
        if opened_at is not None and told.status != "ended" and not held:
            # The pipeline's own delay: open to outcome, minus the time the business took to answer.
            business = (told.facts.auth_latency_ms or 0.0) / 1000
            self.admission.observe(time.monotonic() - opened_at - business)
        if told.view is not None:
            self._tell(told.session_id, told.view)

    def refused(self, views: Mapping[str, View]) -> None:
        """Opens refused by admission control, stored already resolved (``fallback(busy)``) and told to no one:
        a stream here answers from memory, as for an outcome told before anyone asked. Under overload most
        opens are these, and reading each one's row back (a watcher write, then a read) would make refusing
        an open cost more than verifying one."""
        for session_id, view in views.items():
            self._remember(session_id, view)

    def changed(self, session_id: str) -> None:
        """The session's view changed here (its form was sent): what was remembered of it is stale."""
        self._recent.pop(session_id, None)

    def _tell(self, session_id: str, view: View) -> None:
        waiting = self._waiting.pop(session_id, None)
        if waiting is None:
            self._remember(session_id, view)
            return
        for future in waiting.futures:
            if not future.done():
                future.set_result(view)

    def _remember(self, session_id: str, view: View) -> None:
        self._recent[session_id] = (time.monotonic(), view)
        while len(self._recent) > self._recent_max:
            self._recent.popitem(last=False)

    # -- the tick ------------------------------------------------------------------------------------

    async def tick(self, read_views: ReadViews, *, poll_seconds: float, forget_after: float) -> None:
        """Re-read the sessions waited on for ``poll_seconds`` (one query), forget old outcomes,
        and stop counting sessions opened here more than ``forget_after`` ago (their outcome was lost
        to us; the database still has it)."""
        now = time.monotonic()
        if now - self._pinged >= self._ping_seconds:
            self._pinged = now
            await self._ping()
        while self._recent and next(iter(self._recent.values()))[0] < now - self._recent_seconds:
            self._recent.popitem(last=False)
        self.forget([s for s, at in self._opened.items() if at < now - forget_after])
        overdue = [s for s, w in self._waiting.items() if w.since < now - poll_seconds]
        if not overdue:
            return
        views = await read_views(overdue)
        for session_id in overdue:
            view = views.get(session_id)
            if view is None or view["status"] != "pending":
                self._tell(session_id, view if view is not None else {})
            elif session_id in self._waiting:
                self._waiting[session_id].since = time.monotonic()


async def tick_forever(hub: OutcomeHub, read_views: ReadViews, *, poll_seconds: float, forget_after: float) -> None:
    """The hub's one tick, forever (run it with :func:`shared.service.background`)."""
    while True:
        await asyncio.sleep(min(poll_seconds, 1.0))
        try:
            await hub.tick(read_views, poll_seconds=poll_seconds, forget_after=forget_after)
        except Exception as exc:  # the database blinked: next tick
            log.warning("outcome re-read failed", error=repr(exc))


@asynccontextmanager
async def consume_outcomes(
    conn: aio_pika.abc.AbstractConnection, topology: Topology, hub: OutcomeHub,
) -> AsyncIterator[None]:
    channel = await conn.channel()
    try:
        await channel.set_qos(prefetch_count=256)
        exchange = await declare(channel, topology)
        queue = await channel.declare_queue(
            topology.queue(f"gateway.{hub.replica}"), exclusive=True, auto_delete=True, durable=False,
        )
        await queue.bind(exchange, routing_key=f"{SessionResolved.event_type}.{hub.replica}")

        async def on_message(message: AbstractIncomingMessage) -> None:
            try:
                told = decode(SessionResolved.event_type, message.body)
            except ValueError:
                log.warning("undecodable outcome notification dropped")
                return
            for event in told:
                assert isinstance(event, SessionResolved)
                hub.resolved(event)

        tag = await queue.consume(on_message, no_ack=True)
        try:
            yield
        finally:
            try:
                await queue.cancel(tag)
            except Exception as exc:  # the broker is gone: there is nothing left to cancel
                log.warning("outcome consumer cancel failed", error=repr(exc))
    finally:
        await channel.close()
