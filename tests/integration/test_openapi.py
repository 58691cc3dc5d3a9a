"""``GET /openapi.json`` stays true: a valid OpenAPI 3.1 document, the same routes as the app,
and live responses that validate against the schema documented for their status."""

from __future__ import annotations

import re
from typing import Any
from uuid import uuid4

import jsonschema
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import Stack, admin_headers, await_outcome, create_bot, open_session
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.waits import wait_until, webhooks_heard

DOC_URI = "urn:doorman:openapi"
SKIPPED_METHODS = {"HEAD", "OPTIONS", "*"}
# The stream's `outcome` event's data (the first of the event schema's branches), as its JSON decodes.
OUTCOME_DATA = ("schema", "oneOf", "0", "properties", "data", "contentSchema")


def _is_api(path: str) -> bool:
    """JSON API routes; pages and scripts for browsers (/widget.js, /admin, /demo) are not in the document."""
    return path.startswith("/v1/") or path in {"/healthz", "/readyz", "/openapi.json"}


@pytest.fixture(scope="module")
async def doc(stack: Stack) -> dict[str, Any]:
    async with stack.http.get(f"{stack.gateway.url}/openapi.json") as resp:  # no admin token: it is public
        assert resp.status == 200 and resp.content_type == "application/json"
        return await resp.json()


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def assert_documented(doc: dict[str, Any], method: str, path: str, status: int, body: Any,
                      media: str = "application/json", *, at: tuple[str, ...] = ("schema",)) -> None:
    """``body`` validates against the schema ``doc`` gives for ``method path`` answering ``status``."""
    responses = doc["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} answered {status}, which is not documented"
    assert media in responses[str(status)].get("content", {}), f"{method} {path} {status} documents no {media}"
    ref = f"{DOC_URI}#/" + _pointer("paths", path, method.lower(), "responses", str(status), "content", media, *at)
    registry = Registry().with_resource(DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012))
    Draft202012Validator({"$ref": ref}, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(body)


async def call(stack: Stack, doc: dict[str, Any], method: str, template: str, status: int, *,
               admin: bool = True, **params: Any) -> Any:
    """Call ``template`` filled with ``params`` (``json``/``data``/``query``/``headers`` are the request's);
    assert the status and that the body is as documented; return the body."""
    kwargs = {k: params.pop(k) for k in ("json", "data", "headers") if k in params}
    query = params.pop("query", None)
    headers = {**(admin_headers() if admin else {}), **kwargs.pop("headers", {})}
    url = stack.gateway.url + template.format(**params)
    async with stack.http.request(method, url, headers=headers, params=query, **kwargs) as resp:
        assert resp.status == status, await resp.text()
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert_documented(doc, method, template, status, body)
    return body


# --- the document ---------------------------------------------------------------------------------


async def test_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    validate_openapi(doc)
    assert doc["openapi"].startswith("3.1")
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def _normalise(path: str) -> str:
    return re.sub(r"\{([^}:]+)(?::[^}]*)?\}", r"{\1}", path)


async def test_every_route_is_documented_and_every_operation_routed(stack: Stack, doc: dict[str, Any]) -> None:
    routed = {
        (route.method, _normalise(route.resource.canonical))
        for route in stack.gateway.app.router.routes()
        if route.method not in SKIPPED_METHODS and route.resource is not None and _is_api(route.resource.canonical)
    }
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert routed - documented == set(), "routes missing from /openapi.json"
    assert documented - routed == set(), "documented operations the app does not route"


async def test_path_parameters_are_documented(doc: dict[str, Any]) -> None:
    for path, item in doc["paths"].items():
        for op in item.values():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"\{([^}]+)\}", path)), path


async def test_admin_operations_need_the_token_and_say_401(doc: dict[str, Any]) -> None:
    for path, item in doc["paths"].items():
        for op in item.values():
            # The bot's OpenID Provider posts its logout tokens with no admin token: the token is the credential.
            admin = path.startswith(("/v1/bots", "/v1/workspaces")) and path != "/v1/bots/{bot_id}/oidc/backchannel-logout"
            assert (op["security"] in ([{"adminToken": []}], [{"adminToken": ["operator"]}])) is admin, path
            assert ("401" in op["responses"]) is admin, path


