"""Contact Details in real Chromium: the impersonation warning with what the visitor typed, the identity
history (identity_changed, took_over_unverified), Export (a JSON download) and Erase contact (a confirm
dialog), against the running stack."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import open_admin, screenshot
from tests.conftest import Stack, admin_headers, create_bot, verify_once
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.waits import wait_until

pytestmark = pytest.mark.usefixtures("no_csp_violations")


async def contact_status(stack: Stack, bot: str, contact_id: str) -> int:
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot}/contacts/{contact_id}", headers=admin_headers()) as resp:
        return resp.status


async def wait_for_contact(stack: Stack, bot: str, **where: Any) -> dict[str, Any]:
    [(column, value)] = where.items()
    row = await wait_until(lambda: stack.pool.fetchrow(f"SELECT * FROM contacts WHERE bot_id = $1 AND {column} = $2",
                                                       UUID(bot), value), what=f"a contact with {where}")
    return dict(row)


async def test_contact_details_warn_show_the_history_export_and_erase(
        page: Page, stack: Stack, customer_api: FakeCustomerAPI) -> None:
    owners = {"token-a": "owner-A", "token-b": "owner-B"}
    url = customer_api.responder(
        lambda body: verified(id=owners[body["access_token"]], email="sam@example.com", name="Sam Verified")
        if body["access_token"] in owners else Answer(status=401))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, identify_method="email")
    # A visitor the business does not know types Sam's email in the form; then Sam is verified, twice,
    # with two different ids of the business.
    rejected = await verify_once(stack, bot, access_token="stranger")
    async with stack.http.post(f"{stack.gateway.url}/v1/widget/sessions/{rejected['session_id']}/contact",
                               json={"name": "Not Really Sam", "email": "sam@example.com"}) as resp:
        assert resp.status == 202
    await wait_for_contact(stack, bot, identifier="sam@example.com")
    for token in owners:
        assert (await verify_once(stack, bot, access_token=token))["status"] == "verified"
    contact = await wait_for_contact(stack, bot, external_id="owner-B")
    contact_id = str(contact["contact_id"])

    await open_admin(page, stack, bot, "contacts")
    await page.get_by_test_id("contact-row").first.click()
    await expect(page.get_by_test_id("contact-name")).to_have_text("Sam Verified")

    warning = page.get_by_test_id("contact-takeover")
    await expect(warning).to_be_visible()
    await expect(warning).to_contain_text("Possible impersonation")
    await expect(page.get_by_test_id("contact-typed")).to_contain_text("name “Not Really Sam”")
    entries = page.get_by_test_id("history-entry")
    await expect(entries).to_have_count(2)
    await expect(entries.first).to_have_attribute("data-kind", "identity_changed")  # newest first
    await expect(entries.first).to_contain_text("owner-A")
    await expect(entries.first).to_contain_text("owner-B")
    await expect(entries.nth(1)).to_have_attribute("data-kind", "took_over_unverified")
    await expect(page.get_by_test_id("contact-history-empty")).to_be_hidden()
    height = await page.evaluate("document.documentElement.scrollHeight")
    await page.set_viewport_size({"width": 1100, "height": max(600, min(int(height), 2400))})
    await screenshot(page, "admin-contact-lifecycle")
    await page.set_viewport_size({"width": 1100, "height": 760})

    # Export: a JSON file of everything stored about the contact.
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Export (JSON)").click()
    download = await download_info.value
    assert download.suggested_filename == f"contact-{contact_id}.json"
    exported = json.loads(open(await download.path(), encoding="utf-8").read())
    assert exported["contact"]["contact_id"] == contact_id
    assert {s["link"] for s in exported["sessions"]} == {"verified", "collected"} and len(exported["sessions"]) == 3

    # Erase: cancelled first, then confirmed.
    dialog = page.get_by_test_id("erase-dialog")
    await page.get_by_role("button", name="Erase contact…").click()
    await expect(dialog).to_be_visible()
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_be_hidden()
    assert await contact_status(stack, bot, contact_id) == 200

    await page.get_by_role("button", name="Erase contact…").click()
    await dialog.get_by_role("button", name="Erase contact").click()
    await expect(page.get_by_test_id("contact-state")).to_contain_text("Contact erased")
    await expect(page.locator("#contact-card")).to_be_hidden()
    assert await contact_status(stack, bot, contact_id) == 404
    await page.get_by_role("button", name="All contacts").click()
    await expect(page.get_by_test_id("contact-row")).to_have_count(0)


async def test_a_contact_without_changes_shows_no_warning(page: Page, stack: Stack, customer_api: FakeCustomerAPI) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True,
                           auth_url=customer_api.endpoint(verified(id="plain-1", name="Plain Pat")))
    assert (await verify_once(stack, bot, access_token="t"))["status"] == "verified"

    await open_admin(page, stack, bot, "contacts")
    await page.get_by_test_id("contact-row").first.click()

    await expect(page.get_by_test_id("contact-name")).to_have_text("Plain Pat")
    await expect(page.get_by_test_id("contact-history-empty")).to_be_visible()
    await expect(page.get_by_test_id("contact-takeover")).to_be_hidden()
    await expect(page.get_by_test_id("history-entry")).to_have_count(0)
    await expect(page.get_by_role("button", name="Erase contact…")).to_be_enabled()
