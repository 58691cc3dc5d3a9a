"""Property test for the verifier's decision (``services.verifier.handler.decide``): a widget open with
arbitrary field values, for a bot with arbitrary settings, whose business answers anything, ends in an
outcome (IdentityVerified, or SessionFellBack with a reason other than internal_error), never an
exception. Against the real database (widget tokens, the outage grace cache), the guarded outbound
client and the fake business; no broker (decide is the handler's core)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from uuid import UUID

import asyncpg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from services.gateway.admin.store import create_bot
from services.verifier.grace import GraceCache
from services.verifier.handler import decide
from services.verifier.jwks import JwksCache
from services.verifier.pushed import PushedIdentities
from services.verifier.whitelist import ApiWhitelist
from shared import db
from shared.auth_config import AUTH_URL, WHITELIST_API_URL, AuthConfig, BoundSecret, SignedToken, TokenSecret
from shared.crypto import Secrets
from shared.events import FallbackReason, IdentifyMethod, IdentityVerified, SessionFellBack, WidgetOpened, utcnow
from services.verifier.outbound import OutboundClient, outbound_client
from tests.fake_customer import Answer, FakeCustomerAPI
from tests.strategies import BODIES, JSON, TIMES, claims, headers, make_token

KID, SECRET = "kid-1", "dmts_" + "p" * 40


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with db.pool(database_url, max_size=2) as p:
        yield p


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[OutboundClient]:
    async with outbound_client(allow_private=True, timeout=1, max_body=65536, limit_per_host=8) as client:
        yield client


@pytest.fixture(scope="module")
async def bot_id(pool: asyncpg.Pool) -> UUID:
    return (await create_bot(pool, "decide properties", None)).bot_id


TEXT = st.text(max_size=40)
OPTIONAL = st.none() | TEXT
# A profile every identify method can read, as the Authentication URL's answer and as a token's claims.
PROFILE = {"sub": "7", "id": "7", "email": "v@example.com", "phone_number": "+84912345678", "name": "Visitor"}
ANSWERS = st.just(json.dumps({"status": True, "data": PROFILE}).encode()) | BODIES


def tokens(bot_id: UUID, source: str) -> st.SearchStrategy[str]:
    """Access tokens: for a signed_token bot mostly JWTs (signed with its secret, for it, with one claim set
    to anything: NaN, Infinity, huge numbers...; or any header and claims), else any text; widget tokens."""
    anything = TEXT | TEXT.map("dmw_".__add__)
    if source != "signed_token":
        return anything
    now = int(time.time())
    good = {**PROFILE, "aud": str(bot_id), "iat": now, "exp": now + 60}
    signed = st.builds(lambda name, value: make_token({"alg": "HS256", "kid": KID}, {**good, name: value}, SECRET),
                       st.sampled_from(["exp", "nbf", "iat", "metadata", "sub", "email", "phone_number"]), TIMES)
    return (signed | st.builds(make_token, headers(KID) | JSON, claims(str(bot_id)) | JSON, st.sampled_from([SECRET, None]))
            | st.just(make_token({"alg": "HS256", "kid": KID}, good, SECRET)) | anything)


MOSTLY_TRUE = st.sampled_from([True, True, True, False])


@st.composite
def settings_(draw: st.DrawFn, url: str, whitelist_url: str) -> AuthConfig:
    header_token = draw(st.sampled_from(["Bearer ok", None, "bad\r\nX-Injected: 1", "Bearer é"]) | TEXT)
    # Mostly saved with these URLs; else for others (settings edited in the database): not sent, misconfigured.
    saved_for = draw(st.sampled_from([{AUTH_URL: url, WHITELIST_API_URL: whitelist_url}] * 3 + [
        {AUTH_URL: "https://elsewhere.example/auth", WHITELIST_API_URL: None}]))
    return AuthConfig(
        enabled=draw(MOSTLY_TRUE), auth_url=url,
        header_token=None if header_token is None else BoundSecret("header_token", SecretStr(header_token), saved_for),
        identify_method=draw(st.sampled_from(list(IdentifyMethod))),
        request_fields=tuple(draw(st.lists(st.sampled_from(["user_id", "email", "name", "phone_number",
                                                            "external_workspace_id"]), unique=True))),
        whitelist_enabled=not draw(MOSTLY_TRUE), whitelist_source=draw(st.sampled_from(["manual", "api"])),
        whitelist_domains=tuple(draw(st.lists(st.sampled_from(["shop.example.com", "*.example.com"]) | TEXT, max_size=3))),
        whitelist_api_url=whitelist_url,
        identity_source=draw(st.sampled_from(["auth_url", "signed_token"])),
        signed_token=SignedToken(secret=TokenSecret(KID, SecretStr(SECRET))),
        outage_grace_seconds=draw(st.sampled_from([0, 300])),
    )


@settings(max_examples=250, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_widget_open_ends_in_an_outcome(
        data: st.DataObject, session_loop: asyncio.AbstractEventLoop, pool: asyncpg.Pool, http: OutboundClient,
        bot_id: UUID, customer_api: FakeCustomerAPI, secret_key: str) -> None:
    status = data.draw(st.integers(200, 599) | st.sampled_from([200, 302, 401, 404, 503]), label="status")
    url = customer_api.endpoint(Answer(status=status, body=data.draw(ANSWERS, label="body")))
    whitelist_url = customer_api.endpoint(Answer(status=data.draw(st.sampled_from([200, 500]), label="whitelist status"),
                                                 body=data.draw(BODIES, label="whitelist body")))
    config = data.draw(settings_(url, whitelist_url), label="config")
    opened = WidgetOpened(
        correlation_id="properties", session_id=data.draw(st.text(min_size=1, max_size=60), label="session_id"),
        bot_id=bot_id, deadline_at=utcnow() + timedelta(seconds=30),
        origin=data.draw(OPTIONAL | st.sampled_from(["https://shop.example.com", "null"]), label="origin"),
        access_token=SecretStr(data.draw(tokens(bot_id, config.identity_source), label="access_token")),
        **{field: data.draw(OPTIONAL, label=field) for field in ("user_id", "email", "name", "phone_number",
                                                                  "external_workspace_id")},
    )
    secrets = Secrets(secret_key)

    async def decided() -> IdentityVerified | SessionFellBack:
        whitelist = ApiWhitelist(http)
        try:
            return (await decide(opened, config, http=http, whitelist=whitelist, pushed=PushedIdentities(pool, secrets),
                                 jwks=JwksCache(http), grace=GraceCache(pool, secrets))).outcome
        finally:
            await whitelist.close()

    outcome = session_loop.run_until_complete(decided())
    assert isinstance(outcome, IdentityVerified | SessionFellBack)
    event(f"outcome: {getattr(outcome, 'reason', 'verified')}")  # what the examples reached (--hypothesis-show-statistics)
    if isinstance(outcome, SessionFellBack):
        assert outcome.reason is not FallbackReason.internal_error, outcome.detail
        assert outcome.detail.strip()
    json.loads(outcome.model_dump_json())  # publishable as it is
