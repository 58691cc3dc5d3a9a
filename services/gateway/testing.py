"""The Testing panel: a dry run of a widget open with a bot's current settings, writing nothing.

The verifier's own decision (:func:`services.verifier.handler.decide`) runs in process, so the
panel says what a real open from the given origin would get today (``visitor_outcome``), Custom
Authentication off or a refused domain included; the identity call is shown either way.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import asyncpg

from services.verifier.handler import VISITOR_FIELDS, Decision, decide
from services.verifier.identity import IdentityCall, call_identity, describe
from services.verifier.whitelist import ApiWhitelist
from shared.auth_config import AuthConfig
from shared.events import SessionFellBack, WidgetOpened, utcnow
from shared.http import OutboundClient

from . import directory
from .schemas import TestRequest
from .views import TestFailure, TestMatch, TestRequestSent, TestResponseReceived, TestResult, VisitorOutcome

RESPONSE_BODY_SHOWN = 4096  # characters of the business's answer echoed back
HIDDEN_RESPONSE_HEADERS = frozenset({"set-cookie", "authorization", "proxy-authorization"})


def mask(secret: str) -> str:
    """``Bearer abc...`` -> ``Bearer ****`` (a leading auth scheme is kept; nothing else)."""
    scheme, sep, _rest = secret.partition(" ")
    shown = f"{scheme} " if sep and scheme.isalpha() and len(scheme) <= 16 else ""
    return f"{shown}**** ({len(secret)} characters)"


def _request_view(config: AuthConfig, call: IdentityCall) -> TestRequestSent:
    headers = dict(call.headers)
    if "Authorization" in headers:
        headers["Authorization"] = mask(headers["Authorization"])
    body = dict(call.body)
    body["access_token"] = mask(body["access_token"] or "")
    return TestRequestSent(method="POST", url=config.auth_url or "", headers=headers, body=body)


def _response_view(call: IdentityCall) -> TestResponseReceived | None:
    if call.response is None:
        return None
    text = call.response.body.decode("utf-8", errors="replace")
    return TestResponseReceived(
        status=call.response.status,
        headers={k: v for k, v in call.response.headers.items() if k.lower() not in HIDDEN_RESPONSE_HEADERS},
        body=text[:RESPONSE_BODY_SHOWN], body_truncated=len(text) > RESPONSE_BODY_SHOWN, body_bytes=len(call.response.body),
    )


async def _dry_run(http: OutboundClient, bot_id: UUID, config: AuthConfig, sample: TestRequest) -> Decision:
    """The verifier's decision for an open from ``sample.origin`` with ``sample``'s token and fields.
    A whitelist API is read afresh (the verifier may hold it cached for a few minutes)."""
    event = WidgetOpened(
        correlation_id="testing-panel", session_id="testing-panel", bot_id=bot_id, origin=sample.origin,
        access_token=sample.access_token, **{f: getattr(sample, f) for f in VISITOR_FIELDS},
        deadline_at=utcnow() + timedelta(minutes=1),
    )
    whitelist = ApiWhitelist(http)
    try:
        return await decide(event, config, http=http, whitelist=whitelist)
    finally:
        await whitelist.close()


def _visitor_outcome(decision: Decision) -> VisitorOutcome:
    outcome = decision.outcome
    if isinstance(outcome, SessionFellBack):
        return VisitorOutcome(status="fallback", reason=outcome.reason, detail=outcome.detail)
    return VisitorOutcome(status="verified", reason=None, detail=None)


async def run_test(pool: asyncpg.Pool, http: OutboundClient, bot_id: UUID, config: AuthConfig, sample: TestRequest) -> TestResult:
    assert config.auth_url is not None
    decision = await _dry_run(http, bot_id, config, sample)
    # A visitor who never reaches the call (Custom Authentication off, a refused domain) still gets
    # the call shown: the panel is where the business gets it right before switching it on.
    call = decision.call or await call_identity(
        http, auth_url=config.auth_url, identify_method=config.identify_method, header_token=config.header_token,
        access_token=sample.access_token, request_fields=config.request_fields,
        visitor={f: getattr(sample, f) for f in VISITOR_FIELDS}, signing_secrets=config.signing_secrets(),
    )
    match = None
    if call.identity is not None:
        existing = await directory.find_contact(pool, bot_id, config.identify_method.value, call.identity.identifier,
                                                call.identity.external_workspace_id)
        match = TestMatch(action="update" if existing else "create", contact_id=existing)
    failure = None
    if call.failure is not None:
        failure = TestFailure(reason=call.failure.reason, detail=call.failure.detail, hint=describe(call.failure.reason))
    return TestResult(
        ok=call.failure is None, enabled=config.enabled, identify_method=config.identify_method,
        request=_request_view(config, call), response=_response_view(call), identity=call.identity, match=match,
        elapsed_ms=round(call.elapsed_ms, 1), failure=failure, visitor_outcome=_visitor_outcome(decision),
    )
