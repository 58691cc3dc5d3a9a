"""Server-to-server identity push: POST /v1/bots/{bot_id}/identities answers a single-use widget token;
an open with it is verified from the pushed profile, with no call to the business."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import aio_pika
import pytest
from cryptography.fernet import Fernet

from services.verifier.handler import decide
from services.verifier.pushed import PushedIdentities
from services.verifier.whitelist import ApiWhitelist
from shared import messaging
from shared.auth_config import load as load_auth_config
from shared.crypto import Secrets
from shared.events import IdentityVerified, SessionFellBack, WidgetOpened, utcnow
from services.verifier.outbound import outbound_client
from shared.sessions import prune
from tests.conftest import (
    AMQP_URL, Stack, admin_headers, await_outcome, create_bot, logged_detail, open_session, store_pending,
)
from tests.fake_customer import FakeCustomerAPI, verified
from tests.integration.test_workspaces import workspace_with_key


async def push(stack: Stack, bot_id: str, body: dict[str, Any], *, token: str | None = None,
               status: int = 201) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else admin_headers()
    async with stack.http.post(f"{stack.gateway.url}/v1/bots/{bot_id}/identities", json=body, headers=headers) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


async def open_with(stack: Stack, bot_id: str, widget_token: str) -> dict[str, Any]:
    session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot_id, "access_token": widget_token})
    return await await_outcome(stack.http, stack.gateway.url, session_id)


@pytest.fixture
async def business(stack: Stack, customer_api: FakeCustomerAPI) -> tuple[str, str]:
    """A bot identifying visitors by email, whose Authentication URL must never be called."""
    url = customer_api.endpoint(verified(email="never@example.com"))
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, identify_method="email")
    return bot_id, url


async def _rejected(stack: Stack, bot_id: str, outcome: dict[str, Any], code: str) -> None:
    """Refused with ``code``, as the admin activity log's detail says (the widget's is for visitors)."""
    assert outcome["status"] == "fallback", outcome
    assert outcome["fallback"]["reason"] == "auth_rejected"
    detail = await logged_detail(stack, bot_id, outcome["session_id"])
    assert detail is not None and detail.startswith(code + ":"), detail


async def test_a_pushed_identity_verifies_the_open_with_no_call(stack: Stack, customer_api: FakeCustomerAPI,
                                                                business: tuple[str, str], secret_key: str) -> None:
    bot_id, url = business
    pushed = await push(stack, bot_id, {
        "id": 42, "email": "  Ada@Example.COM ", "name": "Ada", "phone_number": "0912345678", "country_code": "+84",
        "external_workspace_id": "acme-eu", "metadata": {"plan": "pro"}, "ttl_seconds": 120,
    })
    token = pushed["widget_token"]
    assert token.startswith("dmw_") and len(token) >= 4 + 43
    outcome = await open_with(stack, bot_id, token)

    assert outcome["status"] == "verified", outcome
    contact = outcome["contact"]
    assert (contact["email"], contact["name"], contact["phone_number"]) == ("ada@example.com", "Ada", "+84912345678")
    assert customer_api.received(url) == []  # the business was not called
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot_id}/contacts/{contact['contact_id']}",
                              headers=admin_headers()) as resp:
        detail = await resp.json()
    assert (detail["identify_method"], detail["identifier"], detail["external_id"]) == ("email", "ada@example.com", "42")
    assert detail["metadata"] == {"plan": "pro"} and detail["verified"] is True
    # The activity log's facts: no call was made.
    row = await stack.pool.fetchrow("SELECT auth_http_status, auth_latency_ms FROM widget_sessions WHERE session_id = $1",
                                    outcome["session_id"])
    assert dict(row) == {"auth_http_status": None, "auth_latency_ms": None}

    # Stored: the keyed hash, never the token; the owning session; the business's workspace in the profile.
    stored = await stack.pool.fetchrow("SELECT * FROM pushed_identities WHERE bot_id = $1", bot_id)
    assert bytes(stored["token_hash"]) == Secrets(secret_key).keyed_hash(token)
    assert token not in str(dict(stored)) and token[4:] not in str(dict(stored))
    assert stored["used_by"] == outcome["session_id"] and stored["used_at"] is not None
    assert stored["identity"]["external_workspace_id"] == "acme-eu"
    assert (stored["expires_at"] - stored["created_at"]) == timedelta(seconds=120)


async def test_whatever_the_identity_source(stack: Stack) -> None:
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, identity_source="signed_token")
    token = (await push(stack, bot_id, {"id": "u-7", "name": "Signed Source"}))["widget_token"]
    outcome = await open_with(stack, bot_id, token)
    assert outcome["status"] == "verified" and outcome["contact"]["name"] == "Signed Source"


async def test_reuse_by_another_session_is_rejected(stack: Stack, business: tuple[str, str],
                                                    customer_api: FakeCustomerAPI) -> None:
    bot_id, url = business
    token = (await push(stack, bot_id, {"email": "once@example.com"}))["widget_token"]
    first = await open_with(stack, bot_id, token)
    assert first["status"] == "verified"
    await _rejected(stack, bot_id, await open_with(stack, bot_id, token), "already_used")
    assert customer_api.received(url) == []
    owner = await stack.pool.fetchval("SELECT used_by FROM pushed_identities WHERE bot_id = $1", bot_id)
    assert owner == first["session_id"]


async def test_an_expired_token_is_rejected(stack: Stack, business: tuple[str, str]) -> None:
    bot_id, _ = business
    token = (await push(stack, bot_id, {"email": "late@example.com", "ttl_seconds": 60}))["widget_token"]
    await stack.pool.execute(
        """UPDATE pushed_identities SET created_at = now() - interval '2 minutes', expires_at = now() - interval '1 second'
           WHERE bot_id = $1""", bot_id)
    await _rejected(stack, bot_id, await open_with(stack, bot_id, token), "expired")
    assert await stack.pool.fetchval("SELECT used_by FROM pushed_identities WHERE bot_id = $1", bot_id) is None


async def test_another_bots_token_and_an_unknown_one_are_rejected(stack: Stack, business: tuple[str, str]) -> None:
    bot_id, _ = business
    other = await create_bot(stack.http, stack.gateway.url, enabled=True, identify_method="email",
                             auth_url="https://auth.example.com/never")
    token = (await push(stack, bot_id, {"email": "mine@example.com"}))["widget_token"]
    await _rejected(stack, other, await open_with(stack, other, token), "wrong_bot")
    await _rejected(stack, bot_id, await open_with(stack, bot_id, "dmw_" + "A" * 43), "unknown_widget_token")
    # The refused attempt took nothing: the token still works for its own bot.
    assert (await open_with(stack, bot_id, token))["status"] == "verified"


async def test_concurrent_opens_with_one_token_exactly_one_wins(stack: Stack, business: tuple[str, str]) -> None:
    bot_id, _ = business
    token = (await push(stack, bot_id, {"email": "race@example.com"}))["widget_token"]
    outcomes = await asyncio.gather(*(open_with(stack, bot_id, token) for _ in range(12)))
    winners = [o for o in outcomes if o["status"] == "verified"]
    assert len(winners) == 1
    for loser in outcomes:
        if loser is not winners[0]:
            await _rejected(stack, bot_id, loser, "already_used")
    owner = await stack.pool.fetchval("SELECT used_by FROM pushed_identities WHERE bot_id = $1", bot_id)
    assert owner == winners[0]["session_id"]


async def test_concurrent_claims_in_the_verifier_exactly_one_wins(stack: Stack, business: tuple[str, str],
                                                                 secret_key: str) -> None:
    """The verifier's own decision, 20 sessions at once on the database (no broker between them)."""
    bot_id, _ = business
    token = (await push(stack, bot_id, {"email": "race2@example.com"}))["widget_token"]
    secrets = Secrets(secret_key)
    config = await load_auth_config(stack.pool, secrets, bot_id)
    pushed = PushedIdentities(stack.pool, secrets)
    deadline = utcnow() + timedelta(seconds=30)
    events = [WidgetOpened(correlation_id="c", session_id=f"racer-{i}-{uuid4()}", bot_id=bot_id, access_token=token,
                           deadline_at=deadline) for i in range(20)]
    async with outbound_client(allow_private=True, timeout=1, max_body=65536, limit_per_host=4) as http:
        decisions = await asyncio.gather(*(
            decide(e, config, http=http, whitelist=ApiWhitelist(http), pushed=pushed) for e in events))
    verified_ = [d.outcome for d in decisions if isinstance(d.outcome, IdentityVerified)]
    assert len(verified_) == 1 and all(d.call is None for d in decisions)
    assert sorted(d.outcome.detail.partition(":")[0] for d in decisions if d.outcome is not verified_[0]) == [
        "already_used"] * 19
    assert await stack.pool.fetchval("SELECT used_by FROM pushed_identities WHERE bot_id = $1", bot_id) == \
        verified_[0].session_id


