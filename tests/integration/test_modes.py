"""OpenCX's modes: ``collect_information`` (required, optional, off) in the widget's outcome view and at the
form, and business workspaces (``external_workspace_id``: forwarded when selected, scoping contacts)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from services.verifier.answer import parse_identity_response
from services.verifier.failures import AuthFailure
from shared.events import FallbackReason, IdentifyMethod, utcnow
from tests.conftest import Stack, admin_headers, await_outcome, create_bot, open_session, store_pending, verify_once
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.integration.test_widget_wait import open_with, read, refusing_every_open
from tests.waits import wait_until

MODES = ("required", "optional", "off")


async def submit(stack: Stack, session_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with stack.http.post(f"{stack.gateway.url}/v1/widget/sessions/{session_id}/contact", json=body) as resp:
        return resp.status, await resp.json()


async def contacts_of(stack: Stack, bot: str, *, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    """Wait (bounded) until the bot has ``count`` contacts; returns them, oldest first."""
    async def counted() -> list[dict[str, Any]] | None:
        rows = await stack.pool.fetch("SELECT * FROM contacts WHERE bot_id = $1 ORDER BY created_at", bot)
        return [dict(r) for r in rows] if len(rows) >= count else None

    return await wait_until(counted, timeout, f"{count} contacts")


async def admin_get(stack: Stack, path: str) -> dict[str, Any]:
    async with stack.http.get(f"{stack.gateway.url}{path}", headers=admin_headers()) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


# -- collect_information -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_fallback_view_carries_the_bots_mode_everywhere_it_is_read(stack: Stack, mode: str) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, enabled=False, collect_information=mode)

    streamed = await verify_once(stack, bot, access_token="t")  # the SSE event
    status, waited = await open_with(stack, {"bot_id": bot}, wait=5)  # the ?wait answer

    assert streamed["status"] == "fallback" and streamed["fallback"]["reason"] == "ca_disabled"
    assert streamed["collect_information"] == mode
    assert status == 200 and waited["collect_information"] == mode, waited
    assert await read(stack, streamed["session_id"]) == streamed  # GET answers the same object


async def test_a_verified_view_has_no_mode(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="m-1", name="Known"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, collect_information="off")

    outcome = await verify_once(stack, bot, access_token="t")
    status, waited = await open_with(stack, {"bot_id": bot, "access_token": "t"}, wait=5)

    assert outcome["status"] == "verified" and outcome["collect_information"] is None
    assert (await read(stack, outcome["session_id"]))["collect_information"] is None
    assert status == 200 and waited["status"] == "verified" and waited["collect_information"] is None


async def test_the_mode_is_captured_when_the_session_falls_back(stack: Stack) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, enabled=False, collect_information="off")
    before = await verify_once(stack, bot)
    async with stack.http.put(f"{stack.gateway.url}/v1/bots/{bot}/custom-auth", headers=admin_headers(),
                              json={"enabled": False, "collect_information": "required"}) as resp:
        assert resp.status == 200 and (await resp.json())["collect_information"] == "required"

    after = await verify_once(stack, bot)

    # What the widget was told is what the server enforces: the earlier session stays formless.
    assert (await read(stack, before["session_id"]))["collect_information"] == "off"
    assert (await submit(stack, before["session_id"], {"name": "x"}))[0] == 409
    assert after["collect_information"] == "required"
    assert (await submit(stack, after["session_id"], {"name": "x"}))[0] == 202


async def test_off_refuses_the_form_and_optional_takes_it(stack: Stack) -> None:
    off = await create_bot(stack.http, stack.gateway.url, enabled=False, collect_information="off")
    optional = await create_bot(stack.http, stack.gateway.url, enabled=False, collect_information="optional")
    off_session = await verify_once(stack, off)
    optional_session = await verify_once(stack, optional)

    status, body = await submit(stack, off_session["session_id"], {"name": "Anon", "email": "anon@example.com"})
    assert (status, body["error"]["code"]) == (409, "collect_information_off"), body
    assert (await read(stack, off_session["session_id"]))["collected"] is False

    status, body = await submit(stack, optional_session["session_id"], {"name": "Opt", "email": "opt@example.com"})
    assert (status, body["status"]) == (202, "accepted")
    [contact] = await contacts_of(stack, optional, count=1)
    assert (contact["identifier"], contact["verified"], contact["external_workspace_id"]) == ("opt@example.com", False, None)
    # The refused form was sent first: had it gone to the contacts service, on the same queue in order, its
    # contact would be there now that the later form's is.
    assert await stack.pool.fetchval("SELECT count(*) FROM contacts WHERE bot_id = $1", off) == 0


async def test_a_busy_refusal_and_an_expiry_carry_the_mode(stack: Stack) -> None:
    bot = await create_bot(stack.http, stack.gateway.url, enabled=False, collect_information="optional")
    with refusing_every_open(stack):
        status, busy = await open_with(stack, {"bot_id": bot}, wait=5)
        _, created = await open_with(stack, {"bot_id": bot})
    assert status == 200 and busy["fallback"]["reason"] == "busy" and busy["collect_information"] == "optional"
    assert await read(stack, busy["session_id"]) == busy
    assert (await await_outcome(stack.http, stack.gateway.url, created["session_id"]))["collect_information"] == "optional"

    off = await create_bot(stack.http, stack.gateway.url, enabled=False, collect_information="off")
    lost = "lostsession" + "x" * 40
    assert await store_pending(stack.pool, lost, off, deadline_at=utcnow() - timedelta(seconds=30))
    expired = await read(stack, lost)  # a reader ends an overdue session
    assert (expired["status"], expired["fallback"]["reason"]) == ("fallback", "internal_error")
    assert expired["collect_information"] == "off"
    assert (await submit(stack, lost, {"name": "x"}))[0] == 409


# -- business workspaces -------------------------------------------------------------------------


def echo_workspace(body: Any) -> Answer:
    """The business answers with the visitor it knows, in the workspace the widget said (when sent)."""
    data = {"id": "person-1", "name": "Pat", "email": "pat@example.com"}
    if body.get("external_workspace_id"):
        data["external_workspace_id"] = body["external_workspace_id"]
    return verified(**data)


async def test_external_workspace_id_is_forwarded_only_when_selected(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    selected_url, plain_url = customer_api.endpoint(verified(id="1")), customer_api.endpoint(verified(id="1"))
    selected = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=selected_url,
                                request_fields=["email", "external_workspace_id"])
    plain = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=plain_url, request_fields=["email"])
    fields = {"access_token": "t", "email": "e@example.com", "external_workspace_id": "ws-9"}

    await verify_once(stack, selected, **fields)
    await verify_once(stack, selected, access_token="t")  # selected but not given: null, as other fields
    await verify_once(stack, plain, **fields)

    bodies = [r.body for r in customer_api.received(selected_url)]
    assert bodies == [{"access_token": "t", "email": "e@example.com", "external_workspace_id": "ws-9"},
                      {"access_token": "t", "email": None, "external_workspace_id": None}]
    [call] = customer_api.received(plain_url)
    assert call.body == {"access_token": "t", "email": "e@example.com"}


async def test_one_person_in_two_business_workspaces_is_two_contacts(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.responder(echo_workspace)
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url,
                           request_fields=["external_workspace_id"])

    in_a = await verify_once(stack, bot, access_token="t", external_workspace_id="ws-a")
    in_b = await verify_once(stack, bot, access_token="t", external_workspace_id="ws-b")
    again_a = await verify_once(stack, bot, access_token="t", external_workspace_id="ws-a")
    nowhere = await verify_once(stack, bot, access_token="t")  # the answer names no workspace

    ids = [o["contact"]["contact_id"] for o in (in_a, in_b, again_a, nowhere)]
    assert ids[0] == ids[2] and len(set(ids)) == 3, ids
    contacts = await contacts_of(stack, bot, count=3)
    assert sorted((c["identifier"], c["external_workspace_id"] or "") for c in contacts) == [
        ("person-1", ""), ("person-1", "ws-a"), ("person-1", "ws-b")]
    assert all(c["verified"] for c in contacts)

    # Contact Details and the contacts list show it; the Testing panel matches by it.
    detail = await admin_get(stack, f"/v1/bots/{bot}/contacts/{ids[1]}")
    assert (detail["external_workspace_id"], detail["identifier"]) == ("ws-b", "person-1")
    listed = {c["contact_id"]: c["external_workspace_id"] for c in (await admin_get(stack, f"/v1/bots/{bot}/contacts"))["contacts"]}
    assert listed == {ids[0]: "ws-a", ids[1]: "ws-b", ids[3]: None}
    for workspace, expected in (("ws-b", ("update", ids[1])), ("ws-new", ("create", None)), (None, ("update", ids[3]))):
        sample = {"access_token": "t", **({"external_workspace_id": workspace} if workspace else {})}
        async with stack.http.post(f"{stack.gateway.url}/v1/bots/{bot}/custom-auth/test", json=sample,
                                   headers=admin_headers()) as resp:
            result = await resp.json()
            assert resp.status == 200, result
        assert result["identity"]["external_workspace_id"] == workspace
        assert (result["match"]["action"], result["match"]["contact_id"]) == expected, workspace


async def test_an_answer_without_a_workspace_keeps_one_contact_per_identifier(
        stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(email="same@example.com", name="Same"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, identify_method="email",
                           request_fields=["external_workspace_id"])

    # The embed's workspace is only forwarded: what scopes a contact is the business's answer.
    first = await verify_once(stack, bot, access_token="t", external_workspace_id="ws-a")
    second = await verify_once(stack, bot, access_token="t", external_workspace_id="ws-b")

    assert first["contact"]["contact_id"] == second["contact"]["contact_id"]
    [contact] = await contacts_of(stack, bot, count=1)
    assert contact["external_workspace_id"] is None and contact["identifier"] == "same@example.com"


async def test_a_verified_workspace_contact_never_takes_over_a_typed_one(
        stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """A form has no business workspace: the verified contact in a workspace is another contact."""
    url = customer_api.endpoint(verified(email="typed@example.com", external_workspace_id="ws-a"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, identify_method="email")
    fallback = await verify_once(stack, bot)  # no token
    assert (await submit(stack, fallback["session_id"], {"email": "typed@example.com"}))[0] == 202
    await contacts_of(stack, bot, count=1)

    outcome = await verify_once(stack, bot, access_token="t")

    contacts = await contacts_of(stack, bot, count=2)
    assert sorted((c["external_workspace_id"] or "", c["verified"]) for c in contacts) == [("", False), ("ws-a", True)]
    assert outcome["contact"]["contact_id"] in {str(c["contact_id"]) for c in contacts if c["verified"]}


async def test_bad_external_workspace_ids_are_field_errors(stack: Stack) -> None:
    bot = await create_bot(stack.http, stack.gateway.url)
    for value in ("w" * 257, 42, ["ws"], {"id": "ws"}, "ws\x00"):
        async with stack.http.post(f"{stack.gateway.url}/v1/widget/sessions",
                                   json={"bot_id": bot, "external_workspace_id": value}) as resp:
            body = await resp.json()
            assert resp.status == 422, (value, body)
        assert [f["field"] for f in body["error"]["fields"]] == ["external_workspace_id"], (value, body)
    assert await stack.pool.fetchval("SELECT count(*) FROM widget_sessions WHERE bot_id = $1", bot) == 0
    await open_session(stack.http, stack.gateway.url, {"bot_id": bot, "external_workspace_id": "w" * 256})

    async with stack.http.put(f"{stack.gateway.url}/v1/bots/{bot}/custom-auth", headers=admin_headers(), json={
            "enabled": False, "request_fields": ["user_id", "email", "name", "phone_number", "external_workspace_id"]}) as resp:
        assert resp.status == 200 and len((await resp.json())["request_fields"]) == 5
    for fields in (["external_workspace_id", "external_workspace_id"], ["workspace_id"]):
        async with stack.http.put(f"{stack.gateway.url}/v1/bots/{bot}/custom-auth", headers=admin_headers(),
                                  json={"enabled": False, "request_fields": fields}) as resp:
            assert resp.status == 422, fields


@pytest.mark.parametrize(("value", "expected"), [
    ("  ws-1 ", "ws-1"), (7, "7"), ("", None), (None, None),
])
def test_the_answers_workspace_is_read_like_the_id(value: Any, expected: str | None) -> None:
    body = f'{{"data": {{"id": "1", "external_workspace_id": {__import__("json").dumps(value)}}}}}'.encode()
    assert parse_identity_response(200, body, IdentifyMethod.id).external_workspace_id == expected


@pytest.mark.parametrize("value", ['"' + "w" * 257 + '"', "true", "[1]", '{"a": 1}', "1.5"])
def test_a_bad_workspace_in_the_answer_is_invalid_response(value: str) -> None:
    body = f'{{"data": {{"id": "1", "external_workspace_id": {value}}}}}'.encode()
    with pytest.raises(AuthFailure) as failure:
        parse_identity_response(200, body, IdentifyMethod.id)
    assert failure.value.reason is FallbackReason.invalid_response
    assert "data.external_workspace_id" in failure.value.detail
