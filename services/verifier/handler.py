"""Decide a widget open: Case 1 (disabled), Case 2 (whitelist), Case 3 (identity call)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from uuid import UUID

import aiohttp
import structlog

from shared.domains import origin_allowed
from shared.events import FallbackReason, IdentityVerified, SessionFellBack, WidgetOpened, utcnow
from shared.http import DestinationBlocked, OutboundClient, ResponseTooLarge
from shared.messaging import Publish

from .config import AuthConfig
from .identity import AuthFailure, parse_identity_response

log = structlog.get_logger("doorman.verifier")

LoadConfig = Callable[[UUID], Awaitable[AuthConfig | None]]


def identity_request(config: AuthConfig, event: WidgetOpened) -> tuple[dict[str, str], dict[str, str | None]]:
    """Headers and body of the identity call: the header token verbatim, the access token and
    exactly the selected fields (null when the embed did not give one), nothing else."""
    headers = {"Content-Type": "application/json"}
    if config.header_token is not None:
        headers["Authorization"] = config.header_token.get_secret_value()
    assert event.access_token is not None
    body: dict[str, str | None] = {"access_token": event.access_token.get_secret_value()}
    for field in config.request_fields:
        body[field] = getattr(event, field)
    return headers, body


async def call_identity(config: AuthConfig, event: WidgetOpened, *, http: OutboundClient) -> tuple[IdentityVerified, int]:
    """The outbound call; raises :class:`AuthFailure` with the precise fallback reason."""
    assert config.auth_url is not None
    headers, body = identity_request(config, event)
    try:
        response = await http.request("POST", config.auth_url, headers=headers, json=body)
    except DestinationBlocked as exc:
        raise AuthFailure(FallbackReason.destination_blocked, str(exc)) from None
    except ResponseTooLarge as exc:
        raise AuthFailure(FallbackReason.invalid_response, str(exc)) from None
    except (TimeoutError, asyncio.TimeoutError):
        raise AuthFailure(FallbackReason.auth_unavailable, "the Authentication URL did not answer in time") from None
    except aiohttp.ClientError as exc:
        raise AuthFailure(FallbackReason.auth_unavailable, f"could not reach the Authentication URL ({type(exc).__name__})") from None
    identity = parse_identity_response(response.status, response.body, config.identify_method)
    verified = IdentityVerified(
        correlation_id=event.correlation_id, session_id=event.session_id, bot_id=event.bot_id,
        identify_method=config.identify_method, identity=identity, observed_at=utcnow(),
    )
    return verified, response.status


def _fallback(event: WidgetOpened, reason: FallbackReason, detail: str) -> SessionFellBack:
    return SessionFellBack(
        correlation_id=event.correlation_id, session_id=event.session_id, bot_id=event.bot_id,
        reason=reason, detail=detail, stage="verifier",
    )


async def decide(event: WidgetOpened, config: AuthConfig | None, *, http: OutboundClient) -> IdentityVerified | SessionFellBack:
    if config is None or not config.enabled:
        return _fallback(event, FallbackReason.ca_disabled, "Custom Authentication is off for this bot")
    if config.whitelist_enabled:
        if config.whitelist_source != "manual":
            # The API-sourced whitelist (cached, refreshed in the background) is not built yet.
            return _fallback(event, FallbackReason.domain_not_allowed, "the API-sourced domain whitelist is not supported yet")
        if not origin_allowed(event.origin, config.whitelist_domains):
            return _fallback(event, FallbackReason.domain_not_allowed, "this site's domain is not on the bot's whitelist")
    if event.access_token is None or not event.access_token.get_secret_value().strip():
        return _fallback(event, FallbackReason.missing_token, "the widget was opened without an access token")
    try:
        verified, _status = await call_identity(config, event, http=http)
    except AuthFailure as failure:
        return _fallback(event, failure.reason, failure.detail)
    return verified


async def verify(event: WidgetOpened, *, load_config: LoadConfig, http: OutboundClient, publish: Publish) -> None:
    started = asyncio.get_running_loop().time()
    outcome = await decide(event, await load_config(event.bot_id), http=http)
    await publish(outcome)
    log.info(
        "session verified" if isinstance(outcome, IdentityVerified) else "session fell back",
        reason=getattr(outcome, "reason", None),
        latency_ms=round((asyncio.get_running_loop().time() - started) * 1000, 1),
    )


async def fall_back_on_failure(event: WidgetOpened, exc: BaseException, *, publish: Publish) -> None:
    """The verifier itself failed for good: the session still ends, in internal_error."""
    await publish(_fallback(event, FallbackReason.internal_error, "the verifier could not process this session"))
