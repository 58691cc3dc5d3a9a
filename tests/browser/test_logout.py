"""Logout and re-identification on a single-page site, in real Chromium (another origin, strict CSP).

One visitor is logged in by the page (the embed's data-token, then ``Doorman.identify`` as a
single-page app would after its own login), logs out (``Doorman.logout``: nothing of them on screen, in
the DOM or in storage, and their session ``ended`` on the server), and another visitor logs in on the
same page: each is verified as themselves, by the business's answer for their own token.
"""

from __future__ import annotations

import json
from typing import Any

from playwright.async_api import Locator, Page, Request, expect

from tests.browser.conftest import HostPage
from tests.conftest import Stack, create_bot
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.waits import wait_until

PEOPLE = {
    "tok-alice-1": {"id": "alice", "name": "Alice Adams", "email": "alice@example.com", "phone_number": "+84912000001"},
    "tok-alice-2": {"id": "alice", "name": "Alice Adams", "email": "alice@example.com"},  # her refreshed token
    "tok-bob-1": {"id": "bob", "name": "Bob Brown", "email": "bob@example.com"},
}
ALICE_TRACES = ("Alice", "alice", "tok-alice", "912000001")

# Everything the page holds: the document, the widget's shadow tree, its inputs' values, and both storages.
PAGE_CONTENTS = """() => {
  const host = document.querySelector('[data-doorman-widget]');
  const root = host ? host.shadowRoot : null;
  const inputs = root ? Array.from(root.querySelectorAll('input')).map(i => i.value) : [];
  const stored = s => Array.from({length: s.length}, (_, i) => s.key(i) + '=' + s.getItem(s.key(i)));
  return [document.documentElement.outerHTML, root ? root.innerHTML : '', inputs.join(' '),
          stored(sessionStorage).join(' '), stored(localStorage).join(' ')].join('\\n');
}"""


def business(body: Any) -> Answer:
    person = PEOPLE.get(body.get("access_token") if isinstance(body, dict) else None)
    return verified(**person) if person else Answer(status=401, json={"status": False, "message": "who?"})


def panel(page: Page) -> Locator:
    return page.get_by_role("dialog")


async def sessions_of(stack: Stack, bot_id: str) -> list[dict[str, Any]]:
    rows = await stack.pool.fetch(
        """SELECT s.session_id, s.status, s.ended_by, c.identifier FROM widget_sessions s
           LEFT JOIN contacts c USING (contact_id) WHERE s.bot_id = $1 ORDER BY s.created_at""", bot_id)
    return [dict(r) for r in rows]


async def until(check: Any, timeout: float = 10) -> None:
    await wait_until(check, timeout, getattr(check, "__name__", "the condition"))


