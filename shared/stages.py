"""A stage, declared once in its service's composition root, and the pure decision of what to do
with each event it was handed.

A :class:`Stage` says which event types it handles and with which handler, its retry policy,
what it does when it gives up, and how what it emits is published. A handler (a batch handler, a
give-up) returns what it emits (events, or nothing), which the runner hands to the stage's ``emit``
and acks only once that returned; or a handler returns a :class:`Retry`: "another attempt may do
better; if none is left, emit this". An exception is a crash, transient or not
(:func:`shared.failures.is_transient`). :func:`settle` turns what happened into one of four
actions; :mod:`shared.consumer` carries them out on the broker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from uuid import UUID

from shared.events import Event


@dataclass(frozen=True)
class Retry:
    """Handled, and the answer is "not now" (the business's API blinked): park the event for another
    attempt; when none is left (attempts or the visitor's time), ``otherwise`` is the outcome."""

    detail: str
    otherwise: Event


Emitted = Event | Sequence[Event] | None  # what a handler or a give-up returns: the events it emits
Handler = Callable[[Event], Awaitable[Emitted | Retry]]
BatchHandler = Callable[[Sequence[Event]], Awaitable[Emitted]]
GiveUp = Callable[[Event], Awaitable[Emitted]]
Emit = Callable[[Sequence[Event]], Awaitable[None]]  # publishes them; returns once the broker holds them
AlreadyDone = Callable[[Sequence[Event]], Awaitable[set[UUID]]]


def emitted(result: Emitted) -> list[Event]:
    """What a handler or a give-up returned, as a list of the events to emit."""
    if result is None:
        return []
    return [result] if isinstance(result, Event) else list(result)


@dataclass(frozen=True)
class RetryPolicy:
    """Attempt ``n`` (1-based) that fails transiently waits ``delays[min(n, len) - 1]`` seconds, at
    most ``max_attempts`` in all. With a ``deadline`` (when the event stops being worth handling: a
    visitor stops waiting), another attempt is made only if it can finish by then, an attempt taking
    up to ``attempt_seconds``."""

    delays: tuple[float, ...]
    max_attempts: int
    deadline: Callable[[Event], datetime] | None = None
    attempt_seconds: float = 0.0

    def delay(self, attempt: int) -> float:
        return self.delays[min(attempt, len(self.delays)) - 1]


@dataclass(frozen=True)
class Stage:
    """One work queue's consumer: everything a reader needs to know about it, in one place."""

    queue: str  # a work queue of :data:`shared.messaging.WORK_QUEUES`
    handles: Mapping[type[Event], Handler]
    retry: RetryPolicy
    # The event failed for good (a copy is dead-lettered): what becomes of it (a widget open falls back, a webhook
    # delivery is dead), and what that emits.
    give_up: GiveUp
    # Publishes what the handlers and give_up return (confirmed), before the event is acked; None: they emit nothing.
    emit: Emit | None = None
    # Optional: handle every event waiting together (group commit); a failing batch falls back to ``handles``.
    batch: BatchHandler | None = None
    batch_size: int = 1
    batch_flushes: int = 1
    # Optional: which of these redelivered or retried events were done already (skipped, not redone).
    already_done: AlreadyDone | None = None
    max_events: int | None = None  # events handled at once, whatever the messages carry

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(t.event_type for t in self.handles)


@dataclass(frozen=True)
class Failure:
    """What went wrong with one event: a crash, or the handler's own :class:`Retry`."""

    transient: bool
    answer: Event | None = None  # the outcome to emit once no attempt is left (from a Retry)
    kind: str = ""  # what to call it in the dead-letter copy's header

    @classmethod
    def of(cls, error: BaseException, *, transient: bool) -> Failure:
        return cls(transient=transient, kind=type(error).__name__)

    @classmethod
    def retry(cls, retry: Retry) -> Failure:
        return cls(transient=True, answer=retry.otherwise, kind="Retry")


class Action(Enum):
    ACK = "ack"  # done (what the handler returned is emitted first)
    PARK = "park"  # copy the event alone into the stage's delay queue for ``delay`` seconds
    ANSWER = "answer"  # no attempt left, but the failure carries its outcome: emit it (it is an answer, not a fault)
    DEAD_LETTER = "dead-letter"  # failed for good: the stage's give_up (what it returns is emitted), a copy to the DLQ


@dataclass(frozen=True)
class Settlement:
    action: Action
    delay: float = 0.0


def settle(failure: Failure | None, attempt: int, policy: RetryPolicy, *, time_left: float | None = None) -> Settlement:
    """What to do with an event after its ``attempt``-th try. Pure: no broker, no clock (``time_left``
    is the seconds until the policy's deadline, when it has one)."""
    if failure is None:
        return Settlement(Action.ACK)
    if failure.transient and attempt < policy.max_attempts:
        delay = policy.delay(attempt)
        if time_left is None or time_left > delay + policy.attempt_seconds:
            return Settlement(Action.PARK, delay)
    if failure.answer is not None:
        return Settlement(Action.ANSWER)
    return Settlement(Action.DEAD_LETTER)
