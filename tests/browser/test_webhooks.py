"""The admin page's Webhook block in real Chromium: turn the webhook on (the signing secret shown once),
field errors, and the delivery log filling in as the fake business receives deliveries."""

from __future__ import annotations

from uuid import uuid4

import pytest
from playwright.async_api import Page, expect

from shared.signing import verify
from tests.browser.conftest import api, open_admin, screenshot
from tests.conftest import Stack, verify_once
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.waits import wait_until, webhooks_heard

pytestmark = pytest.mark.usefixtures("no_csp_violations")


async def test_turn_the_webhook_on_and_watch_deliveries(page: Page, stack: Stack, customer_api: FakeCustomerAPI) -> None:
    status, bot = await api(stack, "POST", "/v1/bots", {"name": f"Hooked shop {uuid4().hex[:6]}"})
    assert status == 201
    bot_id = bot["bot_id"]
    status, _ = await api(stack, "PUT", f"/v1/bots/{bot_id}/custom-auth", {
        "enabled": True, "auth_url": customer_api.endpoint(verified(id="web-1", name="Webby"))})
    assert status == 200
    hook = customer_api.endpoint(Answer(json={"ok": True}))
    await open_admin(page, stack, bot_id, "settings")

    card = page.get_by_test_id("webhook-card")
    await expect(card).to_be_visible()
    await expect(page.get_by_test_id("wh-secret-state")).to_have_text("none yet")

    # Enabled without a URL or events: field errors, nothing saved.
    await page.get_by_test_id("wh-enabled").check()
    await page.get_by_test_id("wh-save").click()
    await expect(page.get_by_test_id("err-wh-url")).to_contain_text("required")
    await expect(page.get_by_test_id("err-wh-events")).to_contain_text("at least one")
    await expect(page.get_by_test_id("wh-secret-shown")).to_be_hidden()

    await page.get_by_test_id("wh-url").fill("ftp://example.com/hook")
    await page.get_by_test_id("wh-ev-contact.created").check()
    await page.get_by_test_id("wh-save").click()
    await expect(page.get_by_test_id("err-wh-url")).to_contain_text("http")

    # Saved: the signing secret is made and shown this once.
    await page.get_by_test_id("wh-url").fill(hook)
    await page.get_by_test_id("wh-ev-session.fell_back").check()
    await page.get_by_test_id("wh-save").click()
    await expect(page.get_by_test_id("wh-status")).to_have_text("Saved.")
    await expect(page.get_by_test_id("err-wh-url")).to_be_hidden()
    shown = page.get_by_test_id("wh-secret-value")
    await expect(page.get_by_test_id("wh-secret-shown")).to_be_visible()
    secret = await shown.text_content()
    assert secret and secret.startswith("whsec_")
    await expect(page.get_by_test_id("wh-secret-state")).to_have_text("set")

    # Saving again does not show it again.
    await page.get_by_test_id("wh-save").click()
    await expect(page.get_by_test_id("wh-status")).to_have_text("Saved.")
    status, stored = await api(stack, "GET", f"/v1/bots/{bot_id}/webhook")
    assert stored["enabled"] and stored["url"] == hook and sorted(stored["events"]) == ["contact.created",
                                                                                      "session.fell_back"]
    assert secret not in str(stored)

    # A visitor verifies: contact.created is delivered, signed with the secret the page showed.
    await webhooks_heard(bot_id)
    outcome = await verify_once(stack, bot_id, access_token="tok")
    assert outcome["status"] == "verified"
    [call] = await wait_until(lambda: customer_api.received(hook), what="the delivery")
    assert verify(secret, call.headers, call.raw)

    async def delivered() -> bool:
        _, log = await api(stack, "GET", f"/v1/bots/{bot_id}/webhook/deliveries")
        return [d["status"] for d in log["deliveries"]] == ["delivered"]

    await wait_until(delivered, what="the delivery recorded as delivered")
    rows = page.get_by_test_id("wh-delivery")
    await page.get_by_test_id("wh-refresh").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-status", "delivered")
    await expect(rows.first).to_contain_text("contact.created")
    await expect(rows.first).to_contain_text(call.headers["Doorman-Delivery"])
    await page.get_by_test_id("webhook-card").scroll_into_view_if_needed()
    await screenshot(page, "webhooks-admin")

    # Reloading the page never shows the secret again.
    await page.reload()
    await expect(page.get_by_test_id("webhook-card")).to_be_visible()
    await expect(page.get_by_test_id("wh-secret-shown")).to_be_hidden()
    assert secret not in await page.content()


