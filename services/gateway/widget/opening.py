"""Opening widget sessions, many per round trip.

Every ``POST /v1/widget/sessions`` hands its open to :class:`Opens`, one
:class:`~shared.batching.Batcher` for admitted opens and one for refused ones; each flush records
the waiting opens in one statement, then publishes their ``widget.opened`` events in one confirmed
message: on the happy path, nothing more.

The session row is the outbox of its event. If the broker does not confirm (or the publisher
already knows the broker is away: no waiting for a confirm that cannot come), the batch's
event bodies, access tokens sealed as on the wire, are kept in their rows in one more
statement (:func:`shared.sessions.hold_unpublished`) and the opens are answered as accepted:
their outcomes come once the broker is back, when a gateway's sweeper (:mod:`.held`) publishes
them, or as ``fallback`` at their deadline. Only when the database cannot hold them either are
the batch's pending rows deleted and its requests answered 503. Held opens stay in the
outcome hub, so admission control counts them (``admission_max_in_flight`` bounds the backlog).

An open answered 503 leaves no session behind (:class:`Retractions`). When the statement that stores a
batch fails, it may have committed all the same (the connection was lost between the commit and its
answer, as a database restart does): its ids are retracted, deleted once the database answers again.

Opens refused by admission control are stored already resolved as ``fallback(busy)``
by their own batches, and published to no one; the outcome hub remembers their view, so their
streams answer without reading the row back.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
import structlog

from shared.batching import Batcher
from shared.events import WidgetOpened
from shared.messaging import Publisher
from shared.metrics import OPENS_HELD, SESSIONS_OPENED, SESSIONS_REFUSED
from shared.sessions import NewSession, forget_sessions, hold_unpublished, open_sessions

from .outcomes import OutcomeHub
from .views import busy_view

log = structlog.get_logger("doorman.gateway.opening")


class Opened(enum.Enum):
    pending = "pending"  # stored, its event confirmed or held for the broker: the pipeline decides it
    unknown_bot = "unknown_bot"
    unavailable = "unavailable"  # neither confirmed nor held (the database is away too): nothing stored


@dataclass(frozen=True)
class Busy:
    """Stored as fallback(busy): admission control refused it. Its view needs the bot's
    collect_information mode, captured by the same statement that stored it."""

    collect_information: str | None


@dataclass(frozen=True)
class Open:
    session: NewSession
    event: WidgetOpened | None  # None when refused as busy
    arrived: float = field(default_factory=time.monotonic)  # when its request came in


class Opens:
    """Where a request hands its open: admitted opens to one :class:`~shared.batching.Batcher` (stored,
    then published), opens refused by admission control to another (stored only). Under overload most
    opens are refusals: their answer waits for no one's publish, and theirs do not slow the admitted."""

    def __init__(self, flush: Callable[[Sequence[Open]], Awaitable[list[Opened | Busy]]], *, max_weight: int,
                 max_in_flight: int) -> None:
        self._admitted = Batcher(flush, name="gateway opens", max_weight=max_weight, max_in_flight=max_in_flight)
        self._refused = Batcher(flush, name="gateway refusals", max_weight=max_weight, max_in_flight=max_in_flight)

    async def __call__(self, open_: Open) -> Opened | Busy:
        return await (self._refused if open_.event is None else self._admitted)(open_)

    async def drain(self) -> None:
        await self._admitted.drain()
        await self._refused.drain()


