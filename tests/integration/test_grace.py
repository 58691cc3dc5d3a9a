"""Verifying through the business's outage, against the real services: the circuit breaker per
business host and the outage grace (``outage_grace_seconds``).

A stack of its own, whose verifier's breaker opens after 3 failed calls and probes after 3 s, and a
fake business on a port of its own per test: a breaker is per host, so no test trips another's.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from prometheus_client import REGISTRY

from services.contacts.repository import upsert_verified
from shared import events
from shared.crypto import Secrets
from shared.events import IdentifyMethod, Identity, IdentityVerified, utcnow
from tests.conftest import (
    AUTH_TIMEOUT, Stack, admin_headers, await_outcome, create_bot, logged_detail, open_session, running_stack,
    service_config,
)
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.waits import wait_until

OPEN_SECONDS = 3.0


@pytest.fixture(scope="module")
async def grace_stack(database_url: str, module_prefix: Callable[[], str], secret_key: str) -> AsyncIterator[Stack]:
    config = {**service_config(database_url, module_prefix(), secret_key),
              "breaker_min_failures": 3, "breaker_open_seconds": OPEN_SECONDS}
    async with running_stack(config) as stack:
        yield stack


class Switch:
    """The business's API: up (verifies by token), or down in a given way."""

    def __init__(self) -> None:
        self.mode = "up"
        self.refusals: dict[str, Answer] = {}  # token -> how the business refuses it

    def __call__(self, body: Any) -> Answer:
        token = body["access_token"]
        if token in self.refusals:
            return self.refusals[token]
        if self.mode == "503":
            return Answer(status=503, json={})
        if self.mode == "timeout":
            return Answer(json={}, delay=AUTH_TIMEOUT + 0.5)
        person = token.split("-")[0]  # "frank-token-01..." is frank's token: the token itself is not in the answer
        return verified(id=f"id-{person}", name=f"Visitor {person}", email=f"{person}@example.com")


async def grace_bot(stack: Stack, business: FakeCustomerAPI, switch: Switch, grace: int = 300) -> tuple[str, str]:
    url = business.responder(switch)
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, header_token="Bearer g",
                              outage_grace_seconds=grace)
    return bot_id, url


async def visit(stack: Stack, bot_id: str, token: str) -> dict[str, Any]:
    session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot_id, "access_token": token})
    return await await_outcome(stack.http, stack.gateway.url, session_id)


async def admin_get(stack: Stack, path: str) -> Any:
    async with stack.http.get(f"{stack.gateway.url}{path}", headers=admin_headers()) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_breaker_opens_stops_calling_probes_after_the_pause_and_closes(
        grace_stack: Stack, business: FakeCustomerAPI) -> None:
    switch = Switch()
    bot_id, url = await grace_bot(grace_stack, business, switch, grace=0)
    host = url.removeprefix("http://").split("/")[0]
    switch.mode = "503"

    first = await visit(grace_stack, bot_id, "b-1")  # three attempts fail, the circuit opens, the fourth is not made
    assert first["fallback"]["reason"] == "auth_unavailable"
    assert len(business.received(url)) == 3
    assert metric("doorman_breaker_state", host=host, state="open") == 1

    second = await visit(grace_stack, bot_id, "b-2")  # at once, no call
    assert second["fallback"]["reason"] == "auth_unavailable"
    assert len(business.received(url)) == 3
    assert metric("doorman_breaker_short_circuits_total", host=host) >= 2

    log = (await admin_get(grace_stack, f"/v1/bots/{bot_id}/auth-events"))["events"]
    assert log[0]["circuit_open"] is True and "circuit breaker for " + host + " is open" in log[0]["detail"]
    assert log[1]["circuit_open"] is True  # its last attempt found the circuit open too
    breaker = await breaker_of(grace_stack, bot_id, "open")
    assert breaker["host"] == host
    assert breaker["replicas"][0]["opened"] == 1 and "calls failed" in breaker["replicas"][0]["detail"]

    switch.mode = "up"
    await asyncio.sleep(OPEN_SECONDS)  # time is the subject: the breaker lets a probe through only after its pause
    probe = await visit(grace_stack, bot_id, "b-3")  # half-open: one call, it succeeds, the circuit closes
    assert probe["status"] == "verified"
    assert len(business.received(url)) == 4
    assert metric("doorman_breaker_state", host=host, state="closed") == 1
    assert metric("doorman_breaker_transitions_total", host=host, to="half_open") >= 1
    await breaker_of(grace_stack, bot_id, "closed")