async def test_a_drifted_response_fails_validation(doc: dict[str, Any]) -> None:
    bot = {"bot_id": str(uuid4()), "name": "x", "workspace_id": None, "created_at": "2024-01-01T00:00:00+00:00",
           "updated_at": "2024-01-01T00:00:00+00:00"}
    assert_documented(doc, "GET", "/v1/bots/{bot_id}", 200, bot)
    for drifted in ({**bot, "renamed": 1}, {k: v for k, v in bot.items() if k != "name"}, {**bot, "bot_id": "nope"}):
        with pytest.raises(jsonschema.ValidationError):
            assert_documented(doc, "GET", "/v1/bots/{bot_id}", 200, drifted)


# --- live responses match -------------------------------------------------------------------------


async def test_bots_and_settings_match(stack: Stack, doc: dict[str, Any]) -> None:
    bot = await call(stack, doc, "POST", "/v1/bots", 201, json={"name": "OpenAPI"})
    bot_id = bot["bot_id"]
    await call(stack, doc, "GET", "/v1/bots/{bot_id}", 200, bot_id=bot_id)
    await call(stack, doc, "GET", "/v1/bots/{bot_id}/custom-auth", 200, bot_id=bot_id)
    settings = {
        "enabled": True, "auth_url": "https://shop.example.com/doorman/auth", "header_token": "Bearer s3cret",
        "identify_method": "email", "request_fields": ["user_id", "email"],
        "domain_whitelist": {"enabled": True, "source": "manual", "domains": ["shop.example.com", "*.example.com"]},
    }
    await call(stack, doc, "PUT", "/v1/bots/{bot_id}/custom-auth", 200, bot_id=bot_id, json=settings)
    view = await call(stack, doc, "GET", "/v1/bots/{bot_id}/custom-auth", 200, bot_id=bot_id)
    assert view["header_token_set"] is True
    breaker = await call(stack, doc, "GET", "/v1/bots/{bot_id}/custom-auth/breaker", 200, bot_id=bot_id)
    assert breaker["host"] == "shop.example.com:443" and breaker["state"] == "closed"


async def test_errors_match(stack: Stack, doc: dict[str, Any]) -> None:
    bot_id = await create_bot(stack.http, stack.gateway.url)
    body = await call(stack, doc, "PUT", "/v1/bots/{bot_id}/custom-auth", 422, bot_id=bot_id,
                      json={"enabled": True, "identify_method": "nope"})
    assert body["error"]["fields"]
    await call(stack, doc, "GET", "/v1/bots/{bot_id}/contacts", 422, bot_id=bot_id, query={"limit": "0"})
    await call(stack, doc, "POST", "/v1/bots/{bot_id}/custom-auth/test", 409, bot_id=bot_id, json={"access_token": "t"})
    await call(stack, doc, "POST", "/v1/bots/{bot_id}/custom-auth/test", 422, bot_id=bot_id, json={})
    await call(stack, doc, "GET", "/v1/bots/{bot_id}", 401, admin=False, bot_id=bot_id)
    await call(stack, doc, "GET", "/v1/bots/{bot_id}", 404, bot_id=uuid4())
    await call(stack, doc, "GET", "/v1/bots/{bot_id}/contacts/{contact_id}", 404, bot_id=bot_id, contact_id=uuid4())
    await call(stack, doc, "GET", "/v1/widget/sessions/{session_id}", 404, admin=False, session_id="no-such-session")
    await call(stack, doc, "POST", "/v1/bots", 415, data="name=x", headers={"Content-Type": "text/plain"})
    await call(stack, doc, "POST", "/v1/widget/sessions", 413, admin=False,
               json={"bot_id": bot_id, "access_token": "x" * 20_000})
    await call(stack, doc, "POST", "/v1/widget/sessions", 404, admin=False, json={"bot_id": str(uuid4())})


