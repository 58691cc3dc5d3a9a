"""Erasure and export of a contact, and identity changes recorded on it, against the real services:
an erased contact stays erased whatever old event comes back (published again, dead-lettered and
replayed, late), while a new verification makes a new contact."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import aio_pika

from services.contacts.handler import ERASED_DETAIL, record
from shared import messaging
from shared.crypto import Secrets
from shared.events import ContactCollected, Event, Identity, IdentifyMethod, IdentityVerified, utcnow
from tests.conftest import (AMQP_URL, Published, Stack, admin_headers, await_outcome, create_bot,
                            logged_detail, store_pending, verify_once)
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.integration.test_collect_information import contact_where, submit
from tests.integration.test_identity_push import push
from tests.integration.test_webhooks import by_type, deliveries, open_and_wait, webhook_bot
from tests.integration.test_workspaces import workspace_with_key
from tests.waits import wait_until


async def api(stack: Stack, method: str, path: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else admin_headers()
    async with stack.http.request(method, f"{stack.gateway.url}{path}", json=body, headers=headers) as resp:
        return resp.status, (await resp.json() if resp.content_type == "application/json" else None)


async def publish(stack: Stack, event: Event) -> None:
    """As the verifier (or the gateway, for a form) publishes it: onto the events exchange, confirmed."""
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(messaging.Topology(stack.config["amqp_prefix"]).exchange)
        await exchange.publish(messaging.event_message(event), routing_key=event.event_type)


async def processed(stack: Stack, event_id: UUID, timeout: float = 10) -> None:
    """Until the contacts service has committed the event (its inbox records it in the same transaction)."""
    await wait_until(lambda: stack.pool.fetchval("SELECT true FROM processed_events WHERE event_id = $1", event_id),
                     timeout, f"event {event_id} to be recorded")


def verified_again(bot: str, session_id: str, row: dict[str, Any], *, observed_at: Any,
                   event_id: UUID | None = None) -> IdentityVerified:
    """The verification of the contact in ``row`` as the verifier published it (same identity)."""
    return IdentityVerified(
        **({"event_id": event_id} if event_id else {}), correlation_id="replay", session_id=session_id,
        bot_id=UUID(bot), identify_method=IdentifyMethod(row["identify_method"]),
        identity=Identity(identifier=row["identifier"], id=row["external_id"], name=row["name"], email=row["email"]),
        observed_at=observed_at,
    )


async def contacts_of(stack: Stack, bot: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await stack.pool.fetch("SELECT * FROM contacts WHERE bot_id = $1", UUID(bot))]


async def test_erase_then_replays_of_the_old_verification_do_not_bring_it_back(
        stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="gone-1", name="Erin Erased", email="erin@example.com",
                                         metadata={"order": "ORD-1"}))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    first = await verify_once(stack, bot, access_token="t")
    contact_id = first["contact"]["contact_id"]
    [row] = await contacts_of(stack, bot)
    verified_at = row["version_at"]

    assert (await api(stack, "DELETE", f"/v1/bots/{bot}/contacts/{contact_id}"))[0] == 204

    # Gone, and its routes say so.
    assert await contacts_of(stack, bot) == []
    status, body = await api(stack, "GET", f"/v1/bots/{bot}/contacts/{contact_id}")
    assert status == 404
    for method, path in (("GET", f"/v1/bots/{bot}/contacts/{contact_id}/export"),
                         ("DELETE", f"/v1/bots/{bot}/contacts/{contact_id}")):
        status, body = await api(stack, method, path)
        assert (status, body["error"]["code"]) == (404, "contact_erased"), (method, body)
    # Its session stays in the activity log, pointing at no one; the widget sees no contact.
    session = await stack.pool.fetchrow("SELECT status, contact_id FROM widget_sessions WHERE session_id = $1",
                                        first["session_id"])
    assert (session["status"], session["contact_id"]) == ("verified", None)
    async with stack.http.get(f"{stack.gateway.url}/v1/widget/sessions/{first['session_id']}") as resp:
        assert (await resp.json())["contact"] is None
    # The tombstone holds no personal data: an opaque id, a keyed hash, a time.
    tomb = await stack.pool.fetchrow("SELECT * FROM contact_tombstones WHERE contact_id = $1", UUID(contact_id))
    assert set(dict(tomb)) == {"contact_id", "bot_id", "key_hash", "erased_at"} and len(tomb["key_hash"]) == 32
    assert b"gone-1" not in tomb["key_hash"]

    # 1. The very same event again, its inbox entry pruned meanwhile (as after the retention period).
    await stack.pool.execute("DELETE FROM processed_events WHERE event_id = $1", row["version_event"])
    same = verified_again(bot, first["session_id"], row, observed_at=verified_at, event_id=row["version_event"])
    await publish(stack, same)
    await processed(stack, same.event_id)
    assert await contacts_of(stack, bot) == []

    # 2. A retry of that verification (a new event id, the business's answer from before the erasure), whose
    #    session still waits: the session ends, but the contact is not made again.
    waiting = f"late-{uuid4()}"
    assert await store_pending(stack.pool, waiting, bot, deadline_at=utcnow() + timedelta(seconds=30))
    late = verified_again(bot, waiting, row, observed_at=verified_at)
    await publish(stack, late)
    outcome = await await_outcome(stack.http, stack.gateway.url, waiting)
    assert outcome["status"] == "fallback" and outcome["fallback"]["reason"] == "internal_error"
    assert await logged_detail(stack, bot, waiting) == ERASED_DETAIL
    assert await contacts_of(stack, bot) == []


async def test_a_dead_lettered_verification_replayed_after_the_erasure_is_skipped(
        stack: Stack, customer_api: FakeCustomerAPI, capsys) -> None:
    """``doorman dlq replay`` puts back a verification the contacts service had given up on (its session
    ended in internal_error then); the contact was erased meanwhile: it stays erased."""
    from doorman.ops import replay
    from shared.settings import DoormanSettings

    url = customer_api.endpoint(verified(id="dlq-1", name="Dee Lettered"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    first = await verify_once(stack, bot, access_token="t")
    [row] = await contacts_of(stack, bot)
    dead_session = f"dead-{uuid4()}"
    assert await store_pending(stack.pool, dead_session, bot, deadline_at=utcnow() + timedelta(seconds=30))
    await stack.pool.execute("UPDATE widget_sessions SET status = 'fallback', reason = 'internal_error', "
                             "resolved_at = now() WHERE session_id = $1", dead_session)
    dead = verified_again(bot, dead_session, row, observed_at=utcnow())  # verified before the erasure
    prefix = stack.config["amqp_prefix"]
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            messaging.event_message(dead), routing_key=messaging.Topology(prefix).dead_letter_queue(messaging.CONTACTS_QUEUE))

    assert (await api(stack, "DELETE", f"/v1/bots/{bot}/contacts/{first['contact']['contact_id']}"))[0] == 204
    await replay(DoormanSettings(amqp_url=AMQP_URL, amqp_prefix=prefix), messaging.CONTACTS_QUEUE)

    assert "replayed 1 message(s)" in capsys.readouterr().out
    await processed(stack, dead.event_id)
    assert await contacts_of(stack, bot) == []


async def test_a_new_verification_after_the_erasure_makes_a_new_contact(
        stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="back-1", name="Bea Back"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    old = (await verify_once(stack, bot, access_token="t"))["contact"]["contact_id"]
    assert (await api(stack, "DELETE", f"/v1/bots/{bot}/contacts/{old}"))[0] == 204

    again = await verify_once(stack, bot, access_token="t")

    assert again["status"] == "verified" and again["contact"]["contact_id"] != old
    [row] = await contacts_of(stack, bot)
    assert (row["external_id"], row["name"], row["identity_history"]) == ("back-1", "Bea Back", [])
    status, exported = await api(stack, "GET", f"/v1/bots/{bot}/contacts/{row['contact_id']}/export")
    assert status == 200 and [s["session_id"] for s in exported["sessions"]] == [again["session_id"]]
    assert (await api(stack, "GET", f"/v1/bots/{bot}/contacts/{old}/export"))[0] == 404


async def test_export_before_and_after(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="exp-1", name="Ex Port", email="ex@example.com", metadata={"plan": "pro"}))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, identify_method="id",
                           outage_grace_seconds=600)
    opened = [await verify_once(stack, bot, access_token=f"token-{i}") for i in range(2)]
    contact_id = opened[0]["contact"]["contact_id"]
    pushed = await push(stack, bot, {"id": "exp-1", "name": "Ex Port"})  # not used yet: still tied by its id

    status, exported = await api(stack, "GET", f"/v1/bots/{bot}/contacts/{contact_id}/export")

    assert status == 200
    contact = exported["contact"]
    assert (contact["contact_id"], contact["external_id"], contact["name"], contact["email"]) == (
        contact_id, "exp-1", "Ex Port", "ex@example.com")
    assert contact["metadata"] == {"plan": "pro"} and contact["sources"]["name"] == "api"
    assert (contact["verified"], contact["degraded"], contact["taken_over_at"]) == (True, False, None)
    sessions = exported["sessions"]
    assert [s["session_id"] for s in sessions] == [o["session_id"] for o in reversed(opened)]
    assert all(s["link"] == "verified" and s["status"] == "verified" and s["resolved_at"] for s in sessions)
    assert [p["identity"]["id"] for p in exported["pushed_identities"]] == ["exp-1"]
    assert pushed["widget_token"] not in str(exported)
    assert len(exported["cached_identities"]) == 2  # one per access token, never the tokens themselves
    assert "token-0" not in str(exported)

    assert (await api(stack, "DELETE", f"/v1/bots/{bot}/contacts/{contact_id}"))[0] == 204

    status, body = await api(stack, "GET", f"/v1/bots/{bot}/contacts/{contact_id}/export")
    assert (status, body["error"]["code"]) == (404, "contact_erased")
    # What was tied to it went with it: the pushed profile (its widget token no longer verifies anyone) and
    # the grace cache's copies.
    assert await stack.pool.fetchval("SELECT count(*) FROM pushed_identities WHERE bot_id = $1", UUID(bot)) == 0
    assert await stack.pool.fetchval("SELECT count(*) FROM grace_identities WHERE bot_id = $1", UUID(bot)) == 0
    late = await verify_once(stack, bot, access_token=pushed["widget_token"])
    assert late["status"] == "fallback" and late["fallback"]["reason"] == "auth_rejected"


async def test_the_pushed_identity_a_session_used_goes_with_the_contact(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True,
                           auth_url=customer_api.endpoint(verified(email="never@example.com")), identify_method="email")
    await push(stack, bot, {"email": "someone-else@example.com"})
    token = (await push(stack, bot, {"email": "Pat@Example.com", "name": "Pat"}))["widget_token"]
    outcome = await verify_once(stack, bot, access_token=token)
    assert outcome["status"] == "verified"

    assert (await api(stack, "DELETE", f"/v1/bots/{bot}/contacts/{outcome['contact']['contact_id']}"))[0] == 204

    left = await stack.pool.fetch("SELECT identity FROM pushed_identities WHERE bot_id = $1", UUID(bot))
    assert [r["identity"]["email"] for r in left] == ["someone-else@example.com"]  # another person's is kept


async def test_an_erased_form_contact_stays_erased_and_a_new_form_makes_it_again(stack: Stack) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)  # Custom Authentication off: every open falls back
    fallback = await verify_once(stack, bot, access_token="t")
    assert (await submit(stack, fallback["session_id"], {"name": "Fay Form", "email": "fay@example.com"}))[0] == 202
    row = await contact_where(stack, bot, "identifier = $2", "fay@example.com")
    auth_detail = await stack.pool.fetchval("SELECT detail FROM widget_sessions WHERE session_id = $1",
                                            fallback["session_id"])
    assert auth_detail

    assert (await api(stack, "DELETE", f"/v1/bots/{bot}/contacts/{row['contact_id']}"))[0] == 204

    session = await stack.pool.fetchrow("SELECT * FROM widget_sessions WHERE session_id = $1", fallback["session_id"])
    assert (session["collected_contact_id"], session["detail"], session["reason"]) == (None, None, "ca_disabled")
    # The form's event again (a replay): skipped.
    replayed = ContactCollected(correlation_id="replay", session_id=fallback["session_id"], bot_id=UUID(bot),
                                name="Fay Form", email="fay@example.com", occurred_at=row["version_at"])
    await publish(stack, replayed)
    await processed(stack, replayed.event_id)
    assert await contacts_of(stack, bot) == []
    # A new form from the same person: a new contact.
    again = await verify_once(stack, bot, access_token="t")
    assert (await submit(stack, again["session_id"], {"name": "Fay Again", "email": "fay@example.com"}))[0] == 202
    new = await contact_where(stack, bot, "identifier = $2", "fay@example.com")
    assert new["contact_id"] != row["contact_id"] and new["name"] == "Fay Again"


async def test_a_contact_an_old_event_revives_in_the_race_with_an_erasure_is_deleted_again(stack: Stack) -> None:
    """The race tombstones.py names: an upsert that began before the erasure committed inserts the row afresh
    (here written by hand); the same transaction's read of the contact ids deletes it again."""
    bot = await create_bot(stack.http, stack.gateway.url)
    secrets = Secrets(stack.config["secret_key"])
    session = f"race-{uuid4()}"
    assert await store_pending(stack.pool, session, bot, deadline_at=utcnow() + timedelta(seconds=30))
    before = utcnow() - timedelta(seconds=5)
    event = IdentityVerified(correlation_id="c", session_id=session, bot_id=UUID(bot), identify_method=IdentifyMethod.id,
                             identity=Identity(identifier="racer", id="racer", name="Rae Cer"), observed_at=before)
    await record([event], pool=stack.pool, publish=Published(), secrets=secrets)
    [row] = await contacts_of(stack, bot)
    assert (await api(stack, "DELETE", f"/v1/bots/{bot}/contacts/{row['contact_id']}"))[0] == 204
    await stack.pool.execute(
        """INSERT INTO contacts (bot_id, identify_method, identifier, name, verified, version_at, version_event)
           VALUES ($1, 'id', 'racer', 'Rae Cer', true, $2, $3)""", UUID(bot), before, uuid4())

    retried = event.model_copy(update={"event_id": uuid4()})
    await record([retried], pool=stack.pool, publish=Published(), secrets=secrets)

    assert await contacts_of(stack, bot) == []