class Retractions:
    """Opens answered 503 whose rows may exist all the same, deleted by :meth:`sweep` (every :attr:`EVERY`
    seconds, in every gateway) once the database answers; their ids are known to no one else, and nothing
    was published for them. An id waits :attr:`SETTLE` seconds first, so that the statement whose answer was
    lost has ended in the database. If this gateway stops before then, or more than ``limit`` wait, the
    overdue sweeper ends what is left as ``fallback`` at its deadline: never pending for ever."""

    EVERY = 1.0
    SETTLE = 1.0

    def __init__(self, *, limit: int = 100_000) -> None:
        self._waiting: dict[str, tuple[float, bool]] = {}  # session id -> (since, pending_only)
        self._limit = limit

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, session_ids: Sequence[str], *, pending_only: bool) -> None:
        room = self._limit - len(self._waiting)
        if room < len(session_ids):
            log.warning("too many opens to retract: the rest are left to the overdue sweeper",
                        opens=len(session_ids) - max(room, 0))
        since = time.monotonic()
        self._waiting.update((s, (since, pending_only)) for s in session_ids[:max(room, 0)])

    async def sweep(self, pool: asyncpg.Pool) -> None:
        settled = time.monotonic() - self.SETTLE
        due = [(s, pending_only) for s, (since, pending_only) in self._waiting.items() if since <= settled]
        for pending_only in (False, True):
            if ids := [s for s, p in due if p is pending_only]:
                deleted = await forget_sessions(pool, ids, pending_only=pending_only)
                for s in ids:
                    del self._waiting[s]
                log.warning("opens answered 503 retracted", opens=len(ids), deleted=deleted)


async def flush(
    opens: Sequence[Open], *, pool: asyncpg.Pool, publish: Publisher, hub: OutcomeHub, retractions: Retractions,
) -> list[Opened | Busy]:
    try:
        stored = await open_sessions(pool, [o.session for o in opens])
    except Exception:  # it may have committed all the same: the requests are answered 503, so nothing may stay
        retractions.add([o.session.session_id for o in opens], pending_only=False)
        raise
    admitted = [o for o in opens if o.event is not None and o.session.session_id in stored]
    events = [o.event for o in admitted if o.event is not None]
    accepted = True
    if events:
        ids = [e.session_id for e in events]
        hub.opened(ids, [o.arrived for o in admitted])  # before the publish: an outcome may come back before this returns
        accepted = await _publish_or_hold(events, ids, pool=pool, publish=publish, hub=hub, retractions=retractions)
    results: list[Opened | Busy] = []
    for o in opens:
        if o.session.session_id not in stored:
            results.append(Opened.unknown_bot)
        elif o.event is None:
            results.append(Busy(stored[o.session.session_id]))
        else:
            results.append(Opened.pending if accepted else Opened.unavailable)
    busy = {o.session.session_id: busy_view(o.session.session_id, r.collect_information)
            for o, r in zip(opens, results, strict=True) if isinstance(r, Busy)}
    if busy:
        hub.refused(busy)
        SESSIONS_REFUSED.labels("busy").inc(len(busy))
    return results


async def _publish_or_hold(
    events: list[WidgetOpened], ids: list[str], *, pool: asyncpg.Pool, publish: Publisher, hub: OutcomeHub,
    retractions: Retractions,
) -> bool:
    """Publish the events, or hold them in their rows for the sweeper; False when neither could be done
    (the rows are deleted). Raises only when the database cannot even delete them (the caller answers 503,
    and they are retracted later)."""
    try:
        if not publish.ready:
            raise ConnectionError("the broker is away")
        await publish.many(events)
    except Exception as exc:
        try:
            held = await hold_unpublished(pool, dict(zip(ids, publish.sealed(events), strict=True)))
        except Exception as hold_exc:
            hub.forget(ids)
            try:
                await forget_sessions(pool, ids)
            except Exception:
                retractions.add(ids, pending_only=True)
                raise
            SESSIONS_REFUSED.labels("broker_unavailable").inc(len(ids))
            log.error("widget opens neither published nor held", error=type(exc).__name__,
                      hold_error=type(hold_exc).__name__, opens=len(ids))
            return False
        hub.held(list(held))
        OPENS_HELD.inc(len(held))
        log.warning("widget opens held for the broker", error=type(exc).__name__, opens=len(ids), kept=len(held))
    SESSIONS_OPENED.inc(len(ids))
    return True
