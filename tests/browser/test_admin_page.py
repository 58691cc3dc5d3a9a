"""The admin page (/admin) in real Chromium against the running stack: sign in, bots, Custom
Authentication settings, the Testing panel, contacts with Contact Details, and the activity log."""

from __future__ import annotations

import asyncio
import re
from contextlib import AsyncExitStack
from typing import Any
from uuid import uuid4

import aiohttp
import pytest
from playwright.async_api import Dialog, Page, expect

from shared.events import FallbackReason
from services.verifier.identity import describe
from tests.browser.conftest import api, open_admin, screenshot
from tests.conftest import (
    ADMIN_TOKEN, Stack, await_outcome, create_bot, open_session, service_config, start_gateway, verify_once,
)
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.waits import wait_until

pytestmark = pytest.mark.usefixtures("no_csp_violations")

TOKEN_KEY = "doorman.adminToken"
WIDTH = 1100


async def new_bot(stack: Stack, name: str) -> str:
    status, bot = await api(stack, "POST", "/v1/bots", {"name": name})
    assert status == 201, bot
    return bot["bot_id"]


async def put_settings(stack: Stack, bot: str, **settings: Any) -> None:
    status, body = await api(stack, "PUT", f"/v1/bots/{bot}/custom-auth", settings)
    assert status == 200, body


async def fit_to_content(page: Page) -> None:
    """Grow the viewport to the page's height so a screenshot shows all of it."""
    height = await page.evaluate("document.documentElement.scrollHeight")
    await page.set_viewport_size({"width": WIDTH, "height": max(600, min(int(height), 2400))})


async def stored_values(page: Page) -> str:
    return await page.evaluate(
        "() => JSON.stringify([Object.entries(sessionStorage), Object.entries(localStorage)])")


# --- (a) sign in, bots, sign out --------------------------------------------------------------

async def test_sign_in_pick_and_create_bots_sign_out(page: Page, stack: Stack) -> None:
    existing_name = f"Existing shop {uuid4().hex[:6]}"
    existing = await new_bot(stack, existing_name)

    await page.goto(f"{stack.gateway.url}/admin")
    await page.get_by_label("Admin token").fill("not-the-admin-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_test_id("signin-error")).to_have_text("That token was not accepted")
    await expect(page.get_by_test_id("app-view")).to_be_hidden()
    assert await page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None

    await page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator(f'#bot-select option[value="{existing}"]')).to_contain_text(existing_name)
    # Signed in: the list of bots, each a link to its settings.
    listed = page.locator(f'[data-testid="bot-row"][data-bot-id="{existing}"]')
    await expect(page.get_by_test_id("bots-view")).to_be_visible()
    await expect(listed).to_contain_text(existing)
    await screenshot(page, "admin-bots")
    await listed.get_by_role("link", name=existing_name).click()
    await expect(page.get_by_test_id("bot-view")).to_be_visible()
    await expect(page.get_by_test_id("bots-view")).to_be_hidden()
    await expect(page).to_have_url(re.compile(f"#bot={existing}$"))
    assert await page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") == ADMIN_TOKEN
    await expect(page.get_by_test_id("token-input")).to_have_value("")

    made_name = f"Made on the page {uuid4().hex[:6]}"
    await page.get_by_role("button", name="New bot").click()
    await page.get_by_label("New bot name").fill(made_name)
    await page.get_by_role("button", name="Create bot").click()
    await expect(page.get_by_test_id("bot-name")).to_have_text(made_name)
    made = await page.get_by_test_id("bot-id").text_content()
    assert made
    await expect(page).to_have_url(re.compile(f"#bot={made}$"))
    await expect(page.get_by_test_id("bot-select")).to_have_value(made)
    status, bot = await api(stack, "GET", f"/v1/bots/{made}")
    assert (status, bot["name"]) == (200, made_name)

    # Reload keeps the sign-in (this tab) and the bot (the URL).
    await page.reload()
    await expect(page.get_by_test_id("bot-name")).to_have_text(made_name)
    await expect(page.get_by_test_id("bot-select")).to_have_value(made)

    # The tabs follow the ARIA pattern: arrow keys move between them, the URL keeps the tab.
    await page.get_by_role("tab", name="Custom Authentication").focus()
    await page.keyboard.press("ArrowRight")
    await expect(page.get_by_role("tab", name="Testing")).to_have_attribute("aria-selected", "true")
    await expect(page.get_by_role("tab", name="Testing")).to_be_focused()
    await expect(page.get_by_test_id("panel-testing")).to_be_visible()
    await expect(page).to_have_url(re.compile(f"#bot={made}&tab=testing$"))

    await page.get_by_test_id("bot-select").select_option(existing)
    await expect(page).to_have_url(re.compile(f"#bot={existing}&tab=testing$"))
    await expect(page.get_by_test_id("bot-name")).to_have_text(existing_name)

    # Back to the list from any bot.
    await page.get_by_role("link", name="All bots").click()
    await expect(page.get_by_test_id("bots-view")).to_be_visible()
    await expect(page.get_by_test_id("bot-view")).to_be_hidden()
    await expect(page.locator(f'[data-testid="bot-row"][data-bot-id="{made}"]')).to_contain_text(made_name)

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_test_id("signin-view")).to_be_visible()
    await expect(page.get_by_test_id("app-view")).to_be_hidden()
    assert await page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None

    # A token that stops being accepted (rotated) sends the page back to sign-in.
    await page.evaluate(f"sessionStorage.setItem('{TOKEN_KEY}', 'a-rotated-token')")
    await page.reload()
    await expect(page.get_by_test_id("signin-error")).to_have_text("That token was not accepted")
    assert await page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None


