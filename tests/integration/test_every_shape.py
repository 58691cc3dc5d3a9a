"""Every admin and widget view answers every shape the features store (``tests/shapes.py``): 200, and a body
the OpenAPI document's schema for it accepts. An API that answers 5xx to a request its document allows is a
defect (docs/rules.md, "The API answers what its document allows")."""

from __future__ import annotations

from typing import Any

import pytest

from shared.events import FallbackReason
from shared.widget_view import VISITOR_MESSAGES
from tests.conftest import Stack
from tests.fake_customer import FakeCustomerAPI
from tests.integration.test_openapi import assert_documented, call, doc  # noqa: F401  (doc: the fixture)
from tests.shapes import BUSINESS_NOTE, Shapes, delivery_statuses, erase, every_shape

EVENTS = "/v1/bots/{bot_id}/auth-events"
STATUSES = ("pending", "verified", "fallback", "ended")


@pytest.fixture(scope="module")
async def shapes(stack: Stack, strict_stack: Stack, customer_api: FakeCustomerAPI) -> Shapes:
    return await every_shape(stack, strict_stack, customer_api)


async def test_the_activity_log_answers_every_shape_under_each_filter(
        stack: Stack, doc: dict[str, Any], shapes: Shapes) -> None:  # noqa: F811
    log = await call(stack, doc, "GET", EVENTS, 200, bot_id=shapes.bot, query={"limit": "100"})
    events = {e["session_id"]: e for e in log["events"]}
    assert set(shapes.sessions.values()) <= set(events), "a stored session is missing from the activity log"
    assert {e["reason"] for e in events.values()} >= {r.value for r in FallbackReason}
    assert {e["status"] for e in events.values()} == set(STATUSES)
    assert {e["ended_by"] for e in events.values()} == {None, "visitor", "revoked", "backchannel_logout"}
    assert {(e["identity_change"] or {}).get("kind") for e in events.values()} == {
        None, "identity_changed", "took_over_unverified"}
    assert events[shapes.sessions["verified degraded"]]["degraded"] is True
    assert BUSINESS_NOTE in events[shapes.sessions["auth_rejected"]]["detail"]  # the precise detail, for admins

    for reason in FallbackReason:
        page = await call(stack, doc, "GET", EVENTS, 200, bot_id=shapes.bot, query={"reason": reason.value})
        assert page["events"] and {e["reason"] for e in page["events"]} == {reason.value}, reason
    for status in STATUSES:
        page = await call(stack, doc, "GET", EVENTS, 200, bot_id=shapes.bot, query={"status": status})
        assert page["events"] and {e["status"] for e in page["events"]} == {status}, status
    seen, cursor = [], None
    while True:  # page by page
        page = await call(stack, doc, "GET", EVENTS, 200, bot_id=shapes.bot,
                          query={"limit": "4", **({"cursor": cursor} if cursor else {})})
        seen += [e["session_id"] for e in page["events"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == [e["session_id"] for e in log["events"]]


async def test_contacts_and_contact_details_of_every_provenance(
        stack: Stack, doc: dict[str, Any], shapes: Shapes) -> None:  # noqa: F811
    listed = await call(stack, doc, "GET", "/v1/bots/{bot_id}/contacts", 200, bot_id=shapes.bot, query={"limit": "100"})
    details = [await call(stack, doc, "GET", "/v1/bots/{bot_id}/contacts/{contact_id}", 200, bot_id=shapes.bot,
                          contact_id=c["contact_id"]) for c in listed["contacts"]]
    for contact in listed["contacts"]:
        await call(stack, doc, "GET", "/v1/bots/{bot_id}/contacts/{contact_id}/export", 200, bot_id=shapes.bot,
                   contact_id=contact["contact_id"])
    assert {d["verified"] for d in details} == {True, False}
    assert {source for d in details for source in d["sources"].values()} == {"api", "visitor"}
    assert {d["identify_method"] for d in details} == {"email", "session"}
    assert {h["kind"] for d in details for h in d["history"]} == {"identity_changed", "took_over_unverified"}
    assert any(d["taken_over_at"] and d["typed"] for d in details)
    assert any(d["degraded"] for d in details) and any(d["external_workspace_id"] for d in details)
    searched = await call(stack, doc, "GET", "/v1/bots/{bot_id}/contacts", 200, bot_id=shapes.bot, query={"q": "visitor"})
    assert searched["contacts"]


async def test_the_widget_view_of_every_session(stack: Stack, doc: dict[str, Any], shapes: Shapes) -> None:  # noqa: F811
    for what, session_id in shapes.sessions.items():
        view = await call(stack, doc, "GET", "/v1/widget/sessions/{session_id}", 200, admin=False,
                          session_id=session_id)
        if view["status"] == "fallback":
            assert view["fallback"]["detail"] == VISITOR_MESSAGES[view["fallback"]["reason"]], what
        assert "secret-internal-note" not in str(view) and "127.0.0.1" not in str(view), what
        assert (view["identity_expires_at"] is not None) == (what == "verified, identity expires"), (what, view)


async def test_webhook_deliveries_in_each_status(stack: Stack, doc: dict[str, Any], shapes: Shapes) -> None:  # noqa: F811
    await erase(stack, shapes)  # its contact.erased delivery hangs: pending for seconds

    page = await delivery_statuses(stack, shapes, {"pending", "delivered", "dead"})

    assert_documented(doc, "GET", "/v1/bots/{bot_id}/webhook/deliveries", 200, page)
    assert {d["type"] for d in page["deliveries"]} == {"contact.created", "contact.updated", "contact.erased",
                                                       "session.fell_back"}