async def test_widget_contacts_and_activity_match(stack: Stack, doc: dict[str, Any], customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="oa-1", name="Open API", email="OA@example.com", phone_number="0912345678",
                                         country_code="+84", avatar="https://img.example.com/a.png", label="vip",
                                         metadata={"order_id": "ORD-1"}))
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, header_token="Bearer k")

    created = await call(stack, doc, "POST", "/v1/widget/sessions", 202, admin=False,
                         json={"bot_id": bot_id, "access_token": "tok"})
    outcome = await await_outcome(stack.http, stack.gateway.url, created["session_id"])
    assert outcome["status"] == "verified"
    assert_documented(doc, "GET", "/v1/widget/sessions/{session_id}/events", 200, outcome, "text/event-stream",
                      at=OUTCOME_DATA)
    await call(stack, doc, "GET", "/v1/widget/sessions/{session_id}", 200, admin=False, session_id=created["session_id"])

    # A fallback session too (Custom Authentication off).
    off = await create_bot(stack.http, stack.gateway.url)
    session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": off})
    assert (await await_outcome(stack.http, stack.gateway.url, session_id))["status"] == "fallback"
    view = await call(stack, doc, "GET", "/v1/widget/sessions/{session_id}", 200, admin=False, session_id=session_id)
    assert view["fallback"]["reason"] == "ca_disabled"

    page = await call(stack, doc, "GET", "/v1/bots/{bot_id}/contacts", 200, bot_id=bot_id, query={"q": "open", "limit": "5"})
    [contact] = page["contacts"]
    detail = await call(stack, doc, "GET", "/v1/bots/{bot_id}/contacts/{contact_id}", 200,
                        bot_id=bot_id, contact_id=contact["contact_id"])
    assert detail["metadata"] == {"order_id": "ORD-1"} and detail["sources"]
    events = await call(stack, doc, "GET", "/v1/bots/{bot_id}/auth-events", 200, bot_id=bot_id)
    assert events["events"][0]["status"] == "verified"
    await call(stack, doc, "GET", "/v1/bots/{bot_id}/auth-events", 200, bot_id=off,
               query={"reason": "ca_disabled", "status": "fallback", "limit": "1"})


async def test_collect_information_and_business_workspaces_match(
        stack: Stack, doc: dict[str, Any], customer_api: FakeCustomerAPI) -> None:
    off = await create_bot(stack.http, stack.gateway.url, enabled=False, collect_information="off")
    view = await call(stack, doc, "POST", "/v1/widget/sessions", 200, admin=False, query={"wait": "5"},
                      json={"bot_id": off, "external_workspace_id": "ws-1"})
    assert view["collect_information"] == "off"
    refused = await call(stack, doc, "POST", "/v1/widget/sessions/{session_id}/contact", 409, admin=False,
                         session_id=view["session_id"], json={"name": "x"})
    assert refused["error"]["code"] == "collect_information_off"

    url = customer_api.endpoint(verified(id="oa-ws", external_workspace_id="ws-1"))
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url,
                              request_fields=["external_workspace_id"])
    verified_view = await call(stack, doc, "POST", "/v1/widget/sessions", 200, admin=False, query={"wait": "5"},
                               json={"bot_id": bot_id, "access_token": "t", "external_workspace_id": "ws-1"})
    assert verified_view["collect_information"] is None
    detail = await call(stack, doc, "GET", "/v1/bots/{bot_id}/contacts/{contact_id}", 200, bot_id=bot_id,
                        contact_id=verified_view["contact"]["contact_id"])
    assert detail["external_workspace_id"] == "ws-1"
    result = await call(stack, doc, "POST", "/v1/bots/{bot_id}/custom-auth/test", 200, bot_id=bot_id,
                        json={"access_token": "t", "external_workspace_id": "ws-1"})
    assert result["match"]["action"] == "update" and result["request"]["body"]["external_workspace_id"] == "ws-1"


async def test_testing_panel_matches(stack: Stack, doc: dict[str, Any], customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="oa-2", name="Panel", metadata={"plan": "pro"}))
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, header_token="Bearer k",
                              request_fields=["email"])
    result = await call(stack, doc, "POST", "/v1/bots/{bot_id}/custom-auth/test", 200, bot_id=bot_id,
                        json={"access_token": "t", "email": "a@example.com"})
    assert result["ok"] is True and result["match"]["action"] == "create"

    rejected = await create_bot(stack.http, stack.gateway.url, enabled=True,
                                auth_url=customer_api.endpoint(Answer(status=401, body=b"no", content_type="text/plain")))
    result = await call(stack, doc, "POST", "/v1/bots/{bot_id}/custom-auth/test", 200, bot_id=rejected,
                        json={"access_token": "t"})
    assert result["ok"] is False and result["failure"]["reason"] == "auth_rejected"