async def test_log_in_log_out_and_log_in_as_another_on_the_same_page(
    stack: Stack, customer_api: FakeCustomerAPI, host_page: HostPage, page: Page,
) -> None:
    auth_url = customer_api.responder(business)
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=auth_url,
                              request_fields=["email"])
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))

    # Alice, logged in when the page was rendered (the embed names her).
    await page.goto(await host_page(bot_id, token="tok-alice-1", email="alice@example.com", name="Alice Adams",
                                    phone_number="+84912000001"))
    await page.get_by_role("button", name="Open chat").click()
    dialog = panel(page)
    await expect(dialog).to_have_attribute("data-state", "verified")
    await expect(dialog.get_by_text("Hi Alice Adams!")).to_be_visible()

    # Her token is refreshed in the page: identify() ends her session and verifies her again.
    await page.evaluate("() => window.Doorman.identify('tok-alice-2', {email: 'alice@example.com'})")
    await expect(dialog).to_have_attribute("data-state", "verified")
    await expect(dialog.get_by_text("Hi Alice Adams!")).to_be_visible()

    async def two_alice_sessions() -> bool:
        rows = await sessions_of(stack, bot_id)
        return [r["status"] for r in rows] == ["ended", "verified"]

    await until(two_alice_sessions)

    # Something of hers left in the widget's storage namespace, to be cleared on logout (the business's own keys stay).
    await page.evaluate("""() => { sessionStorage.setItem('doorman.widget.last', 'Alice');
                                   localStorage.setItem('doorman.widget.name', 'alice@example.com');
                                   localStorage.setItem('shop.cart', '3 items'); }""")

    before = await page.evaluate(PAGE_CONTENTS)
    assert all(trace in before for trace in ALICE_TRACES[:2])  # the check below can see her where she was

    # She logs out.
    await page.evaluate("() => window.Doorman.logout()")

    async def all_ended() -> bool:
        return [r["status"] for r in (await sessions_of(stack, bot_id))[:2]] == ["ended", "ended"]

    await until(all_ended)
    # The panel, still open, begins again for an anonymous visitor: the form, not prefilled with her data.
    await expect(dialog).to_have_attribute("data-state", "form")
    contents = await page.evaluate(PAGE_CONTENTS)
    assert not [trace for trace in ALICE_TRACES if trace in contents], contents
    assert "shop.cart=3 items" in contents
    for field in ("Name", "Email", "Phone"):
        await expect(dialog.get_by_label(field)).to_have_value("")
    opens = [r for r in requests if r.method == "POST" and r.url.split("?")[0].endswith("/v1/widget/sessions")]
    assert json.loads(opens[-1].post_data or "{}") == {"bot_id": bot_id}  # nothing of hers is sent
    view = await (await stack.http.get(
        f"{stack.gateway.url}/v1/widget/sessions/{(await sessions_of(stack, bot_id))[1]['session_id']}")).json()
    assert view["status"] == "ended" and view["contact"] is None

    # Bob logs in on the same page.
    await page.evaluate("() => window.Doorman.identify('tok-bob-1', {email: 'bob@example.com', name: 'Bob Brown'})")
    await expect(dialog).to_have_attribute("data-state", "verified")
    await expect(dialog.get_by_text("Hi Bob Brown!")).to_be_visible()
    contents = await page.evaluate(PAGE_CONTENTS)
    assert not [trace for trace in ALICE_TRACES if trace in contents], contents

    # Each was verified as themselves, from their own token; the anonymous session in between is ended too.
    async def bob_verified() -> bool:
        rows = await sessions_of(stack, bot_id)
        return len(rows) == 4 and rows[-1]["status"] == "verified" and rows[2]["status"] == "ended"

    await until(bob_verified)
    rows = await sessions_of(stack, bot_id)
    assert [(r["status"], r["ended_by"]) for r in rows] == [
        ("ended", "visitor"), ("ended", "visitor"), ("ended", "visitor"), ("verified", None)]
    verified_as = await stack.pool.fetch(
        """SELECT c.identifier FROM widget_sessions s JOIN contacts c USING (contact_id)
           WHERE s.bot_id = $1 ORDER BY s.created_at""", bot_id)
    assert [r["identifier"] for r in verified_as] == ["alice", "alice", "bob"]
    tokens = [r.body["access_token"] for r in customer_api.received(auth_url)]
    assert tokens == ["tok-alice-1", "tok-alice-2", "tok-bob-1"]
    # Tokens only ever travelled in POST bodies, never in a URL.
    assert not [r.url for r in requests if "tok-" in r.url]
    deletes = [r for r in requests if r.method == "DELETE"]
    assert len(deletes) == 3 and all("/v1/widget/sessions/" in r.url for r in deletes)


async def test_a_session_ended_elsewhere_signs_the_widget_out(
    stack: Stack, customer_api: FakeCustomerAPI, host_page: HostPage, page: Page,
) -> None:
    """While the widget waits, its session is ended by someone else (a logout in another tab): it shows
    the signed-out note, not an outcome, and forgets the visitor."""
    auth_url = customer_api.endpoint(Answer(json={"status": True, "data": {"id": "carol", "name": "Carol"}}, delay=3))
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=auth_url)
    await page.goto(await host_page(bot_id, token="tok-carol", name="Carol Carter"))
    await page.get_by_role("button", name="Open chat").click()
    dialog = panel(page)
    await expect(dialog).to_have_attribute("data-state", "waiting")

    async def opened() -> bool:
        return bool(await sessions_of(stack, bot_id))

    await until(opened)
    [session] = await sessions_of(stack, bot_id)
    async with stack.http.delete(f"{stack.gateway.url}/v1/widget/sessions/{session['session_id']}") as resp:
        assert resp.status == 204
    await expect(dialog).to_have_attribute("data-state", "ended")
    await expect(dialog.get_by_text("You've been signed out of this chat.")).to_be_visible()
    assert "Carol" not in await page.evaluate(PAGE_CONTENTS)
