"""Decide a widget open: Case 1 (disabled), Case 2 (whitelist), Case 3 (identity call)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID, uuid5

import asyncpg
import structlog

from shared.auth_config import AuthConfig, NotBound
from shared.domains import origin_allowed
from shared.events import (
    CallFacts, Event, FallbackReason, Identity, IdentityVerified, SessionFellBack, WidgetOpened, utcnow,
)
from shared.destinations import unsendable_header
from shared.metrics import AUTH_CALL_SECONDS, AUTH_CALLS, AUTH_CALLS_WITHOUT_SLOT, DEGRADED, BotLabel, result_class
from shared.sessions import EXPIRED_DETAIL, not_pending
from shared.stages import Retry

from .discovery import Discovery
from .failures import AuthFailure, Kind
from .grace import GraceCache
from .identity import UNSENDABLE_TOKEN, IdentityCall, call_identity
from .outbound import OutboundClient
from .pushed import PushedIdentities, is_widget_token, pushed_identity
from .jwks import JwksCache
from .oidc import call_provider
from .tokens import check_token
from .whitelist import ApiWhitelist

log = structlog.get_logger("doorman.verifier")
BOTS = BotLabel()

LoadConfig = Callable[[UUID], Awaitable[AuthConfig | None]]
OUTCOME_NAMESPACE = UUID("6b1f9a52-4c1e-4a53-9c3e-2f0d7c1e8a10")


def outcome_id(event: WidgetOpened) -> UUID:
    """The same widget open always yields an outcome with the same id, however often it is
    processed, so the contacts service's inbox sees a redelivery's outcome as a duplicate."""
    return uuid5(OUTCOME_NAMESPACE, str(event.event_id))


def _fallback(event: WidgetOpened, reason: FallbackReason, detail: str, facts: CallFacts | None = None) -> SessionFellBack:
    return SessionFellBack(
        event_id=outcome_id(event), correlation_id=event.correlation_id, session_id=event.session_id,
        bot_id=event.bot_id, reason=reason, detail=detail, facts=facts or CallFacts(),
    )


async def _whitelist_check(event: WidgetOpened, config: AuthConfig, whitelist: ApiWhitelist) -> tuple[bool, str | None, str]:
    """(allowed, note for the activity log, detail when refused)."""
    if config.whitelist_source == "manual":
        return origin_allowed(event.origin, config.whitelist_domains), None, "this site's domain is not on the bot's whitelist"
    assert config.whitelist_api_url is not None
    lookup = await whitelist.lookup(event.bot_id, config.whitelist_api_url, config.header_token)
    if lookup.domains is None:
        return False, lookup.note, f"the domain whitelist API could not be read ({lookup.note})"
    return origin_allowed(event.origin, lookup.domains), lookup.note, "this site's domain is not on the whitelist your API returned"


def _verified(event: WidgetOpened, config: AuthConfig, identity: Identity, facts: CallFacts, *,
              sid: str | None = None, expires_at: float | None = None) -> IdentityVerified:
    """``sid``: the OpenID Provider's session id for the login; ``expires_at``: the token's exp, when known."""
    return IdentityVerified(
        event_id=outcome_id(event), correlation_id=event.correlation_id, session_id=event.session_id, bot_id=event.bot_id,
        identify_method=config.identify_method, identity=identity, observed_at=utcnow(), facts=facts,
        provider_sub=identity.id if config.identity_source == "oidc" else None, provider_sid=sid,
        identity_expires_at=datetime.fromtimestamp(expires_at, UTC) if expires_at is not None else None,
    )


@dataclass(frozen=True)
class Decision:
    """What a widget open gets, and the identity call behind it when one was made."""

    outcome: IdentityVerified | SessionFellBack
    call: IdentityCall | None = None
    retry: bool = False  # the failure's kind says another attempt shortly may do better (failures.py)


def _failed(event: WidgetOpened, failure: AuthFailure, facts: CallFacts) -> Decision:
    """A failure with no identity call behind it (a widget token, a signed token): its fallback, and a retry
    when its kind says so."""
    return Decision(_fallback(event, failure.reason, failure.detail, facts), retry=failure.retry)


async def decide(
    event: WidgetOpened, config: AuthConfig | None, *, http: OutboundClient, whitelist: ApiWhitelist,
    pushed: PushedIdentities | None = None, jwks: JwksCache | None = None, grace: GraceCache | None = None,
    discovery: Discovery | None = None,
) -> Decision:
    """Case 1 (Custom Authentication off), Case 2 (the domain whitelist), Case 3: who the visitor is,
    from a widget token the business pushed (``pushed``), or with ``identity_source: signed_token``
    the token verified here (no call but the JWKS's: ``jwks`` caches it; None makes a throwaway
    cache), or the identity call: the Authentication URL, or with ``identity_source: oidc`` the OpenID
    Provider (``discovery`` caches its discovery document; None makes a throwaway cache); through the
    business's outage with ``grace``. Writes nothing but a
    widget token's owner and the outage grace cache (the Testing panel passes a dry-run ``pushed``
    and no ``grace``): the verifier emits the outcome, the Testing panel shows it."""
    if config is None or not config.enabled:
        return Decision(_fallback(event, FallbackReason.ca_disabled, "Custom Authentication is off for this bot"))
    if config.header_token is not None and unsendable_header(config.header_token.value.get_secret_value()):
        # Saved before tokens were checked: neither the whitelist API nor the Authentication URL can be called.
        return Decision(_fallback(event, FallbackReason.misconfigured, UNSENDABLE_TOKEN))
    note = None
    if config.whitelist_enabled:
        try:
            allowed, note, refusal = await _whitelist_check(event, config, whitelist)
        except NotBound as exc:  # the header token was saved for another whitelist API: it was not asked
            return Decision(_fallback(event, FallbackReason.misconfigured, str(exc)))
        if not allowed:
            return Decision(_fallback(event, FallbackReason.domain_not_allowed, refusal, CallFacts(whitelist_note=note)))
    if event.access_token is None or not event.access_token.get_secret_value().strip():
        return Decision(_fallback(event, FallbackReason.missing_token, "the widget was opened without an access token",
                                  CallFacts(whitelist_note=note)))
    if is_widget_token(event.access_token.get_secret_value()):  # an identity the business pushed: no call
        try:
            identity = await pushed_identity(pushed, event, config.identify_method)
        except AuthFailure as failure:
            return _failed(event, failure, CallFacts(whitelist_note=note))
        return Decision(_verified(event, config, identity, CallFacts(whitelist_note=note)))
    if config.identity_source == "signed_token":
        token = await check_token(event.access_token.get_secret_value(), config, event.bot_id, jwks=jwks or JwksCache(http),
                                  discovery=discovery or Discovery(http))
        # The check's time (a JWKS fetch included) stands where the identity call's would: the business's share.
        facts = CallFacts(auth_latency_ms=round(token.elapsed_ms, 1), whitelist_note=note)
        if token.failure is not None:
            return _failed(event, token.failure, facts)
        assert token.identity is not None
        return Decision(_verified(event, config, token.identity, facts, expires_at=token.expires_at))
    if config.identity_source == "oidc":
        call = await call_provider(http, config, access_token=event.access_token.get_secret_value(),
                                   discovery=discovery or Discovery(http), tenant=event.bot_id)
    else:
        assert config.auth_url is not None
        call = await call_identity(
            http, auth_url=config.auth_url, identify_method=config.identify_method, header_token=config.header_token,
            access_token=event.access_token.get_secret_value(), request_fields=config.request_fields,
            visitor=event.described(), signing_secrets=config.signing_secrets(),
            tenant=event.bot_id,
        )
    facts = CallFacts(
        auth_http_status=call.response.status if call.response else None,
        auth_latency_ms=round(call.elapsed_ms, 1), whitelist_note=note,
        circuit_open=call.failure is not None and call.failure.kind is Kind.CIRCUIT_OPEN,
    )
    outcome: IdentityVerified | SessionFellBack
    if call.failure is not None:
        outcome = _fallback(event, call.failure.reason, call.failure.detail, facts)
    else:
        assert call.identity is not None
        outcome = _verified(event, config, call.identity, facts, sid=call.sid, expires_at=call.expires_at)
    # Remembered, marked refused, or verified from the outage grace, as the failure's kind says (failures.py).
    if grace is not None:
        outcome = await grace.after_call(event, config, outcome, call.failure)
    return Decision(outcome, call, call.failure is not None and call.failure.retry)


async def verify(
    event: WidgetOpened, *, load_config: LoadConfig, http: OutboundClient, whitelist: ApiWhitelist,
    pushed: PushedIdentities | None = None, jwks: JwksCache | None = None, grace: GraceCache | None = None,
    discovery: Discovery | None = None,
) -> IdentityVerified | SessionFellBack | Retry:
    """The outcome to emit, or :class:`Retry` when the failure's kind says another attempt may do better
    (the business's API blinked: failures.py), so the runner tries again while the visitor can still wait;
    it carries the outcome to give when none is left."""
    if utcnow() > event.deadline_at:
        # It waited in the queue past the visitor's deadline (a backlog): the visitor is no longer
        # waiting for the business's answer, and calling now would only delay the opens behind it.
        log.warning("open picked up after its deadline; not calling the business")
        return _fallback(event, FallbackReason.internal_error, EXPIRED_DETAIL)
    decision = await decide(event, await load_config(event.bot_id), http=http, whitelist=whitelist,
                            pushed=pushed, jwks=jwks, grace=grace, discovery=discovery)
    failure = decision.call.failure if decision.call is not None else None  # no call: e.g. a JWKS that blinked
    if failure is not None and failure.kind is Kind.NO_SLOT:
        AUTH_CALLS_WITHOUT_SLOT.labels(BOTS(event.bot_id)).inc()
    elif decision.call is not None and not decision.outcome.facts.circuit_open:  # a call was made
        bot, facts = BOTS(event.bot_id), decision.outcome.facts
        AUTH_CALL_SECONDS.labels(bot).observe(decision.call.elapsed_ms / 1000)
        AUTH_CALLS.labels(bot, result_class(facts.auth_http_status, failure and failure.reason.value)).inc()
    if decision.retry:  # the outcome if no attempt is left: the fallback, or a degraded verification
        detail = failure.detail if failure is not None else getattr(decision.outcome, "detail", "not now")
        return Retry(detail, otherwise=decision.outcome)
    return decision.outcome


async def already_done(events: Sequence[WidgetOpened], *, pool: asyncpg.Pool) -> set[UUID]:
    """Redelivered or retried opens whose session is resolved (or gone): no second call to the business."""
    done = await not_pending(pool, [e.session_id for e in events])
    return {e.event_id for e in events if e.session_id in done}


async def give_up(event: WidgetOpened) -> SessionFellBack:
    """The verifier failed for good on this open: the session still ends (this is emitted)."""
    return _fallback(event, FallbackReason.internal_error, "the verifier could not process this session")


async def emit(outcomes: Sequence[IdentityVerified | SessionFellBack], *, publish: Callable[[Event], Awaitable[None]]) -> None:
    """Publish each outcome (batched with those decided at about the same time, confirmed: a handler emits one),
    then say so in the session's canonical log line: a line exists only for an outcome the broker holds."""
    for outcome in outcomes:
        await publish(outcome)
        degraded = getattr(outcome, "degraded", False)
        if degraded:
            DEGRADED.labels(BOTS(outcome.bot_id)).inc()
        log.info(
            "session verified" if isinstance(outcome, IdentityVerified) else "session fell back",
            reason=getattr(outcome, "reason", None), auth_http_status=outcome.facts.auth_http_status,
            auth_latency_ms=outcome.facts.auth_latency_ms, degraded=degraded, circuit_open=outcome.facts.circuit_open,
        )
