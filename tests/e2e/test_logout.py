"""Logout and revocation against the real services: a session's third terminal status, ``ended``.

DELETE /v1/widget/sessions/{id} ends a pending, verified or fallback session (204; again: 204; unknown:
404); a stream still waiting gets one ``ended`` event and closes, on the replica that opened the session
and on another one; GET says ``ended`` with no contact; a verification that comes after the end still
updates the contact, never the session. POST .../contacts/{id}/revoke ends every session of a contact,
seen as ended by every replica.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import AsyncExitStack
from typing import Any

import aiohttp

from services.gateway.keys import HUB
from tests.conftest import Stack, admin_headers, await_outcome, create_bot, open_session, start_gateway
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.integration.test_workspaces import workspace_with_key
from tests.waits import wait_until

SLOW = 0.8  # the business takes this long to answer (within the tests' 1 s timeout): pending meanwhile


async def read_stream(http: aiohttp.ClientSession, gateway_url: str, session_id: str, timeout: float = 15,
                      waiting: asyncio.Event | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Every event of the session's stream until it ends: (name, data). ``waiting`` is set on the stream's
    first comment: the gateway sends it once the stream waits (watched, on a replica other than the opener)."""
    events: list[tuple[str, dict[str, Any]]] = []
    name = ""
    async with http.get(f"{gateway_url}/v1/widget/sessions/{session_id}/events",
                        timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
        assert resp.status == 200, await resp.text()
        async for raw in resp.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith(":") and waiting is not None:
                waiting.set()
            elif line.startswith("event:"):
                name = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.partition(":")[2].strip())))
    return events


async def end(http: aiohttp.ClientSession, gateway_url: str, session_id: str) -> int:
    async with http.delete(f"{gateway_url}/v1/widget/sessions/{session_id}",
                           headers={"Origin": "https://shop.example.com"}) as resp:
        if resp.status == 204:
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            assert await resp.read() == b""
        return resp.status


async def read(http: aiohttp.ClientSession, gateway_url: str, session_id: str) -> dict[str, Any]:
    async with http.get(f"{gateway_url}/v1/widget/sessions/{session_id}") as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def revoke(stack: Stack, bot_id: str, contact_id: str, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else admin_headers()
    async with stack.http.post(f"{stack.gateway.url}/v1/bots/{bot_id}/contacts/{contact_id}/revoke",
                               headers=headers) as resp:
        return resp.status, await resp.json()


async def _resolved(http: aiohttp.ClientSession, gateway_url: str, session_id: str) -> dict[str, Any] | None:
    view = await read(http, gateway_url, session_id)
    return view if view["status"] != "pending" else None


async def _ended(http: aiohttp.ClientSession, gateway_url: str, session_id: str) -> dict[str, Any] | None:
    view = await read(http, gateway_url, session_id)
    return view if view["status"] == "ended" else None


def assert_ended(view: dict[str, Any], session_id: str) -> None:
    assert view["session_id"] == session_id and view["status"] == "ended"
    assert view["contact"] is None and view["fallback"] is None and view["collect_information"] is None


async def waiting_stream(http: aiohttp.ClientSession, gateway_url: str, session_id: str) -> asyncio.Task[Any]:
    """The session's stream, read in the background (:func:`read_stream`), once it waits."""
    waiting = asyncio.Event()
    stream = asyncio.create_task(read_stream(http, gateway_url, session_id, waiting=waiting))
    await asyncio.wait_for(waiting.wait(), 10)
    return stream


async def test_logout_of_a_pending_session_is_final(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(Answer(json={"status": True, "data": {"id": "late-1", "name": "Late Lee"}}, delay=SLOW))
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot_id, "access_token": "t"})
    stream = await waiting_stream(stack.http, stack.gateway.url, session_id)

    started = time.monotonic()
    assert await end(stack.http, stack.gateway.url, session_id) == 204
    events = await stream
    assert time.monotonic() - started < 1.0  # told at once, not found by the stream's re-read
    assert [name for name, _ in events] == ["ended"]
    assert_ended(events[0][1], session_id)
    assert_ended(await read(stack.http, stack.gateway.url, session_id), session_id)
    assert await end(stack.http, stack.gateway.url, session_id) == 204  # ending again: still 204

    # The business answers after the logout: the contact is made, the session stays ended.
    contact = await wait_until(lambda: stack.pool.fetchrow("SELECT contact_id, name FROM contacts WHERE bot_id = $1",
                                                           bot_id), what="the late contact")
    assert contact["name"] == "Late Lee"
    # The contacts service recorded the verification in the same transaction: the session is as it will stay.
    row = await stack.pool.fetchrow(
        "SELECT status, contact_id, ended_by, ended_at, detail FROM widget_sessions WHERE session_id = $1", session_id)
    assert row["status"] == "ended" and row["contact_id"] is None and row["ended_by"] == "visitor"
    assert row["detail"] == "the visitor logged out"
    assert_ended(await read(stack.http, stack.gateway.url, session_id), session_id)
    # A stream opened now answers at once, with the one ended event.
    assert [name for name, _ in await read_stream(stack.http, stack.gateway.url, session_id)] == ["ended"]


