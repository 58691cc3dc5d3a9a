"""One bot cannot take another's capacity (docs/rules.md): call slots to a host are shared fairly between
the bots calling it, and Doorman's own queueing is not the business's outage.

A stack of its own whose verifier makes at most ``CAP`` calls at once to one host, with the breaker's default
threshold (``MIN_FAILURES`` failed calls): a hanging bot's failed calls count against its own circuit, never the
other bot's, and the opens that find no slot would be more than enough to open it if they were counted. Each test
has a business on a port of its own, and two bots whose Authentication URLs are two paths of that one host.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.verifier.settings import VerifierSettings
from services.verifier.outbound import NO_SLOT, HostBusy, outbound_client
from tests.conftest import (
    AUTH_TIMEOUT, Stack, admin_headers, await_outcome, create_bot, open_session, running_stack, service_config,
)
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.waits import wait_until

CAP = 8
MIN_FAILURES = VerifierSettings.model_fields["breaker_min_failures"].default


@pytest.fixture(scope="module")
async def fair_stack(database_url: str, module_prefix: Callable[[], str], secret_key: str) -> AsyncIterator[Stack]:
    config = {**service_config(database_url, module_prefix(), secret_key), "auth_max_connections_per_host": CAP}
    async with running_stack(config) as stack:
        yield stack


async def open_many(stack: Stack, bodies: list[dict[str, Any]]) -> list[str]:
    return list(await asyncio.gather(*(open_session(stack.http, stack.gateway.url, body) for body in bodies)))


async def outcomes(stack: Stack, session_ids: list[str]) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(await_outcome(stack.http, stack.gateway.url, s) for s in session_ids)))


async def activity(stack: Stack, bot_id: str) -> dict[str, dict[str, Any]]:
    """The bot's whole activity log, by session id."""
    events: dict[str, dict[str, Any]] = {}
    params = {"limit": "100"}
    while True:
        async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot_id}/auth-events", params=params,
                                  headers=admin_headers()) as resp:
            assert resp.status == 200, await resp.text()
            page = await resp.json()
        events.update({e["session_id"]: e for e in page["events"]})
        if not page["next_cursor"]:
            return events
        params["cursor"] = page["next_cursor"]


async def test_a_bot_whose_calls_hang_leaves_the_other_bots_on_its_host_their_calls(
        fair_stack: Stack, business: FakeCustomerAPI) -> None:
    hanging = business.endpoint(Answer(json={}, delay=AUTH_TIMEOUT * 3))  # never answers within the call timeout
    serving = business.responder(lambda body: verified(id=body["access_token"], name=body["access_token"]))
    bot_a = await create_bot(fair_stack.http, fair_stack.gateway.url, enabled=True, auth_url=hanging,
                             header_token="Bearer a")
    bot_b = await create_bot(fair_stack.http, fair_stack.gateway.url, enabled=True, auth_url=serving,
                             header_token="Bearer b")

    opens_a = await open_many(fair_stack, [{"bot_id": bot_a, "access_token": f"a-{i}"} for i in range(80)])
    await wait_until(lambda: len(business.received(hanging)) >= CAP, what="bot A's calls to fill the host")
    opens_b = await open_many(fair_stack, [{"bot_id": bot_b, "access_token": f"b-{i}"} for i in range(10)])

    seen_b = await outcomes(fair_stack, opens_b)
    assert [o["status"] for o in seen_b] == ["verified"] * 10, [o["fallback"] for o in seen_b]
    assert sorted(o["contact"]["name"] for o in seen_b) == sorted(f"b-{i}" for i in range(10))
    seen_a = await outcomes(fair_stack, opens_a)
    assert {(o["status"], o["fallback"]["reason"]) for o in seen_a} == {("fallback", "auth_unavailable")}
    # Past its share, bot A's opens waited for a slot and ended without calling: Doorman's queueing, said so.
    log_a = await activity(fair_stack, bot_a)
    assert any(NO_SLOT in (e["detail"] or "") for e in log_a.values())