# --- (b) + (g) settings -------------------------------------------------------------------------

async def test_settings_save_every_value_and_the_header_token_never_stays(
    page: Page, stack: Stack, customer_api: FakeCustomerAPI,
) -> None:
    bot = await new_bot(stack, "Settings shop")
    url = customer_api.endpoint(verified(id="1", email="s@example.com"))
    secret = "Bearer admin-page-secret-" + uuid4().hex

    await open_admin(page, stack, bot)
    token_input = page.get_by_test_id("ca-header-token")
    await expect(page.get_by_test_id("ca-token-state")).to_have_text("not set")
    await page.get_by_label("Enable Custom Authentication").check()
    await page.get_by_label("Authentication URL").fill(url)
    await token_input.fill(secret)
    await page.get_by_label("Identify contacts by").select_option("email")
    await page.get_by_test_id("rf-user_id").check()
    await page.get_by_test_id("rf-email").check()
    await page.get_by_label("Enable the domain whitelist").check()
    await page.get_by_label("Typed here").check()
    await page.get_by_label("Domains, one per line").fill("Shop.Example.com\n\n  *.example.com  ")
    await page.get_by_role("button", name="Save", exact=True).click()

    await expect(page.get_by_test_id("ca-status")).to_have_text("Saved")
    await expect(token_input).to_have_value("")
    await expect(token_input).to_have_attribute("placeholder", "set — leave empty to keep")
    await expect(page.get_by_test_id("ca-token-state")).to_have_text("set")
    await expect(page.get_by_label("Domains, one per line")).to_have_value("shop.example.com\n*.example.com")

    status, saved = await api(stack, "GET", f"/v1/bots/{bot}/custom-auth")
    assert status == 200
    assert {k: saved[k] for k in ("enabled", "auth_url", "header_token_set", "identify_method", "request_fields")} == {
        "enabled": True, "auth_url": url, "header_token_set": True, "identify_method": "email",
        "request_fields": ["user_id", "email"],
    }
    assert saved["domain_whitelist"] == {"enabled": True, "source": "manual",
                                         "domains": ["shop.example.com", "*.example.com"], "api_url": None}
    # The token was stored as typed (the business receives it), and is nowhere in the page.
    status, result = await api(stack, "POST", f"/v1/bots/{bot}/custom-auth/test", {"access_token": "t"})
    assert status == 200 and customer_api.received(url)[-1].headers["Authorization"] == secret
    assert "admin-page-secret" not in await page.content()
    assert "admin-page-secret" not in await stored_values(page)

    await fit_to_content(page)
    await screenshot(page, "admin-settings")

    await page.reload()
    await expect(page.get_by_test_id("ca-token-state")).to_have_text("set")
    await expect(token_input).to_have_attribute("placeholder", "set — leave empty to keep")
    await expect(token_input).to_have_value("")
    await expect(page.get_by_label("Authentication URL")).to_have_value(url)
    await expect(page.get_by_label("Identify contacts by")).to_have_value("email")
    await expect(page.get_by_test_id("rf-email")).to_be_checked()
    await expect(page.get_by_test_id("rf-name")).not_to_be_checked()
    await expect(page.get_by_label("Typed here")).to_be_checked()

    # Saving with the input left empty keeps the stored token...
    await page.get_by_label("Authentication URL").fill(url + "?v=2")
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.get_by_test_id("ca-status")).to_have_text("Saved")
    status, saved = await api(stack, "GET", f"/v1/bots/{bot}/custom-auth")
    assert (saved["auth_url"], saved["header_token_set"]) == (url + "?v=2", True)

    # ...and the checkbox clears it.
    await page.get_by_label("Clear the stored header token").check()
    await expect(token_input).to_be_disabled()
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.get_by_test_id("ca-token-state")).to_have_text("not set")
    await expect(page.get_by_test_id("ca-status")).to_have_text("Saved")
    await expect(token_input).to_have_attribute("placeholder", "not set")
    status, saved = await api(stack, "GET", f"/v1/bots/{bot}/custom-auth")
    assert saved["header_token_set"] is False


