"""The Testing panel, run for the gateway (which asks over the broker: :mod:`shared.panel`): a dry run of a
widget open with a bot's current settings, writing nothing.

The verifier's own decision (:func:`.handler.decide`) says what a real open from the given origin would get
today (``visitor_outcome``), Custom Authentication off or a refused domain included; the identity call is
shown either way. With ``identity_source: signed_token`` the pasted JWT is shown instead (header, claims
read without trusting them, the check that failed), verified by :mod:`.tokens`; with ``oidc`` the request
made to the OpenID Provider (the last one: introspection, or userinfo) and its answer. The bot's settings are read
afresh, not through the cache: the panel is run right after they are saved, and shows them as saved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg
import structlog

from shared.auth_config import AuthConfig, load
from shared.crypto import Secrets
from shared.events import Identity, IdentityVerified, SessionFellBack, WidgetOpened, utcnow
from shared.panel import (
    PanelAnswer, PanelRequest, TestFailure, TestMatch, TestRequestSent, TestResponseReceived, TestResult, TestToken,
    VisitorOutcome,
)

from .discovery import Discovery
from .handler import Decision, decide
from .identity import IdentityCall, call_identity, describe
from .jwks import JwksCache
from .oidc import call_provider
from .outbound import OutboundClient
from .pushed import PushedIdentities, is_widget_token
from .tokens import TokenRejected, check_token, read_claims, read_header
from .whitelist import ApiWhitelist

log = structlog.get_logger("doorman.verifier.testing")

RESPONSE_BODY_SHOWN = 4096  # characters of the business's answer echoed back
HIDDEN_RESPONSE_HEADERS = frozenset({"set-cookie", "authorization", "proxy-authorization"})


def mask(secret: str) -> str:
    """``Bearer abc...`` -> ``Bearer ****`` (a leading auth scheme is kept; nothing else)."""
    scheme, sep, _rest = secret.partition(" ")
    shown = f"{scheme} " if sep and scheme.isalpha() and len(scheme) <= 16 else ""
    return f"{shown}**** ({len(secret)} characters)"


MASKED_FIELDS = ("access_token", "token", "client_secret")  # of a request body: the visitor's token, a client secret


def _request_view(call: IdentityCall) -> TestRequestSent:
    headers = dict(call.headers)
    if "Authorization" in headers:
        headers["Authorization"] = mask(headers["Authorization"])
    body = {k: mask(v or "") if k in MASKED_FIELDS else v for k, v in call.body.items()}
    return TestRequestSent(method="GET" if call.method == "GET" else "POST", url=call.url, headers=headers, body=body)


def _response_view(call: IdentityCall) -> TestResponseReceived | None:
    if call.response is None:
        return None
    text = call.response.body.decode("utf-8", errors="replace")
    return TestResponseReceived(
        status=call.response.status,
        headers={k: v for k, v in call.response.headers.items() if k.lower() not in HIDDEN_RESPONSE_HEADERS},
        body=text[:RESPONSE_BODY_SHOWN], body_truncated=len(text) > RESPONSE_BODY_SHOWN, body_bytes=len(call.response.body),
    )


async def _dry_run(
    http: OutboundClient, config: AuthConfig, sample: PanelRequest, token: str, pushed: PushedIdentities,
    jwks: JwksCache | None = None, discovery: Discovery | None = None,
) -> Decision:
    """The verifier's decision for an open from ``sample.origin`` with ``token`` and ``sample``'s fields.
    A whitelist API is read afresh (the verifier may hold it cached for a few minutes); a widget
    token (``dmw_``) is only checked, never taken."""
    event = WidgetOpened(
        correlation_id="testing-panel", session_id="testing-panel", bot_id=sample.bot_id, origin=sample.origin,
        access_token=token, **sample.described(),
        deadline_at=utcnow() + timedelta(minutes=1),
    )
    whitelist = ApiWhitelist(http)
    try:
        return await decide(event, config, http=http, whitelist=whitelist, pushed=pushed, jwks=jwks, discovery=discovery)
    finally:
        await whitelist.close()


def _visitor_outcome(decision: Decision) -> VisitorOutcome:
    outcome = decision.outcome
    if isinstance(outcome, SessionFellBack):
        return VisitorOutcome(status="fallback", reason=outcome.reason, detail=outcome.detail)
    return VisitorOutcome(status="verified", reason=None, detail=None)


async def _match(pool: asyncpg.Pool, bot_id: UUID, config: AuthConfig, identity: Identity | None) -> TestMatch | None:
    """The contact a verified identity would update: its key includes the business's workspace (none: NULL)."""
    if identity is None:
        return None
    existing = await pool.fetchval(
        """SELECT contact_id FROM contacts WHERE bot_id = $1 AND identify_method = $2 AND identifier = $3
                  AND external_workspace_id IS NOT DISTINCT FROM $4""",
        bot_id, config.identify_method.value, identity.identifier, identity.external_workspace_id,
    )
    return TestMatch(action="update" if existing else "create", contact_id=existing)


