"""``POST /v1/widget/sessions?wait=<seconds>`` and admission control's ``fallback(busy)``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from services.gateway.keys import HUB
from shared.sessions import BUSY_DETAIL
from shared.widget_view import VISITOR_MESSAGES
from tests.conftest import Stack, admin_headers, await_outcome, create_bot
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.waits import wait_until

BUSY = {"reason": "busy", "detail": VISITOR_MESSAGES["busy"]}  # the widget's; the activity log keeps BUSY_DETAIL


async def open_with(stack: Stack, body: dict[str, Any], wait: Any = None) -> tuple[int, dict[str, Any]]:
    params = {"wait": str(wait)} if wait is not None else None
    async with stack.http.post(f"{stack.gateway.url}/v1/widget/sessions", json=body, params=params) as resp:
        return resp.status, await resp.json()


async def read(stack: Stack, session_id: str) -> dict[str, Any]:
    async with stack.http.get(f"{stack.gateway.url}/v1/widget/sessions/{session_id}") as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


@contextmanager
def refusing_every_open(stack: Stack) -> Iterator[None]:
    """Admission control refuses every open on the stack's gateway (as when its replica is full)."""
    admission = stack.gateway.app[HUB].admission
    saved = admission.max_in_flight
    admission.max_in_flight = 0
    try:
        yield
    finally:
        admission.max_in_flight = saved


async def test_wait_answers_200_with_the_outcome_when_it_comes_in_time(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="w-1", name="Waited For", email="Waited@Example.com"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, identify_method="id")

    status, view = await open_with(stack, {"bot_id": bot, "access_token": "tok"}, wait=5)

    assert status == 200, view
    assert view["status"] == "verified" and view["fallback"] is None and view["collected"] is False
    contact = view["contact"]
    assert (contact["name"], contact["email"], contact["verified"]) == ("Waited For", "waited@example.com", True)
    assert await read(stack, view["session_id"]) == view  # the same object GET answers
    [call] = customer_api.received(url)
    assert call.body["access_token"] == "tok"


async def test_wait_answers_202_when_the_outcome_is_late_and_it_still_arrives(
        stack: Stack, customer_api: FakeCustomerAPI) -> None:
    # The business takes 0.6 s (under the verifier's 1 s timeout): no outcome can exist after 0.2 s.
    url = customer_api.endpoint(Answer(json={"status": True, "message": "ok", "data": {"id": "slow-1", "name": "Slow"}},
                                       delay=0.6))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, identify_method="id")

    status, created = await open_with(stack, {"bot_id": bot, "access_token": "tok"}, wait=0.2)

    assert (status, created["status"]) == (202, "pending"), created
    assert set(created) == {"session_id", "status"}
    outcome = await await_outcome(stack.http, stack.gateway.url, created["session_id"])
    assert outcome["status"] == "verified" and outcome["contact"]["name"] == "Slow"
    assert await read(stack, created["session_id"]) == outcome
    assert len(customer_api.received(url)) == 1  # the wait's end did not start anything twice


async def test_a_bad_wait_is_a_field_error_and_opens_nothing(stack: Stack) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)
    for wait in ("0", "-1", "31", "abc", "", "nan", "inf"):
        status, body = await open_with(stack, {"bot_id": bot}, wait=wait)
        assert status == 422, (wait, body)
        assert body["error"]["code"] == "invalid_query", (wait, body)
        assert [f["field"] for f in body["error"]["fields"]] == ["wait"], (wait, body)
    assert await stack.pool.fetchval("SELECT count(*) FROM widget_sessions WHERE bot_id = $1", bot) == 0

    status, body = await open_with(stack, {"bot_id": bot}, wait="30")  # the upper bound is allowed
    assert status == 200 and body["fallback"]["reason"] == "ca_disabled", body