# --- (c) field errors ---------------------------------------------------------------------------

async def test_invalid_settings_show_errors_next_to_their_inputs(page: Page, stack: Stack) -> None:
    bot = await new_bot(stack, "Errors shop")
    await open_admin(page, stack, bot)

    auth_url = page.get_by_label("Authentication URL")
    domains = page.get_by_label("Domains, one per line")
    await page.get_by_label("Enable Custom Authentication").check()
    await auth_url.fill("ftp://x")
    await page.get_by_label("Enable the domain whitelist").check()
    await domains.fill("ok.example.com\nhttps://example.com/path")
    await page.get_by_role("button", name="Save", exact=True).click()

    auth_error = page.locator(".field", has=auth_url).get_by_test_id("err-auth_url")
    await expect(auth_error).to_contain_text("must be an http:// or https:// URL")
    domain_error = page.locator(".field", has=domains).get_by_test_id("err-domains")
    await expect(domain_error).to_contain_text("“https://example.com/path”")
    await expect(domain_error).to_contain_text("without a scheme")
    for field, error_id in ((auth_url, "err-auth_url"), (domains, "err-domains")):
        await expect(field).to_have_attribute("aria-invalid", "true")
        await expect(field).to_have_attribute("aria-describedby", re.compile(error_id))
    await expect(page.get_by_test_id("ca-status")).not_to_have_text("Saved")
    status, saved = await api(stack, "GET", f"/v1/bots/{bot}/custom-auth")
    assert saved["enabled"] is False and saved["auth_url"] is None

    # A body-level error (enabled without a URL) is shown at the top of the form.
    await auth_url.fill("")
    await domains.fill("ok.example.com")
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.get_by_test_id("settings-form-errors")).to_contain_text(
        "auth_url is required when Custom Authentication is enabled")
    await expect(auth_error).to_be_hidden()
    await expect(domain_error).to_be_hidden()

    # The whitelist read from an API needs its URL; the error sits under that input.
    await auth_url.fill("https://shop.example.com/doorman/auth")
    await page.get_by_label("Read from your API").check()
    await expect(domains).to_be_hidden()
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.get_by_test_id("err-api_url")).to_contain_text("api_url is required")
    await expect(page.get_by_label("Whitelist API URL")).to_have_attribute("aria-invalid", "true")

    await page.get_by_label("Typed here").check()
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.get_by_test_id("ca-status")).to_have_text("Saved")
    await expect(page.get_by_test_id("settings-form-errors")).to_be_hidden()
    await expect(auth_url).not_to_have_attribute("aria-invalid", "true")


# --- (d) Testing panel --------------------------------------------------------------------------

