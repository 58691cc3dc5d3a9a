"""Every screen of the admin page and of the widget, at a phone's width (360 px) and a desktop's (1280 px): no
horizontal scroll (the document is never wider than the viewport), and axe-core's WCAG 2.1 A and AA rules find
nothing. Nothing on a page asks for a file the gateway does not have (the favicon included)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest
from playwright.async_api import Browser, Page, Response, expect

from tests.browser.conftest import (
    HostPage,
    api,
    axe_violations,
    horizontal_overflow,
    open_admin,
)
from tests.browser.test_widget import open_widget, settle
from tests.conftest import Stack, create_bot, verify_once
from tests.browser.test_webhooks import refreshed_until
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.integration.test_oidc import fake_issuer
from tests.waits import webhooks_heard

WIDTHS = [360, 1280]


@pytest.fixture(params=WIDTHS, ids=lambda width: f"{width}px")
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A page at the width under test; JavaScript errors and missing files (any 4xx) fail the test. axe-core adds
    an inline style while it runs, which the pages' CSP refuses: here the CSP is not enforced (the other modules
    check that the same screens keep to it)."""
    context = await browser.new_context(viewport={"width": request.param, "height": 760}, bypass_csp=True)
    page = await context.new_page()
    errors: list[str] = []
    missing: list[str] = []

    def on_response(response: Response) -> None:
        if 400 <= response.status < 500 and not response.url.split("?")[0].endswith(ALLOWED_4XX):
            missing.append(f"{response.status} {response.url}")

    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", on_response)
    yield page
    await context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
    assert missing == [], f"answered 4xx: {missing}"


# The API answers a test's own refusals (a retry of a delivery that is not dead) with 4xx: not a missing file.
ALLOWED_4XX = ("/retry",)


async def check(page: Page, axe_source: str, screen: str) -> None:
    """The screen as it is now fits the viewport's width and has no WCAG 2.1 AA violation."""
    width = page.viewport_size["width"] if page.viewport_size else 0
    if await horizontal_overflow(page):
        wide = await page.evaluate("""() => Array.from(document.querySelectorAll('body *'))
            .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)
            .filter(e => { for (let a = e.parentElement; a; a = a.parentElement) {
                if (getComputedStyle(a).overflowX !== "visible") return false; } return true; })
            .slice(0, 8).map(e => `${e.tagName.toLowerCase()}#${e.id}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)""")
        raise AssertionError(f"{screen} at {width} px scrolls sideways: {wide}")
    assert await axe_violations(page, axe_source) == [], f"{screen} at {width} px"


async def test_every_admin_screen_fits_and_is_accessible(
    page: Page, stack: Stack, customer_api: FakeCustomerAPI, axe_source: str,
) -> None:
    people = [verified(id=f"w-{i}", name=f"Wide Person {i}", email=f"wide{i}@example.com", phone_number="0912345678",
                       country_code="+84", metadata={"plan": "gold", "note": "x" * 120}) for i in range(3)]
    refused = Answer(status=401, json={"status": False, "message": "bad header token"})
    auth_url = customer_api.endpoint(*people, refused)
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=auth_url, outage_grace_seconds=60,
                           domain_whitelist={"enabled": True, "domains": ["shop.example.com"]})
    hook = customer_api.endpoint(Answer(status=410, json={}))
    assert (await api(stack, "PUT", f"/v1/bots/{bot}/webhook",
                      {"enabled": True, "url": hook, "events": ["contact.created", "session.fell_back"]}))[0] == 200
    await webhooks_heard(bot)
    for _ in people:
        assert (await verify_once(stack, bot, access_token="t", origin="https://shop.example.com"))["status"] == "verified"
    assert (await verify_once(stack, bot, origin="https://elsewhere.example"))["status"] == "fallback"
    empty_bot = await create_bot(stack.http, stack.gateway.url, enabled=False, identity_source="signed_token")

    # Signing in, and the list of bots.
    await page.goto(f"{stack.gateway.url}/admin")
    await expect(page.get_by_test_id("signin-view")).to_be_visible()
    await check(page, axe_source, "sign-in")
    await open_admin(page, stack)
    await expect(page.get_by_test_id("bots-view")).to_be_visible()
    await check(page, axe_source, "bot list")

    # Custom Authentication with every card, the webhook and its delivery log (a dead delivery: its Retry button).
    await page.goto(f"{stack.gateway.url}/admin#bot={bot}")
    await expect(page.get_by_test_id("settings-form")).to_be_visible()
    await expect(page.get_by_test_id("webhook-card")).to_be_visible()
    await refreshed_until(page, "dead")
    await expect(page.get_by_test_id("wh-retry").first).to_be_visible()
    await check(page, axe_source, "settings (Authentication URL)")
    await page.get_by_role("button", name="New signing secret…").click()
    await expect(page.get_by_test_id("confirm-dialog")).to_be_visible()
    await check(page, axe_source, "confirmation dialog")
    await page.get_by_test_id("confirm-cancel").click()

    # The Testing panel: before a run, a refusal with its raw exchange open, a success.
    await page.get_by_role("tab", name="Testing").click()
    await expect(page.get_by_test_id("test-empty")).to_be_visible()
    await check(page, axe_source, "testing (no run yet)")
    await page.get_by_label("Access token").fill("t")
    await page.get_by_role("button", name="Send test request").click()
    await expect(page.get_by_test_id("test-said-text")).to_have_text("“bad header token”")
    await page.get_by_test_id("test-raw-summary").click()
    await expect(page.get_by_test_id("test-response-body")).to_be_visible()
    await check(page, axe_source, "testing (refused, raw exchange open)")

    # Contacts, a contact's details, a search that finds nothing.
    await page.get_by_role("tab", name="Contacts").click()
    await expect(page.get_by_test_id("contact-row")).to_have_count(3)
    await check(page, axe_source, "contacts")
    await page.get_by_test_id("contact-row").first.get_by_role("button").click()
    await expect(page.get_by_test_id("contact-name")).to_have_text("Wide Person 2")
    await check(page, axe_source, "contact details")
    await page.get_by_test_id("contact-back").click()
    await page.get_by_label("Search contacts").fill("nobody-" + uuid4().hex)
    await expect(page.get_by_test_id("contacts-state")).to_contain_text("No contacts match")
    await check(page, axe_source, "contacts (none match)")

    # The activity log.
    await page.get_by_role("tab", name="Activity").click()
    await expect(page.get_by_test_id("event-row")).to_have_count(4)
    await check(page, axe_source, "activity")

    # A bot with nothing yet, verifying signed tokens: its settings and every empty state.
    await page.goto(f"{stack.gateway.url}/admin#bot={empty_bot}")
    await expect(page.get_by_test_id("st-fields")).to_be_visible()
    await expect(page.get_by_test_id("wh-deliveries-state")).to_contain_text("No deliveries")
    await check(page, axe_source, "settings (signed token, no deliveries)")
    for tab, state in (("Contacts", "contacts-state"), ("Activity", "events-state")):
        await page.get_by_role("tab", name=tab).click()
        await expect(page.get_by_test_id(state)).to_contain_text("yet")
        await check(page, axe_source, f"{tab.lower()} (empty)")

    # A bot verifying at an OpenID Provider: Discover's result (long URLs), its raw document unfolded.
    issuer = fake_issuer(customer_api, **{name: f"{customer_api.url}/realms/shop/protocol/openid-connect/{name}" for name in (
        "userinfo_endpoint", "introspection_endpoint", "jwks_uri", "end_session_endpoint")})
    oidc_bot = await create_bot(stack.http, stack.gateway.url, enabled=False, identity_source="oidc",
                                oidc={"issuer": issuer, "method": "userinfo", "client_id": "doorman"})
    await page.goto(f"{stack.gateway.url}/admin#bot={oidc_bot}")
    await expect(page.get_by_test_id("wh-deliveries-state")).to_contain_text("No deliveries")  # the last bot's gone
    await page.get_by_role("button", name="Discover").click()
    await expect(page.get_by_test_id("oidc-discover-verdict")).to_have_class("verdict verdict-ok")
    await page.get_by_text("The discovery document as published").click()
    await expect(page.get_by_test_id("oidc-document")).to_be_visible()
    await check(page, axe_source, "settings (OpenID Provider, discovered)")

    # The favicon the page links is served.
    icon = await page.evaluate("() => document.querySelector('link[rel=icon]').href")
    async with stack.http.get(icon) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "image/x-icon"
        assert (await resp.read())[:4] == b"\x00\x00\x01\x00"  # an ICO file


