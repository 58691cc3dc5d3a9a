"""A write-only secret stays where it was saved for: the header token goes only to the origins (scheme,
host, port) of the ``auth_url`` and the whitelist ``api_url`` it was saved with. The attacker holds
the admin API for a moment (a stolen session, a workspace key) but not the token: they point a URL at
a server of theirs (a second fake business, on its own port) and wait for the token to arrive."""

from __future__ import annotations

import secrets
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from doorman.migrate import _migrations, ensure_database
from shared.db import CONFIG_CHANNEL
from tests.conftest import PG_ROOT, Stack, admin_headers, create_bot, serving_business, verify_once
from tests.fake_customer import Answer, FakeCustomerAPI, verified

HEADER_TOKEN = "Bearer saved-for-the-business-" + secrets.token_hex(8)
TOKEN_AGAIN = {"field": "header_token", "message": "enter the header token again for the new URL"}
SHOP = "https://shop.example.com"
LIST = Answer(json={"domains": ["shop.example.com"]})


async def put(stack: Stack, bot: str, settings: dict[str, Any]) -> tuple[int, Any]:
    async with stack.http.put(f"{stack.gateway.url}/v1/bots/{bot}/custom-auth", json=settings,
                              headers=admin_headers()) as resp:
        return resp.status, await resp.json()


async def panel(stack: Stack, bot: str, **sample: Any) -> dict[str, Any]:
    async with stack.http.post(f"{stack.gateway.url}/v1/bots/{bot}/custom-auth/test",
                               json={"access_token": "t", **sample}, headers=admin_headers()) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def last_event(stack: Stack, bot: str) -> dict[str, Any]:
    """The newest entry of the bot's activity log (where the admin-side detail is)."""
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot}/auth-events", params={"limit": "1"},
                              headers=admin_headers()) as resp:
        return (await resp.json())["events"][0]


def received_anything(api: FakeCustomerAPI) -> bool:
    return any(api.requests.values())


def whitelist(api_url: str) -> dict[str, Any]:
    return {"enabled": True, "source": "api", "domains": [], "api_url": api_url}


# --- a PUT cannot move the token ------------------------------------------------------------------