async def test_testing_panel_verdicts(page: Page, stack: Stack, customer_api: FakeCustomerAPI) -> None:
    ok_url = customer_api.endpoint(verified(id="t-1", name="Tess Tester", email="Tess@Example.com",
                                            metadata={"plan": "pro"}))
    settings = {"enabled": True, "identify_method": "email", "request_fields": ["user_id"]}
    bot = await create_bot(stack.http, stack.gateway.url, auth_url=ok_url, header_token="Bearer panel-" + uuid4().hex, **settings)
    sample_token = "sample-token-" + uuid4().hex

    await open_admin(page, stack, bot, tab="testing")
    await expect(page.get_by_role("tab", name="Testing")).to_have_attribute("aria-selected", "true")
    await expect(page.get_by_test_id("test-empty")).to_contain_text("No test run yet")
    await page.get_by_label("Access token").fill(sample_token)
    await page.get_by_test_id("test-user-id").fill("42")
    await page.get_by_role("button", name="Send test request").click()

    verdict = page.get_by_test_id("test-verdict")
    await expect(verdict).to_contain_text("Verified: would create contact Tess Tester")
    await expect(verdict).to_have_class(re.compile("verdict-ok"))
    await expect(verdict).to_contain_text("tess@example.com")
    await expect(page.get_by_test_id("test-empty")).to_be_hidden()
    await expect(page.get_by_test_id("test-meta")).to_have_text(re.compile(r"^\d+(\.\d+)? ms$"))
    await expect(page.get_by_test_id("test-identity")).to_be_visible()
    await expect(page.get_by_test_id("test-identity")).to_contain_text('"identifier": "tess@example.com"')
    await expect(page.get_by_test_id("test-visitor")).to_have_text("A visitor would be verified.")
    # The raw exchange is folded away until asked for.
    request = page.get_by_test_id("test-request")
    await expect(request).to_be_hidden()
    await page.get_by_text("The raw exchange").click()
    await expect(request).to_be_visible()
    await expect(request).to_contain_text('"Authorization": "Bearer **** (')
    await expect(request).to_contain_text('"user_id": "42"')
    await expect(request).not_to_contain_text(sample_token)
    await expect(page.get_by_test_id("test-request-line")).to_have_text(f"POST {ok_url}")
    await expect(page.get_by_test_id("test-response-line")).to_contain_text("HTTP 200")
    await expect(page.get_by_test_id("test-response-body")).to_contain_text('"name": "Tess Tester"')

    # The call works, but a visitor on a site off the whitelist would get the form: the panel says so, in words.
    await put_settings(stack, bot, auth_url=ok_url, domain_whitelist={"enabled": True, "domains": ["shop.example.com"]},
                       **settings)
    await page.get_by_test_id("test-origin").fill("https://evil.example")
    await page.get_by_role("button", name="Send test request").click()
    await expect(page.get_by_test_id("test-visitor")).to_have_text(
        "A visitor on https://evil.example would not be verified: this site's domain is not on the bot's whitelist.")
    await expect(verdict).to_contain_text("Verified: would create contact Tess Tester")
    # No site given: the panel does not speak of "this site".
    await page.get_by_test_id("test-origin").fill("")
    await page.get_by_role("button", name="Send test request").click()
    await expect(page.get_by_test_id("test-visitor")).to_have_text(
        "A visitor would not be verified: the domain whitelist is on, and only a site on it may open the widget. "
        "Fill in “Visitor's site” to check a site.")
    await page.get_by_test_id("test-origin").fill("https://shop.example.com")
    await page.get_by_role("button", name="Send test request").click()
    await expect(page.get_by_test_id("test-visitor")).to_have_text("A visitor on https://shop.example.com would be verified.")

    # The business refuses: which part failed, and what it said, quoted; no identity block.
    reject_url = customer_api.endpoint(Answer(status=401, json={"status": False, "message": "bad header token"}))
    await put_settings(stack, bot, auth_url=reject_url, **settings)
    await page.get_by_role("button", name="Send test request").click()
    await expect(page.get_by_test_id("test-verdict-title")).to_have_text("Your Authentication URL refused the token (HTTP 401)")
    await expect(verdict).to_have_class(re.compile("verdict-fail"))
    await expect(page.get_by_test_id("test-said")).to_be_visible()
    await expect(page.get_by_test_id("test-said")).to_contain_text("Your endpoint said:")
    await expect(page.get_by_test_id("test-said-text")).to_have_text("“bad header token”")
    await expect(page.get_by_test_id("test-verdict-hint")).to_have_text(describe(FallbackReason.auth_rejected))
    await expect(page.get_by_test_id("test-meta")).to_contain_text("reason code auth_rejected")
    await expect(page.get_by_test_id("test-identity-card")).to_be_hidden()
    await expect(page.get_by_test_id("test-result")).not_to_contain_text("nothing would be stored")
    await expect(page.get_by_test_id("test-response-line")).to_contain_text("HTTP 401")
    await expect(page.get_by_test_id("test-response-body")).to_contain_text("bad header token")

    await fit_to_content(page)
    await screenshot(page, "admin-testing")


