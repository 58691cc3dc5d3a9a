"""One bot holding every shape the features store, for the views' round-trip tests (the API against its
OpenAPI document, the admin page in Chromium).

Made through the public API wherever it can be: every fallback reason, both identity changes, sessions in
each status (verified, degraded, collected, ended by the visitor and by a revocation), contacts of each
provenance, webhook deliveries delivered and dead. What only time or a fault makes is written with the
code's own writers: a session still pending and one ended while pending (``sessions.open_sessions``), one
nobody resolved (expired by the gateway that reads it), and ``misconfigured`` (a header token saved before
tokens were checked: ``sessions.resolve_sessions`` as the contacts service records it). ``destination_blocked``
comes from a second stack whose outbound policy refuses private networks, on the same database.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from services.verifier.identity import UNSENDABLE_TOKEN
from shared import sessions
from shared.events import utcnow
from tests.conftest import Stack, admin_headers, await_outcome, create_bot, open_session, store_pending
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.integration.test_widget_wait import refusing_every_open
from tests.waits import wait_until, webhooks_heard

SHOP = "https://shop.example.com"
BUSINESS_NOTE = "<script>secret-internal-note</script>"  # the business's words: for the activity log only
WEBHOOK_EVENTS = ["contact.created", "contact.updated", "contact.erased", "session.fell_back"]


def _person(token: str) -> Answer:
    """``good-<name>`` verifies <name> (identified by email)."""
    name = token.removeprefix("good-")
    return verified(id=f"id-{name}", name=f"Visitor {name}", email=f"{name}@shapes.example")


class Business:
    """The bot's Authentication URL: answers by access token. ``down`` tokens meet a 503."""

    def __init__(self) -> None:
        self.down: set[str] = {"down"}

    def __call__(self, body: Any) -> Answer:
        token = body["access_token"]
        if token in self.down:
            return Answer(status=503, json={})
        answers = {
            "reject": Answer(json={"status": False, "message": BUSINESS_NOTE}),
            "garbage": Answer(body=b"<html>not json</html>", content_type="text/html"),
            "owner-a": verified(id="owner-A", name="Owner A", email="shared@shapes.example"),
            "owner-b": verified(id="owner-B", name="Owner B", email="shared@shapes.example"),
            "taken": verified(id="id-taken", name="Verified Owner", email="taken@shapes.example"),
            "ws": verified(id="ws-1", name="Workspace Person", email="ws@shapes.example", external_workspace_id="ws-9",
                           phone_number="0912345678", country_code="+84", avatar="https://img.example.com/a.png",
                           label="vip", metadata={"plan": {"tier": "pro", "seats": [1, None, "x"]}, "note": None}),
        }
        return answers.get(token) or (_person(token) if token.startswith("good-") else Answer(status=401, json={}))


def _webhook(body: Any) -> Answer:
    """The bot's webhook endpoint: delivers creations and fall-backs, refuses updates for good (dead), and
    hangs on erasures (pending while its attempts time out)."""
    kind = body.get("type") if isinstance(body, dict) else None
    if kind == "contact.updated":
        return Answer(status=400, json={"error": "no"})
    if kind == "contact.erased":
        return Answer(json={}, delay=60)
    return Answer(json={})


@dataclass
class Shapes:
    bot: str
    sessions: dict[str, str] = field(default_factory=dict)  # what it shows -> session id
    erased_contact: str | None = None


async def _admin(stack: Stack, method: str, path: str, body: Any = None) -> Any:
    async with stack.http.request(method, f"{stack.gateway.url}{path}", json=body, headers=admin_headers()) as resp:
        assert resp.status < 300, (resp.status, await resp.text())
        return await resp.json() if resp.status != 204 else None


async def _visit(stack: Stack, bot: str, origin: str | None = SHOP, **body: Any) -> dict[str, Any]:
    session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot, **body}, origin=origin)
    return await await_outcome(stack.http, stack.gateway.url, session_id)