async def test_token_secret_and_token_panel_match(stack: Stack, doc: dict[str, Any]) -> None:
    import time

    import jwt

    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, identity_source="signed_token")
    made = await call(stack, doc, "POST", "/v1/bots/{bot_id}/custom-auth/token-secret", 201, bot_id=bot_id)
    await call(stack, doc, "POST", "/v1/bots/{bot_id}/custom-auth/token-secret", 404, bot_id=uuid4())
    now = int(time.time())
    token = jwt.encode({"sub": "oa-3", "aud": bot_id, "iat": now, "exp": now + 60}, made["secret"], algorithm="HS256",
                       headers={"kid": made["kid"]})
    result = await call(stack, doc, "POST", "/v1/bots/{bot_id}/custom-auth/test", 200, bot_id=bot_id,
                        json={"access_token": token})
    assert result["ok"] is True and result["request"] is None and result["token"]["claims"]["sub"] == "oa-3"
    result = await call(stack, doc, "POST", "/v1/bots/{bot_id}/custom-auth/test", 200, bot_id=bot_id,
                        json={"access_token": "not-a-jwt"})
    assert result["token"]["failed_check"] == "malformed_token" and result["token"]["header"] is None
    secret = "/v1/bots/{bot_id}/custom-auth/token-secret/{kid}"
    assert "204" in doc["paths"][secret]["delete"]["responses"]
    async with stack.http.delete(stack.gateway.url + secret.format(bot_id=bot_id, kid=made["kid"]),
                                 headers=admin_headers()) as resp:
        assert resp.status == 204
    await call(stack, doc, "DELETE", secret, 404, bot_id=bot_id, kid=made["kid"])
    await call(stack, doc, "DELETE", secret, 404, bot_id=uuid4(), kid=made["kid"])


async def test_operations_endpoints_match(stack: Stack, doc: dict[str, Any]) -> None:
    await call(stack, doc, "GET", "/healthz", 200, admin=False)
    await call(stack, doc, "GET", "/readyz", 200, admin=False)
    await call(stack, doc, "GET", "/openapi.json", 200, admin=False)


async def test_open_with_wait_and_busy_refusals_match(stack: Stack, doc: dict[str, Any],
                                                      customer_api: FakeCustomerAPI) -> None:
    from services.gateway.keys import HUB

    [wait] = [p for p in doc["paths"]["/v1/widget/sessions"]["post"]["parameters"] if p["name"] == "wait"]
    assert (wait["in"], wait["required"], wait["schema"]["type"]) == ("query", False, "number")
    assert "busy" in doc["components"]["schemas"]["FallbackReason"]["enum"]

    url = customer_api.endpoint(verified(id="oa-wait", name="Waited"))
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    view = await call(stack, doc, "POST", "/v1/widget/sessions", 200, admin=False, query={"wait": "5"},
                      json={"bot_id": bot_id, "access_token": "tok"})
    assert view["status"] == "verified"
    body = await call(stack, doc, "POST", "/v1/widget/sessions", 422, admin=False, query={"wait": "0"},
                      json={"bot_id": bot_id})
    assert [f["field"] for f in body["error"]["fields"]] == ["wait"]

    admission = stack.gateway.app[HUB].admission
    saved, admission.max_in_flight = admission.max_in_flight, 0
    try:
        created = await call(stack, doc, "POST", "/v1/widget/sessions", 202, admin=False, json={"bot_id": bot_id})
        busy = await call(stack, doc, "POST", "/v1/widget/sessions", 200, admin=False, query={"wait": "1"},
                          json={"bot_id": bot_id})
    finally:
        admission.max_in_flight = saved
    assert busy["fallback"]["reason"] == "busy"
    view = await call(stack, doc, "GET", "/v1/widget/sessions/{session_id}", 200, admin=False,
                      session_id=created["session_id"])
    assert view["fallback"]["reason"] == "busy"
    assert_documented(doc, "GET", "/v1/widget/sessions/{session_id}/events", 200,
                      await await_outcome(stack.http, stack.gateway.url, created["session_id"]),
                      "text/event-stream", at=OUTCOME_DATA)
    events = await call(stack, doc, "GET", "/v1/bots/{bot_id}/auth-events", 200, bot_id=bot_id,
                        query={"reason": "busy"})
    assert {e["session_id"] for e in events["events"]} == {created["session_id"], busy["session_id"]}


