"""The admin page's signed-token settings and the Testing panel's token view, in real Chromium."""

from __future__ import annotations

import re
import time

import jwt
import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import api, open_admin, screenshot
from tests.conftest import Stack, create_bot, verify_once

pytestmark = pytest.mark.usefixtures("no_csp_violations")


async def test_identity_source_settings_save_and_the_token_secret_shows_once(page: Page, stack: Stack) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)
    await open_admin(page, stack, bot)

    # The block sits right after the enabled switch; its fields show only for signed tokens.
    order = await page.evaluate("""() => {
        const all = Array.from(document.querySelectorAll('#settings-form *'));
        return [all.indexOf(document.getElementById('ca-enabled')), all.indexOf(document.getElementById('ids-block')),
                all.indexOf(document.getElementById('ca-auth-url'))];
    }""")
    assert order[0] < order[1] < order[2]
    await expect(page.get_by_test_id("ids-auth-url")).to_be_checked()
    await expect(page.get_by_test_id("st-fields")).to_be_hidden()

    # Each identity source shows only what it uses.
    call_only = ["ca-auth-url", "ca-header-token", "ca-request-fields", "grace-card", "ca-intro-auth_url"]
    for test_id in call_only:
        await expect(page.get_by_test_id(test_id)).to_be_visible()
    await expect(page.get_by_test_id("ca-intro-signed_token")).to_be_hidden()

    await page.get_by_label("Enable Custom Authentication").check()
    await page.get_by_test_id("ids-signed-token").check()
    await expect(page.get_by_test_id("st-fields")).to_be_visible()
    for test_id in call_only:
        await expect(page.get_by_test_id(test_id)).to_be_hidden()
    await expect(page.get_by_test_id("ca-intro-signed_token")).to_be_visible()
    assert "calls your Authentication URL" not in await page.get_by_test_id("settings-form").inner_text()
    # A whitelist read from the business's API is called with the header token: then it shows.
    await page.get_by_label("Enable the domain whitelist").check()
    await page.get_by_label("Read from your API").check()
    await expect(page.get_by_test_id("ca-header-token")).to_be_visible()
    await page.get_by_label("Typed here").check()
    await expect(page.get_by_test_id("ca-header-token")).to_be_hidden()
    await page.get_by_label("Enable the domain whitelist").uncheck()
    await expect(page.get_by_test_id("st-secret-state")).to_have_text("none yet")
    await expect(page.get_by_test_id("st-jwks-url")).to_be_hidden()  # HS256: no JWKS

    # The token secret: shown once, then gone from the page after a reload.
    await page.get_by_role("button", name="New token secret").click()
    shown = page.get_by_test_id("st-secret-shown")
    await expect(shown).to_be_visible()
    await expect(shown).to_contain_text("shown this once")
    kid = await page.get_by_test_id("st-secret-kid").text_content()
    secret = await page.get_by_test_id("st-secret-value").text_content()
    assert kid and secret and secret.startswith("dmts_")
    await expect(page.get_by_test_id("st-secret-state")).to_have_text(f"kid {kid}")

    # RS256 with a JWKS, an issuer, a shorter lifetime and renamed claims.
    await page.get_by_label("Algorithm").select_option("RS256")
    await expect(page.get_by_test_id("st-jwks-url")).to_be_visible()
    await expect(page.get_by_role("button", name="New token secret")).to_be_hidden()
    await page.get_by_role("button", name="Save", exact=True).click()  # RS256 needs a JWKS URL: said next to it
    await expect(page.get_by_test_id("err-st-jwks_url")).to_contain_text("jwks_url or issuer is required for RS256")
    await page.get_by_label("JWKS URL").fill("https://shop.example.com/.well-known/jwks.json")
    await page.get_by_label("Issuer (optional)").fill("https://shop.example.com")
    await page.get_by_label("Maximum lifetime (seconds)").fill("600")
    await page.get_by_test_id("st-claim-id").fill("uid")
    await page.get_by_test_id("st-claim-email").fill("mail")
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.get_by_test_id("ca-status")).to_have_text("Saved")

    status, saved = await api(stack, "GET", f"/v1/bots/{bot}/custom-auth")
    assert status == 200 and saved["enabled"] is True and saved["identity_source"] == "signed_token"
    assert saved["signed_token"] == {
        "algorithm": "RS256", "jwks_url": "https://shop.example.com/.well-known/jwks.json",
        "issuer": "https://shop.example.com", "max_lifetime_seconds": 600, "secret_kid": kid,
        "claims": {"id": "uid", "email": "mail", "name": "name", "phone_number": "phone_number", "metadata": "metadata"},
    }
    await screenshot(page, "admin-signed-token-settings")

    await page.reload()
    await expect(page.get_by_test_id("ids-signed-token")).to_be_checked()
    await expect(page.get_by_label("Algorithm")).to_have_value("RS256")
    await expect(page.get_by_test_id("st-claim-id")).to_have_value("uid")
    assert secret not in await page.content()

    # Back to HS256: a second secret replaces the first (after a confirmation); both verify for a day.
    await page.get_by_label("Algorithm").select_option("HS256")
    await page.get_by_role("button", name="New token secret").click()
    confirm = page.get_by_test_id("confirm-dialog")
    await expect(confirm).to_be_visible()
    await expect(confirm).to_contain_text("24 hours")
    await page.get_by_test_id("confirm-cancel").click()  # cancelled: nothing made
    await expect(confirm).to_be_hidden()
    await expect(page.get_by_test_id("st-secret-state")).to_have_text(f"kid {kid}")
    await page.get_by_role("button", name="New token secret").click()
    await page.get_by_role("button", name="Make a new secret").click()
    await expect(page.get_by_test_id("st-secret-state")).not_to_have_text(f"kid {kid}")
    second = await page.get_by_test_id("st-secret-kid").text_content()
    assert second

    # The previous secret (still verifying for a day) is revoked at once, after a confirmation.
    await page.get_by_role("button", name=f"Revoke previous secret (kid {kid})").click()
    await expect(confirm).to_contain_text("cannot be undone")
    await page.get_by_role("button", name="Revoke secret").click()
    await expect(page.get_by_test_id("st-secret-status")).to_have_text(f"Revoked: tokens naming kid {kid} are refused.")
    await expect(page.get_by_test_id("st-revoke-previous")).to_be_hidden()
    status, _ = await api(stack, "DELETE", f"/v1/bots/{bot}/custom-auth/token-secret/{kid}")
    assert status == 404  # gone already
    # And the current one.
    await page.get_by_role("button", name="Revoke current secret").click()
    await page.get_by_role("button", name="Revoke secret").click()
    await expect(page.get_by_test_id("st-secret-state")).to_have_text("none yet")
    status, saved = await api(stack, "GET", f"/v1/bots/{bot}/custom-auth")
    assert saved["signed_token"]["secret_kid"] is None
    # Switching back to the identity call keeps the token settings stored.
    await page.get_by_test_id("ids-auth-url").check()
    await expect(page.get_by_test_id("st-fields")).to_be_hidden()
    await page.get_by_label("Authentication URL").fill("https://shop.example.com/doorman/auth")
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.get_by_test_id("ca-status")).to_have_text("Saved")
    status, saved = await api(stack, "GET", f"/v1/bots/{bot}/custom-auth")
    assert saved["identity_source"] == "auth_url" and saved["signed_token"]["issuer"] == "https://shop.example.com"