async def breaker_of(stack: Stack, bot_id: str, state: str, timeout: float = 10) -> dict[str, Any]:
    """The bot's breaker view once it says ``state`` (transitions are written off the call's path)."""
    async def saying() -> dict[str, Any] | None:
        breaker = await admin_get(stack, f"/v1/bots/{bot_id}/custom-auth/breaker")
        return breaker if breaker["state"] == state else None

    return await wait_until(saying, timeout, f"the breaker view to say {state}")


@pytest.mark.parametrize("outage", ["503", "timeout"])
async def test_a_bots_failing_endpoint_opens_its_own_circuit_not_the_other_bots_on_its_host(
        grace_stack: Stack, business: FakeCustomerAPI, outage: str) -> None:
    down, up = Switch(), Switch()
    down.mode = outage
    bot_a, url_a = await grace_bot(grace_stack, business, down, grace=0)
    bot_b, url_b = await grace_bot(grace_stack, business, up, grace=0)
    host = url_a.removeprefix("http://").split("/")[0]
    assert url_b.removeprefix("http://").split("/")[0] == host and url_a != url_b  # one host:port, two paths

    first = await visit(grace_stack, bot_a, "a-1")  # its attempts fail until bot A's circuit opens
    assert first["fallback"]["reason"] == "auth_unavailable"
    calls_a = len(business.received(url_a))
    refused = await visit(grace_stack, bot_a, "a-2")  # not called: bot A's circuit is open
    assert refused["fallback"]["reason"] == "auth_unavailable"
    assert "circuit breaker" in (await logged_detail(grace_stack, bot_a, refused["session_id"]) or "")
    assert len(business.received(url_a)) == calls_a
    breaker_a = await breaker_of(grace_stack, bot_a, "open")
    assert breaker_a["host"] == host and "calls failed" in breaker_a["replicas"][0]["detail"]

    # Bot B's Authentication URL on the same host works: its opens are called and verified.
    for i in range(3):
        outcome = await visit(grace_stack, bot_b, f"bea-{i}")
        assert outcome["status"] == "verified" and outcome["degraded"] is False, outcome
    assert len(business.received(url_b)) == 3
    breaker_b = await admin_get(grace_stack, f"/v1/bots/{bot_b}/custom-auth/breaker")
    assert (breaker_b["host"], breaker_b["state"], breaker_b["replicas"]) == (host, "closed", [])
    assert (await admin_get(grace_stack, f"/v1/bots/{bot_a}/custom-auth/breaker"))["state"] == "open"


async def contacts_of(stack: Stack, bot_id: str) -> list[dict[str, Any]]:
    return (await admin_get(stack, f"/v1/bots/{bot_id}/contacts"))["contacts"]