async def test_logout_of_a_verified_session(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="v-1", name="Vera", email="vera@example.com"))
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot_id, "access_token": "t"})
    assert (await await_outcome(stack.http, stack.gateway.url, session_id))["contact"]["name"] == "Vera"

    assert await end(stack.http, stack.gateway.url, session_id) == 204
    view = await read(stack.http, stack.gateway.url, session_id)
    assert_ended(view, session_id)
    assert "Vera" not in json.dumps(view) and "vera@" not in json.dumps(view)
    events = await read_stream(stack.http, stack.gateway.url, session_id)
    assert [name for name, _ in events] == ["ended"] and "Vera" not in json.dumps(events)
    # The contact stays (agents still see who it was); the activity log says how the session had gone.
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot_id}/auth-events", params={"status": "ended"},
                              headers=admin_headers()) as resp:
        [event] = (await resp.json())["events"]
    assert event["ended_by"] == "visitor" and event["contact_id"] is not None and event["resolved_at"]


async def test_logout_of_a_fallback_session_refuses_the_form(stack: Stack) -> None:
    bot_id = await create_bot(stack.http, stack.gateway.url)  # Custom Authentication off: fallback
    session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot_id})
    assert (await await_outcome(stack.http, stack.gateway.url, session_id))["status"] == "fallback"
    assert await end(stack.http, stack.gateway.url, session_id) == 204
    assert_ended(await read(stack.http, stack.gateway.url, session_id), session_id)
    async with stack.http.post(f"{stack.gateway.url}/v1/widget/sessions/{session_id}/contact",
                               json={"name": "After Logout"}) as resp:
        assert resp.status == 409 and (await resp.json())["error"]["code"] == "not_fallback"
    reason = await stack.pool.fetchval("SELECT reason FROM widget_sessions WHERE session_id = $1", session_id)
    assert reason == "ca_disabled"  # the activity log keeps why it had fallen back


async def test_unknown_sessions_and_cors(stack: Stack) -> None:
    assert await end(stack.http, stack.gateway.url, "A" * 60) == 404
    assert await end(stack.http, stack.gateway.url, "not a session id!") == 404
    async with stack.http.delete(f"{stack.gateway.url}/v1/widget/sessions/{'B' * 60}") as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert (await resp.json())["error"]["code"] == "session_not_found"
    async with stack.http.options(f"{stack.gateway.url}/v1/widget/sessions/{'B' * 60}", headers={
        "Origin": "https://shop.example.com", "Access-Control-Request-Method": "DELETE"}) as resp:
        assert resp.status == 204 and "DELETE" in resp.headers["Access-Control-Allow-Methods"]


