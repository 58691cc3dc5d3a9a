"""The Collect Information form: non-verified contacts that never overwrite verified ones."""

from __future__ import annotations

from typing import Any

from tests.conftest import Stack, admin_headers, create_bot, verify_once
from tests.fake_customer import FakeCustomerAPI, verified
from tests.waits import wait_until


async def submit(stack: Stack, session_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with stack.http.post(f"{stack.gateway.url}/v1/widget/sessions/{session_id}/contact", json=body) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        return resp.status, await resp.json()


async def contact_where(stack: Stack, bot: str, condition: str, *args: Any, timeout: float = 10) -> dict[str, Any]:
    """Wait (bounded) until the contacts service has written a matching contact."""
    row = await wait_until(lambda: stack.pool.fetchrow(f"SELECT * FROM contacts WHERE bot_id = $1 AND {condition}", bot, *args),
                           timeout, f"a contact where {condition} {args}")
    return dict(row)


async def test_form_on_a_fallback_session_makes_a_non_verified_contact(stack: Stack) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)  # Custom Authentication off: Case 1
    outcome = await verify_once(stack, bot, access_token="t")
    assert outcome["status"] == "fallback" and outcome["collected"] is False

    status, body = await submit(stack, outcome["session_id"], {"name": "Typed Name", "email": " Typed@Example.com ",
                                                                "phone_number": "0912 345 678", "country_code": "+84"})

    assert (status, body["status"]) == (202, "accepted")
    contact = await contact_where(stack, bot, "identifier = $2", "typed@example.com")
    assert (contact["verified"], contact["name"], contact["phone_number"]) == (False, "Typed Name", "+84912345678")
    assert contact["field_sources"] == {"name": "visitor", "email": "visitor", "phone_number": "visitor", "country_code": "visitor"}
    linked = await stack.pool.fetchval("SELECT collected_contact_id FROM widget_sessions WHERE session_id = $1", outcome["session_id"])
    assert linked == contact["contact_id"]
    async with stack.http.get(f"{stack.gateway.url}/v1/widget/sessions/{outcome['session_id']}") as resp:
        assert (await resp.json())["collected"] is True


async def test_form_validation_and_rules(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)
    fallback = await verify_once(stack, bot, access_token="t")
    for body, field in (({"email": "not-an-email"}, "email"), ({"phone_number": "12"}, "phone_number"),
                        ({}, "body"), ({"name": " "}, "body"), ({"name": "x", "age": 3}, "age")):
        status, error = await submit(stack, fallback["session_id"], body)
        assert status == 422 and field in [f["field"] for f in error["error"]["fields"]], (body, error)

    assert (await submit(stack, fallback["session_id"], {"name": "Once"}))[0] == 202
    status, error = await submit(stack, fallback["session_id"], {"name": "Twice"})
    assert (status, error["error"]["code"]) == (409, "already_collected")
    assert (await submit(stack, "no-such-session", {"name": "x"}))[0] == 404

    verified_bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=customer_api.endpoint(verified(id="1")))
    ok = await verify_once(stack, verified_bot, access_token="t")
    status, error = await submit(stack, ok["session_id"], {"name": "x"})
    assert (status, error["error"]["code"]) == (409, "not_fallback")


async def test_form_never_overwrites_a_verified_contact(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(email="real@example.com", name="Real Name"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, identify_method="email")
    await verify_once(stack, bot, access_token="t")
    fallback = await verify_once(stack, bot)  # no token: missing_token

    assert (await submit(stack, fallback["session_id"], {"name": "Impostor", "email": "REAL@example.com"}))[0] == 202

    await contact_where(stack, bot, "identifier = $2", "real@example.com")
    await wait_until(lambda: stack.pool.fetchval("SELECT collected_contact_id FROM widget_sessions WHERE session_id = $1",
                                                 fallback["session_id"]), what="the form's contact linked")
    [contact] = await stack.pool.fetch("SELECT * FROM contacts WHERE bot_id = $1", bot)
    assert (contact["verified"], contact["name"]) == (True, "Real Name")


async def test_verified_identity_later_takes_precedence(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(email="later@example.com", name="From API"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, identify_method="email")
    fallback = await verify_once(stack, bot)
    assert (await submit(stack, fallback["session_id"], {"name": "Typed", "email": "later@example.com",
                                                          "phone_number": "+14155552671"}))[0] == 202
    typed = await contact_where(stack, bot, "identifier = $2", "later@example.com")
    assert typed["verified"] is False

    outcome = await verify_once(stack, bot, access_token="t")

    contact = await contact_where(stack, bot, "identifier = $2 AND verified", "later@example.com")
    assert outcome["contact"]["contact_id"] == str(typed["contact_id"])
    assert contact["name"] == "From API" and contact["phone_number"] == "+14155552671"  # absent in the answer: kept
    assert contact["field_sources"]["name"] == "api" and contact["field_sources"]["phone_number"] == "visitor"


async def test_the_activity_log_shows_a_verified_identity_taking_over_a_form_contact(
        stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """The form made a contact; a verified identity with the same email takes it over. The activity log (and the
    admin page's activity tab, which reads it) still answers, and says so on the session that took it over."""
    url = customer_api.endpoint(verified(email="takeover@example.com", id="biz-7", name="Verified"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, identify_method="email")
    fallback = await verify_once(stack, bot)  # no token: missing_token
    assert (await submit(stack, fallback["session_id"], {"name": "Typed", "email": "takeover@example.com"}))[0] == 202
    form = await contact_where(stack, bot, "identifier = $2", "takeover@example.com")

    taken = await verify_once(stack, bot, access_token="t")

    assert taken["contact"]["contact_id"] == str(form["contact_id"])
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot}/auth-events", headers=admin_headers()) as resp:
        assert resp.status == 200, await resp.text()
        log = await resp.json()
    changes = {e["session_id"]: e["identity_change"] for e in log["events"]}
    assert changes[fallback["session_id"]] is None
    change = changes[taken["session_id"]]
    assert (change["kind"], change["session_id"], change["old_external_id"], change["new_external_id"]) == (
        "took_over_unverified", taken["session_id"], None, None)