async def test_an_empty_workspace_sees_how_to_start(page: Page, stack: Stack, axe_source: str) -> None:
    """A workspace's key with no bot yet: the list says so, and offers to make one."""
    status, workspace = await api(stack, "POST", "/v1/workspaces", {"name": f"Empty {uuid4().hex[:6]}"})
    assert status == 201
    status, key = await api(stack, "POST", f"/v1/workspaces/{workspace['workspace_id']}/api-keys", {"name": "page"})
    assert status == 201
    await page.goto(f"{stack.gateway.url}/admin")
    await page.get_by_label("Admin token").fill(key["api_key"])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_test_id("no-bots")).to_be_visible()
    await expect(page.get_by_test_id("no-bots")).to_contain_text("No bots yet")
    await check(page, axe_source, "bot list (empty)")


async def start_chat_in_view(page: Page) -> dict[str, Any]:
    """Where "Start chat" is, against the scrolling body and the footer of the widget's panel."""
    return await page.evaluate("""() => {
        const root = document.querySelector('[data-doorman-widget]').shadowRoot;
        const rect = (el) => el.getBoundingClientRect();
        const button = rect(root.querySelector('.dm-submit'));
        const body = rect(root.querySelector('.dm-body'));
        const footer = rect(root.querySelector('.dm-footer'));
        return {top: button.top, bottom: button.bottom, bodyTop: body.top, footerTop: footer.top};
    }""")


async def test_the_widget_fits_and_is_accessible(
    page: Page, stack: Stack, customer_api: FakeCustomerAPI, host_page: HostPage, axe_source: str,
) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, collect_information="optional",
                           auth_url=customer_api.endpoint(Answer(status=401, json={"status": False})))
    dialog = await open_widget(page, await host_page(bot, token="t"))
    await expect(dialog).to_have_attribute("data-state", "form")
    await settle(dialog)
    await check(page, axe_source, "widget form")

    # With every error showing, "Start chat" stays in view above the footer.
    await dialog.get_by_label("Email").fill("not-an-email")
    await dialog.get_by_label("Phone").fill("12")
    await dialog.get_by_role("button", name="Start chat").click()
    await expect(dialog.get_by_text("Enter an email address like name@example.com.")).to_be_visible()
    place = await start_chat_in_view(page)
    assert place["bodyTop"] <= place["top"] and place["bottom"] <= place["footerTop"], place
    await check(page, axe_source, "widget form with errors")

    verified_bot = await create_bot(stack.http, stack.gateway.url, enabled=True,
                                    auth_url=customer_api.endpoint(verified(id="w-1", name="Wendy Wide")))
    dialog = await open_widget(page, await host_page(verified_bot, token="t"))
    await expect(dialog.get_by_text("Hi Wendy Wide!")).to_be_visible()
    await settle(dialog)
    await check(page, axe_source, "widget verified")
