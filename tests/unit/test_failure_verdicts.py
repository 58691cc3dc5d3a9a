"""The one decision (``services.verifier.failures``): what each way of failing gets, written out here row by
row from what happened (an HTTP status, an exception an outbound call raised, a failure of the verifier's own),
so a change to any column of the table is a change to this test."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from services.verifier.breaker import CircuitOpen
from services.verifier.failures import VERDICTS, AuthFailure, Count, Grace, Kind, kind_of, status_kind
from shared.events import FallbackReason as R
from shared.destinations import DestinationBlocked
from services.verifier.outbound import BadResponse, HostBusy, ResponseTooLarge

FAILURE, SUCCESS, NOTHING = Count.FAILURE, Count.SUCCESS, Count.NOTHING
ANSWERS, REFUSES, NEITHER = Grace.ANSWERS, Grace.REFUSES, Grace.NOTHING
RETRY, END = True, False  # the visitor's open: parked for another attempt, or ended now
LATER, DEAD = True, False  # a webhook delivery: tried again later, or dead now


status, raised = status_kind, kind_of

ROWS = [
    # what happened, its kind, then: the visitor's reason, their open, the breaker, the grace, a webhook delivery
    ("HTTP 408", status(408), R.auth_unavailable, RETRY, FAILURE, ANSWERS, LATER),
    ("HTTP 429", status(429), R.auth_unavailable, RETRY, FAILURE, ANSWERS, LATER),
    ("HTTP 500", status(500), R.auth_unavailable, RETRY, FAILURE, ANSWERS, LATER),
    ("HTTP 503", status(503), R.auth_unavailable, RETRY, FAILURE, ANSWERS, LATER),
    ("HTTP 599", status(599), R.auth_unavailable, RETRY, FAILURE, ANSWERS, LATER),
    ("a timeout", raised(TimeoutError()), R.auth_unavailable, RETRY, FAILURE, ANSWERS, LATER),
    ("aiohttp's read timeout", raised(aiohttp.ServerTimeoutError()), R.auth_unavailable, RETRY, FAILURE, ANSWERS, LATER),
    ("no connection", raised(aiohttp.ClientConnectionError()), R.auth_unavailable, RETRY, FAILURE, ANSWERS, LATER),
    ("a broken answer", raised(aiohttp.ClientPayloadError()), R.auth_unavailable, RETRY, FAILURE, ANSWERS, LATER),
    ("HTTP 401", status(401), R.auth_rejected, END, SUCCESS, REFUSES, DEAD),
    ("HTTP 403", status(403), R.auth_rejected, END, SUCCESS, REFUSES, DEAD),
    ('"status": false', Kind.REFUSED, R.auth_rejected, END, SUCCESS, REFUSES, DEAD),
    ("HTTP 302", status(302), R.invalid_response, END, SUCCESS, REFUSES, LATER),
    ("HTTP 400", status(400), R.invalid_response, END, SUCCESS, REFUSES, DEAD),
    ("HTTP 404", status(404), R.invalid_response, END, SUCCESS, REFUSES, DEAD),
    ("HTTP 499", status(499), R.invalid_response, END, SUCCESS, REFUSES, DEAD),
    ("HTTP 101", status(101), R.invalid_response, END, SUCCESS, REFUSES, LATER),
    ("HTTP 600", status(600), R.invalid_response, END, SUCCESS, REFUSES, LATER),
    ("a 2xx without an identity", Kind.INVALID_ANSWER, R.invalid_response, END, SUCCESS, REFUSES, DEAD),
    ("an answer over the bound", raised(ResponseTooLarge("too long")), R.invalid_response, END, NOTHING, REFUSES, LATER),
    ("a corrupt encoding", raised(BadResponse("corrupt")), R.invalid_response, END, NOTHING, REFUSES, LATER),
    ("no call slot to the host", raised(HostBusy("busy")), R.auth_unavailable, END, NOTHING, NEITHER, LATER),
    ("an open circuit", raised(CircuitOpen("h:443", "20 of 20 failed", 5)), R.auth_unavailable, END, NOTHING, ANSWERS, DEAD),
    ("a private address", raised(DestinationBlocked("loopback")), R.destination_blocked, END, NOTHING, NEITHER, DEAD),
    ("an unusable header token", Kind.MISCONFIGURED, R.misconfigured, END, NOTHING, NEITHER, DEAD),
    ("a refused signed token", Kind.TOKEN_REFUSED, R.auth_rejected, END, NOTHING, NEITHER, DEAD),
    ("a JWKS that blinked", Kind.JWKS_UNAVAILABLE, R.auth_unavailable, RETRY, NOTHING, NEITHER, DEAD),
    ("a refused widget token", Kind.WIDGET_TOKEN_REFUSED, R.auth_rejected, END, NOTHING, NEITHER, DEAD),
    ("an unusable pushed identity", Kind.WIDGET_TOKEN_UNUSABLE, R.invalid_response, END, NOTHING, NEITHER, DEAD),
    ("a widget token with no database", Kind.WIDGET_TOKEN_UNCHECKED, R.internal_error, END, NOTHING, NEITHER, DEAD),
]


@pytest.mark.parametrize(("happened", "kind", "reason", "retry", "breaker", "grace", "redeliver"), ROWS,
                         ids=[row[0] for row in ROWS])
def test_what_each_failure_gets(happened: str, kind: Kind | None, reason: R, retry: bool, breaker: Count,
                                grace: Grace, redeliver: bool) -> None:
    assert kind is not None, happened
    verdict = VERDICTS[kind]
    assert (verdict.reason, verdict.retry, verdict.breaker, verdict.grace, verdict.redeliver) == (
        reason, retry, breaker, grace, redeliver)
    failure = AuthFailure(kind, happened)
    assert (failure.reason, failure.retry, failure.detail, str(failure)) == (reason, retry, happened, happened)


def test_every_kind_has_a_row_here() -> None:
    assert {row[1] for row in ROWS} == set(Kind) == set(VERDICTS)


@pytest.mark.parametrize("code", [200, 201, 204, 299])
def test_a_2xx_is_no_failure(code: int) -> None:
    assert status_kind(code) is None


@pytest.mark.parametrize("exc", [KeyError("x"), ValueError("x"), ConnectionResetError(), asyncio.CancelledError()],
                         ids=repr)
def test_anything_else_an_outbound_call_raises_is_a_crash_not_a_failure_of_a_kind(exc: BaseException) -> None:
    """It propagates to the stage runner, which retries it or not as ``shared.failures`` says."""
    assert kind_of(exc) is None
