"""Testing panel, Contact Details, activity log, API whitelist, live settings, key rotation."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

from cryptography.fernet import Fernet

from doorman.ops import SECRET_COLUMNS, rotate_secrets
from shared.sessions import prune
from services.verifier.config import ConfigCache
from shared.crypto import Secrets
from shared.settings import SecretKeySettings
from tests.conftest import Stack, admin_headers, create_bot, verify_once
from tests.fake_customer import Answer, FakeCustomerAPI, verified

HEADER_TOKEN = "Bearer panel-" + uuid4().hex


async def admin_get(stack: Stack, path: str, **params: Any) -> tuple[int, Any]:
    async with stack.http.get(f"{stack.gateway.url}{path}", params=params, headers=admin_headers()) as resp:
        return resp.status, await resp.json()


async def admin_post(stack: Stack, path: str, body: Any) -> tuple[int, Any, str]:
    async with stack.http.post(f"{stack.gateway.url}{path}", json=body, headers=admin_headers()) as resp:
        text = await resp.text()
        return resp.status, await resp.json(), text


async def put_settings(stack: Stack, bot: str, **settings: Any) -> None:
    async with stack.http.put(f"{stack.gateway.url}/v1/bots/{bot}/custom-auth", json=settings, headers=admin_headers()) as resp:
        assert resp.status == 200, await resp.text()


# --- Testing panel ---------------------------------------------------------------------------

async def test_panel_shows_request_response_identity_and_match(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="p-1", name="Panel", metadata={"plan": "pro"}))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=False, auth_url=url, header_token=HEADER_TOKEN,
                           request_fields=["email"])

    status, result, text = await admin_post(stack, f"/v1/bots/{bot}/custom-auth/test",
                                            {"access_token": "sample-token-123", "email": "a@example.com"})

    assert status == 200 and result["ok"] is True and result["failure"] is None
    assert HEADER_TOKEN not in text and "sample-token-123" not in text
    assert result["request"]["headers"]["Authorization"].startswith("Bearer ****")
    assert result["request"]["body"]["email"] == "a@example.com" and set(result["request"]["body"]) == {"access_token", "email"}
    assert result["response"]["status"] == 200 and '"Panel"' in result["response"]["body"]
    assert result["identity"]["identifier"] == "p-1" and result["identity"]["metadata"] == {"plan": "pro"}
    assert result["match"] == {"action": "create", "contact_id": None}
    assert result["elapsed_ms"] >= 0
    # The call works, but Custom Authentication is off: that is what a visitor gets today.
    assert result["enabled"] is False
    assert result["visitor_outcome"] == {"status": "fallback", "reason": "ca_disabled",
                                         "detail": "Custom Authentication is off for this bot"}
    # The business really got the token and header, verbatim; nothing was written.
    [received] = customer_api.received(url)
    assert received.headers["Authorization"] == HEADER_TOKEN and received.body["access_token"] == "sample-token-123"
    assert await stack.pool.fetchval("SELECT count(*) FROM contacts WHERE bot_id = $1", bot) == 0
    assert await stack.pool.fetchval("SELECT count(*) FROM widget_sessions WHERE bot_id = $1", bot) == 0


async def test_panel_says_what_a_visitor_from_an_origin_would_get(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """The verifier's own decision, in a dry run: a successful call beside a refused domain, the same
    whitelist check a real open gets; one call to the business per run. (A token is required here, so the
    missing-token rule cannot show.)"""
    url = customer_api.endpoint(verified(id="o-1"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url,
                           domain_whitelist={"enabled": True, "domains": ["shop.example.com"]})
    test = f"/v1/bots/{bot}/custom-auth/test"

    _, allowed, _ = await admin_post(stack, test, {"access_token": "t", "origin": "https://shop.example.com"})
    _, refused, _ = await admin_post(stack, test, {"access_token": "t", "origin": "https://evil.example"})
    _, no_origin, _ = await admin_post(stack, test, {"access_token": "t"})

    assert allowed["ok"] is True and allowed["visitor_outcome"] == {"status": "verified", "reason": None, "detail": None}
    assert refused["ok"] is True and refused["identity"]["identifier"] == "o-1"
    assert refused["visitor_outcome"] == {"status": "fallback", "reason": "domain_not_allowed",
                                          "detail": "this site's domain is not on the bot's whitelist"}
    assert no_origin["visitor_outcome"]["reason"] == "domain_not_allowed"
    assert len(customer_api.received(url)) == 3  # one identity call per run, never two
    assert await stack.pool.fetchval("SELECT count(*) FROM widget_sessions WHERE bot_id = $1", bot) == 0

    status, body, _ = await admin_post(stack, test, {"access_token": "t", "origin": "x" * 2049})
    assert status == 422 and body["error"]["fields"][0]["field"] == "origin"


async def test_panel_says_which_contact_it_would_update(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="p-2", name="Known"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    outcome = await verify_once(stack, bot, access_token="t")

    _, result, _ = await admin_post(stack, f"/v1/bots/{bot}/custom-auth/test", {"access_token": "t"})

    assert result["match"] == {"action": "update", "contact_id": outcome["contact"]["contact_id"]}


async def test_panel_failure_has_the_reason_and_what_to_fix(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(Answer(status=401, body=b"x" * 10_000, content_type="text/plain"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)

    _, result, _ = await admin_post(stack, f"/v1/bots/{bot}/custom-auth/test", {"access_token": "t"})

    assert result["ok"] is False and result["identity"] is None and result["match"] is None
    assert result["failure"]["reason"] == "auth_rejected" and "401" in result["failure"]["detail"]
    assert "header token" in result["failure"]["hint"]
    assert result["response"]["body_truncated"] is True and len(result["response"]["body"]) == 4096
    assert result["visitor_outcome"]["reason"] == "auth_rejected"


async def test_panel_errors(stack: Stack) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)
    # A valid request the bot's state cannot serve (no auth_url to call yet): a conflict, not a bad body.
    status, body, _ = await admin_post(stack, f"/v1/bots/{bot}/custom-auth/test", {"access_token": "t"})
    assert status == 409 and body["error"]["code"] == "invalid_state"
    assert body["error"]["fields"] == [{"field": "auth_url", "message": "not set"}]
    status, body, _ = await admin_post(stack, f"/v1/bots/{bot}/custom-auth/test", {})
    assert status == 422 and body["error"]["fields"][0]["field"] == "access_token"
    status, _, _ = await admin_post(stack, f"/v1/bots/{uuid4()}/custom-auth/test", {"access_token": "t"})
    assert status == 404


# --- Contact Details ---------------------------------------------------------------------------

async def test_contacts_search_pagination_and_details(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    people = [verified(id=f"c-{i}", name=f"Person {i}", email=f"p{i}@Example.com", phone_number=f"09123456{i:02d}",
                       country_code="+84", metadata={"i": i}) for i in range(7)]
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=customer_api.endpoint(*people))
    for _ in people:
        await verify_once(stack, bot, access_token="t")

    pages, cursor = [], None
    while True:
        status, page = await admin_get(stack, f"/v1/bots/{bot}/contacts", limit=3, **({"cursor": cursor} if cursor else {}))
        assert status == 200
        pages.append([c["identifier"] for c in page["contacts"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    assert sorted(sum(pages, [])) == [f"c-{i}" for i in range(7)]
    assert sum(pages, [])[0] == "c-6"  # newest first

    for q, expected in (("person 3", ["c-3"]), ("P5@EXAMPLE", ["c-5"]), ("+8491234560", None), ("c-4", ["c-4"]), ("nobody", [])):
        _, page = await admin_get(stack, f"/v1/bots/{bot}/contacts", q=q)
        found = [c["identifier"] for c in page["contacts"]]
        assert found == expected if expected is not None else len(found) == 7, (q, found)

    _, page = await admin_get(stack, f"/v1/bots/{bot}/contacts", q="c-2")
    contact_id = page["contacts"][0]["contact_id"]
    status, detail = await admin_get(stack, f"/v1/bots/{bot}/contacts/{contact_id}")
    assert status == 200
    assert {k: detail[k] for k in ("identify_method", "identifier", "external_id", "name", "email", "phone_number",
                                   "country_code", "metadata", "verified")} == {
        "identify_method": "id", "identifier": "c-2", "external_id": "c-2", "name": "Person 2",
        "email": "p2@example.com", "phone_number": "+84912345602", "country_code": "+84", "metadata": {"i": 2},
        "verified": True}
    assert detail["created_at"] and detail["updated_at"] and detail["last_verified_at"]
    assert detail["sources"] == {f: "api" for f in ("external_id", "name", "email", "phone_number", "country_code", "metadata")}


async def test_contacts_errors_and_isolation(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=customer_api.endpoint(verified(id="iso")))
    outcome = await verify_once(stack, bot, access_token="t")
    other = await create_bot(stack.http, stack.gateway.url)

    status, _ = await admin_get(stack, f"/v1/bots/{other}/contacts/{outcome['contact']['contact_id']}")
    assert status == 404  # another bot's contact
    for params, field in (({"limit": "0"}, "limit"), ({"limit": "abc"}, "limit"), ({"cursor": "!!"}, "cursor"),
                          ({"surprise": "1"}, "surprise")):
        status, body = await admin_get(stack, f"/v1/bots/{bot}/contacts", **params)
        assert status == 422 and body["error"]["fields"][0]["field"] == field, body
    status, _ = await admin_get(stack, f"/v1/bots/{uuid4()}/contacts")
    assert status == 404
    status, _ = await admin_get(stack, f"/v1/bots/{bot}/contacts/not-a-uuid")
    assert status == 404


# --- Activity log --------------------------------------------------------------------------------

async def test_activity_log_says_why_visitors_fell_back(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    by_token = {"ok": verified(id="a-1"), "down": Answer(status=503, json={}), "no": Answer(json={"status": False})}
    url = customer_api.responder(lambda body: by_token[body["access_token"]])
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    for token in ("ok", "down", "no", None):
        await verify_once(stack, bot, **({"access_token": token} if token else {}))

    status, log = await admin_get(stack, f"/v1/bots/{bot}/auth-events")
    assert status == 200
    rows = [(e["status"], e["reason"], e["auth_http_status"]) for e in log["events"]]
    assert rows == [("fallback", "missing_token", None), ("fallback", "auth_rejected", 200),
                    ("fallback", "auth_unavailable", 503), ("verified", None, 200)]
    assert all(e["latency_ms"] is not None and e["latency_ms"] >= 0 for e in log["events"])
    assert all(e["auth_latency_ms"] is not None for e in log["events"][1:])

    _, only = await admin_get(stack, f"/v1/bots/{bot}/auth-events", reason="auth_unavailable")
    assert [e["reason"] for e in only["events"]] == ["auth_unavailable"]
    _, page = await admin_get(stack, f"/v1/bots/{bot}/auth-events", limit=3)
    _, rest = await admin_get(stack, f"/v1/bots/{bot}/auth-events", limit=3, cursor=page["next_cursor"])
    assert len(page["events"]) == 3 and [e["status"] for e in rest["events"]] == ["verified"] and rest["next_cursor"] is None
    status, body = await admin_get(stack, f"/v1/bots/{bot}/auth-events", reason="sunspots")
    assert status == 422 and body["error"]["fields"][0]["field"] == "reason"


async def test_old_sessions_are_pruned(stack: Stack) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)
    await verify_once(stack, bot, access_token="t")
    await stack.pool.execute("UPDATE widget_sessions SET created_at = now() - interval '30 days' WHERE bot_id = $1", bot)
    fresh = await verify_once(stack, bot, access_token="t")

    assert await prune(stack.pool, timedelta(days=7)) >= 1

    remaining = await stack.pool.fetch("SELECT session_id FROM widget_sessions WHERE bot_id = $1", bot)
    assert [r["session_id"] for r in remaining] == [fresh["session_id"]]


# --- Whitelist from the business's API -------------------------------------------------------------

async def test_api_whitelist_allows_listed_sites_and_notes_a_stale_list(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    listing = customer_api.endpoint(Answer(json={"domains": ["shop.example.com", "*.brand.example"]}))
    auth = customer_api.endpoint(verified(id="w-1"))
    whitelist = {"enabled": True, "source": "api", "api_url": listing}
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=auth, header_token=HEADER_TOKEN,
                           domain_whitelist=whitelist)

    assert (await verify_once(stack, bot, access_token="t", origin="https://shop.example.com"))["status"] == "verified"
    assert (await verify_once(stack, bot, access_token="t", origin="https://m.brand.example"))["status"] == "verified"
    refused = await verify_once(stack, bot, access_token="t", origin="https://evil.example")
    assert refused["fallback"]["reason"] == "domain_not_allowed"
    assert len(customer_api.received(listing)) == 1  # cached
    assert customer_api.received(listing)[0].headers["Authorization"] == HEADER_TOKEN


async def test_api_whitelist_unreadable_is_noted_in_the_activity_log(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    listing = customer_api.endpoint(Answer(status=500, json={}))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=customer_api.endpoint(verified(id="1")),
                           domain_whitelist={"enabled": True, "source": "api", "api_url": listing})

    outcome = await verify_once(stack, bot, access_token="t", origin="https://shop.example.com")

    assert outcome["fallback"]["reason"] == "domain_not_allowed"
    _, log = await admin_get(stack, f"/v1/bots/{bot}/auth-events")
    assert log["events"][0]["whitelist_note"].startswith("missing: ") and "could not be read" in log["events"][0]["detail"]


# --- Live settings ---------------------------------------------------------------------------------

async def test_settings_change_reaches_the_running_verifier_at_once(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    first, second = customer_api.endpoint(verified(id="v1")), customer_api.endpoint(verified(id="v2"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=first)
    assert (await verify_once(stack, bot, access_token="t"))["status"] == "verified"  # now cached

    await put_settings(stack, bot, enabled=True, auth_url=second)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    while not customer_api.received(second):
        assert loop.time() < deadline, "the verifier still used the old settings after a second"
        await verify_once(stack, bot, access_token="t")

    await put_settings(stack, bot, enabled=False)
    deadline = loop.time() + 1.0
    while (await verify_once(stack, bot, access_token="t"))["status"] != "fallback":
        assert loop.time() < deadline, "disabling took more than a second"


async def test_config_cache_serves_from_memory_until_notified(stack: Stack, secret_key: str) -> None:
    bot = UUID(await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url="https://a.example.com/auth"))
    cache = ConfigCache(stack.pool, Secrets(secret_key))
    cache.listening = True  # as when the LISTEN connection is up
    assert (await cache.get(bot)).auth_url == "https://a.example.com/auth"

    await stack.pool.execute("UPDATE custom_auth_settings SET auth_url = 'https://b.example.com/auth' WHERE bot_id = $1", bot)
    assert (await cache.get(bot)).auth_url == "https://a.example.com/auth"  # no database read per message
    await cache._notified(str(bot))  # what the LISTEN connection hands over
    assert (await cache.get(bot)).auth_url == "https://b.example.com/auth"

    cache.listening = False  # listener down: never trust the cache
    await stack.pool.execute("UPDATE custom_auth_settings SET auth_url = 'https://c.example.com/auth' WHERE bot_id = $1", bot)
    assert (await cache.get(bot)).auth_url == "https://c.example.com/auth"


# --- Secrets at rest -------------------------------------------------------------------------------

async def test_key_rotation_re_encrypts_header_tokens(stack: Stack, secret_key: str, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="k-1"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, header_token=HEADER_TOKEN)
    new_key = Fernet.generate_key().decode()

    # A secret no key decrypts (its key was dropped) is reported and stops nothing else.
    lost = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, header_token=HEADER_TOKEN)
    await stack.pool.execute("UPDATE custom_auth_settings SET header_token_cipher = $2 WHERE bot_id = $1", lost,
                             Fernet(Fernet.generate_key()).encrypt(b"under a key long gone"))

    settings = SecretKeySettings(database_url=stack.config["database_url"], secret_key=f"{new_key},{secret_key}")
    done = await rotate_secrets(settings)
    assert done.rotated >= 1 and f"{lost} header_token_cipher" in done.unreadable

    cipher = await stack.pool.fetchval("SELECT header_token_cipher FROM custom_auth_settings WHERE bot_id = $1", bot)
    assert Secrets(new_key).decrypt(cipher) == HEADER_TOKEN  # the old key is no longer needed
    assert HEADER_TOKEN.encode() not in cipher


async def test_key_rotation_covers_every_encrypted_column(stack: Stack) -> None:
    """A secret stored encrypted that `doorman secrets rotate` skips would stop decrypting once its old key is
    removed: every ``*_cipher`` column of the schema is one it re-encrypts."""
    columns = await stack.pool.fetch(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
        "AND column_name LIKE '%\\_cipher'")
    assert {(c["table_name"], c["column_name"]) for c in columns} == {("custom_auth_settings", c) for c in SECRET_COLUMNS}


# --- Signed identity calls ---------------------------------------------------------------------------

async def test_identity_calls_are_signed_and_rotation_overlaps(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    from shared.signing import SIGNATURE, verify

    url = customer_api.endpoint(verified(id="signed"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    await verify_once(stack, bot, access_token="t")
    assert SIGNATURE not in customer_api.received(url)[-1].headers  # not signed until a secret exists

    status, first, text = await admin_post(stack, f"/v1/bots/{bot}/custom-auth/signing-secret", None)
    assert status == 201 and first["signing_secret"].startswith("whsec_") and first["previous_valid_until"] is None
    _, settings = await admin_get(stack, f"/v1/bots/{bot}/custom-auth")
    assert settings["signing_secret_set"] is True and first["signing_secret"] not in str(settings)
    await verify_once(stack, bot, access_token="t")
    call = customer_api.received(url)[-1]
    assert verify(first["signing_secret"], call.headers, call.raw) and call.raw.startswith(b'{"access_token"')

    _, second, _ = await admin_post(stack, f"/v1/bots/{bot}/custom-auth/signing-secret", None)
    assert second["previous_valid_until"] is not None
    await verify_once(stack, bot, access_token="t")
    call = customer_api.received(url)[-1]
    assert verify(second["signing_secret"], call.headers, call.raw)
    assert verify(first["signing_secret"], call.headers, call.raw)  # the old one still works for a day
    assert not verify(second["signing_secret"], call.headers, call.raw.replace(b"t", b"T"))

    # The Testing panel signs too, and shows the signature (it reveals nothing about the secret).
    _, result, _ = await admin_post(stack, f"/v1/bots/{bot}/custom-auth/test", {"access_token": "t"})
    assert result["request"]["headers"][SIGNATURE].startswith("v1=")
