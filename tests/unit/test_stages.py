"""``shared.stages.settle``: what happens to an event after an attempt, without a broker."""

from __future__ import annotations

from uuid import uuid4

import pytest

from shared.events import FallbackReason, SessionFellBack
from shared.stages import Action, Failure, Retry, RetryPolicy, Settlement, settle

POLICY = RetryPolicy((0.25, 1.0, 2.0), max_attempts=4)
ANSWER = SessionFellBack(correlation_id="c", session_id="s", bot_id=uuid4(),
                         reason=FallbackReason.auth_unavailable, detail="the Authentication URL is unavailable (HTTP 503)")
CRASH = Failure.of(ConnectionError("database went away"), transient=True)
BUG = Failure.of(KeyError("x"), transient=False)
NOT_NOW = Failure.retry(Retry("HTTP 503", otherwise=ANSWER))


@pytest.mark.parametrize(("failure", "attempt", "time_left", "expected"), [
    # handled: ack, whatever the attempt
    (None, 1, None, Settlement(Action.ACK)),
    (None, 9, -5.0, Settlement(Action.ACK)),
    # a transient crash: parked with the policy's back-off while attempts are left...
    (CRASH, 1, None, Settlement(Action.PARK, 0.25)),
    (CRASH, 2, None, Settlement(Action.PARK, 1.0)),
    (CRASH, 3, None, Settlement(Action.PARK, 2.0)),
    # ...then given up on: the stage's fallback, and a copy in the dead-letter queue
    (CRASH, 4, None, Settlement(Action.DEAD_LETTER)),
    # a bug is never retried
    (BUG, 1, None, Settlement(Action.DEAD_LETTER)),
    # "not now" with an outcome: parked while attempts are left, then that outcome (an answer, not a fault)
    (NOT_NOW, 1, None, Settlement(Action.PARK, 0.25)),
    (NOT_NOW, 4, None, Settlement(Action.ANSWER)),
])
def test_settle_follows_the_policy(failure: Failure | None, attempt: int, time_left: float | None,
                                   expected: Settlement) -> None:
    assert settle(failure, attempt, POLICY, time_left=time_left) == expected


def test_the_delay_after_the_last_step_repeats() -> None:
    policy = RetryPolicy((0.25, 1.0), max_attempts=5)
    assert [settle(CRASH, n, policy).delay for n in (1, 2, 3, 4)] == [0.25, 1.0, 1.0, 1.0]
    assert settle(CRASH, 5, policy).action is Action.DEAD_LETTER


def test_no_attempt_is_parked_that_could_not_end_before_the_deadline() -> None:
    """A visitor waits until the deadline: another attempt is made only if its back-off and the attempt
    itself fit in the time left; otherwise the answer the failure carries is given at once."""
    policy = RetryPolicy((1.0,), max_attempts=5, attempt_seconds=1.5)
    assert settle(NOT_NOW, 1, policy, time_left=2.6) == Settlement(Action.PARK, 1.0)
    assert settle(NOT_NOW, 1, policy, time_left=2.5) == Settlement(Action.ANSWER)
    assert settle(CRASH, 1, policy, time_left=0.1) == Settlement(Action.DEAD_LETTER)


def test_a_failure_names_what_went_wrong_for_the_dead_letter_header() -> None:
    assert CRASH.kind == "ConnectionError" and BUG.kind == "KeyError" and NOT_NOW.kind == "Retry"
    assert NOT_NOW.answer is ANSWER and CRASH.answer is None
