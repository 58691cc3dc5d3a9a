"""The business's OpenID Provider and the widget, in real Chromium: a shop (its own origin, a strict CSP) signs the
visitor in at the provider (panva's oidc-provider, a real authorization-code login in the browser), hands the access
token to the widget, and the widget shows the visitor verified; the visitor logs out at the provider in another tab
and the widget shows them signed out (the provider's back-channel logout ended the session); and a short-lived token is
refreshed through ``getFreshToken`` before it expires, with no page reload.

The shop's backend is this module's small aiohttp site: ``/login`` starts the login, ``/callback`` exchanges the code
for the tokens (a confidential client, as a real site does) and serves the page embedding the widget.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp
import jwt
import pytest
from aiohttp import web
from playwright.async_api import BrowserContext, Page, expect

from tests.browser.test_logout import panel, sessions_of, until
from tests.conftest import Stack, admin_headers, create_bot
from tests.openid_provider import BOT_CLIENT, OpenIDProvider, running_provider

CHECK_SECONDS = 1  # how often the shop's widget re-reads a verified session (30 by default)
# The shop's script: Doorman.init with a fresh-token source (the shop's backend) and the check interval.
HOST_JS = f"""
window.Doorman.init({{
  sessionCheckSeconds: {CHECK_SECONDS},
  getFreshToken: function () {{
    return fetch("/fresh-token", {{cache: "no-store"}}).then(function (r) {{ return r.ok ? r.text() : null; }});
  }}
}});
"""


@dataclass
class Shop:
    """The business's site: its pages, and what its backend knows."""

    url: str = ""
    bot_id: str = ""
    provider: OpenIDProvider | None = None
    logins: dict[str, dict[str, str]] = field(default_factory=dict)  # state -> PKCE verifier
    fresh_tokens: list[Callable[[], str]] = field(default_factory=list)  # /fresh-token mints with these, in order
    fresh_asked: int = 0


def page_html(gateway: str, bot_id: str, token: str | None) -> str:
    data = f' data-token="{html.escape(token)}"' if token else ""
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Shop</title>"
            f'<link rel="icon" href="{gateway}/favicon.ico"></head><body><h1>A shop</h1>'
            f'<script src="{gateway}/widget.js" data-bot-id="{bot_id}"{data}></script>'
            '<script src="/host.js"></script></body></html>')


def shop_app(stack: Stack, shop: Shop) -> web.Application:
    gateway = stack.gateway.url
    csp = (f"default-src 'none'; script-src 'self' {gateway}; connect-src 'self' {gateway}; style-src {gateway}; "
           f"img-src {gateway} data:; base-uri 'none'")

    def page(body: str) -> web.Response:
        return web.Response(text=body, content_type="text/html", headers={"Content-Security-Policy": csp})

    async def login(request: web.Request) -> web.Response:
        assert shop.provider is not None
        meta = await shop.provider.discovery(stack.http)
        state, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(48)
        shop.logins[state] = {"verifier": verifier}
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        raise web.HTTPFound(meta["authorization_endpoint"] + "?" + urlencode({
            "client_id": BOT_CLIENT, "response_type": "code", "redirect_uri": f"{shop.url}/callback",
            "scope": "openid email profile", "state": state, "code_challenge": challenge,
            "code_challenge_method": "S256"}))

    async def callback(request: web.Request) -> web.Response:
        assert shop.provider is not None
        login = shop.logins.pop(request.query["state"])
        meta = await shop.provider.discovery(stack.http)
        basic = aiohttp.encode_basic_auth(BOT_CLIENT, shop.provider.secrets[BOT_CLIENT])
        async with stack.http.post(meta["token_endpoint"], headers={"Authorization": basic}, data={
                "grant_type": "authorization_code", "code": request.query["code"],
                "redirect_uri": f"{shop.url}/callback", "code_verifier": login["verifier"]}) as resp:
            tokens = await resp.json()
            assert resp.status == 200, tokens
        return page(page_html(gateway, shop.bot_id, tokens["access_token"]))

    async def signed_in(request: web.Request) -> web.Response:  # a page whose token the test gives
        return page(page_html(gateway, request.query["bot"], request.query.get("token")))

    async def fresh_token(request: web.Request) -> web.Response:
        shop.fresh_asked += 1
        if not shop.fresh_tokens:
            return web.Response(status=401, headers={"Cache-Control": "no-store"})
        return web.Response(text=shop.fresh_tokens.pop(0)(), headers={"Cache-Control": "no-store"})

    async def host_js(request: web.Request) -> web.Response:
        return web.Response(text=HOST_JS, content_type="text/javascript")

    app = web.Application()
    app.router.add_get("/login", login)
    app.router.add_get("/callback", callback)
    app.router.add_get("/page", signed_in)
    app.router.add_get("/fresh-token", fresh_token)
    app.router.add_get("/host.js", host_js)
    return app


