"""Ending sessions (a logout, a revocation) and telling the replicas that may hold their streams.

Whichever replica ends a session, its stream may be waiting on another: the replica that opened it
(its id says which) or the one recorded as its ``watcher``. They are told the way the contacts
service tells them an outcome: a ``session.resolved.<replica>`` notification carrying the widget's
view, here with status ``ended``; this replica's own hub is told directly. Best effort, as for
outcomes: the database is the truth (GET reads it on every replica), and a waiting stream re-reads
it now and then, so a lost notification only costs latency.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from shared.events import SessionResolved
from shared.logging import session_ref
from shared.messaging import Publisher, tell_replicas
from shared.metrics import OUTCOMES, SESSIONS_ENDED
from shared.sessions import Ended

from .outcomes import OutcomeHub

log = structlog.get_logger("doorman.gateway.ending")


async def tell_ended(ended: Sequence[Ended], *, by: str, hub: OutcomeHub, publish: Publisher,
                     correlation_id: str) -> None:
    """Count and log each end, then tell the replicas concerned (one message per replica)."""
    by_replica: dict[str, list[SessionResolved]] = {}
    for e in ended:
        SESSIONS_ENDED.labels(e.was, by).inc()
        if e.was == "pending":  # its one outcome is `ended` (a later verification changes nothing)
            OUTCOMES.labels("ended", "").inc()
        log.info("session ended", session_ref=session_ref(e.session_id), bot_id=str(e.bot_id), was=e.was, ended_by=by,
                 correlation_id=correlation_id)
        resolved = e.resolved()
        told = SessionResolved(correlation_id=correlation_id, session_id=e.session_id, bot_id=e.bot_id,
                               status="ended", view=resolved.view)
        for replica in resolved.told:
            if replica == hub.replica:
                hub.resolved(told)
            else:
                by_replica.setdefault(replica, []).append(told)
    await tell_replicas(by_replica, publish)
