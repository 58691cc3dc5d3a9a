"""The embeddable widget in real Chromium, on a business's page (another origin, strict CSP)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest
from playwright.async_api import ConsoleMessage, Locator, Page, Request, Route, expect

from services.gateway.keys import HUB
from shared.widget_view import VISITOR_MESSAGES
from tests.browser.conftest import HostPage, screenshot
from tests.conftest import Stack, create_bot
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.waits import wait_until

TOKEN = "tok-" + uuid.uuid4().hex + "-secret"


@dataclass
class Watch:
    """What the page asked for and complained about."""

    requests: list[Request] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def urls(self) -> list[str]:
        return [r.url for r in self.requests]

    def posts_to(self, suffix: str) -> list[Request]:
        """POSTs whose path (query left out) ends with ``suffix``."""
        return [r for r in self.requests if r.method == "POST" and urlsplit(r.url).path.endswith(suffix)]

    def streams(self) -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and urlsplit(r.url).path.endswith("/events")]

    def polls(self) -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and "/v1/widget/sessions/" in r.url
                and not urlsplit(r.url).path.endswith("/events")]


@pytest.fixture
async def watch(page: Page) -> AsyncIterator[Watch]:
    """Records requests and console errors; no test may see a CSP violation."""
    seen = Watch()
    page.on("request", lambda request: seen.requests.append(request))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.console_errors.append(message.text)

    page.on("console", on_console)
    yield seen
    assert not [m for m in seen.console_errors if "Content Security Policy" in m], seen.console_errors


OPENS = re.compile(r"/v1/widget/sessions(\?[^#]*)?$")  # the open, whatever its query


async def answer_open_later(page: Page, wait: float | None) -> None:
    """Rewrite the widget's ``POST /v1/widget/sessions?wait=3``: to ``?wait=<wait>`` (a bound the
    outcome misses, so the real gateway answers 202), or with no ``wait`` at all (None)."""

    async def rewrite(route: Route) -> None:
        if route.request.method != "POST":
            await route.fallback()
            return
        parts = urlsplit(route.request.url)
        assert parse_qs(parts.query) == {"wait": ["3"]}, route.request.url
        query = "" if wait is None else f"wait={wait}"
        await route.continue_(url=urlunsplit(parts._replace(query=query)))

    await page.route(OPENS, rewrite)


def slow(answer: Answer, delay: float = 0.5) -> Answer:
    """``answer`` given after ``delay`` seconds (below the test stack's 1 s auth timeout)."""
    return Answer(status=answer.status, json=answer.json, delay=delay)


async def status_of(request: Request) -> int:
    response = await request.response()
    assert response is not None, request.url
    return response.status


def panel(page: Page) -> Locator:
    return page.get_by_role("dialog")


async def open_widget(page: Page, url: str) -> Locator:
    await page.goto(url)
    await page.get_by_role("button", name="Open chat").click()
    dialog = panel(page)
    await expect(dialog).to_be_visible()
    return dialog


async def settle(dialog: Locator) -> None:
    """Let the panel's finite CSS animations and transitions finish (before a screenshot)."""
    await dialog.evaluate("""el => Promise.all(el.getAnimations({subtree: true})
        .filter(a => a.effect.getTiming().iterations !== Infinity).map(a => a.finished.catch(() => null)))""")


async def wait_for(stack: Stack, query: str, *args: Any, timeout: float = 10) -> Any:
    """Poll the database (bounded) until ``query`` returns a row."""
    return await wait_until(lambda: stack.pool.fetchrow(query, *args), timeout, f"a row for {query} {args}")


async def test_verified_visitor_is_greeted_and_the_token_stays_secret(
    stack: Stack, customer_api: FakeCustomerAPI, host_page: HostPage, page: Page, watch: Watch,
) -> None:
    auth_url = customer_api.endpoint(verified(id="42", name="Alice Nguyen", email="alice@example.com"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=auth_url, request_fields=["email"])

    dialog = await open_widget(page, await host_page(bot, token=TOKEN, email="alice@example.com", lang="en"))

    await expect(dialog).to_have_attribute("data-state", "verified")
    await expect(dialog.get_by_text("Hi Alice Nguyen!")).to_be_visible()
    assert TOKEN not in await page.content()
    assert await page.locator("script[data-bot-id]").get_attribute("data-token") is None
    assert not [u for u in watch.urls() if TOKEN in u or "alice" in u]
    [sent] = watch.posts_to("/v1/widget/sessions")
    assert json.loads(sent.post_data or "{}") == {"bot_id": bot, "access_token": TOKEN,
                                                  "email": "alice@example.com", "lang": "en"}
    # One request: the open waits (bounded) for the outcome and answers it; no stream, no polling.
    assert urlsplit(sent.url).query == "wait=3"
    assert await status_of(sent) == 200
    assert watch.streams() == [] and watch.polls() == []
    [received] = customer_api.received(auth_url)
    assert received.body == {"access_token": TOKEN, "email": "alice@example.com"}
    assert watch.console_errors == []
    await settle(dialog)
    await screenshot(page, "widget-verified")


BUSINESS_NOTE = "<b>secret-internal-note</b>"  # the business's own words: for the admin activity log only
FALLBACKS = {
    "case1-ca-off": ({}, True, "ca_disabled"),
    "case2-domain-refused": ({"domain_whitelist": {"enabled": True, "source": "manual", "domains": ["example.com"]}},
                             True, "domain_not_allowed"),
    "case3-rejected": ({"answer": Answer(json={"status": False, "message": BUSINESS_NOTE})}, True, "auth_rejected"),
    "case3-no-token": ({}, False, "missing_token"),
}


@pytest.mark.parametrize("case", list(FALLBACKS))
async def test_every_fallback_shows_the_form(
    case: str, stack: Stack, customer_api: FakeCustomerAPI, host_page: HostPage, page: Page, watch: Watch,
) -> None:
    settings, with_token, reason = FALLBACKS[case]
    if case == "case1-ca-off":
        bot = await create_bot(stack.http, stack.gateway.url)
    else:
        auth_url = customer_api.endpoint(settings.get("answer", verified(id="1", name="Never")))
        extra = {k: v for k, v in settings.items() if k != "answer"}
        bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=auth_url, **extra)

    dialog = await open_widget(page, await host_page(bot, **({"token": TOKEN} if with_token else {})))

    await expect(dialog).to_have_attribute("data-state", "form")
    for label in ("Name", "Email", "Phone"):
        await expect(dialog.get_by_label(label)).to_be_visible()
    await expect(dialog.get_by_text("Include your country code")).to_be_visible()
    assert await stack.pool.fetchval("SELECT reason FROM widget_sessions WHERE bot_id = $1", uuid.UUID(bot)) == reason
    # A visitor who came signed in is told why they were not recognised, in the words chosen for the reason.
    if with_token:
        await expect(dialog.locator(".dm-reason")).to_have_text(VISITOR_MESSAGES[reason])
    else:
        await expect(dialog.locator(".dm-reason")).to_have_count(0)
    assert "secret-internal-note" not in await page.content() + await dialog.inner_text()
    if case == "case1-ca-off":
        await settle(dialog)
        await screenshot(page, "widget-form")


async def test_form_validates_then_makes_a_non_verified_contact(
    stack: Stack, customer_api: FakeCustomerAPI, host_page: HostPage, page: Page, watch: Watch,
) -> None:
    auth_url = customer_api.endpoint(Answer(status=401, json={"status": False}))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=auth_url)
    dialog = await open_widget(page, await host_page(bot, token=TOKEN))
    await expect(dialog).to_have_attribute("data-state", "form")
    name, email, phone = dialog.get_by_label("Name"), dialog.get_by_label("Email"), dialog.get_by_label("Phone")
    submit = dialog.get_by_role("button", name="Start chat")

    # Client-side: a bad email is refused next to its field, and nothing is sent.
    await name.fill("Bob Tran")
    await email.fill("bob@nowhere")
    await submit.click()
    await expect(email).to_have_attribute("aria-invalid", "true")
    await expect(dialog.get_by_text("Enter an email address like name@example.com.")).to_be_visible()
    await settle(dialog)
    await screenshot(page, "widget-form-error")
    assert watch.posts_to("/contact") == []

    # Server-side: a phone without a country code passes the shape check; the 422 lands on the phone field.
    await email.fill("Bob@Example.com")
    await expect(email).not_to_have_attribute("aria-invalid", "true")
    await phone.fill("0912 345 678")
    async with page.expect_response("**/contact") as refused:
        await submit.click()
    assert (await refused.value).status == 422
    await expect(phone).to_have_attribute("aria-invalid", "true")
    await expect(dialog.get_by_text("Enter a phone number with its country code")).to_be_visible()
    await expect(dialog).to_have_attribute("data-state", "form")
    assert await stack.pool.fetchval("SELECT count(*) FROM contacts WHERE bot_id = $1", uuid.UUID(bot)) == 0

    await phone.fill("+84 912 345 678")
    await submit.click()
    await expect(dialog).to_have_attribute("data-state", "thanks")
    await expect(dialog.get_by_text("Thanks, Bob Tran! An agent will be with you shortly.")).to_be_visible()
    contact = await wait_for(stack, "SELECT * FROM contacts WHERE bot_id = $1", uuid.UUID(bot))
    assert (contact["verified"], contact["name"], contact["email"], contact["phone_number"]) == (
        False, "Bob Tran", "bob@example.com", "+84912345678")