def transitions_to_open(host: str) -> float:
    return REGISTRY.get_sample_value("doorman_breaker_transitions_total", {"host": host, "to": "open"}) or 0.0


async def test_opens_that_only_waited_for_a_slot_are_neither_verified_from_the_grace_nor_trip_the_breaker(
        fair_stack: Stack, business: FakeCustomerAPI) -> None:
    slow = asyncio.Event()  # set: the business answers, but takes most of the call timeout to

    def answer(body: Any) -> Answer:
        identity = verified(id="id-frank", name="Frank")
        return Answer(json=identity.json, delay=AUTH_TIMEOUT / 2) if slow.is_set() else identity

    url = business.responder(answer)
    host = url.removeprefix("http://").split("/")[0]
    bot = await create_bot(fair_stack.http, fair_stack.gateway.url, enabled=True, auth_url=url, header_token="Bearer g",
                           outage_grace_seconds=300, request_fields=["user_id"])
    first = await outcomes(fair_stack, await open_many(fair_stack, [{"bot_id": bot, "access_token": "frank-token"}]))
    assert first[0]["status"] == "verified" and first[0]["degraded"] is False  # the grace cache holds this token now

    slow.set()
    sessions = await open_many(fair_stack, [{"bot_id": bot, "access_token": "frank-token", "user_id": f"open-{i}"}
                                            for i in range(120)])
    seen = dict(zip(sessions, await outcomes(fair_stack, sessions)))
    opened_by = dict(zip(sessions, (f"open-{i}" for i in range(120))))
    reached = {r.body.get("user_id") for r in business.received(url)}
    queued = [s for s in sessions if opened_by[s] not in reached]  # no call of theirs reached the business
    assert len(queued) > MIN_FAILURES  # enough to open the breaker, were they counted as the business's failures

    # Doorman had no slot for them: not the business's outage, so the grace cache did not vouch for the token.
    assert {(seen[s]["status"], (seen[s]["fallback"] or {}).get("reason"), seen[s]["degraded"]) for s in queued} == {
        ("fallback", "auth_unavailable", False)}
    log = await activity(fair_stack, bot)
    assert all(NO_SLOT in log[s]["detail"] for s in queued), {log[s]["detail"] for s in queued}
    assert not any(e["circuit_open"] for e in log.values())

    # Nor did the breaker count them: it never opened for this host.
    async with fair_stack.http.get(f"{fair_stack.gateway.url}/v1/bots/{bot}/custom-auth/breaker",
                                   headers=admin_headers()) as resp:
        breaker = await resp.json()
    assert (breaker["host"], breaker["state"], breaker["replicas"]) == (host, "closed", [])
    assert transitions_to_open(host) == 0


async def test_the_client_gives_a_bot_below_its_share_the_slot_of_another_bots_call_that_ends(
        customer_api: FakeCustomerAPI) -> None:
    """The guarded client itself: bot a fills the host with calls that hang; one more of a's fails after the
    usual wait, while bot b, below its share, waits for the first of a's calls to end and is served."""
    hanging = customer_api.endpoint(Answer(json={}, delay=AUTH_TIMEOUT * 3))
    fast = customer_api.endpoint(verified(id="1"))
    async with outbound_client(allow_private=True, timeout=AUTH_TIMEOUT, max_body=65536, limit_per_host=2,
                               max_wait=0.1) as http:
        stuck = [asyncio.create_task(http.request("POST", hanging, headers={}, json={}, tenant="a")) for _ in range(2)]
        try:
            await wait_until(lambda: len(customer_api.received(hanging)) == 2, what="bot a's calls to reach the business")
            with pytest.raises(HostBusy, match=NO_SLOT):
                await http.request("POST", hanging, headers={}, json={}, tenant="a")
            assert (await http.request("POST", fast, headers={}, json={}, tenant="b")).status == 200
        finally:
            ended = await asyncio.gather(*stuck, return_exceptions=True)
        assert all(isinstance(e, TimeoutError) for e in ended), ended  # a's calls ended by their timeout
        assert len(customer_api.received(hanging)) == 2