async def test_a_new_test_run_clears_the_last_verdict(page: Page, stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """While a run is on its way the page says so, and the previous verdict is gone (it was about other settings)."""
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True,
                           auth_url=customer_api.endpoint(verified(id="r-1", name="Run One")))
    await open_admin(page, stack, bot, tab="testing")
    await page.get_by_label("Access token").fill("t")
    await page.get_by_role("button", name="Send test request").click()
    await expect(page.get_by_test_id("test-verdict")).to_contain_text("Verified")

    release = asyncio.Event()

    async def hold(route: Any) -> None:
        await release.wait()
        await route.continue_()

    await page.route("**/custom-auth/test", hold)
    await page.get_by_role("button", name="Send test request").click()
    await expect(page.get_by_test_id("test-result")).to_be_hidden()
    await expect(page.get_by_test_id("test-status")).to_have_text("Calling your Authentication URL…")
    await expect(page.get_by_test_id("test-send")).to_be_disabled()
    release.set()
    await expect(page.get_by_test_id("test-result")).to_be_visible()
    await expect(page.get_by_test_id("test-status")).to_have_text("")


async def test_testing_panel_says_when_no_verifier_answers(page: Page, database_url: str, fresh_prefix: Any,
                                                          secret_key: str, customer_api: FakeCustomerAPI) -> None:
    """A gateway whose broker prefix no verifier serves: the test cannot run, and the panel says why."""
    async with AsyncExitStack() as es:
        gateway = await start_gateway(es, {**service_config(database_url, fresh_prefix(), secret_key),
                                           "verifier_answer_seconds": 1})
        http = await es.enter_async_context(aiohttp.ClientSession())
        alone = Stack(config={}, gateway=gateway, pool=None, http=http)  # type: ignore[arg-type]  # no database reads
        bot = await create_bot(http, gateway.url, enabled=True, auth_url=customer_api.endpoint(verified(id="x")))
        await open_admin(page, alone, bot, tab="testing")
        await page.get_by_label("Access token").fill("sample-token")
        await page.get_by_role("button", name="Send test request").click()
        errors = page.get_by_test_id("test-form-errors")
        await expect(errors).to_contain_text("The test could not run: no verifier service answered.")
        await expect(errors).to_contain_text("check that it is running")
        await expect(page.get_by_test_id("test-result")).to_be_hidden()
        await expect(page.get_by_test_id("test-send")).to_be_enabled()


# --- (e) contacts and Contact Details -----------------------------------------------------------

async def wait_for_contacts(stack: Stack, bot: str, count: int, timeout: float = 10) -> None:
    """The Collect Information form is written asynchronously; wait (bounded) for it."""
    async def counted() -> bool:
        _, page = await api(stack, "GET", f"/v1/bots/{bot}/contacts")
        return len(page["contacts"]) >= count

    await wait_until(counted, timeout, f"{count} contacts")