async def test_a_redelivery_of_the_owning_sessions_open_is_not_a_reuse(stack: Stack, business: tuple[str, str],
                                                                       secret_key: str) -> None:
    bot_id, _ = business
    token = (await push(stack, bot_id, {"email": "again@example.com"}))["widget_token"]
    session_id = f"pushed-{uuid4()}"
    deadline = utcnow() + timedelta(seconds=30)
    assert await store_pending(stack.pool, session_id, bot_id, deadline_at=deadline)
    event = WidgetOpened(correlation_id="c", session_id=session_id, bot_id=bot_id, access_token=token, deadline_at=deadline)

    # The broker delivers the same event twice (a redelivery racing the first delivery): one verified outcome.
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(messaging.Topology(stack.config["amqp_prefix"]).exchange)
        for _ in range(2):
            await exchange.publish(messaging.event_message(event, secrets=Secrets(secret_key)), routing_key=event.event_type)
    outcome = await await_outcome(stack.http, stack.gateway.url, session_id)
    assert outcome["status"] == "verified" and outcome["contact"]["email"] == "again@example.com"

    # Decided again for the same session (a retry, a redelivery before the outcome was recorded), even once
    # the token has expired: the same use, the same identity. Another session is refused.
    await stack.pool.execute(
        """UPDATE pushed_identities SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour'
           WHERE bot_id = $1""", bot_id)
    secrets = Secrets(secret_key)
    config = await load_auth_config(stack.pool, secrets, bot_id)
    async with outbound_client(allow_private=True, timeout=1, max_body=65536, limit_per_host=4) as http:
        async def decided(e: WidgetOpened) -> IdentityVerified | SessionFellBack:
            return (await decide(e, config, http=http, whitelist=ApiWhitelist(http),
                                 pushed=PushedIdentities(stack.pool, secrets))).outcome

        again = await decided(event)
        other = await decided(event.model_copy(update={"session_id": f"other-{uuid4()}", "event_id": uuid4()}))
    assert isinstance(again, IdentityVerified) and again.identity.email == "again@example.com"
    assert isinstance(other, SessionFellBack) and other.detail.startswith("already_used:")
    assert await stack.pool.fetchval("SELECT used_by FROM pushed_identities WHERE bot_id = $1", bot_id) == session_id


