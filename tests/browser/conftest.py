"""Real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, against the test stack.

``host_page`` serves a business's page from another origin (its own port) under a strict
Content-Security-Policy that allows only the gateway's origin, and embeds the widget.
Set DOORMAN_SCREENSHOTS=1 to save screenshots into docs/screenshots/.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from typing import Any

from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright, expect

from tests.conftest import ADMIN_TOKEN, Stack, admin_headers

CHROMIUM = os.environ.get("DOORMAN_CHROMIUM", "/usr/bin/chromium")
# axe-core, pinned by tests/browser/axe/package-lock.json; installed on first use (`npm ci`).
AXE = Path(__file__).resolve().parent / "axe"
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`make test` does)")
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                  "--disable-gpu", "--no-first-run", "--disable-sync"],
        )
        yield browser
        await browser.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(viewport={"width": 1100, "height": 760})
    yield context
    await context.close()


@pytest.fixture
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    assert errors == [], f"JavaScript errors on the page: {errors}"


HostPage = Callable[..., Awaitable[str]]


@pytest.fixture(scope="session")
async def host_site(stack: Stack) -> AsyncIterator[dict[str, str]]:
    """A business's site on its own origin; pages are registered by path."""
    pages: dict[str, str] = {}

    async def serve(request: web.Request) -> web.Response:
        body = pages.get(request.path)
        if body is None:
            return web.Response(status=404)
        csp = (f"default-src 'none'; script-src {stack.gateway.url}; connect-src {stack.gateway.url}; "
               f"style-src {stack.gateway.url}; img-src {stack.gateway.url} data: https:; base-uri 'none'")
        return web.Response(text=body, content_type="text/html", headers={"Content-Security-Policy": csp})

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    pages["__origin__"] = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield pages
    await runner.cleanup()


@pytest.fixture
def host_page(stack: Stack, host_site: dict[str, str], request: pytest.FixtureRequest) -> HostPage:
    """``await host_page(bot_id, token="...", email="...")`` -> URL of a page embedding the widget."""

    async def make(bot_id: str, **data: str) -> str:
        attrs = " ".join(f'data-{k.replace("_", "-")}="{html.escape(v)}"' for k, v in data.items())
        path = f"/shop/{request.node.name.replace('[', '_').replace(']', '')}"
        host_site[path] = (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Shop</title>"
            f'<link rel="icon" href="{stack.gateway.url}/favicon.ico"></head>'
            "<body><h1>A shop</h1>"
            f'<script src="{stack.gateway.url}/widget.js" data-bot-id="{bot_id}" {attrs}></script>'
            "</body></html>"
        )
        return host_site["__origin__"] + path

    return make


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe.min.js, from the npm registry through package-lock.json (``npm ci`` when it is not installed yet)."""
    script = AXE / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        if shutil.which("npm") is None:
            pytest.fail("npm is missing: the accessibility checks install axe-core with it (Debian's nodejs and npm)")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=AXE, check=True, timeout=300)
    return script.read_text()


async def axe_violations(page: Page, axe_source: str) -> list[str]:
    """axe-core's WCAG 2.1 A and AA rules on the page as it is now, one line per violation (rule, its nodes).
    The script is evaluated through the DevTools protocol, so the page's own CSP stays as strict as it is."""
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(axe_source + "\n;undefined")
    violations = await page.evaluate(
        """tags => axe.run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]})
                 .then(r => r.violations.map(v => `${v.id} (${v.impact}): ${v.help} at ` +
                                                  v.nodes.map(n => n.target.join(" ")).slice(0, 5).join(", ")))""",
        WCAG_AA)
    return list(violations)


async def horizontal_overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than its viewport (0: no horizontal scroll)."""
    return int(await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"))


async def screenshot(page: Page, name: str) -> None:
    if os.environ.get("DOORMAN_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


# -- the admin page's tests (a module uses them with `pytestmark = pytest.mark.usefixtures("no_csp_violations")`)


@pytest.fixture
async def no_csp_violations(page: Page) -> AsyncIterator[None]:
    """The page must work under its strict CSP: no inline script or style is ever refused."""
    violations: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", on_console)
    yield
    assert violations == []


async def api(stack: Stack, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """The admin API with the operator's token."""
    async with stack.http.request(method, f"{stack.gateway.url}{path}", json=body, headers=admin_headers()) as resp:
        return resp.status, await resp.json()


async def open_admin(page: Page, stack: Stack, bot: str | None = None, tab: str | None = None) -> None:
    """Open /admin (on a bot and tab when given) and sign in with the admin token."""
    fragment = (f"#bot={bot}" + (f"&tab={tab}" if tab else "")) if bot else ""
    await page.goto(f"{stack.gateway.url}/admin{fragment}")
    await page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_test_id("bot-select")).to_be_visible()
    if bot:
        await expect(page.get_by_test_id("bot-id")).to_have_text(bot)
