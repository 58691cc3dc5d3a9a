"""The whole story in one browser: a visitor is verified by the widget, an agent finds the contact."""

from __future__ import annotations

from playwright.async_api import BrowserContext, expect

from tests.browser.conftest import HostPage
from tests.browser.test_admin_page import open_admin
from tests.conftest import Stack, create_bot
from tests.fake_customer import FakeCustomerAPI, verified


async def test_widget_verified_visitor_appears_in_the_admin_contacts(
    context: BrowserContext, stack: Stack, customer_api: FakeCustomerAPI, host_page: HostPage,
) -> None:
    url = customer_api.endpoint(verified(id="e2e-7", name="Vera Visitor", email="vera@example.com"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)

    shop = await context.new_page()
    await shop.goto(await host_page(bot, token="vera-token"))
    await shop.get_by_role("button", name="Open chat").click()
    await expect(shop.get_by_role("dialog").get_by_text("Hi Vera Visitor!")).to_be_visible()

    admin = await context.new_page()
    await open_admin(admin, stack, bot, tab="contacts")
    row = admin.get_by_test_id("contacts-body").get_by_role("row").filter(has_text="Vera Visitor")
    await expect(row).to_be_visible()
    await expect(row).to_contain_text("vera@example.com")
    await expect(row).to_contain_text("e2e-7")