async def test_moving_the_auth_url_to_another_origin_needs_the_header_token_again(
    stack: Stack, customer_api: FakeCustomerAPI,
) -> None:
    auth_url = customer_api.endpoint(verified(id="v-1"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=auth_url, header_token=HEADER_TOKEN)
    async with serving_business() as attacker:
        evil = attacker.endpoint(verified(id="evil"))

        status, body = await put(stack, bot, {"enabled": True, "auth_url": evil})

        assert status == 422, body
        assert body["error"]["code"] == "invalid_body" and body["error"]["fields"] == [TOKEN_AGAIN]
        # Nothing changed: the Testing panel and a widget open still go to the business, and only there.
        assert (await panel(stack, bot))["ok"] is True
        assert (await verify_once(stack, bot, access_token="t"))["status"] == "verified"
        assert not received_anything(attacker)
        assert [r.headers["Authorization"] for r in customer_api.received(auth_url)] == [HEADER_TOKEN] * 2

        # With a header token of its own, the move is the admin's choice: the new URL gets that token, never the old.
        new_token = "Bearer for-the-new-url"
        status, body = await put(stack, bot, {"enabled": True, "auth_url": evil, "header_token": new_token})
        assert status == 200 and body["auth_url"] == evil and body["header_token_set"] is True
        await panel(stack, bot)
        assert [r.headers["Authorization"] for r in attacker.received(evil)] == [new_token]


@pytest.mark.parametrize("before", ["moved", "added"])
async def test_moving_or_adding_the_whitelist_api_url_needs_the_header_token_again(
    stack: Stack, customer_api: FakeCustomerAPI, before: str,
) -> None:
    """``moved``: the whitelist API was the business's; ``added``: there was none (adding one is a move)."""
    auth_url, list_url = customer_api.endpoint(verified(id="v-2")), customer_api.endpoint(LIST)
    settings: dict[str, Any] = {"enabled": True, "auth_url": auth_url}
    if before == "moved":
        settings["domain_whitelist"] = whitelist(list_url)
    bot = await create_bot(stack.http, stack.gateway.url, **settings, header_token=HEADER_TOKEN)
    async with serving_business() as attacker:
        status, body = await put(stack, bot, {**settings, "domain_whitelist": whitelist(attacker.endpoint(LIST))})

        assert status == 422, body
        assert body["error"]["code"] == "invalid_body" and body["error"]["fields"] == [TOKEN_AGAIN]
        assert (await panel(stack, bot, origin=SHOP))["visitor_outcome"]["status"] == "verified"
        assert (await verify_once(stack, bot, access_token="t", origin=SHOP))["status"] == "verified"
        assert not received_anything(attacker)


async def test_a_move_within_the_same_origin_keeps_the_header_token(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    auth_url, list_url = customer_api.endpoint(verified(id="v-3")), customer_api.endpoint(LIST)
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=auth_url, header_token=HEADER_TOKEN,
                           domain_whitelist=whitelist(list_url))
    moved_auth, moved_list = customer_api.endpoint(verified(id="v-3")), customer_api.endpoint(LIST)  # other paths

    status, body = await put(stack, bot, {"enabled": True, "auth_url": moved_auth,
                                          "domain_whitelist": whitelist(moved_list)})

    assert status == 200 and body["header_token_set"] is True, body
    assert (await verify_once(stack, bot, access_token="t", origin=SHOP))["status"] == "verified"
    assert customer_api.received(moved_auth)[0].headers["Authorization"] == HEADER_TOKEN
    assert customer_api.received(moved_list)[0].headers["Authorization"] == HEADER_TOKEN


SAVED_AT = "https://auth.example.com/verify"


@pytest.mark.parametrize(("auth_url", "status"), [
    ("https://auth.example.com/other?v=2", 200),
    ("https://AUTH.Example.COM:443/verify", 200),  # case of the host, the default port
    ("https://auth.example.com./verify", 200),  # the same name, fully qualified
    ("http://auth.example.com/verify", 422),  # another scheme
    ("https://auth.example.com:8443/verify", 422),  # another port
    ("https://evil.example.com/verify", 422),
    ("https://auth.example.com.evil.io/verify", 422),
    ("https://example.com/verify", 422),
])
async def test_an_origin_is_compared_normalised(stack: Stack, auth_url: str, status: int) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=SAVED_AT, header_token=HEADER_TOKEN)
    answered, body = await put(stack, bot, {"enabled": True, "auth_url": auth_url})
    assert answered == status, body
    if status == 422:
        assert body["error"]["fields"] == [TOKEN_AGAIN]


async def test_an_idna_host_is_one_origin_however_it_is_spelled(stack: Stack) -> None:
    # The API takes hosts in their ASCII (xn--) form; the binding still compares them normalised (case, port).
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url="https://XN--BCHER-KVA.example/verify",
                           header_token=HEADER_TOKEN)
    assert (await put(stack, bot, {"enabled": True, "auth_url": "https://xn--bcher-kva.example:443/v2"}))[0] == 200
    assert (await put(stack, bot, {"enabled": True, "auth_url": "https://xn--bcher-kva.example.evil.io/v2"}))[0] == 422


async def test_what_a_put_may_do_without_the_token(stack: Stack) -> None:
    """Removing a URL sends nothing anywhere; putting it back where it was saved for is no move; a token
    saved with no URL at all goes nowhere until one is saved with it."""
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=SAVED_AT, header_token=HEADER_TOKEN)
    assert (await put(stack, bot, {"enabled": False}))[0] == 200
    status, body = await put(stack, bot, {"enabled": True, "auth_url": SAVED_AT + "?back"})
    assert status == 200 and body["header_token_set"] is True

    lone = await create_bot(stack.http, stack.gateway.url, enabled=False, header_token=HEADER_TOKEN)
    status, body = await put(stack, lone, {"enabled": True, "auth_url": SAVED_AT})
    assert status == 422 and body["error"]["fields"] == [TOKEN_AGAIN]
    # Clearing the token, or a bot with none, moves freely.
    assert (await put(stack, lone, {"enabled": True, "auth_url": SAVED_AT, "header_token": None}))[0] == 200
    assert (await put(stack, lone, {"enabled": True, "auth_url": "https://elsewhere.example.com/"}))[0] == 200


# --- the verifier refuses too ---------------------------------------------------------------------

