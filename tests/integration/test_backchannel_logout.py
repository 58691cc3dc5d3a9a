"""OpenID Connect Back-Channel Logout against a real OpenID Provider (panva's oidc-provider): a user who logs out at
the provider has the bot's widget sessions ended, through the logout token the provider posts to
``POST /v1/bots/{bot_id}/oidc/backchannel-logout``; and what an attacker would post instead is refused with 400 and
ends nothing.

The provider signs with a key these tests made (``SIGNING_KEY``), so a test can sign what the provider never would (a
token for another audience, an old one, one with a nonce) with a key the provider's JWKS publishes: each refusal is
then about the claim at fault, not the signature.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.conftest import Stack, admin_headers, create_bot, service_config
from tests.integration.test_oidc import visit
from tests.integration.test_panel_rpc import ANSWER_SECONDS, gateway_alone
from tests.openid_provider import BOT_CLIENT, OpenIDProvider, running_provider

KID = "test-rs256"
EVENT = "http://schemas.openid.net/event/backchannel-logout"


def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True)
class Bots:
    introspecting: str  # its back-channel logout URI is registered for the bot's client at the provider
    same_provider: str  # another bot of the same provider and client, whose URI the provider does not know


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return private_key()


@pytest.fixture(scope="module")
async def bots(stack: Stack) -> Bots:
    return Bots(await create_bot(stack.http, stack.gateway.url), await create_bot(stack.http, stack.gateway.url))


def logout_uri(stack: Stack, bot: str) -> str:
    return f"{stack.gateway.url}/v1/bots/{bot}/oidc/backchannel-logout"


@pytest.fixture(scope="module")
async def provider(stack: Stack, bots: Bots, signing_key: rsa.RSAPrivateKey) -> AsyncIterator[OpenIDProvider]:
    jwk = {**json.loads(RSAAlgorithm.to_jwk(signing_key)), "kid": KID, "alg": "RS256", "use": "sig"}
    async with running_provider(SIGNING_KEY=json.dumps(jwk), BACKCHANNEL_LOGOUT_URIS=json.dumps({
        BOT_CLIENT: logout_uri(stack, bots.introspecting),
    })) as running:
        for bot in (bots.introspecting, bots.same_provider):
            async with stack.http.put(f"{stack.gateway.url}/v1/bots/{bot}/custom-auth", headers=admin_headers(), json={
                "enabled": True, "identity_source": "oidc", "identify_method": "id",
                "oidc": {"issuer": running.issuer, "method": "introspection", "client_id": BOT_CLIENT,
                         "client_secret": running.secrets[BOT_CLIENT]},
            }) as resp:
                assert resp.status == 200, await resp.text()
        yield running


def user() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


def logout_claims(op: OpenIDProvider, **changes: Any) -> dict[str, Any]:
    """A valid logout token's claims, as the provider would make them, with ``changes`` (None: left out)."""
    now = int(time.time())
    claims = {"iss": op.issuer, "aud": BOT_CLIENT, "iat": now, "exp": now + 120, "jti": uuid.uuid4().hex,
              "sub": "nobody", "events": {EVENT: {}}}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def sign(claims: dict[str, Any], key: rsa.RSAPrivateKey, **header: Any) -> str:
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID, "typ": "logout+jwt", **header})


