"""The admin page's Discover action, in real Chromium against panva's real provider: beside the issuer, Discover shows
what the provider publishes (its endpoints, what each way of checking tokens means, the raw document folded away)
before anything is saved; an issuer spelt otherwise than the provider spells it is said plainly; while a verifier
reads the document the page says so, and when none answers it says that too."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Page, Route, expect

from tests.browser.conftest import axe_violations, open_admin
from tests.conftest import Stack, create_bot
from tests.openid_provider import OpenIDProvider, running_provider

pytestmark = pytest.mark.usefixtures("no_csp_violations")


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[OpenIDProvider]:
    async with running_provider() as running:
        yield running


async def choose_provider(page: Page, stack: Stack) -> str:
    """A new bot's settings on the page, with "Your OpenID Provider" chosen (nothing saved)."""
    bot = await create_bot(stack.http, stack.gateway.url)
    await open_admin(page, stack, bot)
    await page.get_by_test_id("ids-oidc").check()
    await expect(page.get_by_test_id("oidc-fields")).to_be_visible()
    return bot


async def test_the_admin_discovers_the_provider_before_saving(
        page: Page, stack: Stack, provider: OpenIDProvider, axe_source: str) -> None:
    published = await provider.discovery(stack.http)
    await choose_provider(page, stack)
    await page.get_by_label("Issuer", exact=True).fill(provider.issuer)

    await page.get_by_role("button", name="Discover").click()

    verdict = page.get_by_test_id("oidc-discover-verdict")
    await expect(verdict).to_have_class("verdict verdict-ok")
    await expect(page.get_by_test_id("oidc-discover-title")).to_have_text(
        "Found it: the provider's discovery document, for exactly this issuer.")
    for name in ("userinfo_endpoint", "introspection_endpoint", "jwks_uri", "end_session_endpoint"):
        await expect(page.get_by_test_id(f"found-{name}")).to_have_text(published[name])
    await expect(page.get_by_test_id("found-issuer")).to_have_text(f"{provider.issuer} (exactly the issuer you entered)")
    await expect(page.get_by_test_id("found-backchannel_logout_supported")).to_contain_text("supported")
    # What it means for the method chosen ("Check tokens with": introspection), then for the other.
    methods = page.get_by_test_id("oidc-discover-methods").get_by_role("listitem")
    await expect(methods.first).to_contain_text("✓ introspection (your choice): Doorman would introspect tokens at")
    await page.get_by_label("Check tokens with").select_option("userinfo")
    await expect(methods.first).to_contain_text(f"✓ userinfo (your choice): Doorman would check tokens at "
                                                f"{published['userinfo_endpoint']}")
    # The raw document, folded away.
    document = page.get_by_test_id("oidc-document")
    await expect(document).to_be_hidden()
    await page.get_by_text("The discovery document as published").click()
    await expect(document).to_contain_text(json.dumps(published["issuer"]))
    assert await axe_violations(page, axe_source) == []

    # A result is for the issuer it was read for: editing the issuer clears it.
    await page.get_by_label("Issuer", exact=True).fill(provider.issuer + "/")
    await expect(page.get_by_test_id("oidc-discovered")).to_be_hidden()
    await page.get_by_role("button", name="Discover").click()
    await expect(verdict).to_have_class("verdict verdict-fail")
    await expect(page.get_by_test_id("oidc-discover-title")).to_contain_text("trailing slash")
    await expect(page.get_by_test_id("found-issuer")).to_have_text(f"{provider.issuer} (not the issuer you entered)")


async def test_an_issuer_doorman_would_not_save_is_said_under_the_field(page: Page, stack: Stack) -> None:
    await choose_provider(page, stack)
    await page.get_by_label("Issuer", exact=True).fill("https://id.example.com/?tenant=1")
    await page.get_by_role("button", name="Discover").click()
    await expect(page.get_by_test_id("err-oidc-issuer")).to_have_text("An issuer has no query or fragment")
    await expect(page.get_by_label("Issuer", exact=True)).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_test_id("oidc-discovered")).to_be_hidden()


async def test_the_page_says_when_it_waits_and_when_no_verifier_answers(page: Page, stack: Stack) -> None:
    """The gateway's 503 (no verifier within its patience) is what the page is answered here, held back until the
    waiting message was seen (the 503 itself: tests/integration/test_oidc_discover.py)."""
    bot = await choose_provider(page, stack)
    release = asyncio.Event()

    async def held(route: Route) -> None:
        await release.wait()
        await route.fulfill(status=503, content_type="application/json", headers={"Retry-After": "5"}, body=json.dumps(
            {"error": {"code": "verifier_unavailable", "message": "no verifier answered within 10 s"}}))

    await page.route(f"**/v1/bots/{bot}/custom-auth/oidc/discover", held)
    await page.get_by_label("Issuer", exact=True).fill("https://id.example.com")
    await page.get_by_role("button", name="Discover").click()
    await expect(page.get_by_test_id("oidc-discover-status")).to_have_text(
        "Reading your provider's discovery document…")
    await expect(page.get_by_role("button", name="Discover")).to_be_disabled()
    release.set()
    await expect(page.get_by_test_id("oidc-discover-error")).to_contain_text(
        "Discover could not run: no verifier service answered.")
    await expect(page.get_by_test_id("oidc-discover-status")).to_have_text("")
    await expect(page.get_by_role("button", name="Discover")).to_be_enabled()