async def refreshed_until(page: Page, status: str) -> None:
    """Refresh the delivery log until its newest row has ``status``."""
    rows = page.get_by_test_id("wh-delivery")

    async def newest_has_status() -> bool:
        await page.get_by_test_id("wh-refresh").click()
        return bool(await rows.count()) and await rows.first.get_attribute("data-status") == status

    await wait_until(newest_has_status, timeout=15, what=f"a {status} delivery in the log")


async def test_retry_a_dead_delivery_and_rotate_the_signing_secret(
    page: Page, stack: Stack, customer_api: FakeCustomerAPI,
) -> None:
    """Every webhook action has a button: Retry on a dead delivery (the fake business gets it again, the same id),
    and a new signing secret behind a confirmation (shown once; the next call is signed with it)."""
    status, bot = await api(stack, "POST", "/v1/bots", {"name": f"Retry shop {uuid4().hex[:6]}"})
    bot_id = bot["bot_id"]
    auth_url = customer_api.endpoint(verified(id="dead-1", name="Dee"), verified(id="dead-1", name="Dee"))
    assert (await api(stack, "PUT", f"/v1/bots/{bot_id}/custom-auth", {"enabled": True, "auth_url": auth_url}))[0] == 200
    hook = customer_api.endpoint(Answer(status=410, json={}), Answer(json={"ok": True}))  # refused, then fixed
    status, _ = await api(stack, "PUT", f"/v1/bots/{bot_id}/webhook",
                          {"enabled": True, "url": hook, "events": ["contact.created"]})
    assert status == 200
    await webhooks_heard(bot_id)
    assert (await verify_once(stack, bot_id, access_token="tok"))["status"] == "verified"

    await open_admin(page, stack, bot_id, "settings")
    await refreshed_until(page, "dead")
    dead = page.get_by_test_id("wh-delivery").first
    await expect(dead).to_contain_text("HTTP 410")
    await dead.get_by_role("button", name="Retry").click()
    await expect(dead.get_by_test_id("wh-retried")).to_have_text("Sent again")
    await refreshed_until(page, "delivered")
    first, second = customer_api.received(hook)
    assert first.headers["Doorman-Delivery"] == second.headers["Doorman-Delivery"]
    await expect(page.get_by_test_id("wh-delivery").first.get_by_role("button", name="Retry")).to_have_count(0)

    # A new signing secret: asked first, then shown once.
    await page.get_by_role("button", name="New signing secret…").click()
    await expect(page.get_by_test_id("confirm-dialog")).to_contain_text("24 hours")
    await page.get_by_role("button", name="Make a new secret").click()
    await expect(page.get_by_test_id("wh-secret-shown")).to_be_visible()
    await expect(page.get_by_test_id("wh-secret-previous")).to_contain_text("The previous secret keeps signing too until")
    secret = await page.get_by_test_id("wh-secret-value").text_content()
    assert secret and secret.startswith("whsec_")
    # The next identity call carries a signature made with it.
    await verify_once(stack, bot_id, access_token="tok-2")
    call = customer_api.received(auth_url)[-1]
    assert verify(secret, call.headers, call.raw)
    await page.reload()
    await expect(page.get_by_test_id("webhook-card")).to_be_visible()
    assert secret not in await page.content()