async def test_contacts_search_and_details(page: Page, stack: Stack, customer_api: FakeCustomerAPI) -> None:
    people = [
        verified(id="c-ada", name="Ada Lovelace", email="ada@example.com", phone_number="0912345678",
                 country_code="+84", label="VIP", metadata={"plan": "gold", "orders": 12}),
        verified(id="c-grace", name="Grace Hopper", email="grace@example.com", metadata={"plan": "silver"}),
        verified(id="c-alan", name="Alan Turing", email="alan@example.com"),
    ]
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=customer_api.endpoint(*people))
    for _ in people:
        assert (await verify_once(stack, bot, access_token="t"))["status"] == "verified"
    # A visitor without a token falls back and types their details: a non-verified contact.
    fallback = await verify_once(stack, bot)
    async with stack.http.post(f"{stack.gateway.url}/v1/widget/sessions/{fallback['session_id']}/contact",
                               json={"name": "Walk-in Visitor", "email": "walkin@example.com"}) as resp:
        assert resp.status == 202, await resp.text()
    await wait_for_contacts(stack, bot, 4)

    await open_admin(page, stack, bot, tab="contacts")
    rows = page.get_by_test_id("contact-row")
    await expect(rows).to_have_count(4)
    await expect(rows.first).to_contain_text("Walk-in Visitor")
    await expect(rows.first).to_contain_text("not verified")
    await expect(rows.filter(has_text="Ada Lovelace")).to_contain_text("+84912345678")
    await expect(page.get_by_test_id("contacts-more")).to_be_hidden()
    await screenshot(page, "admin-contacts")

    search = page.get_by_label("Search contacts")
    await search.fill("LOVELACE")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text("Ada Lovelace")
    await search.fill("nobody-is-called-this")
    await expect(rows).to_have_count(0)
    await expect(page.get_by_test_id("contacts-state")).to_contain_text("No contacts match")
    await search.fill("ada@")
    await search.press("Enter")
    await expect(rows).to_have_count(1)

    await rows.first.click()
    details = page.get_by_test_id("contact-details")
    await expect(page.get_by_test_id("contact-name")).to_have_text("Ada Lovelace")
    await expect(page.get_by_test_id("contact-verified")).to_have_text("verified")
    field = lambda name: details.locator(f'tr[data-field="{name}"]')  # noqa: E731
    await expect(field("external_id")).to_contain_text("c-ada")
    await expect(field("phone_number")).to_contain_text("+84912345678")
    await expect(field("phone_number")).to_contain_text("api")
    await expect(field("label")).to_contain_text("VIP")
    await expect(field("last_verified_at").locator("td").first).to_have_text(re.compile(r"\d{4}"))
    await expect(field("metadata")).to_contain_text("api")
    metadata = page.get_by_test_id("contact-metadata")
    await expect(metadata).to_contain_text('"plan": "gold"')
    await expect(metadata).to_contain_text('"orders": 12')
    await fit_to_content(page)
    await screenshot(page, "admin-contact-details")
    await page.set_viewport_size({"width": WIDTH, "height": 760})

    # Back to the list (search kept), then open the visitor's contact from the keyboard.
    await page.get_by_role("button", name="All contacts").click()
    await expect(rows).to_have_count(1)
    await search.fill("walk-in")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text("Walk-in Visitor")
    await rows.first.get_by_role("button").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_test_id("contact-name")).to_have_text("Walk-in Visitor")
    await expect(page.get_by_test_id("contact-verified")).to_have_text("not verified")
    await expect(field("name")).to_contain_text("visitor")
    await expect(field("email")).to_contain_text("visitor")
    await expect(metadata).to_have_text("{}")


async def test_end_all_sessions_of_a_contact(page: Page, stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """Revoking a contact's sessions has its button, behind a confirmation; the session is ended."""
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True,
                           auth_url=customer_api.endpoint(verified(id="rv-1", name="Revoked Rae")))
    session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot, "access_token": "t"})
    assert (await await_outcome(stack.http, stack.gateway.url, session_id))["status"] == "verified"
    await open_admin(page, stack, bot, tab="contacts")
    await page.get_by_test_id("contact-row").first.click()
    await expect(page.get_by_test_id("contact-name")).to_have_text("Revoked Rae")

    await page.get_by_role("button", name="End all sessions…").click()
    await expect(page.get_by_test_id("confirm-dialog")).to_contain_text("The contact itself is kept")
    await page.get_by_test_id("confirm-cancel").click()
    async with stack.http.get(f"{stack.gateway.url}/v1/widget/sessions/{session_id}") as resp:
        assert (await resp.json())["status"] == "verified"  # cancelled: nothing ended

    await page.get_by_role("button", name="End all sessions…").click()
    await page.get_by_role("button", name="End sessions").click()
    await expect(page.get_by_test_id("contact-lifecycle-status")).to_have_text("1 session ended.")
    async with stack.http.get(f"{stack.gateway.url}/v1/widget/sessions/{session_id}") as resp:
        assert (await resp.json())["status"] == "ended"
    await page.get_by_role("button", name="End all sessions…").click()
    await page.get_by_role("button", name="End sessions").click()
    await expect(page.get_by_test_id("contact-lifecycle-status")).to_have_text("No session was open: nothing to end.")


# --- (f) activity -------------------------------------------------------------------------------