async def test_identity_push_matches(stack: Stack, doc: dict[str, Any]) -> None:
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url="https://shop.example.com/auth",
                              identify_method="email")
    pushed = await call(stack, doc, "POST", "/v1/bots/{bot_id}/identities", 201, bot_id=bot_id,
                        json={"email": "push@example.com", "name": "Pushed", "metadata": {"plan": "pro"},
                              "ttl_seconds": 300})
    assert pushed["widget_token"].startswith("dmw_")
    body = await call(stack, doc, "POST", "/v1/bots/{bot_id}/identities", 422, bot_id=bot_id, json={"name": "x"})
    assert [f["field"] for f in body["error"]["fields"]] == ["email"]
    await call(stack, doc, "POST", "/v1/bots/{bot_id}/identities", 404, bot_id=uuid4(), json={"id": "1"})
    await call(stack, doc, "POST", "/v1/bots/{bot_id}/identities", 401, admin=False, bot_id=bot_id, json={"id": "1"})


async def test_logout_and_revocation_match(stack: Stack, doc: dict[str, Any], customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="oa-end", name="Leaving"))
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url)
    session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot_id, "access_token": "tok"})
    verified_view = await await_outcome(stack.http, stack.gateway.url, session_id)
    contact_id = verified_view["contact"]["contact_id"]

    revoked = await call(stack, doc, "POST", "/v1/bots/{bot_id}/contacts/{contact_id}/revoke", 200,
                         bot_id=bot_id, contact_id=contact_id)
    assert revoked == {"ended": 1}
    await call(stack, doc, "POST", "/v1/bots/{bot_id}/contacts/{contact_id}/revoke", 404, bot_id=bot_id,
               contact_id=uuid4())
    view = await call(stack, doc, "GET", "/v1/widget/sessions/{session_id}", 200, admin=False, session_id=session_id)
    assert view["status"] == "ended" and view["contact"] is None
    events = await call(stack, doc, "GET", "/v1/bots/{bot_id}/auth-events", 200, bot_id=bot_id,
                        query={"status": "ended"})
    assert [e["ended_by"] for e in events["events"]] == ["revoked"]

    # DELETE answers 204 with no body: its documented statuses are checked here; its 404 is a JSON error.
    async with stack.http.delete(f"{stack.gateway.url}/v1/widget/sessions/{session_id}") as resp:
        assert resp.status == 204 and "204" in doc["paths"]["/v1/widget/sessions/{session_id}"]["delete"]["responses"]
    await call(stack, doc, "DELETE", "/v1/widget/sessions/{session_id}", 404, admin=False, session_id="x" * 40)


