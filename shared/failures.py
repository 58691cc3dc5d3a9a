"""The two kinds of failure, named in one place.

A handler raises :class:`Transient` (or lets a known-transient error escape)
when trying again later may succeed, and :class:`Permanent` when it cannot.
The consumer runner maps them: transient -> redeliver, up to the queue's
delivery limit; permanent or exhausted -> the stage's fallback, then the
dead-letter queue.
"""

from __future__ import annotations

import asyncio

import aiormq.exceptions
import asyncpg


class Transient(Exception):
    """Retry later: a dependency blinked."""


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
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, Permanent):
        return False
    return isinstance(exc, _TRANSIENT_TYPES)