async def _form(stack: Stack, session_id: str, typed: dict[str, str]) -> None:
    """The visitor sends the Collect Information form; returns once the contacts service linked its contact."""
    async with stack.http.post(f"{stack.gateway.url}/v1/widget/sessions/{session_id}/contact", json=typed) as resp:
        assert resp.status == 202, await resp.text()
    await wait_until(lambda: stack.pool.fetchval(
        "SELECT collected_contact_id IS NOT NULL FROM widget_sessions WHERE session_id = $1", session_id),
        what="the form's contact")


async def every_shape(stack: Stack, strict: Stack, customer_api: FakeCustomerAPI) -> Shapes:
    """A new bot with every shape (see the module's docstring); ``strict`` refuses private networks."""
    business = Business()
    shapes = Shapes(await create_bot(stack.http, stack.gateway.url))  # Custom Authentication off
    s = shapes.sessions
    s["ca_disabled"] = (await _visit(stack, shapes.bot, access_token="good-x"))["session_id"]

    await _admin(stack, "PUT", f"/v1/bots/{shapes.bot}/webhook",
                 {"url": customer_api.responder(_webhook), "events": WEBHOOK_EVENTS, "enabled": True})
    await webhooks_heard(shapes.bot)
    await _admin(stack, "PUT", f"/v1/bots/{shapes.bot}/custom-auth", {
        "enabled": True, "auth_url": customer_api.responder(business), "identify_method": "email",
        "domain_whitelist": {"enabled": True, "source": "manual", "domains": ["shop.example.com"]},
        "outage_grace_seconds": 300})
    deadline = asyncio.get_running_loop().time() + 5
    while (missing := await _visit(stack, shapes.bot))["fallback"]["reason"] != "missing_token":  # settings heard
        assert asyncio.get_running_loop().time() < deadline, missing
    s["missing_token, collected with an email"] = missing["session_id"]
    await _form(stack, missing["session_id"], {"name": "Walk-in Visitor", "email": "walkin@shapes.example"})
    nameless = await _visit(stack, shapes.bot)
    s["missing_token, collected with a name only"] = nameless["session_id"]
    await _form(stack, nameless["session_id"], {"name": "Only A Name"})
    s["domain_not_allowed"] = (await _visit(stack, shapes.bot, origin="https://evil.example", access_token="t"))["session_id"]
    s["domain_not_allowed, no origin"] = (await _visit(stack, shapes.bot, origin=None, access_token="t"))["session_id"]

    rejected = await _visit(stack, shapes.bot, access_token="reject")
    s["auth_rejected"] = rejected["session_id"]
    await _form(stack, rejected["session_id"], {"name": "Typed Name", "email": "taken@shapes.example",
                                                "phone_number": "0912 345 678", "country_code": "+84"})
    s["took_over_unverified"] = (await _visit(stack, shapes.bot, access_token="taken"))["session_id"]
    s["invalid_response"] = (await _visit(stack, shapes.bot, access_token="garbage"))["session_id"]
    s["verified"] = (await _visit(stack, shapes.bot, access_token="owner-a"))["session_id"]
    s["identity_changed"] = (await _visit(stack, shapes.bot, access_token="owner-b"))["session_id"]
    s["verified, business workspace"] = (await _visit(stack, shapes.bot, access_token="ws"))["session_id"]
    pushed = await _admin(stack, "POST", f"/v1/bots/{shapes.bot}/identities",
                          {"email": "pushed@shapes.example", "name": "Pushed Person", "metadata": {"plan": "pro"}})
    s["verified, pushed"] = (await _visit(stack, shapes.bot, access_token=pushed["widget_token"]))["session_id"]
    assert (await _visit(stack, shapes.bot, access_token="good-grace"))["status"] == "verified"
    business.down.add("good-grace")
    down, degraded = await asyncio.gather(_visit(stack, shapes.bot, access_token="down"),
                                          _visit(stack, shapes.bot, access_token="good-grace"))
    s["auth_unavailable"], s["verified degraded"] = down["session_id"], degraded["session_id"]
    assert degraded["degraded"] is True, degraded

    leaver = await _visit(stack, shapes.bot, access_token="good-leaver")
    async with stack.http.delete(f"{stack.gateway.url}/v1/widget/sessions/{leaver['session_id']}") as resp:
        assert resp.status == 204
    s["ended by the visitor"] = leaver["session_id"]
    revoked = await _visit(stack, shapes.bot, access_token="good-revoked")
    await _admin(stack, "POST", f"/v1/bots/{shapes.bot}/contacts/{revoked['contact']['contact_id']}/revoke")
    s["ended by a revocation"] = revoked["session_id"]
    with refusing_every_open(stack):
        s["busy"] = (await _visit(stack, shapes.bot, access_token="good-x"))["session_id"]
    s["destination_blocked"] = (await _visit(strict, shapes.bot, access_token="good-x"))["session_id"]

    # Only time or a fault makes these: written as the code writes them.
    now = utcnow()
    for what, deadline_at in (("pending", now + timedelta(hours=1)), ("internal_error", now - timedelta(seconds=30)),
                              ("misconfigured", now + timedelta(hours=1))):
        s[what] = sessions.new_session_id(sessions.new_replica_id())
        assert await store_pending(stack.pool, s[what], shapes.bot, deadline_at=deadline_at)
    # Past its deadline: ended internal_error by whichever comes first, the gateway reading it or the sweeper
    # (a plain GET racing the sweeper's lock may still read it pending; the stream waits for the outcome).
    expired = await await_outcome(stack.http, stack.gateway.url, s["internal_error"])
    assert expired["fallback"]["reason"] == "internal_error", expired
    async with stack.pool.acquire() as conn, conn.transaction():
        await sessions.resolve_sessions(conn, [sessions.Outcome(s["misconfigured"], "fallback", reason="misconfigured",
                                                                detail=UNSENDABLE_TOKEN)])
    ending = sessions.new_session_id(sessions.new_replica_id())
    assert await store_pending(stack.pool, ending, shapes.bot, deadline_at=now + timedelta(hours=1))
    async with stack.http.delete(f"{stack.gateway.url}/v1/widget/sessions/{ending}") as resp:
        assert resp.status == 204
    s["ended while pending"] = ending
    # Verified through an OpenID Provider (its sub recorded, the token's exp known), then ended by its back-channel
    # logout: as the contacts service and the logout endpoint write them.
    for what, sub in (("verified, identity expires", "provider-sub-kept"),
                      ("ended by a back-channel logout", "provider-sub-ended")):
        s[what] = sessions.new_session_id(sessions.new_replica_id())
        assert await store_pending(stack.pool, s[what], shapes.bot, deadline_at=now + timedelta(hours=1))
        async with stack.pool.acquire() as conn, conn.transaction():
            await sessions.resolve_sessions(conn, [sessions.Outcome(
                s[what], "verified", provider_sub=sub, provider_sid="sid-1",
                identity_expires_at=now + timedelta(minutes=5))])
    assert len(await sessions.end_provider_sessions(stack.pool, shapes.bot, sub="provider-sub-ended", sid=None)) == 1

    erased = await _visit(stack, shapes.bot, access_token="good-erased")
    s["verified, its contact erased"] = erased["session_id"]
    shapes.erased_contact = erased["contact"]["contact_id"]
    await delivery_statuses(stack, shapes, {"delivered", "dead"})
    return shapes


async def delivery_statuses(stack: Stack, shapes: Shapes, wanted: set[str]) -> dict[str, Any]:
    """The bot's delivery log, once it holds deliveries in each ``wanted`` status (bounded wait)."""
    async def holding() -> dict[str, Any] | None:
        page = await _admin(stack, "GET", f"/v1/bots/{shapes.bot}/webhook/deliveries?limit=100")
        return page if wanted <= {d["status"] for d in page["deliveries"]} else None

    return await wait_until(holding, 15, f"deliveries {sorted(wanted)}")


async def erase(stack: Stack, shapes: Shapes) -> None:
    """Erase the contact kept for it: its ``contact.erased`` delivery stays pending for seconds (the endpoint hangs)."""
    async with stack.http.delete(f"{stack.gateway.url}/v1/bots/{shapes.bot}/contacts/{shapes.erased_contact}",
                                 headers=admin_headers()) as resp:
        assert resp.status == 204, await resp.text()