async def test_testing_panel_shows_a_pasted_jwt(page: Page, stack: Stack) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, identity_source="signed_token")
    status, made = await api(stack, "POST", f"/v1/bots/{bot}/custom-auth/token-secret")
    assert status == 201
    now = int(time.time())
    expired = jwt.encode({"sub": "panel-1", "aud": bot, "iat": now - 4000, "exp": now - 3600, "name": "Pat Panel"},
                         made["secret"], algorithm="HS256", headers={"kid": made["kid"]})

    await open_admin(page, stack, bot, tab="testing")
    await page.get_by_label("Access token").fill(expired)
    await page.get_by_role("button", name="Send test request").click()
    verdict = page.get_by_test_id("test-verdict")
    await expect(verdict).to_have_class(re.compile("verdict-fail"))
    await expect(page.get_by_test_id("test-verdict-title")).to_have_text("The signed token failed a check: expired")
    await expect(page.get_by_test_id("test-verdict-detail")).to_contain_text("expired: ")
    await expect(page.get_by_test_id("test-identity-card")).to_be_hidden()
    await page.get_by_text("The token as read").click()
    await expect(page.get_by_test_id("test-token-check")).to_have_text("Failed check: expired")
    await expect(page.get_by_test_id("test-token-header")).to_contain_text(f'"kid": "{made["kid"]}"')
    await expect(page.get_by_test_id("test-token-claims")).to_contain_text('"name": "Pat Panel"')
    await expect(page.get_by_test_id("test-request")).to_be_hidden()  # no call is made
    await expect(page.get_by_test_id("test-visitor")).to_contain_text("would not be verified: expired")
    # Signed-token mode: no widget fields to send, no call to speak of.
    await expect(page.get_by_test_id("test-user-id")).to_be_hidden()
    assert "Authentication URL" not in await page.get_by_test_id("panel-testing").inner_text()

    fresh = jwt.encode({"sub": "panel-1", "aud": bot, "iat": now, "exp": now + 300, "name": "Pat Panel"},
                       made["secret"], algorithm="HS256", headers={"kid": made["kid"]})
    await page.get_by_label("Access token").fill(fresh)
    await page.get_by_role("button", name="Send test request").click()
    await expect(verdict).to_have_class(re.compile("verdict-ok"))
    await expect(page.get_by_test_id("test-verdict-title")).to_have_text("Verified: would create contact Pat Panel")
    await expect(page.get_by_test_id("test-token-check")).to_have_text("Every check passed (HS256).")
    await expect(page.get_by_test_id("test-identity")).to_contain_text('"identifier": "panel-1"')
    await screenshot(page, "admin-testing-signed-token")

    # Nothing was written: no contact exists, and a real open still makes one.
    status, contacts = await api(stack, "GET", f"/v1/bots/{bot}/contacts")
    assert contacts["contacts"] == []
    assert (await verify_once(stack, bot, access_token=fresh))["status"] == "verified"

    await page.get_by_label("Access token").fill("not-a-jwt")
    await page.get_by_role("button", name="Send test request").click()
    await expect(page.get_by_test_id("test-token-check")).to_have_text("Failed check: malformed_token")
    await expect(page.get_by_test_id("test-token-header")).to_have_text("(the header cannot be read)")