@pytest.mark.parametrize("outage", ["503", "timeout"])
async def test_a_returning_visitor_is_verified_degraded_with_the_same_identity(
        grace_stack: Stack, business: FakeCustomerAPI, outage: str) -> None:
    switch = Switch()
    bot_id, url = await grace_bot(grace_stack, business, switch)
    fresh = await visit(grace_stack, bot_id, "alice")
    assert fresh["status"] == "verified" and fresh["degraded"] is False
    contact_id = fresh["contact"]["contact_id"]
    detail = await admin_get(grace_stack, f"/v1/bots/{bot_id}/contacts/{contact_id}")
    assert detail["degraded"] is False
    before = metric("doorman_degraded_verifications_total", bot=bot_id)

    switch.mode = outage
    returning = await visit(grace_stack, bot_id, "alice")
    assert returning["status"] == "verified" and returning["degraded"] is True
    assert returning["contact"] == fresh["contact"]
    new = await visit(grace_stack, bot_id, "bob")  # never verified: falls back
    assert new["status"] == "fallback" and new["fallback"]["reason"] == "auth_unavailable" and new["degraded"] is False

    [contact] = await contacts_of(grace_stack, bot_id)  # no second contact
    assert contact["contact_id"] == contact_id
    detail = await admin_get(grace_stack, f"/v1/bots/{bot_id}/contacts/{contact_id}")
    assert detail["degraded"] is True and detail["name"] == "Visitor alice" and detail["verified"] is True
    log = (await admin_get(grace_stack, f"/v1/bots/{bot_id}/auth-events"))["events"]
    assert [(e["status"], e["degraded"]) for e in log] == [("fallback", False), ("verified", True), ("verified", False)]
    assert metric("doorman_degraded_verifications_total", bot=bot_id) == before + 1
    async with grace_stack.http.get(f"{grace_stack.gateway.url}/v1/widget/sessions/{log[1]['session_id']}") as resp:
        assert (await resp.json())["degraded"] is True

    # Back up (after the breaker's pause): a fresh verification clears the flag.
    switch.mode = "up"
    await asyncio.sleep(OPEN_SECONDS)  # time is the subject: the breaker lets a call through only after its pause
    again = await visit(grace_stack, bot_id, "alice")
    assert again["status"] == "verified" and again["degraded"] is False
    assert (await admin_get(grace_stack, f"/v1/bots/{bot_id}/contacts/{contact_id}"))["degraded"] is False


async def test_grace_off_falls_back(grace_stack: Stack, business: FakeCustomerAPI) -> None:
    switch = Switch()
    bot_id, _url = await grace_bot(grace_stack, business, switch, grace=0)
    assert (await visit(grace_stack, bot_id, "carol"))["status"] == "verified"
    switch.mode = "503"
    outcome = await visit(grace_stack, bot_id, "carol")
    assert outcome["status"] == "fallback" and outcome["fallback"]["reason"] == "auth_unavailable"
    # Nothing is kept for a bot without a grace period.
    assert await grace_stack.pool.fetchval("SELECT count(*) FROM grace_identities WHERE bot_id = $1::uuid", bot_id) == 0


# Every answer that does not verify the token is a refusal for the grace cache; the visitor's reason is part 1's.
REFUSALS = [
    ("401", Answer(status=401, json={"error": "no"}), "auth_rejected"),
    ("status false", Answer(json={"status": False, "message": "logged out"}), "auth_rejected"),
    ("404 session not found", Answer(status=404, json={"error": "session not found"}), "invalid_response"),
    ("302 to the login page", Answer(status=302, body=b"", content_type="text/html"), "invalid_response"),
    ("400", Answer(status=400, json={"error": "bad token"}), "invalid_response"),
    ("200 without an identity", Answer(json={"status": True, "data": {"name": "no id"}}), "invalid_response"),
    ("200 login page", Answer(body=b"<html>Please log in</html>", content_type="text/html"), "invalid_response"),
]


@pytest.mark.parametrize(("refusal", "answer", "reason"), REFUSALS, ids=[row for row, *_ in REFUSALS])
async def test_a_refused_token_is_not_verified_through_an_outage(
        grace_stack: Stack, business: FakeCustomerAPI, refusal: str, answer: Answer, reason: str) -> None:
    switch = Switch()
    bot_id, _url = await grace_bot(grace_stack, business, switch)
    assert (await visit(grace_stack, bot_id, "dave"))["status"] == "verified"
    switch.refusals["dave"] = answer
    refused = await visit(grace_stack, bot_id, "dave")
    assert refused["status"] == "fallback" and refused["fallback"]["reason"] == reason, refused
    del switch.refusals["dave"]
    switch.mode = "timeout" if refusal == "302 to the login page" else "503"
    outcome = await visit(grace_stack, bot_id, "dave")
    assert outcome["status"] == "fallback" and outcome["fallback"]["reason"] == "auth_unavailable", (refusal, outcome)
    assert outcome["degraded"] is False