async def test_a_stream_on_another_replica_gets_ended(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """The stream waits on one replica, the visitor logs out through another (both ways round)."""
    # The business never answers in time: the sessions stay pending for the whole test.
    url = customer_api.endpoint(Answer(json={"status": True, "data": {"id": "r-1"}}, delay=3))
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    async with AsyncExitStack() as es:
        second = await start_gateway(es, stack.config)
        for opener, streamer, ender in ((stack.gateway, second, stack.gateway), (stack.gateway, stack.gateway, second)):
            session_id = await open_session(stack.http, opener.url, {"bot_id": bot_id, "access_token": "t"})
            stream = await waiting_stream(stack.http, streamer.url, session_id)
            if streamer is not opener:
                assert await stack.pool.fetchval("SELECT watcher FROM widget_sessions WHERE session_id = $1",
                                                 session_id) == streamer.app[HUB].replica
            started = time.monotonic()
            assert await end(stack.http, ender.url, session_id) == 204
            events = await stream
            assert time.monotonic() - started < 1.0, "not told: found by the stream's re-read"
            assert [name for name, _ in events] == ["ended"]
            assert_ended(events[0][1], session_id)
            for gateway in (stack.gateway, second):
                assert_ended(await read(stack.http, gateway.url, session_id), session_id)


async def test_revoke_ends_every_session_of_the_contact(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="rev-1", name="Revoked Rae"))
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    async with AsyncExitStack() as es:
        second = await start_gateway(es, stack.config)
        sessions = []
        for gateway in (stack.gateway, second, second):
            session_id = await open_session(stack.http, gateway.url, {"bot_id": bot_id, "access_token": "t"})
            # Read by polling only: each opener remembers the outcome in memory, unasked.
            view = await wait_until(lambda: _resolved(stack.http, gateway.url, session_id), what="the outcome")
            assert view["status"] == "verified"
            sessions.append(session_id)
        contact_id = view["contact"]["contact_id"]
        assert await end(stack.http, second.url, sessions[2]) == 204  # one already logged out

        status, body = await revoke(stack, bot_id, contact_id)
        assert (status, body) == (200, {"ended": 2})
        assert await revoke(stack, bot_id, contact_id) == (200, {"ended": 0})
        for session_id in sessions:
            for gateway in (stack.gateway, second):
                # Each opener remembered the outcome in memory: until its replica is told, it would say verified.
                view = await wait_until(lambda: _ended(stack.http, gateway.url, session_id), what="ended everywhere")
                assert_ended(view, session_id)
                events = await read_stream(stack.http, gateway.url, session_id)
                assert [name for name, _ in events] == ["ended"], (gateway.url, events)
        by = await stack.pool.fetch(
            "SELECT session_id, ended_by FROM widget_sessions WHERE session_id = ANY($1)", sessions)
        assert {r["session_id"]: r["ended_by"] for r in by} == {
            sessions[0]: "revoked", sessions[1]: "revoked", sessions[2]: "visitor"}

    # The contact is still there, and a new login makes a new, verified session.
    session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot_id, "access_token": "t"})
    assert (await await_outcome(stack.http, stack.gateway.url, session_id))["contact"]["contact_id"] == contact_id


async def test_revoke_a_collected_contact_and_unknown_ones(stack: Stack) -> None:
    bot_id = await create_bot(stack.http, stack.gateway.url)
    session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot_id})
    await await_outcome(stack.http, stack.gateway.url, session_id)
    async with stack.http.post(f"{stack.gateway.url}/v1/widget/sessions/{session_id}/contact",
                               json={"email": "typed@example.com"}) as resp:
        assert resp.status == 202
    contact_id = await wait_until(lambda: stack.pool.fetchval(
        "SELECT collected_contact_id FROM widget_sessions WHERE session_id = $1", session_id), what="the form's contact")
    assert await revoke(stack, bot_id, str(contact_id)) == (200, {"ended": 1})
    assert_ended(await read(stack.http, stack.gateway.url, session_id), session_id)

    other_bot = await create_bot(stack.http, stack.gateway.url)
    for bot, contact in ((other_bot, contact_id), (bot_id, "00000000-0000-0000-0000-000000000000"),
                         (bot_id, "not-a-uuid")):
        status, body = await revoke(stack, bot, str(contact))
        assert status == 404 and body["error"]["code"] == "contact_not_found"
    async with stack.http.post(f"{stack.gateway.url}/v1/bots/{bot_id}/contacts/{contact_id}/revoke") as resp:
        assert resp.status == 401


async def test_workspace_keys_revoke_only_their_own_contacts(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    (_, key_a), (_, key_b) = [await workspace_with_key(stack, n) for n in ("Revoke A", "Revoke B")]
    async with stack.http.post(f"{stack.gateway.url}/v1/bots", json={"name": "a's bot"},
                               headers={"Authorization": f"Bearer {key_a}"}) as resp:
        bot_id = (await resp.json())["bot_id"]
    async with stack.http.put(f"{stack.gateway.url}/v1/bots/{bot_id}/custom-auth", headers={
            "Authorization": f"Bearer {key_a}"}, json={"enabled": True, "auth_url": customer_api.endpoint(
                verified(id="ws-1"))}) as resp:
        assert resp.status == 200
    session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot_id, "access_token": "t"})
    contact_id = (await await_outcome(stack.http, stack.gateway.url, session_id))["contact"]["contact_id"]

    status, body = await revoke(stack, bot_id, contact_id, token=key_b)
    assert status == 404 and body["error"]["code"] == "bot_not_found"
    assert (await read(stack.http, stack.gateway.url, session_id))["status"] == "verified"
    assert await revoke(stack, bot_id, contact_id, token=key_a) == (200, {"ended": 1})
    assert_ended(await read(stack.http, stack.gateway.url, session_id), session_id)