async def edit_directly(stack: Stack, bot: str, sql: str, *args: Any) -> None:
    """Settings changed in the database, not through the API (a restored backup, a hand edit)."""
    async with stack.pool.acquire() as conn, conn.transaction():
        await conn.execute(f"UPDATE custom_auth_settings SET {sql} WHERE bot_id = $1", UUID(bot), *args)
        await conn.execute("SELECT pg_notify($1, $2)", CONFIG_CHANNEL, bot)


async def test_the_verifier_sends_the_token_only_where_it_was_saved_for(
    stack: Stack, customer_api: FakeCustomerAPI,
) -> None:
    auth_url = customer_api.endpoint(verified(id="v-4"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=auth_url, header_token=HEADER_TOKEN)
    async with serving_business() as attacker:
        await edit_directly(stack, bot, "auth_url = $2", attacker.endpoint(verified(id="evil")))

        outcome = await verify_once(stack, bot, access_token="t")
        result = await panel(stack, bot)

        assert outcome["status"] == "fallback" and outcome["fallback"]["reason"] == "misconfigured"
        event = await last_event(stack, bot)
        assert event["reason"] == "misconfigured" and event["detail"].startswith("header_token: "), event
        assert attacker.url.removeprefix("http://") in event["detail"] and HEADER_TOKEN not in event["detail"]
        assert result["failure"]["reason"] == "misconfigured" and result["response"] is None
        assert "Authorization" not in result["request"]["headers"]
        assert not received_anything(attacker)


async def test_the_verifier_sends_the_token_to_the_whitelist_api_only_where_it_was_saved_for(
    stack: Stack, customer_api: FakeCustomerAPI,
) -> None:
    auth_url = customer_api.endpoint(verified(id="v-5"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=auth_url, header_token=HEADER_TOKEN)
    async with serving_business() as attacker:
        await edit_directly(stack, bot, "whitelist_enabled = true, whitelist_source = 'api', whitelist_api_url = $2",
                            attacker.endpoint(LIST))

        outcome = await verify_once(stack, bot, access_token="t", origin=SHOP)
        result = await panel(stack, bot, origin=SHOP)

        assert outcome["status"] == "fallback" and outcome["fallback"]["reason"] == "misconfigured"
        event = await last_event(stack, bot)
        assert event["detail"].startswith("header_token: ") and "domain_whitelist.api_url" in event["detail"], event
        assert result["visitor_outcome"]["reason"] == "misconfigured"
        assert not received_anything(attacker)
        assert customer_api.received(auth_url) != []  # the panel still shows the identity call (to the business)


# --- tokens saved before the rule -----------------------------------------------------------------

async def test_tokens_saved_before_the_rule_are_bound_to_the_urls_they_have() -> None:
    """The migration that brings the rule binds each stored token to the URLs its bot has then."""
    name = f"doorman_test_{secrets.token_hex(4)}"
    url = f"{PG_ROOT}/{name}"
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    try:
        pending = _migrations()
        rule = next(i for i, (migration, _) in enumerate(pending) if migration.endswith("_secret_origins"))
        for _, sql in pending[:rule]:
            await conn.execute(sql)
        rows = {"with": (b"cipher", SAVED_AT, "https://lists.example.com/d"), "without": (None, SAVED_AT, None)}
        bots = {}
        for key, (cipher, auth, api) in rows.items():
            bots[key] = await conn.fetchval("INSERT INTO bots (bot_id, name) VALUES (gen_random_uuid(), $1) RETURNING bot_id", key)
            await conn.execute(
                """INSERT INTO custom_auth_settings (bot_id, auth_url, header_token_cipher, whitelist_api_url)
                   VALUES ($1, $2, $3, $4)""", bots[key], auth, cipher, api)

        await conn.execute(pending[rule][1])

        bound = {key: tuple(await conn.fetchrow(
            "SELECT header_token_for_auth_url, header_token_for_api_url FROM custom_auth_settings WHERE bot_id = $1",
            bot_id)) for key, bot_id in bots.items()}
        assert bound == {"with": (SAVED_AT, "https://lists.example.com/d"), "without": (None, None)}
    finally:
        await conn.close()
        admin = await asyncpg.connect(f"{PG_ROOT}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