async def test_the_testing_panel_only_checks_a_widget_token(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(email="panel@example.com"))
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, identify_method="email")
    token = (await push(stack, bot_id, {"email": "panel@example.com"}))["widget_token"]
    for _ in range(2):
        async with stack.http.post(f"{stack.gateway.url}/v1/bots/{bot_id}/custom-auth/test",
                                   json={"access_token": token}, headers=admin_headers()) as resp:
            assert resp.status == 200, await resp.text()
            result = await resp.json()
        assert result["visitor_outcome"] == {"status": "verified", "reason": None, "detail": None}
        assert result["identity"]["email"] == "panel@example.com" and result["request"] is None
    assert await stack.pool.fetchval("SELECT used_by FROM pushed_identities WHERE bot_id = $1", bot_id) is None
    assert customer_api.received(url) == []  # a widget token Doorman issued is never sent to the business
    assert (await open_with(stack, bot_id, token))["status"] == "verified"  # not consumed by the dry runs


async def test_a_token_pushed_before_a_key_rotation_still_matches(stack: Stack, business: tuple[str, str],
                                                                 secret_key: str) -> None:
    bot_id, _ = business
    token = (await push(stack, bot_id, {"email": "rotated@example.com"}))["widget_token"]
    rotated = Secrets(f"{Fernet.generate_key().decode()},{secret_key}")  # a new first key; the old one still listed
    identity = await PushedIdentities(stack.pool, rotated, dry_run=True).take(
        token, bot_id=UUID(bot_id), session_id="testing-panel", method=(await load_auth_config(
            stack.pool, rotated, bot_id)).identify_method)
    assert identity.identifier == "rotated@example.com"


