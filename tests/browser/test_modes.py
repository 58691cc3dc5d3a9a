"""OpenCX's modes in real Chromium: the widget's Collect Information paths (required, optional with a skip,
off), the form prefilled from the embed, data-external-workspace-id sent on open, and the admin page's
Collect Information block, request field and business workspace display."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import HostPage
from tests.browser.test_admin_page import api, open_admin
from tests.browser.test_widget import Watch, open_widget, wait_for
from tests.conftest import Stack, create_bot, verify_once
from tests.fake_customer import FakeCustomerAPI, verified

pytestmark = pytest.mark.usefixtures("no_csp_violations")


@pytest.fixture
async def watch(page: Page) -> AsyncIterator[Watch]:
    seen = Watch()
    page.on("request", lambda request: seen.requests.append(request))
    yield seen


def posted(watch: Watch, suffix: str) -> list[dict[str, Any]]:
    return [json.loads(r.post_data or "{}") for r in watch.posts_to(suffix)]


# -- the widget ----------------------------------------------------------------------------------


async def test_required_shows_the_form_prefilled_from_the_embed(
    stack: Stack, host_page: HostPage, page: Page, watch: Watch,
) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, enabled=False, collect_information="required")
    url = await host_page(bot, name="Embed Name", email="embed@example.com", phone_number="+84 912 345 678",
                          external_workspace_id="ws-shop-1")

    dialog = await open_widget(page, url)

    await expect(dialog).to_have_attribute("data-state", "form")
    await expect(dialog.get_by_label("Name")).to_have_value("Embed Name")
    await expect(dialog.get_by_label("Email")).to_have_value("embed@example.com")
    await expect(dialog.get_by_label("Phone")).to_have_value("+84 912 345 678")
    await expect(dialog.get_by_role("button", name="Chat without sharing")).to_have_count(0)
    [opened] = posted(watch, "/v1/widget/sessions")
    assert opened["external_workspace_id"] == "ws-shop-1" and opened["bot_id"] == bot

    # Only defaults: the visitor changes one, and what is sent is what the visitor submitted.
    await dialog.get_by_label("Email").fill("changed@example.com")
    await dialog.get_by_label("Phone").fill("")
    await dialog.get_by_role("button", name="Start chat").click()
    await expect(dialog).to_have_attribute("data-state", "thanks")
    await expect(dialog.get_by_text("Thanks, Embed Name!", exact=False)).to_be_visible()
    assert posted(watch, "/contact") == [{"name": "Embed Name", "email": "changed@example.com"}]
    row = await wait_for(stack, "SELECT * FROM contacts WHERE bot_id = $1", bot)
    assert (row["identifier"], row["phone_number"], row["verified"]) == ("changed@example.com", None, False)


async def test_optional_shows_the_form_with_a_skip_to_anonymous_chat(
    stack: Stack, host_page: HostPage, page: Page, watch: Watch,
) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, enabled=False, collect_information="optional")

    dialog = await open_widget(page, await host_page(bot, name="Prefilled"))

    await expect(dialog).to_have_attribute("data-state", "form")
    await expect(dialog.get_by_label("Name")).to_have_value("Prefilled")
    await expect(dialog.get_by_label("Email")).to_have_value("")
    skip = dialog.get_by_role("button", name="Chat without sharing")
    await expect(skip).to_be_visible()
    await skip.click()

    await expect(dialog).to_have_attribute("data-state", "anonymous")
    await expect(dialog.get_by_text("An agent will be with you shortly.")).to_be_visible()
    await expect(dialog.locator("form")).to_have_count(0)
    assert watch.posts_to("/contact") == []  # skipping sends nothing
    assert "external_workspace_id" not in posted(watch, "/v1/widget/sessions")[0]  # none in the embed: none sent


async def test_optional_form_can_still_be_sent(stack: Stack, host_page: HostPage, page: Page, watch: Watch) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, enabled=False, collect_information="optional")
    dialog = await open_widget(page, await host_page(bot))
    await dialog.get_by_label("Email").fill("opt@example.com")
    await dialog.get_by_role("button", name="Start chat").click()
    await expect(dialog).to_have_attribute("data-state", "thanks")
    assert posted(watch, "/contact") == [{"email": "opt@example.com"}]


async def test_off_goes_straight_to_anonymous_chat(
    stack: Stack, host_page: HostPage, page: Page, watch: Watch,
) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, enabled=False, collect_information="off")

    dialog = await open_widget(page, await host_page(bot, name="Never Shown", email="never@example.com"))

    await expect(dialog).to_have_attribute("data-state", "anonymous")
    await expect(dialog.get_by_text("An agent will be with you shortly.")).to_be_visible()
    await expect(dialog.locator("form, input")).to_have_count(0)
    assert watch.posts_to("/contact") == []


async def test_a_verified_visitor_never_sees_the_modes(
    stack: Stack, customer_api: FakeCustomerAPI, host_page: HostPage, page: Page, watch: Watch,
) -> None:
    auth_url = customer_api.endpoint(verified(id="v-1", name="Vera", external_workspace_id="ws-2"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=auth_url, collect_information="off",
                           request_fields=["external_workspace_id"])

    dialog = await open_widget(page, await host_page(bot, token="t", external_workspace_id="ws-2"))

    await expect(dialog).to_have_attribute("data-state", "verified")
    await expect(dialog.get_by_text("Hi Vera!")).to_be_visible()
    [call] = customer_api.received(auth_url)
    assert call.body == {"access_token": "t", "external_workspace_id": "ws-2"}


# -- the admin page ------------------------------------------------------------------------------


async def test_admin_collect_information_block_and_workspace_field_save(page: Page, stack: Stack) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)
    await open_admin(page, stack, bot)

    mode = page.get_by_test_id("ci-mode")
    await expect(mode).to_have_value("required")
    await expect(page.get_by_test_id("ci-help")).to_contain_text("Collect Information form")
    # Placed right after the domain whitelist block.
    assert await page.evaluate("""() => document.getElementById('ci-card').previousElementSibling
                                      .contains(document.getElementById('wl-enabled'))""")

    await page.get_by_label("When a visitor is not verified").select_option("off")
    await expect(page.get_by_test_id("ci-help")).to_contain_text("chats anonymously")
    await page.get_by_test_id("rf-external_workspace_id").check()
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.get_by_test_id("ca-status")).to_have_text("Saved")

    status, saved = await api(stack, "GET", f"/v1/bots/{bot}/custom-auth")
    assert status == 200
    assert (saved["collect_information"], saved["request_fields"]) == ("off", ["external_workspace_id"])

    await page.reload()
    await expect(mode).to_have_value("off")
    await expect(page.get_by_test_id("rf-external_workspace_id")).to_be_checked()
    await mode.select_option("optional")
    await expect(page.get_by_test_id("ci-help")).to_contain_text("skip")
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.get_by_test_id("ca-status")).to_have_text("Saved")
    assert (await api(stack, "GET", f"/v1/bots/{bot}/custom-auth"))[1]["collect_information"] == "optional"


async def test_admin_shows_the_business_workspace_of_contacts(
    page: Page, stack: Stack, customer_api: FakeCustomerAPI,
) -> None:
    url = customer_api.endpoint(verified(id="p-1", name="Two Places", external_workspace_id="ws-east"),
                                verified(id="p-1", name="Two Places", external_workspace_id="ws-west"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    await verify_once(stack, bot, access_token="t")
    await verify_once(stack, bot, access_token="t")

    await open_admin(page, stack, bot, tab="contacts")
    rows = page.get_by_test_id("contact-row")
    await expect(rows).to_have_count(2)
    await expect(rows.filter(has_text="workspace ws-east")).to_have_count(1)
    await expect(rows.filter(has_text="workspace ws-west")).to_have_count(1)
    await rows.filter(has_text="ws-west").click()
    field = page.get_by_test_id("contact-details").locator('tr[data-field="external_workspace_id"]')
    await expect(field).to_contain_text("ws-west")
