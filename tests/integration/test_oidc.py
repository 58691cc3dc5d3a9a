"""``identity_source: oidc`` against a real OpenID Provider (panva's oidc-provider, tests/oidc_provider): a user
signs in at the provider with a real authorization-code login, the site hands the access token to the widget, and
Doorman verifies it through the provider's userinfo or introspection endpoint, found by discovery.

The client secret is write-only and goes only to the issuer's origin: an attacker holding the admin API for a moment
(not the secret) points the issuer, or the discovery document, at a server of theirs and waits for it.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import (
    Stack,
    admin_headers,
    await_outcome,
    create_bot,
    logged_detail,
    open_session,
    serving_business,
)
from tests.fake_customer import Answer, FakeCustomerAPI
from tests.openid_provider import (
    BOT_CLIENT,
    OTHER_CLIENT,
    OpenIDProvider,
    running_provider,
)

SECRET_AGAIN = {"field": "oidc.client_secret", "message": "enter the client secret again for the new issuer"}


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[OpenIDProvider]:
    async with running_provider() as running:
        yield running


def oidc_settings(op: OpenIDProvider, method: str = "userinfo", *, secret: bool = True, **more: Any) -> dict[str, Any]:
    oidc: dict[str, Any] = {"issuer": op.issuer, "method": method, "client_id": BOT_CLIENT}
    if secret:
        oidc["client_secret"] = op.secrets[BOT_CLIENT]
    return {"enabled": True, "identity_source": "oidc", "oidc": oidc, **more}


async def put(stack: Stack, bot: str, settings: dict[str, Any]) -> tuple[int, Any]:
    async with stack.http.put(f"{stack.gateway.url}/v1/bots/{bot}/custom-auth", json=settings,
                              headers=admin_headers()) as resp:
        return resp.status, await resp.json()


async def visit(stack: Stack, bot: str, token: str) -> tuple[dict[str, Any], str]:
    """The outcome of a widget open with ``token``, and the session id."""
    session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot, "access_token": token})
    return await await_outcome(stack.http, stack.gateway.url, session_id), session_id


async def panel(stack: Stack, bot: str, token: str) -> dict[str, Any]:
    async with stack.http.post(f"{stack.gateway.url}/v1/bots/{bot}/custom-auth/test", json={"access_token": token},
                               headers=admin_headers()) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def contact(stack: Stack, bot: str, contact_id: str) -> dict[str, Any]:
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot}/contacts/{contact_id}", headers=admin_headers()) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def fake_issuer(api: FakeCustomerAPI, **endpoints: str) -> str:
    """An issuer on ``api`` whose discovery document publishes ``endpoints`` (name -> URL)."""
    issuer = api.endpoint()
    api.answers[issuer.removeprefix(api.url) + "/.well-known/openid-configuration"] = [
        Answer(json={"issuer": issuer, **endpoints})]
    return issuer


# --- verifying ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["userinfo", "introspection"])
async def test_a_login_at_the_provider_verifies_the_visitor(stack: Stack, provider: OpenIDProvider, method: str) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, **oidc_settings(provider, method), identify_method="email")
    token = await provider.login("alice")

    outcome, _ = await visit(stack, bot, token)

    assert outcome["status"] == "verified", outcome
    found = await contact(stack, bot, outcome["contact"]["contact_id"])
    assert (found["identifier"], found["name"], found["phone_number"]) == (
        "alice@example.com", "Alice Nguyen", "+84912345678"), found


async def test_introspection_refuses_a_token_issued_to_another_client(stack: Stack, provider: OpenIDProvider) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, **oidc_settings(provider, "introspection"))
    token = await provider.login("bob", OTHER_CLIENT)  # the same user, signed in to another app of the business

    outcome, session_id = await visit(stack, bot, token)

    assert outcome["status"] == "fallback" and outcome["fallback"]["reason"] == "auth_rejected", outcome
    assert (await logged_detail(stack, bot, session_id)).startswith("wrong_client: ")
    # Accepting that app's tokens is the business's choice.
    status, body = await put(stack, bot, oidc_settings(provider, "introspection", secret=False,
                                                       accepted_clients=[BOT_CLIENT, OTHER_CLIENT]))
    assert status == 200 and body["accepted_clients"] == [BOT_CLIENT, OTHER_CLIENT], body
    assert (await visit(stack, bot, token))[0]["status"] == "verified"


@pytest.mark.parametrize("method", ["userinfo", "introspection"])
async def test_a_token_revoked_at_the_provider_is_refused_at_once(
    stack: Stack, provider: OpenIDProvider, method: str,
) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, **oidc_settings(provider, method))
    token = await provider.login("alice")
    assert (await visit(stack, bot, token))[0]["status"] == "verified"

    await provider.revoke(token)
    outcome, session_id = await visit(stack, bot, token)

    assert outcome["status"] == "fallback" and outcome["fallback"]["reason"] == "auth_rejected", outcome
    if method == "introspection":
        assert (await logged_detail(stack, bot, session_id)).startswith("inactive_token: ")


async def test_the_provider_down_is_auth_unavailable_and_the_outage_grace_verifies(
    stack: Stack, provider: OpenIDProvider,
) -> None:
    graced = await create_bot(stack.http, stack.gateway.url, **oidc_settings(provider), outage_grace_seconds=300)
    plain = await create_bot(stack.http, stack.gateway.url, **oidc_settings(provider))
    token = await provider.login("alice")
    for bot in (graced, plain):
        assert (await visit(stack, bot, token))[0]["status"] == "verified"

    async with provider.down():
        without_grace, _ = await visit(stack, plain, token)
        with_grace, _ = await visit(stack, graced, token)
        never_verified, _ = await visit(stack, graced, "a-token-never-seen")

    assert without_grace["status"] == "fallback" and without_grace["fallback"]["reason"] == "auth_unavailable"
    assert with_grace["status"] == "verified" and with_grace["degraded"] is True, with_grace
    assert never_verified["status"] == "fallback" and never_verified["fallback"]["reason"] == "auth_unavailable"
    assert (await visit(stack, plain, token))[0]["status"] == "verified"  # back up


@pytest.mark.parametrize("method", ["userinfo", "introspection"])
async def test_the_testing_panel_verifies_through_the_provider(
    stack: Stack, provider: OpenIDProvider, method: str,
) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, **oidc_settings(provider, method), identify_method="email")
    token = await provider.login("alice")

    result = await panel(stack, bot, token)
    refused = await panel(stack, bot, "not-a-token")

    assert result["ok"] is True and result["identity_source"] == "oidc", result
    assert result["identity"]["identifier"] == "alice@example.com"
    assert token not in str(result) and provider.secrets[BOT_CLIENT] not in str(result)
    assert refused["ok"] is False and refused["failure"]["reason"] == "auth_rejected", refused


# --- settings -------------------------------------------------------------------------------------


async def test_the_settings_keep_the_client_secret_write_only(stack: Stack, provider: OpenIDProvider) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)
    status, body = await put(stack, bot, oidc_settings(provider, "introspection"))

    assert status == 200, body
    assert body["oidc"] == {"issuer": provider.issuer, "method": "introspection", "client_id": BOT_CLIENT,
                            "client_secret_set": True}
    assert body["accepted_clients"] == [BOT_CLIENT]
    assert provider.secrets[BOT_CLIENT] not in str(body)


async def test_introspection_without_a_client_secret_is_refused(stack: Stack, provider: OpenIDProvider) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)
    status, body = await put(stack, bot, oidc_settings(provider, "introspection", secret=False))
    assert status == 409, body
    assert [f["field"] for f in body["error"]["fields"]] == ["oidc.client_secret"]


@pytest.mark.parametrize(("settings", "field"), [
    ({"identity_source": "oidc"}, "oidc"),
    ({"identity_source": "oidc", "oidc": {"issuer": "ftp://id.example.com", "client_id": "c"}}, "oidc.issuer"),
    ({"identity_source": "oidc", "oidc": {"issuer": "https://id.example.com/?tenant=1", "client_id": "c"}},
     "oidc.issuer"),
    ({"identity_source": "oidc", "oidc": {"issuer": "https://id.example.com", "method": "jwt", "client_id": "c"}},
     "oidc.method"),
    ({"identity_source": "oidc", "oidc": {"issuer": "https://id.example.com"}}, "oidc.client_id"),
    ({"identity_source": "oidc", "oidc": {"issuer": "https://id.example.com", "client_id": "c"},
      "accepted_clients": [""]}, "accepted_clients.0"),
    ({"signed_token": {"algorithm": "RS256"}}, "signed_token"),
    ({"signed_token": {"algorithm": "RS256", "issuer": "not a url"}}, "signed_token.issuer"),
])
async def test_invalid_oidc_settings_are_refused_field_by_field(
    stack: Stack, settings: dict[str, Any], field: str,
) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)
    status, body = await put(stack, bot, {"enabled": True, **settings})
    assert status == 422, body
    assert field in [f["field"] for f in body["error"]["fields"]], body


async def test_an_issuer_on_a_private_address_is_refused_where_the_policy_forbids_it(strict_stack: Stack) -> None:
    bot = await create_bot(strict_stack.http, strict_stack.gateway.url)
    for issuer in ("http://127.0.0.1:9/", "http://id.example.com"):  # a private address; http:// to the internet
        status, body = await put(strict_stack, bot, {"enabled": True, "identity_source": "oidc",
                                                     "oidc": {"issuer": issuer, "client_id": "c"}})
        assert status == 422, body
        assert [f["field"] for f in body["error"]["fields"]] == ["oidc.issuer"], body


async def test_a_signed_token_bot_finds_its_keys_by_discovery(stack: Stack, provider: OpenIDProvider) -> None:
    """``issuer`` alone: the JWKS is the one the provider's discovery document names (its ID tokens' keys)."""
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, identity_source="signed_token",
                           signed_token={"algorithm": "RS256", "issuer": provider.issuer})
    async with stack.http.get(f"{provider.issuer}/jwks") as resp:
        kid = (await resp.json())["keys"][0]["kid"]
    header = {"alg": "RS256", "kid": kid}  # a token with the provider's kid but no valid signature
    result = await panel(stack, bot, f"{b64(header)}.{b64({'sub': 'x'})}.c2ln")
    assert result["token"]["failed_check"] == "bad_signature", result  # the key was found: discovered
    unknown = await panel(stack, bot, f"{b64({'alg': 'RS256', 'kid': 'nope'})}.{b64({'sub': 'x'})}.c2ln")
    assert unknown["token"]["failed_check"] == "unknown_kid", unknown


# --- the client secret goes only to the issuer's origin -------------------------------------------


async def test_moving_the_issuer_to_another_origin_needs_the_client_secret_again(
    stack: Stack, provider: OpenIDProvider,
) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, **oidc_settings(provider, "introspection"))
    token = await provider.login("alice")
    async with serving_business() as attacker:
        evil = fake_issuer(attacker, introspection_endpoint=attacker.endpoint(Answer(json={"active": True, "sub": "x"})))

        status, body = await put(stack, bot, {**oidc_settings(provider, "introspection", secret=False),
                                              "oidc": {"issuer": evil, "method": "introspection",
                                                       "client_id": BOT_CLIENT}})

        assert status == 422, body
        assert body["error"]["code"] == "invalid_body" and body["error"]["fields"] == [SECRET_AGAIN], body
        # Nothing changed: the provider still verifies, and nothing reached the attacker.
        assert (await visit(stack, bot, token))[0]["status"] == "verified"
        assert (await panel(stack, bot, token))["ok"] is True
        assert not any(attacker.requests.values())
        # A move within the issuer's origin keeps the secret.
        status, body = await put(stack, bot, {**oidc_settings(provider, "introspection", secret=False),
                                              "oidc": {"issuer": provider.issuer + "/", "method": "introspection",
                                                       "client_id": BOT_CLIENT}})
        assert status == 200 and body["oidc"]["client_secret_set"] is True, body


async def test_the_secret_is_not_sent_to_an_introspection_endpoint_on_another_origin(stack: Stack) -> None:
    """The issuer is the business's, but its discovery document (a compromised or mistaken one) names an
    introspection endpoint elsewhere: the secret stays home, and the open is ``misconfigured``."""
    async with serving_business() as business, serving_business() as attacker:
        elsewhere = attacker.endpoint(Answer(json={"active": True, "sub": "x", "client_id": BOT_CLIENT}))
        issuer = fake_issuer(business, introspection_endpoint=elsewhere, userinfo_endpoint=business.endpoint())
        bot = await create_bot(stack.http, stack.gateway.url, enabled=True, identity_source="oidc", oidc={
            "issuer": issuer, "method": "introspection", "client_id": BOT_CLIENT, "client_secret": "s3cret-0123"})

        outcome, session_id = await visit(stack, bot, "t")
        result = await panel(stack, bot, "t")

        assert outcome["status"] == "fallback" and outcome["fallback"]["reason"] == "misconfigured", outcome
        assert (await logged_detail(stack, bot, session_id)).startswith("oidc.client_secret: ")
        assert result["failure"]["reason"] == "misconfigured"
        assert not any(attacker.requests.values())


async def test_a_discovery_document_for_another_issuer_is_not_used(stack: Stack) -> None:
    async with serving_business() as business:
        issuer = business.endpoint()
        business.answers[issuer.removeprefix(business.url) + "/.well-known/openid-configuration"] = [
            Answer(json={"issuer": issuer + "/elsewhere", "userinfo_endpoint": business.endpoint()})]
        bot = await create_bot(stack.http, stack.gateway.url, enabled=True, identity_source="oidc",
                               oidc={"issuer": issuer, "client_id": BOT_CLIENT})

        outcome, session_id = await visit(stack, bot, "t")

        assert outcome["fallback"]["reason"] == "misconfigured", outcome
        assert "issuer" in await logged_detail(stack, bot, session_id)



async def test_an_introspected_tokens_expiry_is_the_views_identity_expires_at(
        stack: Stack, provider: OpenIDProvider) -> None:
    """Introspection says when the access token expires: the view says so (the widget refreshes before then);
    userinfo does not, so the view's identity_expires_at is null there."""
    introspecting = await create_bot(stack.http, stack.gateway.url, **oidc_settings(provider, "introspection"))
    userinfo = await create_bot(stack.http, stack.gateway.url, **oidc_settings(provider, "userinfo"))
    token = await provider.login("alice")
    basic = aiohttp.encode_basic_auth(BOT_CLIENT, provider.secrets[BOT_CLIENT])
    async with stack.http.post(f"{provider.issuer}/token/introspection", data={"token": token},
                               headers={"Authorization": basic}) as resp:
        exp = (await resp.json())["exp"]

    outcome, _ = await visit(stack, introspecting, token)
    assert datetime.fromisoformat(outcome["identity_expires_at"]).timestamp() == exp, outcome
    outcome, _ = await visit(stack, userinfo, token)
    assert (outcome["status"], outcome["identity_expires_at"]) == ("verified", None), outcome