def _unverified(read: Callable[[str], dict[str, Any]], token: str) -> dict[str, Any] | None:
    try:
        return read(token)
    except TokenRejected:
        return None


async def run_token_test(
    pool: asyncpg.Pool, http: OutboundClient, config: AuthConfig, sample: PanelRequest, token: str,
    pushed: PushedIdentities,
) -> TestResult:
    """``identity_source: signed_token``: the pasted JWT, read and verified as the verifier would
    (the JWKS fetched afresh, once for both)."""
    jwks, discovery = JwksCache(http), Discovery(http)
    decision = await _dry_run(http, config, sample, token, pushed, jwks, discovery)
    # Checked here too: a visitor refused before the token (Custom Authentication off, a refused
    # domain) still gets the token shown, as the identity call is for auth_url bots.
    check = await check_token(token, config, sample.bot_id, jwks=jwks, discovery=discovery)
    shown = TestToken(
        algorithm=config.signed_token.algorithm, header=_unverified(read_header, token),
        claims=_unverified(read_claims, token), failed_check=check.code,
    )
    failure = None
    if check.failure is not None:
        failure = TestFailure(reason=check.failure.reason, detail=check.failure.detail, hint=describe_token(check.code))
    return TestResult(
        ok=check.failure is None, enabled=config.enabled, identify_method=config.identify_method,
        identity_source="signed_token", request=None, response=None, token=shown, identity=check.identity,
        match=await _match(pool, sample.bot_id, config, check.identity), elapsed_ms=round(check.elapsed_ms, 1),
        failure=failure, visitor_outcome=_visitor_outcome(decision),
    )


def describe_token(code: str | None) -> str:
    """What to fix for a failed token check."""
    return _TOKEN_HINTS.get(code or "", "Check how your server mints the token.")


_TOKEN_HINTS = {
    "malformed_token": "Paste the JWT itself: three base64url parts separated by dots.",
    "algorithm_not_allowed": "Sign with the algorithm chosen in the bot's settings (alg none is never accepted).",
    "unknown_kid": ("Put the kid of a current key in the token's header: the kid shown when the token secret "
                    "was made (HS256), or a kid published in your JWKS (RS256/ES256)."),
    "bad_signature": "Sign with the secret or private key that belongs to the token's kid, and do not alter the token.",
    "expired": "Give the token an exp in the future; mint a fresh token when the widget opens.",
    "not_yet_valid": "Drop nbf or set it to now; check your server's clock.",
    "issued_in_future": "Set iat to the time the token is minted; check your server's clock.",
    "lifetime_too_long": "Make exp - iat no longer than the bot's maximum lifetime.",
    "wrong_audience": "Set aud to this bot's id.",
    "wrong_issuer": "Set iss to exactly the issuer in the bot's settings.",
    "missing_claim": "Put the identify method's claim (as named in the bot's settings) in the token.",
    "invalid_claim": "Fix the claim named in the detail: it cannot be used as it is.",
    "jwks_unavailable": "Make your JWKS URL answer {\"keys\": [...]} quickly, from a public address.",
}