async def post_logout(stack: Stack, bot: str, token: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with stack.http.post(logout_uri(stack, bot), data={"logout_token": token}) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def session_row(pool: asyncpg.Pool, session_id: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT status, ended_by, provider_sub, provider_sid FROM widget_sessions "
                              "WHERE session_id = $1", session_id)
    assert row is not None
    return row


async def verified_session(stack: Stack, bot: str, token: str) -> str:
    outcome, session_id = await visit(stack, bot, token)
    assert outcome["status"] == "verified", outcome
    return session_id


def refused(status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    assert (status, body["error"]) == (400, "invalid_request"), body
    assert body["error_description"], body
    assert headers["Cache-Control"] == "no-store"


# --- attacks: every one refused, nothing ended ----------------------------------------------------

ATTACKS: dict[str, Callable[[OpenIDProvider], dict[str, Any]]] = {
    "wrong_audience": lambda op: {"aud": "another-app"},
    "wrong_issuer": lambda op: {"iss": op.issuer + "/evil"},
    "nonce_present": lambda op: {"nonce": "n-0S6_WzA2Mj"},
    "issued_long_ago": lambda op: {"iat": int(time.time()) - 3600, "exp": int(time.time()) + 60},
    "issued_in_the_future": lambda op: {"iat": int(time.time()) + 3600},
    "expired": lambda op: {"exp": int(time.time()) - 300},
    "missing_events": lambda op: {"events": None},
    "events_for_something_else": lambda op: {"events": {"http://schemas.openid.net/event/other": {}}},
    "neither_sub_nor_sid": lambda op: {"sub": None},
    "no_jti": lambda op: {"jti": None},
    "iat_not_a_number": lambda op: {"iat": "yesterday"},
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_a_logout_token_with_a_claim_at_fault_is_refused_and_ends_nothing(
        stack: Stack, bots: Bots, provider: OpenIDProvider, signing_key: rsa.RSAPrivateKey, attack: str) -> None:
    name = user()
    session_id = await verified_session(stack, bots.introspecting, await provider.login(name))
    changes = {"sub": name, **ATTACKS[attack](provider)}

    refused(*await post_logout(stack, bots.introspecting, sign(logout_claims(provider, **changes), signing_key)))

    assert (await session_row(stack.pool, session_id))["status"] == "verified"


async def test_a_forged_logout_token_is_refused(stack: Stack, bots: Bots, provider: OpenIDProvider) -> None:
    """Signed by a key of the attacker's under the provider's kid: the signature is not the provider's."""
    name = user()
    session_id = await verified_session(stack, bots.introspecting, await provider.login(name))

    status, body, headers = await post_logout(stack, bots.introspecting,
                                              sign(logout_claims(provider, sub=name), private_key()))

    refused(status, body, headers)
    assert body["error_description"].startswith("bad_signature"), body
    assert (await session_row(stack.pool, session_id))["status"] == "verified"


@pytest.mark.parametrize("header", [{"alg": "none"}, {"typ": "JWT"}, {"kid": "not-the-providers"}])
async def test_a_logout_token_with_a_header_at_fault_is_refused(
        stack: Stack, bots: Bots, provider: OpenIDProvider, signing_key: rsa.RSAPrivateKey, header: dict[str, str]) -> None:
    name = user()
    session_id = await verified_session(stack, bots.introspecting, await provider.login(name))
    claims = logout_claims(provider, sub=name)
    if header.get("alg") == "none":
        token = jwt.encode(claims, None, algorithm="none", headers={"typ": "logout+jwt", "kid": KID})
    else:
        token = sign(claims, signing_key, **header)

    refused(*await post_logout(stack, bots.introspecting, token))

    assert (await session_row(stack.pool, session_id))["status"] == "verified"


async def test_a_replayed_logout_token_is_refused(
        stack: Stack, bots: Bots, provider: OpenIDProvider, signing_key: rsa.RSAPrivateKey) -> None:
    name = user()
    token = sign(logout_claims(provider, sub=name), signing_key)
    first = await verified_session(stack, bots.introspecting, await provider.login(name))
    status, body, _ = await post_logout(stack, bots.introspecting, token)
    assert (status, body) == (200, {"ended": 1}), body
    assert (await session_row(stack.pool, first))["ended_by"] == "backchannel_logout"
    again = await verified_session(stack, bots.introspecting, await provider.login(name))  # signed in again

    status, body, headers = await post_logout(stack, bots.introspecting, token)

    refused(status, body, headers)
    assert "jti" in body["error_description"], body
    assert (await session_row(stack.pool, again))["status"] == "verified"


@pytest.mark.parametrize("form", [{}, {"logout_token": ""}, {"logout_token": "not.a.jwt"}, {"token": "x"}])
async def test_a_malformed_logout_request_is_refused(stack: Stack, bots: Bots, provider: OpenIDProvider,
                                                     form: dict[str, str]) -> None:
    async with stack.http.post(logout_uri(stack, bots.introspecting), data=form) as resp:
        refused(resp.status, await resp.json(), dict(resp.headers))


async def test_a_logout_token_for_a_bot_without_a_provider_is_refused(
        stack: Stack, provider: OpenIDProvider, signing_key: rsa.RSAPrivateKey) -> None:
    plain = await create_bot(stack.http, stack.gateway.url)
    refused(*await post_logout(stack, plain, sign(logout_claims(provider), signing_key)))


# --- logging out at the provider ------------------------------------------------------------------


async def test_logging_out_at_the_provider_ends_the_visitors_sessions_of_that_bot_only(
        stack: Stack, bots: Bots, provider: OpenIDProvider) -> None:
    """The user signs in twice (two browsers); the site hands each token to the widget of the bot whose back-channel
    URI the provider knows, and one to another bot of the same provider. Logging out at the provider in one browser
    ends every session verified for that user (the token carries their sub) of that bot, and only of that bot."""
    name = user()
    here = await provider.sign_in(name)
    elsewhere = await provider.sign_in(name)
    sessions = [await verified_session(stack, bots.introspecting, login.access_token) for login in (here, elsewhere)]
    other_bot = await verified_session(stack, bots.same_provider, here.access_token)
    someone_else = await verified_session(stack, bots.introspecting, await provider.login(user()))

    await provider.logout(here)  # answers once the provider has posted the logout token

    rows = [await session_row(stack.pool, s) for s in sessions]
    assert [(r["status"], r["ended_by"]) for r in rows] == [("ended", "backchannel_logout")] * 2, rows
    assert rows[0]["provider_sid"] and rows[0]["provider_sid"] != rows[1]["provider_sid"], rows  # from introspection
    assert (await session_row(stack.pool, other_bot))["status"] == "verified"
    assert (await session_row(stack.pool, someone_else))["status"] == "verified"
    async with stack.http.get(f"{stack.gateway.url}/v1/widget/sessions/{sessions[0]}") as resp:
        view = await resp.json()
    assert (view["status"], view["contact"]) == ("ended", None), view
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bots.introspecting}/auth-events",
                              params={"status": "ended"}, headers=admin_headers()) as resp:
        events = {e["session_id"]: e for e in (await resp.json())["events"]}
    assert events[sessions[0]]["ended_by"] == "backchannel_logout", events[sessions[0]]


async def test_a_logout_token_naming_only_a_sid_ends_only_the_session_of_that_provider_session(
        stack: Stack, bots: Bots, provider: OpenIDProvider, signing_key: rsa.RSAPrivateKey) -> None:
    name = user()
    logins = [await provider.sign_in(name), await provider.sign_in(name)]
    sessions = [await verified_session(stack, bots.introspecting, login.access_token) for login in logins]
    sid = (await session_row(stack.pool, sessions[0]))["provider_sid"]
    assert sid == jwt.decode(logins[0].id_token, options={"verify_signature": False})["sid"]

    status, body, headers = await post_logout(stack, bots.introspecting,
                                              sign(logout_claims(provider, sub=None, sid=sid), signing_key))

    assert (status, body, headers["Cache-Control"]) == (200, {"ended": 1}, "no-store"), body
    assert [(await session_row(stack.pool, s))["status"] for s in sessions] == ["ended", "verified"]


async def test_with_no_verifier_the_logout_endpoint_says_when_to_send_it_again(
        database_url: str, fresh_prefix: Callable[[], str], secret_key: str) -> None:
    async with gateway_alone(service_config(database_url, fresh_prefix(), secret_key)) as (gateway, http):
        bot = await create_bot(http, gateway.url)
        started = time.monotonic()
        async with http.post(f"{gateway.url}/v1/bots/{bot}/oidc/backchannel-logout",
                             data={"logout_token": "a.b.c"}) as resp:
            status, body, headers = resp.status, await resp.json(), resp.headers
    assert (status, body["error"]["code"]) == (503, "verifier_unavailable"), body
    assert headers["Retry-After"].isdigit() and headers["Cache-Control"] == "no-store"
    assert time.monotonic() - started < ANSWER_SECONDS + 2


async def test_the_stream_of_a_session_ended_by_a_logout_token_says_ended(stack: Stack, bots: Bots, provider: OpenIDProvider,
                                                     signing_key: rsa.RSAPrivateKey) -> None:
    """A stream opened on a verified session answers at once; the `ended` event is what a stream that still waits
    gets. Here the logout comes first: the session's stream then sends `ended`."""
    name = user()
    session_id = await verified_session(stack, bots.introspecting, await provider.login(name))
    status, _, _ = await post_logout(stack, bots.introspecting, sign(logout_claims(provider, sub=name), signing_key))
    assert status == 200
    async with stack.http.get(f"{stack.gateway.url}/v1/widget/sessions/{session_id}/events") as resp:
        text = await asyncio.wait_for(resp.text(), 10)
    assert "event: ended" in text, text