async def test_outcome_slower_than_the_wait_comes_on_the_event_stream(
    stack: Stack, customer_api: FakeCustomerAPI, host_page: HostPage, page: Page, watch: Watch,
) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True,
                           auth_url=customer_api.endpoint(slow(verified(id="6", name="Stella Stream"))))
    await answer_open_later(page, 0.05)  # the business takes 0.5 s: the open answers 202

    dialog = await open_widget(page, await host_page(bot, token=TOKEN))

    await expect(dialog.get_by_text("Hi Stella Stream!")).to_be_visible()
    await expect(dialog).to_have_attribute("data-state", "verified")
    [sent] = watch.posts_to("/v1/widget/sessions")
    assert await status_of(sent) == 202
    assert len(watch.streams()) == 1 and watch.polls() == []


@pytest.mark.parametrize("answered", ["at-once", "on-the-stream"])
async def test_busy_gateway_shows_the_form_at_once_and_never_calls_the_business(
    answered: str, stack: Stack, customer_api: FakeCustomerAPI, host_page: HostPage, page: Page, watch: Watch,
) -> None:
    """Admission control refuses every open: the refusal is the outcome, in the open's own answer
    (one request, ``?wait``) or, for a gateway answering 202, at once on the event stream."""
    auth_url = customer_api.endpoint(verified(id="99", name="Never Called"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=auth_url)
    if answered == "on-the-stream":
        await answer_open_later(page, None)
    admission = stack.gateway.app[HUB].admission
    old = admission.max_in_flight
    admission.max_in_flight = 0
    try:
        dialog = await open_widget(page, await host_page(bot, token=TOKEN))

        await expect(dialog).to_have_attribute("data-state", "form", timeout=2000)
        await expect(dialog.get_by_label("Name")).to_be_visible(timeout=2000)
        [sent] = watch.posts_to("/v1/widget/sessions")
        if answered == "at-once":
            assert await status_of(sent) == 200
            assert watch.streams() == [] and watch.polls() == []
        else:
            assert await status_of(sent) == 202
            assert len(watch.streams()) == 1
        row = await stack.pool.fetchrow("SELECT status, reason FROM widget_sessions WHERE bot_id = $1", uuid.UUID(bot))
        assert (row["status"], row["reason"]) == ("fallback", "busy")

        await dialog.get_by_label("Name").fill("Busy Bea")
        await dialog.get_by_label("Email").fill("bea@example.com")
        await dialog.get_by_role("button", name="Start chat").click()
        await expect(dialog).to_have_attribute("data-state", "thanks")
        await expect(dialog.get_by_text("Thanks, Busy Bea! An agent will be with you shortly.")).to_be_visible()
        contact = await wait_for(stack, "SELECT * FROM contacts WHERE bot_id = $1", uuid.UUID(bot))
        assert (contact["verified"], contact["name"], contact["email"]) == (False, "Busy Bea", "bea@example.com")
        assert customer_api.received(auth_url) == []  # the Authentication URL was never called
    finally:
        admission.max_in_flight = old


async def test_blocked_event_stream_falls_back_to_polling(
    stack: Stack, customer_api: FakeCustomerAPI, host_page: HostPage, page: Page, watch: Watch,
) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True,
                           auth_url=customer_api.endpoint(slow(verified(id="7", name="Polly"))))
    await answer_open_later(page, 0.05)  # the business takes 0.5 s: the open answers 202
    await page.route("**/events", lambda route: route.abort())

    dialog = await open_widget(page, await host_page(bot, token=TOKEN))

    await expect(dialog).to_have_attribute("data-state", "verified")
    await expect(dialog.get_by_text("Hi Polly!")).to_be_visible()
    [sent] = watch.posts_to("/v1/widget/sessions")
    assert await status_of(sent) == 202
    assert watch.streams() and watch.polls()


