"""The admin page's settings for a bot whose visitors are verified at the business's OpenID Provider, in real
Chromium: the provider's settings are shown (the client secret only as set or not), saving from the page never drops
them, a new provider is set up from the form, and the bot's back-channel logout URI is there to paste into the
provider."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import api, axe_violations, open_admin
from tests.conftest import Stack

pytestmark = pytest.mark.usefixtures("no_csp_violations")

ISSUER = "https://id.example.com/realms/shop"


async def saved_settings(stack: Stack, bot: str) -> dict[str, Any]:
    status, saved = await api(stack, "GET", f"/v1/bots/{bot}/custom-auth")
    assert status == 200, saved
    return saved


async def oidc_bot(stack: Stack, **settings: Any) -> str:
    status, bot = await api(stack, "POST", "/v1/bots", {"name": "OIDC shop"})
    assert status == 201, bot
    status, body = await api(stack, "PUT", f"/v1/bots/{bot['bot_id']}/custom-auth", {
        "enabled": True, "identity_source": "oidc", "identify_method": "email",
        "oidc": {"issuer": ISSUER, "method": "introspection", "client_id": "doorman", "client_secret": "s3cret-" + uuid4().hex},
        "accepted_clients": ["shop-web", "shop-app"], "outage_grace_seconds": 300, **settings,
    })
    assert status == 200, body
    return str(bot["bot_id"])


async def test_an_oidc_bot_saved_from_the_page_keeps_its_oidc_settings(page: Page, stack: Stack, axe_source: str) -> None:
    bot = await oidc_bot(stack)
    before = await saved_settings(stack, bot)

    await open_admin(page, stack, bot)
    await expect(page.get_by_test_id("ids-oidc")).to_be_checked()
    await expect(page.get_by_label("Issuer", exact=True)).to_have_value(ISSUER)
    await expect(page.get_by_label("Check tokens with")).to_have_value("introspection")
    await expect(page.get_by_label("Client id", exact=True)).to_have_value("doorman")
    await expect(page.get_by_test_id("oidc-secret-state")).to_have_text("set")
    await expect(page.get_by_test_id("oidc-client-secret")).to_have_value("")
    await expect(page.get_by_test_id("oidc-accepted-clients")).to_have_value("shop-web\nshop-app")
    await expect(page.get_by_test_id("oidc-logout-uri")).to_have_text(
        f"{stack.gateway.url}/v1/bots/{bot}/oidc/backchannel-logout")
    await expect(page.get_by_label("Authentication URL")).to_be_hidden()  # what the other sources use is not shown
    await expect(page.get_by_test_id("st-fields")).to_be_hidden()
    await expect(page.get_by_test_id("grace-card")).to_be_visible()  # the outage grace applies to a provider too
    assert await axe_violations(page, axe_source) == []

    await page.get_by_label("Identify contacts by").select_option("id")  # an unrelated change
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.get_by_test_id("ca-status")).to_have_text("Saved")

    after = await saved_settings(stack, bot)
    assert after["identify_method"] == "id"
    assert {k: after[k] for k in ("identity_source", "oidc", "accepted_clients", "outage_grace_seconds")} == {
        k: before[k] for k in ("identity_source", "oidc", "accepted_clients", "outage_grace_seconds")}, after
    assert after["oidc"]["client_secret_set"] is True


async def test_switching_an_oidc_bot_to_another_source_keeps_its_provider_for_later(page: Page, stack: Stack) -> None:
    bot = await oidc_bot(stack)
    await open_admin(page, stack, bot)
    await page.get_by_test_id("ids-auth-url").check()
    await expect(page.get_by_test_id("oidc-fields")).to_be_hidden()
    await page.get_by_label("Authentication URL").fill("https://shop.example.com/doorman/auth")
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.get_by_test_id("ca-status")).to_have_text("Saved")

    saved = await saved_settings(stack, bot)
    assert saved["identity_source"] == "auth_url"
    assert saved["oidc"] == {"issuer": ISSUER, "method": "introspection", "client_id": "doorman",
                             "client_secret_set": True}, saved


async def test_setting_up_an_openid_provider_from_the_page(page: Page, stack: Stack) -> None:
    status, made = await api(stack, "POST", "/v1/bots", {"name": "New OIDC shop"})
    assert status == 201
    bot = made["bot_id"]
    secret = "client-secret-" + uuid4().hex

    await open_admin(page, stack, bot)
    await page.get_by_label("Enable Custom Authentication").check()
    await page.get_by_test_id("ids-oidc").check()
    await expect(page.get_by_test_id("oidc-secret-state")).to_have_text("not set")
    await page.get_by_label("Issuer", exact=True).fill(ISSUER)
    await page.get_by_label("Check tokens with").select_option("introspection")
    await page.get_by_label("Client id", exact=True).fill("doorman")
    await page.get_by_test_id("oidc-client-secret").fill(secret)
    await page.get_by_test_id("oidc-accepted-clients").fill("shop-web\n\n shop-app ")
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.get_by_test_id("ca-status")).to_have_text("Saved")

    await expect(page.get_by_test_id("oidc-client-secret")).to_have_value("")
    await expect(page.get_by_test_id("oidc-secret-state")).to_have_text("set")
    assert secret not in await page.content()
    saved = await saved_settings(stack, bot)
    assert (saved["identity_source"], saved["oidc"], saved["accepted_clients"]) == (
        "oidc", {"issuer": ISSUER, "method": "introspection", "client_id": "doorman", "client_secret_set": True},
        ["shop-web", "shop-app"]), saved

    # Introspection with no secret is refused next to the secret's input.
    await page.get_by_label("Issuer", exact=True).fill("https://elsewhere.example.com")
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.get_by_test_id("err-oidc-client_secret")).to_be_visible()
    await expect(page.get_by_test_id("oidc-client-secret")).to_have_attribute("aria-invalid", "true")
