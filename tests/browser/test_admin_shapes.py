"""The admin page renders every shape the features store (``tests/shapes.py``) in real Chromium: the webhook
delivery log, the activity tab, the contacts tab and each contact's details, in one page load, with no
console error and no ``undefined``, ``null``, ``NaN`` or ``[object Object]`` where a value should be."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import ConsoleMessage, Locator, Page, expect

from tests.browser.conftest import api, open_admin
from tests.conftest import Stack
from tests.fake_customer import FakeCustomerAPI
from tests.shapes import BUSINESS_NOTE, erase, every_shape

pytestmark = pytest.mark.usefixtures("no_csp_violations")

NOT_A_VALUE = re.compile(r"\bundefined\b|\bnull\b|\bNaN\b|\[object Object\]")


async def shows_only_values(where: Locator) -> None:
    text = await where.inner_text()
    assert not NOT_A_VALUE.search(text), text


async def load_all(page: Page, more: str) -> None:
    button = page.get_by_test_id(more)
    while await button.is_visible():
        await button.click()
        await expect(button).to_be_enabled()  # the page loaded: the button is hidden now if it was the last


async def every_row(page: Page, tab: str, row: str, more: str, count: int) -> None:
    """Open ``tab``, load every page of its list, and see ``count`` rows (what the API answered)."""
    await page.get_by_role("tab", name=tab).click()
    rows = page.get_by_test_id(row)
    await expect(rows.first).to_be_visible()
    await load_all(page, more)
    await expect(rows).to_have_count(count)


async def test_the_admin_page_renders_every_stored_shape(
        page: Page, stack: Stack, strict_stack: Stack, customer_api: FakeCustomerAPI) -> None:
    shapes = await every_shape(stack, strict_stack, customer_api)
    console: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console.append(f"{message.text} ({message.location.get('url')})")

    page.on("console", on_console)
    await open_admin(page, stack, shapes.bot, tab="settings")

    # The delivery log: delivered, dead, and the erasure's, pending while its endpoint hangs.
    await expect(page.get_by_test_id("webhook-card")).to_be_visible()
    await erase(stack, shapes)
    await page.get_by_test_id("wh-refresh").click()
    for status in ("pending", "delivered", "dead"):
        await expect(page.locator(f'[data-testid="wh-delivery"][data-status="{status}"]').first).to_be_visible()
    await shows_only_values(page.get_by_test_id("wh-deliveries"))

    # The activity tab: a row per session, every reason, both identity changes, both ways of ending.
    _, log = await api(stack, "GET", f"/v1/bots/{shapes.bot}/auth-events?limit=100")
    await every_row(page, "Activity", "event-row", "events-more", len(log["events"]))
    for what, session_id in shapes.sessions.items():
        await expect(page.locator(f'[data-testid="event-row"][data-session-id="{session_id}"]'), what).to_have_count(1)
    for kind in ("identity_changed", "took_over_unverified"):
        await expect(page.locator(f'[data-testid="event-identity-change"][data-kind="{kind}"]')).to_have_count(1)
    await expect(page.get_by_test_id("event-ended")).to_have_count(len([e for e in log["events"] if e["ended_by"]]))
    await expect(page.get_by_test_id("event-ended").filter(has_text="revocation")).to_have_count(1)
    await expect(page.locator(f'[data-session-id="{shapes.sessions["auth_rejected"]}"]')).to_contain_text(BUSINESS_NOTE)
    await expect(page.locator(f'[data-session-id="{shapes.sessions["verified degraded"]}"]')).to_contain_text("degraded")
    await shows_only_values(page.get_by_test_id("events-table"))

    # The contacts tab, and each contact's details.
    _, contacts = await api(stack, "GET", f"/v1/bots/{shapes.bot}/contacts?limit=100")
    await every_row(page, "Contacts", "contact-row", "contacts-more", len(contacts["contacts"]))
    await shows_only_values(page.get_by_test_id("panel-contacts"))
    card = page.locator("#contact-card")
    for contact in contacts["contacts"]:
        await page.locator(f'[data-testid="contact-row"][data-contact-id="{contact["contact_id"]}"] .row-link').click()
        await expect(card).to_be_visible()
        await expect(card.locator('tr[data-field="contact_id"]')).to_contain_text(contact["contact_id"])
        for part in ("contact-name", "contact-verified", "contact-fields", "contact-takeover", "contact-history"):
            await shows_only_values(page.get_by_test_id(part))
        await page.get_by_role("button", name="All contacts").click()
        await expect(page.get_by_test_id("contact-row").first).to_be_visible()
    assert console == []
