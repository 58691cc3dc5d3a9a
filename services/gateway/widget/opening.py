"""Opening widget sessions, many per round trip.

Every ``POST /v1/widget/sessions`` hands its open to one :class:`~shared.batching.Batcher`;
each flush records the waiting opens in one statement, then publishes their
``widget.opened`` events in one confirmed message. A request is answered only after
both: nothing is accepted that is not stored and confirmed. If the broker does not
confirm, the batch's pending rows are deleted and each of its requests gets 503.
Opens refused by admission control are stored already resolved as ``fallback(busy)``
in the same statement, and published to no one.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import structlog

from shared.events import WidgetOpened
from shared.messaging import Publisher
from shared.metrics import SESSIONS_OPENED, SESSIONS_REFUSED
from shared.sessions import NewSession, forget_sessions, open_sessions

from .outcomes import OutcomeHub

log = structlog.get_logger("doorman.gateway.opening")


class Opened(enum.Enum):
    pending = "pending"  # stored and its event confirmed: the pipeline decides it
    unknown_bot = "unknown_bot"
    unavailable = "unavailable"  # the broker did not confirm: nothing stored


@dataclass(frozen=True)
class Busy:
    """Stored as fallback(busy): admission control refused it. Its view needs the bot's
    collect_information mode, captured by the same statement that stored it."""

    collect_information: str | None


@dataclass(frozen=True)
class Open:
    session: NewSession
    event: WidgetOpened | None  # None when refused as busy


async def flush(
    opens: Sequence[Open], *, pool: asyncpg.Pool, publish: Publisher, hub: OutcomeHub,
) -> list[Opened | Busy]:
    stored = await open_sessions(pool, [o.session for o in opens])
    events = [o.event for o in opens if o.event is not None and o.session.session_id in stored]
    published = True
    if events:
        ids = [e.session_id for e in events]
        hub.opened(ids)  # before the publish: an outcome may come back before this function returns
        try:
            await publish.many(events)
        except Exception as exc:
            hub.forget(ids)
            await forget_sessions(pool, ids)
            published = False
            SESSIONS_REFUSED.labels("broker_unavailable").inc(len(ids))
            log.error("widget opens not published", error=type(exc).__name__, opens=len(ids))
        else:
            SESSIONS_OPENED.inc(len(ids))
    results: list[Opened | Busy] = []
    for o in opens:
        if o.session.session_id not in stored:
            results.append(Opened.unknown_bot)
        elif o.event is None:
            results.append(Busy(stored[o.session.session_id]))
        else:
            results.append(Opened.pending if published else Opened.unavailable)
    busy = sum(isinstance(r, Busy) for r in results)
    if busy:
        SESSIONS_REFUSED.labels("busy").inc(busy)
    return results