async def test_workspace_keys_reach_only_their_own_bots(stack: Stack) -> None:
    ws_a, key_a = await workspace_with_key(stack, "Push A")
    _, key_b = await workspace_with_key(stack, "Push B")
    async with stack.http.post(f"{stack.gateway.url}/v1/bots", json={"name": "pushing"},
                               headers={"Authorization": f"Bearer {key_a}"}) as resp:
        bot_id = (await resp.json())["bot_id"]
    assert (await push(stack, bot_id, {"id": "w-1"}, token=key_a))["widget_token"].startswith("dmw_")
    body = await push(stack, bot_id, {"id": "w-1"}, token=key_b, status=404)
    assert body["error"]["code"] == "bot_not_found"
    await push(stack, str(uuid4()), {"id": "w-1"}, status=404)
    async with stack.http.post(f"{stack.gateway.url}/v1/bots/{bot_id}/identities", json={"id": "w-1"}) as resp:
        assert resp.status == 401
    assert await stack.pool.fetchval("SELECT count(*) FROM pushed_identities WHERE bot_id = $1", bot_id) == 1


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "No Email"}, "email"),  # the bot identifies visitors by email
    ({"email": "   "}, "email"),
    ({"email": "not-an-email"}, "email"),
    ({"email": "a@example.com", "ttl_seconds": 59}, "ttl_seconds"),
    ({"email": "a@example.com", "ttl_seconds": 86401}, "ttl_seconds"),
    ({"email": "a@example.com", "avatar": "https://x"}, "avatar"),
    ({"email": "a@example.com", "id": True}, "id"),
    ({"email": "a@example.com", "id": 1.5}, "id"),
    ({"email": "a@example.com", "name": "x" * 3000}, "name"),
    ({"email": "a@example.com", "metadata": ["not", "an", "object"]}, "metadata"),
    ({"email": "a@example.com", "metadata": {"big": "x" * 20000}}, "metadata"),
    ({"email": "a@example.com", "metadata": {"nul": "a\x00b"}}, "metadata"),
    ({"email": "a@example.com", "external_workspace_id": ""}, "external_workspace_id"),
    ({"email": "a@example.com", "name": "a\x00b"}, "name"),
])
async def test_bad_bodies_name_their_fields(stack: Stack, business: tuple[str, str], body: dict[str, Any],
                                            field: str) -> None:
    bot_id, _ = business
    answer = await push(stack, bot_id, body, status=422)
    assert answer["error"]["code"] == "invalid_body"
    assert field in [f["field"] for f in answer["error"]["fields"]], answer