async def test_waiting_state_shows_while_the_business_is_slow(
    stack: Stack, customer_api: FakeCustomerAPI, host_page: HostPage, page: Page, watch: Watch,
) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True,
                           auth_url=customer_api.endpoint(slow(verified(id="8", name="Slow Sam"), 0.6)))

    dialog = await open_widget(page, await host_page(bot, token=TOKEN))

    await expect(dialog).to_have_attribute("data-state", "waiting")
    await expect(dialog.get_by_text("Checking who you are…")).to_be_visible()
    await expect(dialog.get_by_text("Hi Slow Sam!")).to_be_visible()
    await expect(dialog.get_by_text("Checking who you are…")).to_have_count(0)


async def test_unknown_bot_says_the_chat_is_unavailable(host_page: HostPage, page: Page, watch: Watch) -> None:
    dialog = await open_widget(page, await host_page(str(uuid.uuid4()), token=TOKEN))

    await expect(dialog).to_have_attribute("data-state", "error")
    await expect(dialog.get_by_text("This chat isn't available right now.")).to_be_visible()
    await expect(dialog.get_by_role("button", name="Try again")).to_have_count(0)


async def test_network_failure_offers_try_again(
    stack: Stack, customer_api: FakeCustomerAPI, host_page: HostPage, page: Page, watch: Watch,
) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True,
                           auth_url=customer_api.endpoint(verified(id="9", name="Retry Rita")))

    failed: list[str] = []

    async def down_once(route: Route) -> None:
        if route.request.method == "POST" and not failed:
            failed.append(route.request.url)
            await route.abort()
        else:
            await route.fallback()

    await page.route(OPENS, down_once)
    dialog = await open_widget(page, await host_page(bot, token=TOKEN))

    await expect(dialog).to_have_attribute("data-state", "error")
    await expect(dialog.get_by_text("We couldn't connect.")).to_be_visible()
    await dialog.get_by_role("button", name="Try again").click()
    await expect(dialog.get_by_text("Hi Retry Rita!")).to_be_visible()
    assert len(failed) == 1 and len(watch.posts_to("/v1/widget/sessions")) == 2


async def test_phone_sized_screen_gets_a_full_screen_panel(host_page: HostPage, page: Page, watch: Watch) -> None:
    await page.set_viewport_size({"width": 390, "height": 740})
    dialog = await open_widget(page, await host_page(str(uuid.uuid4())))
    await expect(dialog).to_have_attribute("data-state", "error")
    await settle(dialog)

    box = await dialog.bounding_box()
    assert box is not None and (box["x"], box["width"], box["height"]) == (0, 390, 740)
    await dialog.get_by_role("button", name="Close chat").click()
    await expect(dialog).to_be_hidden()
    await expect(page.get_by_role("button", name="Open chat")).to_be_focused()