def skew_verifier_clock(monkeypatch: pytest.MonkeyPatch, by: timedelta) -> None:
    """The verifier replica's clock is ``by`` off: every verifier module that reads the time through
    ``shared.events.utcnow`` reads it shifted (the database, the broker and the other services keep theirs)."""
    for name, module in list(sys.modules.items()):
        if name.startswith("services.verifier.") and getattr(module, "utcnow", None) is events.utcnow:
            monkeypatch.setattr(module, "utcnow", lambda: events.utcnow() + by)


async def test_a_verifier_whose_clock_is_behind_cannot_make_a_refusal_look_older_than_the_verification(
        grace_stack: Stack, business: FakeCustomerAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    switch = Switch()
    bot_id, _url = await grace_bot(grace_stack, business, switch)
    assert (await visit(grace_stack, bot_id, "gina"))["status"] == "verified"
    switch.refusals["gina"] = Answer(status=401, json={"error": "no"})
    with monkeypatch.context() as skewed:
        skew_verifier_clock(skewed, -timedelta(hours=1))
        assert (await visit(grace_stack, bot_id, "gina"))["fallback"]["reason"] == "auth_rejected"
    del switch.refusals["gina"]
    switch.mode = "503"
    outcome = await visit(grace_stack, bot_id, "gina")
    assert outcome["status"] == "fallback" and outcome["fallback"]["reason"] == "auth_unavailable", outcome


async def test_a_verifier_whose_clock_is_behind_still_verifies_after_a_refusal(
        grace_stack: Stack, business: FakeCustomerAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    switch = Switch()
    bot_id, _url = await grace_bot(grace_stack, business, switch)
    switch.refusals["hank"] = Answer(status=401, json={"error": "no"})
    assert (await visit(grace_stack, bot_id, "hank"))["fallback"]["reason"] == "auth_rejected"
    del switch.refusals["hank"]
    with monkeypatch.context() as skewed:
        skew_verifier_clock(skewed, -timedelta(hours=1))
        assert (await visit(grace_stack, bot_id, "hank"))["status"] == "verified"
    switch.mode = "503"
    outcome = await visit(grace_stack, bot_id, "hank")
    assert outcome["status"] == "verified" and outcome["degraded"] is True, outcome


async def test_an_expired_grace_window_falls_back(grace_stack: Stack, business: FakeCustomerAPI) -> None:
    switch = Switch()
    bot_id, _url = await grace_bot(grace_stack, business, switch, grace=60)
    assert (await visit(grace_stack, bot_id, "erin"))["status"] == "verified"
    # A minute and a second later, as the database's clock tells the remembered verification's age.
    await wait_until(lambda: grace_stack.pool.fetchval(
        "UPDATE grace_identities SET verified_at = verified_at - interval '61 seconds' WHERE bot_id = $1 RETURNING true",
        UUID(bot_id)), what="the verification to be remembered")
    switch.mode = "503"
    outcome = await visit(grace_stack, bot_id, "erin")
    assert outcome["status"] == "fallback" and outcome["fallback"]["reason"] == "auth_unavailable"


async def test_tokens_are_kept_only_as_keyed_hashes_and_the_testing_panel_keeps_none(
        grace_stack: Stack, business: FakeCustomerAPI, secret_key: str) -> None:
    switch = Switch()
    bot_id, _url = await grace_bot(grace_stack, business, switch)
    token = "frank-token-0123456789"
    assert (await visit(grace_stack, bot_id, token))["status"] == "verified"
    rows = await grace_stack.pool.fetch("SELECT token_hash, g::text AS whole FROM grace_identities g WHERE bot_id = $1::uuid",
                                        bot_id)
    assert len(rows) == 1
    assert bytes(rows[0]["token_hash"]) == Secrets(secret_key).keyed_hash(token) and len(rows[0]["token_hash"]) == 32
    assert token not in rows[0]["whole"] and token.encode().hex() not in rows[0]["whole"]

    async with grace_stack.http.post(f"{grace_stack.gateway.url}/v1/bots/{bot_id}/custom-auth/test",
                                     json={"access_token": "panel-token"}, headers=admin_headers()) as resp:
        assert resp.status == 200 and (await resp.json())["ok"] is True
    assert await grace_stack.pool.fetchval("SELECT count(*) FROM grace_identities WHERE bot_id = $1::uuid", bot_id) == 1


async def test_a_degraded_verification_never_overwrites_newer_data_and_the_latest_verification_sets_the_flag(
        grace_stack: Stack) -> None:
    bot_id = await create_bot(grace_stack.http, grace_stack.gateway.url)
    t0 = utcnow() - timedelta(minutes=10)

    def event(name: str, observed_minutes: int, *, degraded: bool = False, occurred_minutes: int | None = None) -> IdentityVerified:
        return IdentityVerified(
            correlation_id="c", session_id="s", bot_id=bot_id, identify_method=IdentifyMethod.id,
            identity=Identity(identifier="p-1", id="p-1", name=name), observed_at=t0 + timedelta(minutes=observed_minutes),
            occurred_at=t0 + timedelta(minutes=occurred_minutes if occurred_minutes is not None else observed_minutes),
            degraded=degraded)

    async def apply(*events: IdentityVerified) -> Any:
        async with grace_stack.pool.acquire() as conn, conn.transaction():
            await upsert_verified(conn, list(events))
        return await grace_stack.pool.fetchrow(
            "SELECT name, degraded, last_verified_at FROM contacts WHERE bot_id = $1::uuid AND identifier = 'p-1'", bot_id)

    row = await apply(event("Old name", 1))
    assert (row["name"], row["degraded"]) == ("Old name", False)
    row = await apply(event("New name", 2))  # the business's newer answer
    # A degraded verification at minute 5 from the identity verified at minute 1 (with the old name).
    row = await apply(event("Old name", 1, degraded=True, occurred_minutes=5))
    assert (row["name"], row["degraded"], row["last_verified_at"]) == ("New name", True, t0 + timedelta(minutes=5))
    row = await apply(event("Late name", 3))  # a fresh answer from before the degraded one, arriving late
    assert (row["name"], row["degraded"], row["last_verified_at"]) == ("Late name", True, t0 + timedelta(minutes=5))
    row = await apply(event("Fresh name", 6))  # the next verification by the business clears it
    assert (row["name"], row["degraded"], row["last_verified_at"]) == ("Fresh name", False, t0 + timedelta(minutes=6))


async def test_a_rejection_while_keys_rotate_covers_the_identity_remembered_under_the_old_key(
        grace_stack: Stack, secret_key: str) -> None:
    """Remembered under the old key; after a new key is put first, a rejection must still stop the grace."""
    from cryptography.fernet import Fernet

    from services.verifier.grace import GraceCache

    bot_id = await create_bot(grace_stack.http, grace_stack.gateway.url)
    token = "rotating-token-0123456789"
    verified_then = IdentityVerified(correlation_id="c", session_id="s", bot_id=bot_id, identify_method=IdentifyMethod.id,
                                     identity=Identity(identifier="r-1", id="r-1"), observed_at=utcnow())
    await GraceCache(grace_stack.pool, Secrets(secret_key)).remember(bot_id, token, verified_then)
    rotated = GraceCache(grace_stack.pool, Secrets(f"{Fernet.generate_key().decode()},{secret_key}"))
    assert await rotated.recall(bot_id, token, "id", 600) is not None  # found under the old key's hash

    await rotated.reject(bot_id, token)

    assert await rotated.recall(bot_id, token, "id", 600) is None
