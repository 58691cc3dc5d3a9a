"""Which exceptions escaping a handler are worth another attempt, named in one place.

A dependency that blinked (the database restarting, the broker's connection dropping, a
timeout) is transient: the consumer runner parks the event for another attempt
(:func:`shared.stages.settle`) and the gateway answers 503 with ``Retry-After``. Anything
else is a bug or bad data: retrying would fail the same way. A handler that knows another
attempt may do better without anything having crashed returns :class:`shared.stages.Retry`
or raises :class:`TryLater` / :class:`FailedForGood`; for a call to a business, the verifier's
handlers ask :mod:`services.verifier.failures` which.
"""

from __future__ import annotations

import asyncio

import aiormq.exceptions
import asyncpg
import pamqp.commands


class TryLater(Exception):
    """Raised by a handler: nothing crashed, but this attempt did not succeed and a later one may
    (a webhook endpoint answered 503). Transient: parked for another attempt, dead-lettered when none is left."""


class FailedForGood(Exception):
    """Raised by a handler: this event can never succeed (a webhook endpoint answered 404). Dead-lettered
    now, logged as a failure, not as a crash."""


_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
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
    TryLater,
)


def broker_away(exc: BaseException) -> bool:
    """The stage's own broker connection or channel is closed (RabbitMQ restarting, a node lost): nothing is
    wrong with the event being handled. The consumer lets the broker redeliver it instead of settling it: a
    settlement that needs the broker (park, give up, dead-letter) could only fail, or, if the channel came
    back in between, dead-letter an event whose one fault was the broker's blip. A closed channel for a
    reason of its own (a queue not found, a precondition) is not this."""
    return isinstance(exc, (aiormq.exceptions.AMQPConnectionError, aiormq.exceptions.ChannelInvalidStateError))


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, _TRANSIENT_TYPES) or _nacked(exc)


def _nacked(exc: BaseException) -> bool:
    """The broker refused to take a publish (``basic.nack``): a quorum queue electing a new leader
    after losing a node, or a full queue. Another attempt is accepted once the queue is back. (A
    ``basic.return``, nowhere to route the message, stays permanent.)"""
    return (isinstance(exc, aiormq.exceptions.DeliveryError) and not isinstance(exc, aiormq.exceptions.PublishError)
            and isinstance(exc.frame, pamqp.commands.Basic.Nack))
