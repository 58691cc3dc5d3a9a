"""The visitor sees a reason and a visitor-safe message: the widget's ``fallback.detail`` (GET, the SSE
``outcome`` event, ``POST ?wait=``) is chosen by the reason alone. What the business said, the addresses a
name resolved to, URLs and configured values stay in the admin activity log (``auth-events``)."""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import Stack, await_outcome, create_bot, logged_detail
from tests.fake_customer import Answer, FakeCustomerAPI

SECRET_NOTE = "<script>secret-internal-note</script>"
ADDRESS_OR_URL = re.compile(r"\d{1,3}(\.\d{1,3}){3}|\[?[0-9a-f]*:[0-9a-f:]+\]?|https?:|localhost|/auth", re.I)


async def visitor_views(stack: Stack, bot: str, **body: Any) -> list[dict[str, Any]]:
    """Every way the widget learns one session's outcome: ``POST ?wait=``, ``GET``, the SSE ``outcome`` event."""
    async with stack.http.post(f"{stack.gateway.url}/v1/widget/sessions", params={"wait": "5"},
                               json={"bot_id": bot, **body}) as resp:
        assert resp.status == 200, await resp.text()
        waited = await resp.json()
    async with stack.http.get(f"{stack.gateway.url}/v1/widget/sessions/{waited['session_id']}") as resp:
        assert resp.status == 200, await resp.text()
        read = await resp.json()
    streamed = await await_outcome(stack.http, stack.gateway.url, waited["session_id"])
    return [waited, read, streamed]


async def test_the_business_message_goes_to_the_admin_log_not_to_the_visitor(
        stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(Answer(json={"status": False, "message": SECRET_NOTE}))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)

    views = await visitor_views(stack, bot, access_token="t")

    for view in views:
        assert view["status"] == "fallback" and view["fallback"]["reason"] == "auth_rejected", view
        assert "secret-internal-note" not in str(view) and "script" not in str(view), view
        assert view["fallback"]["detail"], view  # a message for the visitor, not nothing
    assert SECRET_NOTE in (await logged_detail(stack, bot, views[0]["session_id"]) or "")


async def test_a_blocked_destination_shows_the_visitor_no_address_or_url(
        strict_stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """``localhost`` resolves to a loopback address, which the strict stack's outbound policy refuses."""
    url = customer_api.endpoint(Answer(json={"status": True, "data": {"id": "never"}}))
    port = url.removeprefix("http://127.0.0.1:").split("/")[0]
    auth_url = url.replace("127.0.0.1", "localhost")
    bot = await create_bot(strict_stack.http, strict_stack.gateway.url, enabled=True, auth_url=auth_url)

    views = await visitor_views(strict_stack, bot, access_token="t")

    for view in views:
        assert view["fallback"]["reason"] == "destination_blocked", view
        detail = view["fallback"]["detail"]
        assert not ADDRESS_OR_URL.search(detail) and port not in detail, detail
    assert "127.0.0.1" in (await logged_detail(strict_stack, bot, views[0]["session_id"]) or "")
    assert customer_api.received(url) == []