async def test_identity_changed_is_recorded_with_the_old_and_new_ids(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """Identify by email: two verified identities with one email and different business ids. The latest wins,
    and the change is on the contact, never silent."""
    owners = {"token-a": "owner-A", "token-b": "owner-B"}
    url = customer_api.responder(lambda body: verified(id=owners[body["access_token"]], email="shared@example.com"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, identify_method="email")
    first = await verify_once(stack, bot, access_token="token-a")
    second = await verify_once(stack, bot, access_token="token-b")
    contact_id = first["contact"]["contact_id"]
    assert second["contact"]["contact_id"] == contact_id

    status, contact = await api(stack, "GET", f"/v1/bots/{bot}/contacts/{contact_id}")

    assert status == 200 and contact["external_id"] == "owner-B"
    [change] = contact["history"]
    assert (change["kind"], change["old_external_id"], change["new_external_id"], change["session_id"]) == (
        "identity_changed", "owner-A", "owner-B", second["session_id"])
    assert contact["taken_over_at"] is None and contact["typed"] == {}
    # The activity log names it on the session whose verification made it.
    _, log = await api(stack, "GET", f"/v1/bots/{bot}/auth-events")
    changes = {e["session_id"]: e["identity_change"] for e in log["events"]}
    assert changes[first["session_id"]] is None and changes[second["session_id"]] == change
    # The same id again is no change; the export carries the history too.
    await verify_once(stack, bot, access_token="token-b")
    _, exported = await api(stack, "GET", f"/v1/bots/{bot}/contacts/{contact_id}/export")
    assert [h["kind"] for h in exported["contact"]["history"]] == ["identity_changed"]


async def test_a_verified_identity_taking_over_a_form_contact_is_recorded_and_keeps_what_was_typed(
        stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(Answer(status=401), verified(id="real-1", name="Real Name", email="taken@example.com"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, identify_method="email")
    rejected = await verify_once(stack, bot, access_token="wrong")
    assert rejected["status"] == "fallback"
    typed = {"name": "Typed Name", "email": "taken@example.com", "phone_number": "0912 345 678", "country_code": "+84"}
    assert (await submit(stack, rejected["session_id"], typed))[0] == 202
    form = await contact_where(stack, bot, "identifier = $2", "taken@example.com")
    assert form["verified"] is False

    taken = await verify_once(stack, bot, access_token="right")

    assert taken["status"] == "verified" and taken["contact"]["contact_id"] == str(form["contact_id"])
    status, contact = await api(stack, "GET", f"/v1/bots/{bot}/contacts/{form['contact_id']}")
    assert status == 200 and contact["verified"] is True and contact["name"] == "Real Name"
    assert contact["taken_over_at"] is not None
    assert contact["typed"] == {"name": "Typed Name", "email": "taken@example.com", "phone_number": "+84912345678",
                                "country_code": "+84"}
    # What the business sent is "api"; what it did not send stays the visitor's, and says so.
    assert contact["sources"] == {"name": "api", "email": "api", "external_id": "api",
                                  "phone_number": "visitor", "country_code": "visitor"}
    assert contact["phone_number"] == "+84912345678"
    [entry] = contact["history"]
    assert (entry["kind"], entry["session_id"], entry["old_external_id"]) == (
        "took_over_unverified", taken["session_id"], None)


async def test_another_workspace_can_neither_erase_nor_export(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    (_, key_a), (_, key_b) = [await workspace_with_key(stack, n) for n in ("Erase A", "Erase B")]
    bots = {}
    for key in (key_a, key_b):
        status, bot = await api(stack, "POST", "/v1/bots", key, {"name": "erasure bot"})
        assert status == 201
        url = customer_api.endpoint(verified(id=f"person-of-{bot['bot_id']}"))
        assert (await api(stack, "PUT", f"/v1/bots/{bot['bot_id']}/custom-auth", key,
                          {"enabled": True, "auth_url": url}))[0] == 200
        outcome = await verify_once(stack, bot["bot_id"], access_token="t")
        bots[key] = (bot["bot_id"], outcome["contact"]["contact_id"])
    bot_b, contact_b = bots[key_b]
    bot_a, contact_a = bots[key_a]

    for method, path in (("DELETE", f"/v1/bots/{bot_b}/contacts/{contact_b}"),
                         ("GET", f"/v1/bots/{bot_b}/contacts/{contact_b}/export"),
                         ("DELETE", f"/v1/bots/{bot_a}/contacts/{contact_b}"),  # B's contact under A's bot
                         ("GET", f"/v1/bots/{bot_a}/contacts/{contact_b}/export"),
                         ("DELETE", f"/v1/bots/{bot_a}/contacts/not-a-uuid")):
        status, body = await api(stack, method, path, key_a)
        assert status == 404 and body["error"]["code"] in ("bot_not_found", "contact_not_found"), (method, path, body)
    assert len(await contacts_of(stack, bot_b)) == 1  # untouched

    assert (await api(stack, "GET", f"/v1/bots/{bot_a}/contacts/{contact_a}/export", key_a))[0] == 200
    assert (await api(stack, "DELETE", f"/v1/bots/{bot_a}/contacts/{contact_a}", key_a))[0] == 204
    assert (await api(stack, "DELETE", f"/v1/bots/{bot_a}/contacts/{contact_a}"))[0] == 404
    async with stack.http.delete(f"{stack.gateway.url}/v1/bots/{bot_b}/contacts/{contact_b}") as resp:
        assert resp.status == 401  # no token


async def test_an_old_verification_never_takes_over_a_form_contact_made_after_the_erasure(
        stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """The same person fills in the form after the erasure (a new contact, not verified); the old verification
    replayed must not take it over (which would also date it before the erasure)."""
    url = customer_api.endpoint(verified(id="old-1", email="olga@example.com", name="Olga Old"), Answer(status=401))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, identify_method="email")
    first = await verify_once(stack, bot, access_token="t")
    [row] = await contacts_of(stack, bot)
    assert (await api(stack, "DELETE", f"/v1/bots/{bot}/contacts/{first['contact']['contact_id']}"))[0] == 204
    rejected = await verify_once(stack, bot, access_token="t")  # the business now says no: the form
    assert (await submit(stack, rejected["session_id"], {"name": "Olga Typed", "email": "olga@example.com"}))[0] == 202
    form = await contact_where(stack, bot, "identifier = $2", "olga@example.com")

    old = verified_again(bot, first["session_id"], row, observed_at=row["version_at"])
    await publish(stack, old)
    await processed(stack, old.event_id)

    [now] = await contacts_of(stack, bot)
    assert (now["contact_id"], now["verified"], now["name"], now["identity_history"]) == (
        form["contact_id"], False, "Olga Typed", [])


async def test_erasure_forgets_the_fallback_deliveries_of_the_contacts_sessions(
        stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """A visitor falls back (announced as session.fell_back, with the session id and the detail), then fills in the
    form: that session is the contact's. Erasing the contact forgets that delivery as well as its contact.* ones."""
    hook = customer_api.endpoint(Answer(json={"ok": True}))
    bot, _ = await webhook_bot(stack, customer_api, hook)
    fell = await open_and_wait(stack, bot, "forged")
    assert fell["status"] == "fallback"
    await wait_until(lambda: by_type(customer_api.received(hook), "session.fell_back"), what="session.fell_back")
    assert (await submit(stack, fell["session_id"], {"name": "Fern Fallback", "email": "fern@example.com"}))[0] == 202
    row = await contact_where(stack, bot, "identifier = $2", "fern@example.com")
    await wait_until(lambda: by_type(customer_api.received(hook), "contact.created"), what="contact.created")

    assert (await api(stack, "DELETE", f"/v1/bots/{bot}/contacts/{row['contact_id']}"))[0] == 204

    logged = (await deliveries(stack, bot))["deliveries"]
    assert [d["type"] for d in logged] == ["contact.erased"]
    naming = await stack.pool.fetch(
        """SELECT type FROM webhook_deliveries WHERE bot_id = $1
           AND (session_id = $2 OR body LIKE '%' || $2 || '%' OR body LIKE '%fern@example.com%')""",
        UUID(bot), fell["session_id"])
    assert naming == []


async def test_a_form_contacts_tombstone_holds_after_the_bot_changes_its_identify_method(stack: Stack) -> None:
    """A form is filed under the bot's identify method when the form has that field (else its email, else its
    phone). The contact made under `email` is erased after the bot moved to `phone_number`: the form's event
    replayed (it happened before the erasure) must not make a contact again, under either key; a form the same
    visitor sends after the erasure makes a new one (the tombstone holds back only what came before)."""
    bot = await create_bot(stack.http, stack.gateway.url, enabled=False, identify_method="email")
    typed = {"name": "Mo Method", "email": "mo@example.com", "phone_number": "0912 345 678", "country_code": "+84"}
    fallback = await verify_once(stack, bot, access_token="t")
    assert (await submit(stack, fallback["session_id"], typed))[0] == 202
    row = await contact_where(stack, bot, "identifier = $2", "mo@example.com")
    assert row["identify_method"] == "email"
    async with stack.http.put(f"{stack.gateway.url}/v1/bots/{bot}/custom-auth", headers=admin_headers(),
                              json={"enabled": False, "identify_method": "phone_number"}) as resp:
        assert resp.status == 200, await resp.text()

    assert (await api(stack, "DELETE", f"/v1/bots/{bot}/contacts/{row['contact_id']}"))[0] == 204

    replayed = ContactCollected(correlation_id="replay", session_id=fallback["session_id"], bot_id=UUID(bot),
                                name="Mo Method", email="mo@example.com", phone_number="+84912345678",
                                country_code="+84", occurred_at=row["version_at"])
    await publish(stack, replayed)
    await processed(stack, replayed.event_id)
    assert await contacts_of(stack, bot) == []

    again = await verify_once(stack, bot, access_token="t")
    assert (await submit(stack, again["session_id"], {**typed, "name": "Mo Again"}))[0] == 202
    new = await contact_where(stack, bot, "name = $2", "Mo Again")
    assert (new["identify_method"], new["identifier"]) == ("phone_number", "+84912345678")
    assert new["contact_id"] != row["contact_id"]