async def test_erasure_and_export_match(stack: Stack, doc: dict[str, Any], customer_api: FakeCustomerAPI) -> None:
    """Export with everything in it (identity history, typed fields, sessions of both kinds, a pushed and a cached
    identity), the erasure's 204, and the 404s after it."""
    ids = {"a": "oa-owner-A", "b": "oa-owner-B"}
    url = customer_api.responder(lambda body: verified(id=ids[body["access_token"]], email="oa-erase@example.com")
                                 if body["access_token"] in ids else Answer(status=401))
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, identify_method="email",
                              outage_grace_seconds=60)
    rejected = await open_session(stack.http, stack.gateway.url, {"bot_id": bot_id, "access_token": "nobody"})
    assert (await await_outcome(stack.http, stack.gateway.url, rejected))["status"] == "fallback"
    async with stack.http.post(f"{stack.gateway.url}/v1/widget/sessions/{rejected}/contact",
                               json={"name": "Typed", "email": "oa-erase@example.com"}) as resp:
        assert resp.status == 202
    from tests.integration.test_collect_information import contact_where  # the contacts service writes it
    await contact_where(stack, bot_id, "identifier = $2", "oa-erase@example.com")
    for token in ("a", "b"):
        session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot_id, "access_token": token})
        outcome = await await_outcome(stack.http, stack.gateway.url, session_id)
        assert outcome["status"] == "verified"
    async with stack.http.post(f"{stack.gateway.url}/v1/bots/{bot_id}/identities", headers=admin_headers(),
                               json={"email": "oa-erase@example.com", "id": "oa-owner-B"}) as resp:
        assert resp.status == 201
    contact_id = outcome["contact"]["contact_id"]

    detail = await call(stack, doc, "GET", "/v1/bots/{bot_id}/contacts/{contact_id}", 200, bot_id=bot_id,
                        contact_id=contact_id)
    assert [h["kind"] for h in detail["history"]] == ["took_over_unverified", "identity_changed"] and detail["typed"]
    exported = await call(stack, doc, "GET", "/v1/bots/{bot_id}/contacts/{contact_id}/export", 200, bot_id=bot_id,
                          contact_id=contact_id)
    assert {s["link"] for s in exported["sessions"]} == {"verified", "collected"}
    assert exported["pushed_identities"] and exported["cached_identities"]

    template = "/v1/bots/{bot_id}/contacts/{contact_id}"
    async with stack.http.delete(stack.gateway.url + template.format(bot_id=bot_id, contact_id=contact_id),
                                 headers=admin_headers()) as resp:
        assert resp.status == 204 and await resp.read() == b""
    assert "content" not in doc["paths"][template]["delete"]["responses"]["204"]
    for method, path in (("DELETE", template), ("GET", template + "/export")):
        gone = await call(stack, doc, method, path, 404, bot_id=bot_id, contact_id=contact_id)
        assert gone["error"]["code"] == "contact_erased"
    await call(stack, doc, "GET", template + "/export", 404, bot_id=bot_id, contact_id=uuid4())


async def test_webhook_and_its_deliveries_match(stack: Stack, doc: dict[str, Any], customer_api: FakeCustomerAPI) -> None:

    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True,
                              auth_url=customer_api.endpoint(verified(id="oa-hook", name="Hooked")))
    shown = await call(stack, doc, "GET", "/v1/bots/{bot_id}/webhook", 200, bot_id=bot_id)
    assert shown["enabled"] is False and shown["updated_at"] is None
    made = await call(stack, doc, "PUT", "/v1/bots/{bot_id}/webhook", 200, bot_id=bot_id,
                      json={"url": customer_api.endpoint(), "events": ["contact.created"], "enabled": True})
    assert made["signing_secret"].startswith("whsec_")
    body = await call(stack, doc, "PUT", "/v1/bots/{bot_id}/webhook", 422, bot_id=bot_id, json={"enabled": True})
    assert {f["field"] for f in body["error"]["fields"]} == {"url", "events"}
    await call(stack, doc, "PUT", "/v1/bots/{bot_id}/webhook", 404, bot_id=uuid4(), json={"enabled": False})
    await call(stack, doc, "GET", "/v1/bots/{bot_id}/webhook", 401, admin=False, bot_id=bot_id)
    await webhooks_heard(bot_id)
    await await_outcome(stack.http, stack.gateway.url,
                        await open_session(stack.http, stack.gateway.url, {"bot_id": bot_id, "access_token": "t"}))

    async def delivered() -> dict[str, Any] | None:
        page = await call(stack, doc, "GET", "/v1/bots/{bot_id}/webhook/deliveries", 200, bot_id=bot_id)
        return page if page["deliveries"] and page["deliveries"][0]["status"] == "delivered" else None

    page = await wait_until(delivered, what="the delivery")
    assert page["deliveries"][0]["type"] == "contact.created"
    await call(stack, doc, "GET", "/v1/bots/{bot_id}/webhook/deliveries", 422, bot_id=bot_id, query={"limit": "0"})
    await call(stack, doc, "GET", "/v1/bots/{bot_id}/webhook/deliveries", 404, bot_id=uuid4())
