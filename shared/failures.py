"""The two kinds of failure, named in one place.

A handler raises :class:`Transient` (or lets a known-transient error escape)
when trying again later may succeed, and :class:`Permanent` when it cannot.
The consumer runner (:mod:`shared.consumer`) maps them:

* transient, attempts left (and, for a waiting visitor, time left) -> parked in a delay
  queue and retried;
* transient with an ``outcome`` once the attempts run out (the business's API stayed
  down) -> that outcome is emitted and the message acked: it is an answer, not a fault;
* permanent, or transient with nothing left -> the stage's fallback (``internal_error``)
  is emitted and the message goes to the dead-letter queue.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiormq.exceptions
import asyncpg


class Transient(Exception):
    """Retry later: a dependency blinked. ``outcome`` is what to emit if it never comes back."""

    def __init__(self, message: str, *, outcome: Any = None) -> None:
        super().__init__(message)
        self.outcome = outcome


class Permanent(Exception):
    """Will never succeed: dead-letter now."""


_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    Transient,
    ConnectionError,
    TimeoutError,
    asyncio.TimeoutError,
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.AdminShutdownError,
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, Permanent):
        return False
    return isinstance(exc, _TRANSIENT_TYPES)