async def _decided_without_call(pool: asyncpg.Pool, bot_id: UUID, config: AuthConfig, decision: Decision) -> TestResult:
    outcome = decision.outcome
    identity = outcome.identity if isinstance(outcome, IdentityVerified) else None
    failure = None
    if isinstance(outcome, SessionFellBack):
        failure = TestFailure(reason=outcome.reason, detail=outcome.detail, hint=describe(outcome.reason))
    return TestResult(
        ok=failure is None, enabled=config.enabled, identify_method=config.identify_method,
        identity_source=config.identity_source, request=None, response=None, token=None, identity=identity,
        match=await _match(pool, bot_id, config, identity), elapsed_ms=0.0, failure=failure,
        visitor_outcome=_visitor_outcome(decision),
    )


async def run_test(pool: asyncpg.Pool, http: OutboundClient, config: AuthConfig, sample: PanelRequest,
                   secrets: Secrets) -> TestResult:
    token = sample.access_token.get_secret_value()
    pushed = PushedIdentities(pool, secrets, dry_run=True)  # a widget token is checked, never taken
    if config.identity_source == "signed_token":
        return await run_token_test(pool, http, config, sample, token, pushed)
    discovery = Discovery(http)  # the provider's discovery document read afresh (oidc)
    decision = await _dry_run(http, config, sample, token, pushed, discovery=discovery)
    if is_widget_token(token):
        # A widget token Doorman issued is never sent to the business (a real open does not send it either).
        return await _decided_without_call(pool, sample.bot_id, config, decision)
    # A visitor who never reaches the call (Custom Authentication off, a refused domain) still gets
    # the call shown: the panel is where the business gets it right before switching it on.
    call = decision.call or await _call(http, config, sample, token, discovery)
    match = await _match(pool, sample.bot_id, config, call.identity)
    failure = None
    if call.failure is not None:
        failure = TestFailure(reason=call.failure.reason, detail=call.failure.detail, hint=describe(call.failure.reason))
    return TestResult(
        ok=call.failure is None, enabled=config.enabled, identify_method=config.identify_method,
        identity_source=config.identity_source, request=_request_view(call) if call.url else None,
        response=_response_view(call), token=None,
        identity=call.identity, match=match,
        elapsed_ms=round(call.elapsed_ms, 1), failure=failure, visitor_outcome=_visitor_outcome(decision),
    )


async def _call(http: OutboundClient, config: AuthConfig, sample: PanelRequest, token: str,
                discovery: Discovery) -> IdentityCall:
    """The identity call a real open would make: to the OpenID Provider (oidc), or to the Authentication URL."""
    if config.identity_source == "oidc":
        return await call_provider(http, config, access_token=token, discovery=discovery)
    assert config.auth_url is not None
    return await call_identity(
        http, auth_url=config.auth_url, identify_method=config.identify_method, header_token=config.header_token,
        access_token=token, request_fields=config.request_fields,
        visitor=sample.described(), signing_secrets=config.signing_secrets(),
    )


async def answer(body: bytes, *, pool: asyncpg.Pool, http: OutboundClient, secrets: Secrets) -> bytes | None:
    """A gateway's request (:class:`shared.panel.PanelRequest`) -> its :class:`shared.panel.PanelAnswer`, or
    None when the run outlasts the gateway's patience (it is stopped then: the gateway answered 503 already)."""
    sample = PanelRequest.off_the_wire(body, secrets)
    try:
        async with asyncio.timeout(sample.patience_seconds):
            reply = await _answer(pool, http, sample, secrets)
    except TimeoutError:
        log.warning("testing panel run outlasted its asker's patience", bot_id=str(sample.bot_id))
        return None
    return reply.model_dump_json().encode()


async def _answer(pool: asyncpg.Pool, http: OutboundClient, sample: PanelRequest, secrets: Secrets) -> PanelAnswer:
    config = await load(pool, secrets, sample.bot_id)  # as saved this moment (a change's notice may be on its way)
    if config is None:
        return PanelAnswer(refused="bot_not_found")
    if config.identity_source == "auth_url" and not config.auth_url:
        return PanelAnswer(refused="no_auth_url")
    return PanelAnswer(result=await run_test(pool, http, config, sample, secrets))
