"""The admin page's outage grace: the setting (seconds, 0 = off), the bot's circuit breaker's state for its
Authentication URL's host, and "degraded" in Contact Details and the activity log, in real Chromium."""

from __future__ import annotations


import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import api, open_admin, screenshot
from tests.conftest import Stack, create_bot, verify_once
from tests.fake_customer import Answer, FakeCustomerAPI, verified

pytestmark = pytest.mark.usefixtures("no_csp_violations")


async def test_grace_setting_round_trips_and_the_breaker_state_is_shown(page: Page, stack: Stack) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url="https://down.example.com/auth")
    await open_admin(page, stack, bot, "settings")
    grace = page.get_by_label("Outage grace, in seconds")
    await expect(grace).to_have_value("0")
    await expect(page.get_by_test_id("breaker-host")).to_have_text("for down.example.com:443")
    await expect(page.get_by_test_id("breaker-state")).to_contain_text("closed")

    await grace.fill("120")
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.get_by_test_id("ca-status")).to_have_text("Saved")
    status, settings = await api(stack, "GET", f"/v1/bots/{bot}/custom-auth")
    assert status == 200 and settings["outage_grace_seconds"] == 120 and settings["auth_url"] == "https://down.example.com/auth"

    await grace.fill("100000")  # over a day: the API's field error, next to the field
    await page.get_by_role("button", name="Save", exact=True).click()
    error = page.get_by_test_id("err-outage_grace_seconds")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("86400")
    await expect(grace).to_have_attribute("aria-invalid", "true")
    assert (await api(stack, "GET", f"/v1/bots/{bot}/custom-auth"))[1]["outage_grace_seconds"] == 120

    # A verifier replica recorded that the bot's circuit for the host opened (as breaker.py does on each transition).
    await stack.pool.execute(
        """INSERT INTO auth_breakers (bot_id, host, replica, state, since, opened, detail)
           VALUES ($1, 'down.example.com:443', 'verifier-test-1', 'open', now(), 1,
                   '20 of 22 calls failed in the last 30 s')""", bot)
    try:
        await page.reload()
        await expect(grace).to_have_value("120")
        await expect(page.get_by_test_id("breaker-state")).to_contain_text("open")
        await expect(page.get_by_test_id("breaker-replicas")).to_contain_text("20 of 22 calls failed")
        await page.get_by_role("button", name="Refresh the circuit breaker state").click()
        await expect(page.get_by_test_id("breaker")).to_have_attribute("data-state", "open")
        await screenshot(page, "admin-grace")
    finally:
        await stack.pool.execute("DELETE FROM auth_breakers WHERE replica = 'verifier-test-1'")

    await grace.fill("0")
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.get_by_test_id("ca-status")).to_have_text("Saved")
    assert (await api(stack, "GET", f"/v1/bots/{bot}/custom-auth"))[1]["outage_grace_seconds"] == 0


async def test_contact_details_and_activity_show_a_degraded_verification(
        page: Page, stack: Stack, customer_api: FakeCustomerAPI) -> None:
    down = {"now": False}
    url = customer_api.responder(
        lambda body: Answer(status=503, json={}) if down["now"] else verified(id="g-1", name="Grace Hopper"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, outage_grace_seconds=300)
    fresh = await verify_once(stack, bot, access_token="grace-token")
    assert fresh["status"] == "verified" and fresh["degraded"] is False
    down["now"] = True
    returning = await verify_once(stack, bot, access_token="grace-token")
    assert returning["status"] == "verified" and returning["degraded"] is True

    await open_admin(page, stack, bot, "contacts")
    rows = page.get_by_test_id("contact-row")
    await expect(rows).to_have_count(1)
    await rows.first.click()
    await expect(page.get_by_test_id("contact-name")).to_have_text("Grace Hopper")
    verified_line = page.get_by_test_id("contact-verified")
    await expect(verified_line).to_contain_text("verified")
    await expect(verified_line.get_by_test_id("degraded")).to_have_text("degraded")

    await page.get_by_role("tab", name="Activity").click()
    events = page.get_by_test_id("event-row")
    await expect(events).to_have_count(2)
    await expect(events.first.get_by_test_id("degraded")).to_be_visible()
    await expect(events.nth(1).get_by_test_id("degraded")).to_have_count(0)