async def test_a_refused_open_is_a_busy_fallback_at_once(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="never-asked"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, identify_method="id")

    with refusing_every_open(stack):
        status, created = await open_with(stack, {"bot_id": bot, "access_token": "tok"})
        # Stored already resolved, in the request itself: nothing in the pipeline decided it.
        row = await stack.pool.fetchrow(
            "SELECT status, reason FROM widget_sessions WHERE session_id = $1", created.get("session_id"))
        waited_status, waited = await open_with(stack, {"bot_id": bot, "access_token": "tok"}, wait=5)

    assert (status, created["status"]) == (202, "pending"), created
    assert (row["status"], row["reason"]) == ("fallback", "busy")
    session_id = created["session_id"]
    view = await read(stack, session_id)
    assert (view["status"], view["fallback"], view["contact"]) == ("fallback", BUSY, None)
    assert await await_outcome(stack.http, stack.gateway.url, session_id) == view

    assert waited_status == 200, waited
    assert (waited["status"], waited["fallback"]) == ("fallback", BUSY)
    assert await read(stack, waited["session_id"]) == waited

    # Admission is back: the next open is verified as usual, and only it reached the business.
    assert (await open_with(stack, {"bot_id": bot, "access_token": "tok"}, wait=5))[1]["status"] == "verified"
    assert len(customer_api.received(url)) == 1

    # The widget shows the Collect Information form for a busy session, and the form is taken.
    async with stack.http.post(f"{stack.gateway.url}/v1/widget/sessions/{session_id}/contact",
                               json={"name": "Busy Visitor", "email": "busy@example.com"}) as resp:
        assert resp.status == 202, await resp.text()
        assert (await resp.json())["status"] == "accepted"
    assert (await read(stack, session_id))["collected"] is True
    contact_id = await wait_until(lambda: stack.pool.fetchval(
        "SELECT collected_contact_id FROM widget_sessions WHERE session_id = $1", session_id), what="the form's contact")
    contact = await stack.pool.fetchrow("SELECT * FROM contacts WHERE contact_id = $1", contact_id)
    assert (str(contact["bot_id"]), contact["identifier"]) == (bot, "busy@example.com")
    assert contact["verified"] is False and contact["name"] == "Busy Visitor"

    # The activity log says why: both refused opens, under reason busy.
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot}/auth-events", params={"reason": "busy"},
                              headers=admin_headers()) as resp:
        assert resp.status == 200, await resp.text()
        events = (await resp.json())["events"]
    assert {e["session_id"] for e in events} == {session_id, waited["session_id"]}
    assert all((e["status"], e["detail"]) == ("fallback", BUSY_DETAIL) for e in events)


async def test_a_refused_opens_stream_answers_from_memory_until_its_form_is_sent(stack: Stack) -> None:
    """Under overload most opens are refused: reading each one's row back for its stream (a watcher write, then a
    read) would make a refusal cost more than a verification. The gateway that refused it remembers its view."""
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url="https://shop.example.com/auth")
    with refusing_every_open(stack):
        status, created = await open_with(stack, {"bot_id": bot, "access_token": "tok"})
    assert status == 202, created
    session_id = created["session_id"]

    view = await await_outcome(stack.http, stack.gateway.url, session_id)

    assert (view["status"], view["fallback"], view["collected"]) == ("fallback", BUSY, False)
    watcher = await stack.pool.fetchval("SELECT watcher FROM widget_sessions WHERE session_id = $1", session_id)
    assert watcher is None  # the stream did not look the session up: it was answered from the refusal itself

    async with stack.http.post(f"{stack.gateway.url}/v1/widget/sessions/{session_id}/contact",
                               json={"name": "Busy Visitor", "email": "busy@example.com"}) as resp:
        assert resp.status == 202, await resp.text()
    # The form changed the view: the stream no longer answers from what was remembered.
    after = await await_outcome(stack.http, stack.gateway.url, session_id)
    assert (after["status"], after["collected"]) == ("fallback", True)
    assert after == await read(stack, session_id)


async def test_concurrent_reads_each_get_their_own_session(stack: Stack) -> None:
    """``GET /v1/widget/sessions/{id}`` of many widgets at once is read in shared queries: each still gets its own."""
    bot = await create_bot(stack.http, stack.gateway.url)  # Custom Authentication off: each open falls back at once
    opened = [(await open_with(stack, {"bot_id": bot}, wait=5))[1] for _ in range(20)]
    missing = "0" * 64  # the shape of a session id, but no session has it

    async def get(session_id: str) -> tuple[int, dict[str, Any]]:
        async with stack.http.get(f"{stack.gateway.url}/v1/widget/sessions/{session_id}") as resp:
            return resp.status, await resp.json()

    answers = await asyncio.gather(*(get(v["session_id"]) for v in opened * 3), get(missing))

    assert [a for a in answers[:-1]] == [(200, v) for v in opened * 3]
    assert answers[-1][0] == 404 and answers[-1][1]["error"]["code"] == "session_not_found"