async def test_activity_log_and_reason_filter(page: Page, stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="a-1", name="Active"),
                                Answer(status=401, json={"status": False, "message": "token expired"}),
                                verified(id="a-1", name="Active"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    assert (await verify_once(stack, bot, access_token="good"))["status"] == "verified"
    assert (await verify_once(stack, bot))["fallback"]["reason"] == "missing_token"
    assert (await verify_once(stack, bot, access_token="old"))["fallback"]["reason"] == "auth_rejected"
    assert (await verify_once(stack, bot, access_token="good", origin="https://shop.example.com"))["status"] == "verified"

    await open_admin(page, stack, bot, tab="activity")
    rows = page.get_by_test_id("event-row")
    await expect(rows).to_have_count(4)
    await expect(rows.first).to_contain_text("verified")
    await expect(rows.first).to_contain_text("from https://shop.example.com")
    missing = page.locator('[data-testid="event-row"][data-reason="missing_token"]')
    await expect(missing).to_have_count(1)
    await expect(missing).to_contain_text("fallback")
    rejected = page.locator('[data-testid="event-row"][data-reason="auth_rejected"]')
    await expect(rejected.locator("td").nth(4)).to_have_text("401")
    await screenshot(page, "admin-activity")

    reason = page.get_by_label("Reason")
    await reason.select_option("missing_token")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text("missing_token")
    await reason.select_option("auth_unavailable")
    await expect(rows).to_have_count(0)
    await expect(page.get_by_test_id("events-state")).to_have_text("No widget opens match these filters.")
    await reason.select_option("")
    await page.get_by_label("Status").select_option("verified")
    await expect(rows).to_have_count(2)


# --- Load more ----------------------------------------------------------------------------------

async def test_load_more_pages_contacts_and_activity(page: Page, stack: Stack, customer_api: FakeCustomerAPI) -> None:
    answers = [verified(id=f"m-{i}", name=f"Many {i:02d}") for i in range(27)]
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=customer_api.endpoint(*answers))
    outcomes = await asyncio.gather(*(verify_once(stack, bot, access_token="t") for _ in answers))
    assert {o["status"] for o in outcomes} == {"verified"}

    await open_admin(page, stack, bot, tab="contacts")
    rows = page.get_by_test_id("contact-row")
    await expect(rows).to_have_count(25)
    await page.get_by_test_id("contacts-more").click()
    await expect(rows).to_have_count(27)
    await expect(page.get_by_test_id("contacts-more")).to_be_hidden()
    names = await page.locator("#contacts-body .row-link").all_text_contents()
    assert sorted(names) == sorted(f"Many {i:02d}" for i in range(27))

    await page.get_by_role("tab", name="Activity").click()
    events = page.get_by_test_id("event-row")
    await expect(events).to_have_count(25)
    await page.get_by_test_id("events-more").click()
    await expect(events).to_have_count(27)
    await expect(page.get_by_test_id("events-more")).to_be_hidden()


# --- (h) attacker-influenced text stays text ----------------------------------------------------

async def test_markup_in_names_and_answers_renders_as_text(page: Page, stack: Stack, customer_api: FakeCustomerAPI) -> None:
    evil = "<img src=x onerror=alert(1)>"
    url = customer_api.endpoint(verified(id="x-1", name=evil, email="evil@example.com",
                                         metadata={"note": "<script>alert(2)</script>"}))
    bot = await new_bot(stack, f"Shop {evil}")
    await put_settings(stack, bot, enabled=True, auth_url=url)
    assert (await verify_once(stack, bot, access_token="t"))["status"] == "verified"

    dialogs: list[str] = []

    async def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    await open_admin(page, stack, bot, tab="contacts")
    await expect(page.get_by_test_id("bot-name")).to_have_text(f"Shop {evil}")
    row = page.get_by_test_id("contact-row")
    await expect(row).to_contain_text(evil)
    await row.click()
    await expect(page.get_by_test_id("contact-name")).to_have_text(evil)
    await expect(page.get_by_test_id("contact-metadata")).to_contain_text("<script>alert(2)</script>")

    await page.get_by_role("tab", name="Testing").click()
    await page.get_by_label("Access token").fill("t")
    await page.get_by_role("button", name="Send test request").click()
    await expect(page.get_by_test_id("test-verdict")).to_contain_text(f"would update contact {evil}")
    await expect(page.get_by_test_id("test-response-body")).to_contain_text(evil)

    assert await page.locator("main img, main script").count() == 0
    assert dialogs == []
    assert evil not in await page.evaluate("document.querySelector('main').innerHTML")