@pytest.fixture(scope="module")
async def shop(stack: Stack) -> AsyncIterator[Shop]:
    """The shop's site, then the provider (which must know the shop's callback and the bot's back-channel URI)."""
    shop = Shop()
    runner = web.AppRunner(shop_app(stack, shop), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    shop.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    shop.bot_id = await create_bot(stack.http, stack.gateway.url)
    logout_uri = f"{stack.gateway.url}/v1/bots/{shop.bot_id}/oidc/backchannel-logout"
    try:
        async with running_provider(REDIRECT_URIS=json.dumps([f"{shop.url}/callback"]),
                                    BACKCHANNEL_LOGOUT_URIS=json.dumps({BOT_CLIENT: logout_uri})) as provider:
            shop.provider = provider
            async with stack.http.put(f"{stack.gateway.url}/v1/bots/{shop.bot_id}/custom-auth", headers=admin_headers(),
                                      json={"enabled": True, "identity_source": "oidc", "identify_method": "email",
                                            "oidc": {"issuer": provider.issuer, "method": "introspection",
                                                     "client_id": BOT_CLIENT,
                                                     "client_secret": provider.secrets[BOT_CLIENT]}}) as resp:
                assert resp.status == 200, await resp.text()
            yield shop
    finally:
        await runner.cleanup()


async def sign_in_at_the_provider(page: Page, shop: Shop, user: str) -> None:
    """The provider's own pages, in the browser: login, then consent; back at the shop with the widget."""
    await page.goto(f"{shop.url}/login")
    await page.locator("input[name=login]").fill(user)
    await page.locator("input[name=password]").fill("any password")
    await page.get_by_role("button", name="Sign-in").click()
    await page.get_by_role("button", name="Continue").click()
    await page.wait_for_url(f"{shop.url}/callback*")


async def test_signed_in_at_the_provider_then_logged_out_there_in_another_tab(
        stack: Stack, shop: Shop, context: BrowserContext, page: Page) -> None:
    await sign_in_at_the_provider(page, shop, "alice")
    await page.evaluate("window.shopMarker = 'still the same page'")  # a reload would lose it
    await page.get_by_role("button", name="Open chat").click()
    await expect(panel(page)).to_have_attribute("data-state", "verified")
    await expect(panel(page)).to_contain_text("Hi Alice Nguyen!")

    other_tab = await context.new_page()  # the same browser: the provider's session cookie is shared
    assert shop.provider is not None
    meta = await shop.provider.discovery(stack.http)
    await other_tab.goto(meta["end_session_endpoint"] + "?" + urlencode({"client_id": BOT_CLIENT}))
    await other_tab.get_by_role("button", name="Yes, sign me out").click()
    await other_tab.wait_for_load_state()

    await expect(panel(page)).to_have_attribute("data-state", "ended", timeout=CHECK_SECONDS * 1000 + 9000)
    await expect(panel(page)).not_to_contain_text("Alice")
    assert await page.evaluate("window.shopMarker") == "still the same page"
    rows = await sessions_of(stack, shop.bot_id)
    assert [(r["status"], r["ended_by"]) for r in rows][-1] == ("ended", "backchannel_logout"), rows


async def test_a_short_lived_token_is_refreshed_through_get_fresh_token_with_no_reload(
        stack: Stack, shop: Shop, page: Page) -> None:
    """A signed_token bot whose token lives 63 s: the widget asks the shop for a fresh token about a minute before
    it expires (after ~3 s), opens a new session with it, and stays verified, on the same page; when the shop has
    none to give (~6 s later), the widget ends the session."""
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, identity_source="signed_token",
                           identify_method="email")
    async with stack.http.post(f"{stack.gateway.url}/v1/bots/{bot}/custom-auth/token-secret",
                               headers=admin_headers()) as resp:
        secret = await resp.json()

    def token(name: str, lifetime: int) -> str:
        now = int(time.time())
        return jwt.encode({"sub": "carol", "aud": bot, "iat": now, "exp": now + lifetime, "email": "carol@example.com",
                           "name": name}, secret["secret"], algorithm="HS256", headers={"kid": secret["kid"]})

    shop.fresh_tokens, shop.fresh_asked = [lambda: token("Carol Refreshed", 66)], 0
    await page.goto(f"{shop.url}/page?" + urlencode({"bot": bot, "token": token("Carol First", 63)}))
    await page.evaluate("window.shopMarker = 'still the same page'")
    await page.get_by_role("button", name="Open chat").click()
    await expect(panel(page)).to_contain_text("Hi Carol First!")

    await expect(panel(page)).to_contain_text("Hi Carol Refreshed!", timeout=15000)

    assert await page.evaluate("window.shopMarker") == "still the same page"
    assert shop.fresh_asked == 1
    rows = await sessions_of(stack, bot)
    assert [(r["status"], r["ended_by"]) for r in rows] == [("ended", "visitor"), ("verified", None)], rows

    # The next time, the shop has no fresh token (the visitor's own session there ended): the widget ends its session.
    await expect(panel(page)).to_have_attribute("data-state", "ended", timeout=15000)
    assert shop.fresh_asked == 2

    async def both_ended() -> bool:
        return [r["status"] for r in await sessions_of(stack, bot)] == ["ended", "ended"]

    await until(both_ended)