async def test_a_missing_identifier_names_the_bots_method(stack: Stack) -> None:
    """A profile with another identifier is valid; it is the bot's setting that wants this one: 409 invalid_state."""
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, identify_method="phone_number",
                              auth_url="https://auth.example.com/x")
    missing = [{"field": "phone_number", "message": "phone_number is missing: the bot identifies visitors by phone_number"}]
    answer = await push(stack, bot_id, {"email": "a@example.com"}, status=409)
    assert answer["error"]["code"] == "invalid_state" and answer["error"]["fields"] == missing
    answer = await push(stack, bot_id, {"name": "No identifier"}, status=422)
    assert answer["error"]["code"] == "invalid_body" and answer["error"]["fields"] == missing
    answer = await push(stack, bot_id, {"phone_number": "12"}, status=422)
    assert answer["error"]["fields"][0]["field"] == "phone_number"


@pytest.mark.parametrize("metadata", [b"1e400", b"-1e400", b"NaN", b"Infinity"])
async def test_metadata_numbers_no_json_column_can_hold_are_refused(stack: Stack, business: tuple[str, str],
                                                                    metadata: bytes) -> None:
    """A number beyond a double (or NaN) used to reach PostgreSQL's jsonb and answer 500."""
    bot_id, _ = business
    body = b'{"email": "a@example.com", "metadata": {"n": ' + metadata + b"}}"
    async with stack.http.post(f"{stack.gateway.url}/v1/bots/{bot_id}/identities", data=body,
                               headers={**admin_headers(), "Content-Type": "application/json"}) as resp:
        assert resp.status == 422, await resp.text()
        assert [f["field"] for f in (await resp.json())["error"]["fields"]] == ["metadata"]


async def test_an_email_or_phone_number_pushed_beside_the_identifier_must_be_one(stack: Stack) -> None:
    """Stored and searched as an email or a phone number, it is checked as one whatever the identify method."""
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url="https://auth.example.com/x")
    for extra, field in (({"email": "not-an-email"}, "email"), ({"phone_number": "12", "country_code": "+84"}, "phone_number")):
        answer = await push(stack, bot_id, {"id": "p-1", **extra}, status=422)
        assert [f["field"] for f in answer["error"]["fields"]] == [field]


async def test_expired_pushed_identities_are_pruned_with_old_sessions(stack: Stack, business: tuple[str, str]) -> None:
    bot_id, _ = business
    old = (await push(stack, bot_id, {"email": "old@example.com"}))["widget_token"]
    fresh = (await push(stack, bot_id, {"email": "fresh@example.com"}))["widget_token"]
    assert old != fresh
    await stack.pool.execute(
        """UPDATE pushed_identities SET created_at = now() - interval '3 days', expires_at = now() - interval '2 days'
           WHERE bot_id = $1 AND identity->>'email' = 'old@example.com'""", bot_id)
    await prune(stack.pool, timedelta(days=1))
    left = await stack.pool.fetch("SELECT identity->>'email' AS email FROM pushed_identities WHERE bot_id = $1", bot_id)
    assert [r["email"] for r in left] == ["fresh@example.com"]


async def test_an_identify_method_changed_since_the_push_is_seen(stack: Stack, business: tuple[str, str]) -> None:
    bot_id, url = business
    token = (await push(stack, bot_id, {"email": "switch@example.com", "id": "s-1"}))["widget_token"]
    async with stack.http.put(f"{stack.gateway.url}/v1/bots/{bot_id}/custom-auth", headers=admin_headers(),
                              json={"enabled": True, "auth_url": url, "identify_method": "phone_number"}) as resp:
        assert resp.status == 200
    outcome = await open_with(stack, bot_id, token)
    assert outcome["status"] == "fallback" and outcome["fallback"]["reason"] == "invalid_response"
    detail = await logged_detail(stack, bot_id, outcome["session_id"])
    assert detail == "the pushed identity cannot be used: phone_number is missing"
