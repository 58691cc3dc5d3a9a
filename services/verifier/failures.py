"""What each way of failing means, in one table: what the visitor gets, and whether anyone tries again.

A failure has a :class:`Kind`: how it went wrong. :data:`VERDICTS` says, for each kind:

``reason``     the fallback reason the visitor (and the activity log) gets;
``retry``      whether another attempt shortly may do better (the business blinked): the open is parked for
               another attempt while the visitor can still wait (:class:`shared.stages.Retry`), else it ends now;
``breaker``    how the bot's circuit breaker for the host counts the call (:mod:`.breaker`): a failure, a
               success (the business answered), or nothing (no call was made, or its answer could not be read);
``grace``      what the outage grace does with the access token (:mod:`.grace`; identity calls only): verify a
               returning visitor from an earlier verification (the business did not answer), mark the token
               refused (it answered, and not with an identity), or nothing;
``redeliver``  whether a webhook delivery that fails so is tried again later (:mod:`.webhooks`), or is dead now.

Everyone else asks: :func:`status_kind` names the kind of an HTTP status, :func:`kind_of` that of an exception
an outbound call raised, and an :class:`AuthFailure` carries its kind. An exception of no kind here (a bug, the
database going away) is a crash, the stage runner's business (:mod:`shared.failures`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import aiohttp

from shared.destinations import DestinationBlocked
from shared.events import FallbackReason

from .outbound import HostBusy, InvalidResponse


class Kind(Enum):
    # The business did not answer.
    TIMEOUT = "timeout"  # no answer within the call's timeout
    UNREACHABLE = "unreachable"  # no connection, or it broke (aiohttp.ClientError)
    UNAVAILABLE = "unavailable"  # HTTP 408, 429 or 5xx
    # It answered, and not with an identity.
    REFUSED = "refused"  # HTTP 401 or 403, or "status": false
    REDIRECT = "redirect"  # HTTP 3xx (redirects are not followed)
    CLIENT_ERROR = "client_error"  # any other HTTP 4xx
    ODD_STATUS = "odd_status"  # below 200 or above 599
    INVALID_ANSWER = "invalid_answer"  # 2xx, but not a JSON object holding a usable identity
    UNREADABLE = "unreadable"  # too large, or an encoding Doorman does not read (outbound.InvalidResponse)
    # It was not called.
    NO_SLOT = "no_slot"  # no call slot to the host came free in time: Doorman's own capacity (outbound.HostBusy)
    CIRCUIT_OPEN = "circuit_open"  # the bot's calls to the host keep failing (breaker.CircuitOpen)
    BLOCKED = "blocked"  # a private or forbidden address (shared.destinations.DestinationBlocked)
    MISCONFIGURED = "misconfigured"  # a saved setting that cannot be used (a header token bound to another origin)
    # No call at all: a signed identity token (tokens.py) or a widget token the business pushed (pushed.py).
    TOKEN_REFUSED = "token_refused"  # a check of the signed token failed
    JWKS_UNAVAILABLE = "jwks_unavailable"  # the business's keys could not be fetched
    WIDGET_TOKEN_REFUSED = "widget_token_refused"  # unknown, another bot's, used by another session, expired
    WIDGET_TOKEN_UNUSABLE = "widget_token_unusable"  # the pushed identity does not fit the identify method
    WIDGET_TOKEN_UNCHECKED = "widget_token_unchecked"  # no database to check it against (a caller's mistake)


class Count(Enum):
    """How the circuit breaker counts a call; the value is what :meth:`.breaker.Breakers.record` takes."""

    FAILURE = True
    SUCCESS = False
    NOTHING = None


class Grace(Enum):
    ANSWERS = "answers"  # a visitor verified with this token within the grace period is verified from it
    REFUSES = "refuses"  # the token is marked refused: not verified from the cache until the business verifies it
    NOTHING = "nothing"


@dataclass(frozen=True)
class Verdict:
    reason: FallbackReason
    retry: bool
    breaker: Count
    grace: Grace
    redeliver: bool


Reason = FallbackReason  # short, for the table

VERDICTS: dict[Kind, Verdict] = {
    #                                    reason                      retry  breaker        grace          redeliver
    Kind.TIMEOUT:                Verdict(Reason.auth_unavailable,    True,  Count.FAILURE, Grace.ANSWERS, True),
    Kind.UNREACHABLE:            Verdict(Reason.auth_unavailable,    True,  Count.FAILURE, Grace.ANSWERS, True),
    Kind.UNAVAILABLE:            Verdict(Reason.auth_unavailable,    True,  Count.FAILURE, Grace.ANSWERS, True),
    Kind.REFUSED:                Verdict(Reason.auth_rejected,       False, Count.SUCCESS, Grace.REFUSES, False),
    Kind.REDIRECT:               Verdict(Reason.invalid_response,    False, Count.SUCCESS, Grace.REFUSES, True),
    Kind.CLIENT_ERROR:           Verdict(Reason.invalid_response,    False, Count.SUCCESS, Grace.REFUSES, False),
    Kind.ODD_STATUS:             Verdict(Reason.invalid_response,    False, Count.SUCCESS, Grace.REFUSES, True),
    # A delivery's 2xx is delivered, whatever its body: it never fails so.
    Kind.INVALID_ANSWER:         Verdict(Reason.invalid_response,    False, Count.SUCCESS, Grace.REFUSES, False),
    Kind.UNREADABLE:             Verdict(Reason.invalid_response,    False, Count.NOTHING, Grace.REFUSES, True),
    # Not the business's outage, so the grace does not vouch for the token; no retry: the bot's share of the
    # host's slots is taken by its own calls, or the host's by other bots' calls until their timeout, and another
    # attempt in a moment costs everyone's visitors. A delivery (nobody waits) tries again later.
    Kind.NO_SLOT:                Verdict(Reason.auth_unavailable,    False, Count.NOTHING, Grace.NOTHING, True),
    # No retry: another attempt would find the circuit open too. (Deliveries have no breaker.)
    Kind.CIRCUIT_OPEN:           Verdict(Reason.auth_unavailable,    False, Count.NOTHING, Grace.ANSWERS, False),
    Kind.BLOCKED:                Verdict(Reason.destination_blocked, False, Count.NOTHING, Grace.NOTHING, False),
    Kind.MISCONFIGURED:          Verdict(Reason.misconfigured,       False, Count.NOTHING, Grace.NOTHING, False),
    # No identity call, so no breaker and no grace; no delivery fails so.
    Kind.TOKEN_REFUSED:          Verdict(Reason.auth_rejected,       False, Count.NOTHING, Grace.NOTHING, False),
    Kind.JWKS_UNAVAILABLE:       Verdict(Reason.auth_unavailable,    True,  Count.NOTHING, Grace.NOTHING, False),
    Kind.WIDGET_TOKEN_REFUSED:   Verdict(Reason.auth_rejected,       False, Count.NOTHING, Grace.NOTHING, False),
    Kind.WIDGET_TOKEN_UNUSABLE:  Verdict(Reason.invalid_response,    False, Count.NOTHING, Grace.NOTHING, False),
    Kind.WIDGET_TOKEN_UNCHECKED: Verdict(Reason.internal_error,      False, Count.NOTHING, Grace.NOTHING, False),
}


def status_kind(status: int) -> Kind | None:
    """The kind of failure an HTTP status is; None for 2xx."""
    if 200 <= status <= 299:
        return None
    if status in (401, 403):
        return Kind.REFUSED
    if status in (408, 429) or 500 <= status <= 599:
        return Kind.UNAVAILABLE
    if 300 <= status <= 399:
        return Kind.REDIRECT
    if 400 <= status <= 499:
        return Kind.CLIENT_ERROR
    return Kind.ODD_STATUS


# First match wins: aiohttp's ServerTimeoutError is both a timeout and a ClientError.
_RAISED: tuple[tuple[type[BaseException], Kind], ...] = (
    (DestinationBlocked, Kind.BLOCKED),
    (HostBusy, Kind.NO_SLOT),
    (InvalidResponse, Kind.UNREADABLE),
    (TimeoutError, Kind.TIMEOUT),
    (aiohttp.ClientError, Kind.UNREACHABLE),
)


def kind_of(exc: BaseException) -> Kind | None:
    """The kind of failure an outbound call raised; None for anything else (a bug, a cancellation), which the
    caller lets through."""
    if isinstance(exc, AuthFailure):  # the circuit breaker's CircuitOpen
        return exc.kind
    return next((kind for raised, kind in _RAISED if isinstance(exc, raised)), None)


class AuthFailure(Exception):
    """The visitor was not verified: ``kind`` says how (and :data:`VERDICTS` what follows), ``detail`` (also
    ``str(exc)``) says precisely what happened, for the activity log."""

    def __init__(self, kind: Kind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail

    @property
    def verdict(self) -> Verdict:
        return VERDICTS[self.kind]

    @property
    def reason(self) -> FallbackReason:
        return self.verdict.reason

    @property
    def retry(self) -> bool:
        return self.verdict.retry
