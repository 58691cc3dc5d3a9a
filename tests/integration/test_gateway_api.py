"""The gateway's HTTP API: admin auth and validation, widget API errors, replicas."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any
from uuid import uuid4

import pytest

from shared.widget_view import VISITOR_MESSAGES
from tests.conftest import (
    ADMIN_TOKEN, Stack, admin_headers, await_outcome, create_bot, open_session, start_gateway, verify_once,
)
from tests.fake_customer import Answer, FakeCustomerAPI, verified


async def test_admin_api_needs_the_token(stack: Stack) -> None:
    url = f"{stack.gateway.url}/v1/bots"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN}, {"Authorization": f"Basic {ADMIN_TOKEN}"}):
        async with stack.http.post(url, json={"name": "x"}, headers=headers) as resp:
            assert resp.status == 401
            body = await resp.json()
            assert body["error"]["code"] == "unauthorized"
            assert ADMIN_TOKEN not in await resp.text()


async def test_create_and_read_bot(stack: Stack) -> None:
    async with stack.http.post(f"{stack.gateway.url}/v1/bots", json={"name": "Shop"}, headers=admin_headers()) as resp:
        assert resp.status == 201
        bot = await resp.json()
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot['bot_id']}", headers=admin_headers()) as resp:
        assert (await resp.json())["name"] == "Shop"
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{uuid4()}", headers=admin_headers()) as resp:
        assert resp.status == 404
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/not-a-uuid/custom-auth", headers=admin_headers()) as resp:
        assert resp.status == 404


async def test_header_token_is_write_only_and_encrypted_at_rest(stack: Stack) -> None:
    secret = "Bearer super-secret-header-token-" + uuid4().hex
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url="https://auth.example.com/verify",
                           header_token=secret)
    url = f"{stack.gateway.url}/v1/bots/{bot}/custom-auth"
    async with stack.http.get(url, headers=admin_headers()) as resp:
        text = await resp.text()
        view = await resp.json()
    assert secret not in text and "header_token" not in view
    assert view["header_token_set"] is True
    stored = await stack.pool.fetchval("SELECT header_token_cipher FROM custom_auth_settings WHERE bot_id = $1", bot)
    assert secret.encode() not in stored

    # Absent keeps it; null clears it.
    async with stack.http.put(url, json={"enabled": False}, headers=admin_headers()) as resp:
        assert (await resp.json())["header_token_set"] is True
    async with stack.http.put(url, json={"enabled": False, "header_token": None}, headers=admin_headers()) as resp:
        assert (await resp.json())["header_token_set"] is False


BAD_SETTINGS = [
    ({"enabled": True, "auth_url": "ftp://x.example.com"}, "auth_url"),
    ({"enabled": True}, "body"),
    ({"enabled": True, "auth_url": "https://a.example.com", "identify_method": "username"}, "identify_method"),
    ({"enabled": True, "auth_url": "https://a.example.com", "request_fields": ["password"]}, "request_fields.0"),
    ({"enabled": False, "domain_whitelist": {"enabled": True, "domains": ["https://example.com/x"]}}, "domain_whitelist.domains.0"),
    ({"enabled": False, "domain_whitelist": {"enabled": True, "domains": ["*.com"]}}, "domain_whitelist.domains.0"),
    ({"enabled": False, "surprise": 1}, "surprise"),
    ({"enabled": True, "auth_url": "https://a.example.com", "header_token": "Bearer x\r\nX-Injected: yes"}, "header_token"),
    ({"enabled": True, "auth_url": "https://a.example.com", "header_token": "Bearer x\ny"}, "header_token"),
    ({"enabled": True, "auth_url": "https://a.example.com", "header_token": "Bearer \x7f"}, "header_token"),
    ({"enabled": True, "identity_source": "magic"}, "identity_source"),
    ({"enabled": True, "identity_source": "signed_token", "signed_token": {"algorithm": "RS256"}}, "signed_token"),
    ({"enabled": True, "identity_source": "signed_token", "signed_token": {"algorithm": "none"}}, "signed_token.algorithm"),
    ({"enabled": False, "signed_token": {"max_lifetime_seconds": 0}}, "signed_token.max_lifetime_seconds"),
    ({"enabled": False, "signed_token": {"jwks_url": "file:///etc/keys"}}, "signed_token.jwks_url"),
    ({"enabled": False, "signed_token": {"claims": {"id": ""}}}, "signed_token.claims.id"),
    ({"enabled": False, "outage_grace_seconds": 86401}, "outage_grace_seconds"),
    ({"enabled": False, "outage_grace_seconds": -1}, "outage_grace_seconds"),
    ({"enabled": False, "collect_information": "sometimes"}, "collect_information"),
]


@pytest.mark.parametrize(("body", "field"), BAD_SETTINGS)
async def test_bad_settings_get_field_errors(stack: Stack, body: dict[str, Any], field: str) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)
    async with stack.http.put(f"{stack.gateway.url}/v1/bots/{bot}/custom-auth", json=body, headers=admin_headers()) as resp:
        assert resp.status == 422
        error = (await resp.json())["error"]
    assert error["code"] == "invalid_body"
    assert field in [f["field"] for f in error["fields"]], error


async def test_settings_round_trip_normalises_domains(stack: Stack) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url="https://a.example.com/auth",
                           identify_method="phone_number", request_fields=["email", "user_id"],
                           domain_whitelist={"enabled": True, "source": "manual", "domains": ["Bücher.DE.", "*.Example.com"]})
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot}/custom-auth", headers=admin_headers()) as resp:
        view = await resp.json()
    assert view["domain_whitelist"]["domains"] == ["xn--bcher-kva.de", "*.example.com"]
    assert view["identify_method"] == "phone_number" and view["request_fields"] == ["email", "user_id"]


async def test_identity_mode_settings_round_trip_with_their_defaults(stack: Stack) -> None:
    url = f"{stack.gateway.url}/v1/bots/{await create_bot(stack.http, stack.gateway.url)}/custom-auth"
    async with stack.http.get(url, headers=admin_headers()) as resp:
        view = await resp.json()
    assert view["identity_source"] == "auth_url" and view["outage_grace_seconds"] == 0
    assert view["collect_information"] == "required"
    assert view["signed_token"] == {
        "algorithm": "HS256", "jwks_url": None, "issuer": None, "max_lifetime_seconds": 3600, "secret_kid": None,
        "claims": {"id": "sub", "email": "email", "name": "name", "phone_number": "phone_number", "metadata": "metadata"},
    }

    # signed_token needs no auth_url; every part-2 setting is stored as sent.
    body = {"enabled": True, "identity_source": "signed_token", "outage_grace_seconds": 900, "collect_information": "off",
            "signed_token": {"algorithm": "ES256", "jwks_url": "https://login.example.com/.well-known/jwks.json",
                             "issuer": "https://login.example.com", "max_lifetime_seconds": 600,
                             "claims": {"id": "uid", "email": "mail"}}}
    async with stack.http.put(url, json=body, headers=admin_headers()) as resp:
        assert resp.status == 200, await resp.text()
    async with stack.http.get(url, headers=admin_headers()) as resp:
        view = await resp.json()
    assert view["identity_source"] == "signed_token" and view["auth_url"] is None
    assert view["outage_grace_seconds"] == 900 and view["collect_information"] == "off"
    assert view["signed_token"]["algorithm"] == "ES256" and view["signed_token"]["max_lifetime_seconds"] == 600
    assert view["signed_token"]["claims"] == {"id": "uid", "email": "mail", "name": "name",
                                              "phone_number": "phone_number", "metadata": "metadata"}


WIDGET_ERRORS = [
    ({"bot_id": "not-a-uuid"}, 422, "bot_id"),
    ({}, 422, "bot_id"),
    ({"bot_id": str(uuid4()), "access_token": 5}, 422, "access_token"),
    ({"bot_id": str(uuid4()), "extra": "x"}, 422, "extra"),
]


@pytest.mark.parametrize(("body", "status", "field"), WIDGET_ERRORS)
async def test_widget_open_rejects_bad_bodies(stack: Stack, body: dict[str, Any], status: int, field: str) -> None:
    async with stack.http.post(f"{stack.gateway.url}/v1/widget/sessions", json=body) as resp:
        assert resp.status == status
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        error = (await resp.json())["error"]
    assert field in [f["field"] for f in error["fields"]]


async def test_widget_open_errors(stack: Stack) -> None:
    url = f"{stack.gateway.url}/v1/widget/sessions"
    async with stack.http.post(url, json={"bot_id": str(uuid4())}) as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "bot_not_found"
    async with stack.http.post(url, json={"bot_id": str(uuid4()), "access_token": "x" * 17000}) as resp:
        assert resp.status == 413
    async with stack.http.post(url, data=b"{not json", headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 422
    async with stack.http.post(url, data=b"bot_id=1", headers={"Content-Type": "application/x-www-form-urlencoded"}) as resp:
        assert resp.status == 415
    async with stack.http.options(url, headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}) as resp:
        assert resp.status == 204 and "POST" in resp.headers["Access-Control-Allow-Methods"]
    async with stack.http.get(f"{url}/no-such-session") as resp:
        assert resp.status == 404
    async with stack.http.get(f"{url}/no-such-session/events") as resp:
        assert resp.status == 404


async def test_session_ids_are_long_and_distinct(stack: Stack) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)
    ids = {await open_session(stack.http, stack.gateway.url, {"bot_id": bot}) for _ in range(20)}
    assert len(ids) == 20 and all(len(i) >= 43 for i in ids)  # 32 random bytes, url-safe base64


async def test_any_replica_serves_the_session_and_its_stream(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="r-1", name="Replica"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    async with AsyncExitStack() as es:
        other = await start_gateway(es, stack.config)  # a second replica: its own outcome queue
        session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot, "access_token": "t"})

        outcome = await await_outcome(stack.http, other.url, session_id)

        assert outcome["status"] == "verified" and outcome["contact"]["name"] == "Replica"
        async with stack.http.get(f"{other.url}/v1/widget/sessions/{session_id}") as resp:
            assert await resp.json() == outcome

    # "After a restart": a gateway started afresh reads it from the database.
    async with AsyncExitStack() as es:
        fresh = await start_gateway(es, stack.config)
        async with stack.http.get(f"{fresh.url}/v1/widget/sessions/{session_id}") as resp:
            assert await resp.json() == outcome
        assert await await_outcome(stack.http, fresh.url, session_id) == outcome  # resolved: at once


async def test_stream_opened_before_the_outcome_is_woken_by_the_notification(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(Answer(json={"status": True, "data": {"id": "slow"}}, delay=0.5))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot, "access_token": "t"})
    streams = [asyncio.create_task(await_outcome(stack.http, stack.gateway.url, session_id)) for _ in range(3)]

    outcomes = await asyncio.gather(*streams)

    assert all(o["status"] == "verified" for o in outcomes)


async def test_health_endpoints(stack: Stack) -> None:
    async with stack.http.get(f"{stack.gateway.url}/healthz") as resp:
        assert resp.status == 200
    async with stack.http.get(f"{stack.gateway.url}/readyz") as resp:
        assert (await resp.json()) == {"status": "ok", "checks": {"database": True, "broker": True}}


async def test_verify_once_helper_sees_one_outcome(stack: Stack) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)
    outcome = await verify_once(stack, bot, access_token="t")
    assert outcome["fallback"] == {"reason": "ca_disabled", "detail": VISITOR_MESSAGES["ca_disabled"]}


async def test_urls_doorman_would_never_call_are_refused_when_saved(stack: Stack) -> None:
    config = {**stack.config, "allow_private_networks": False, "outbound_ports": "443"}
    bot = await create_bot(stack.http, stack.gateway.url)
    async with AsyncExitStack() as es:
        strict = await start_gateway(es, config)
        for url, field in (("https://10.0.0.1/auth", "auth_url"), ("https://auth.example.com:8443/x", "auth_url"),
                           ("https://0x7f000001/auth", "auth_url"), ("https://auth.example.com/ok", None)):
            body = {"enabled": True, "auth_url": url}
            async with stack.http.put(f"{strict.url}/v1/bots/{bot}/custom-auth", json=body, headers=admin_headers()) as resp:
                if field is None:
                    assert resp.status == 200
                else:
                    error = (await resp.json())["error"]
                    assert resp.status == 422 and error["fields"][0]["field"] == field, (url, error)
                    assert "will not call" in error["fields"][0]["message"]


async def test_admin_api_sends_no_cors_headers(stack: Stack) -> None:
    headers = {**admin_headers(), "Origin": "https://evil.example"}
    async with stack.http.get(f"{stack.gateway.url}/v1/bots", headers=headers) as resp:
        assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers
    async with stack.http.options(f"{stack.gateway.url}/v1/bots", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}) as resp:
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_an_origin_too_long_to_be_one_is_neither_stored_nor_trusted(stack: Stack) -> None:
    """8,000 characters in Origin: the open is decided as one without an Origin, and nothing of it is
    kept in the session or the activity log (a real origin is at most a few hundred characters)."""
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url="https://a.example.com/auth",
                           domain_whitelist={"enabled": True, "domains": ["shop.example.com"]})
    junk = "https://shop.example.com" + "x" * 8000
    async with stack.http.post(f"{stack.gateway.url}/v1/widget/sessions", json={"bot_id": bot, "access_token": "t"},
                               headers={"Origin": junk}) as resp:
        assert resp.status == 202, await resp.text()
        session_id = (await resp.json())["session_id"]
    outcome = await await_outcome(stack.http, stack.gateway.url, session_id)
    assert outcome["fallback"]["reason"] == "domain_not_allowed"
    assert await stack.pool.fetchval("SELECT origin FROM widget_sessions WHERE session_id = $1", session_id) is None
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot}/auth-events", headers=admin_headers()) as resp:
        assert "xxxxxxxx" not in await resp.text()
