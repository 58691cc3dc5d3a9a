"""Each route is declared once, with its operation (``shared.routes``): the document is made from the
app's router, so a route without its operation, or an operation without its route, cannot be."""

from __future__ import annotations

import re
import sys

import pytest
from aiohttp import web
from pydantic import BaseModel, ConfigDict

from services.gateway.app import init_app
from services.gateway.constraints import WHITESPACE
from services.gateway.openapi import build_document, operations
from services.gateway.settings import GatewaySettings
from shared.routes import Response, Routes, links_to, operation_of


def gateway() -> web.Application:
    return init_app(GatewaySettings(environment="development"))


def test_every_api_route_of_the_app_is_an_operation_of_the_document() -> None:
    app = gateway()
    doc = build_document(app)
    api = {(r.method, r.resource.canonical) for r in app.router.routes()
           if r.method != "HEAD" and r.resource is not None and operation_of(r.handler) is not None}
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert documented == api
    assert {path for _, path in api} >= {"/healthz", "/readyz", "/openapi.json", "/v1/widget/sessions"}
    assert all(path.startswith("/v1/") or path in {"/healthz", "/readyz", "/openapi.json"} for _, path in api)
    ids = [op.operation_id for _, _, op in operations(app)]
    assert len(ids) == len(set(ids)) == len(api)


def test_a_v1_route_without_its_operation_is_refused() -> None:
    app = gateway()

    async def undocumented(_: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/v1/bots/{bot_id}/secret", undocumented)
    with pytest.raises(ValueError, match="without its operation"):
        build_document(app)


def test_a_handler_is_declared_once() -> None:
    routes = Routes()

    async def handler(_: web.Request) -> web.Response:
        return web.Response()

    routes.get("/v1/a", "a", "A", auth="public", tag="t", responses={200: ("ok", None)})(handler)
    with pytest.raises(ValueError, match="already declared"):
        routes.get("/v1/b", "b", "B", auth="public", tag="t", responses={200: ("ok", None)})(handler)


def test_the_413_names_the_operations_own_limit() -> None:
    doc = build_document(gateway())
    widget = doc["paths"]["/v1/widget/sessions"]["post"]["responses"]["413"]["description"]
    admin = doc["paths"]["/v1/bots"]["post"]["responses"]["413"]["description"]
    assert widget == "The body is larger than 16384 bytes." and admin == "The body is larger than 262144 bytes."


def test_the_whitespace_the_patterns_spell_out_is_what_the_models_strip() -> None:
    """The document's patterns say "stripped" with this class; the models strip with pydantic's str_strip_whitespace."""
    class Stripping(BaseModel):
        model_config = ConfigDict(str_strip_whitespace=True)
        text: str

    characters = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]  # surrogates are no text
    assert [c for c in characters if Stripping(text=f"a{c}").text == "a"] == list(WHITESPACE)
    spelt = re.compile(f"[{WHITESPACE}]")
    assert [c for c in characters if spelt.fullmatch(c)] == list(WHITESPACE)


def test_links_lead_to_operations_and_name_what_those_take() -> None:
    doc = build_document(gateway())
    created = doc["paths"]["/v1/bots"]["post"]["responses"]["201"]["links"]
    assert created["getBot"] == {"operationId": "getBot", "parameters": {"bot_id": "$response.body#/bot_id"}}
    assert created["openSession"] == {"operationId": "openSession", "requestBody": {"bot_id": "$response.body#/bot_id"}}
    opened = doc["paths"]["/v1/widget/sessions"]["post"]["responses"]["202"]["links"]
    assert set(opened) == {"getSession", "streamSession", "collectContact", "endSession"}

    app = gateway()
    routes = Routes()

    async def handler(_: web.Request) -> web.Response:
        return web.Response()

    routes.get("/v1/nowhere", "nowhere", "Nowhere", auth="public", tag="t", responses={
        200: Response("ok", None, links=links_to("getBot", bot_id="$response.body#/id", surprise="$response.body#/x"))},
    )(handler)
    app.add_routes(routes)
    with pytest.raises(ValueError, match="names no such parameter"):
        build_document(app)


BACKCHANNEL_LOGOUT = "/v1/bots/{bot_id}/oidc/backchannel-logout"


def test_every_route_says_who_may_call_it_and_the_document_says_the_same() -> None:
    from services.gateway.access import undeclared
    from services.gateway.openapi import AUTH_RESPONSES, SECURITY
    from shared.routes import audience_of

    app = gateway()
    assert undeclared(app) == []
    doc = build_document(app)
    for method, path, operation in operations(app):
        documented = doc["paths"][path][method.lower()]
        assert documented["security"] == SECURITY[operation.auth], (method, path)
        assert {str(s) for s in AUTH_RESPONSES[operation.auth]} <= set(documented["responses"]), (method, path)
    audiences = {(r.method, r.resource.canonical): audience_of(r.handler) for r in app.router.routes() if r.resource}
    assert audiences[("POST", "/v1/workspaces")] == audiences[("GET", "/v1/workspaces")] == "operator"
    assert audiences[("GET", "/v1/bots")] == audiences[("POST", "/v1/workspaces/{workspace_id}/api-keys")] == "workspace"
    assert audiences[("POST", "/v1/widget/sessions")] == audiences[("GET", "/admin")] == "public"
    # The one public route under /v1/bots: the bot's OpenID Provider posts it (its logout token is the credential).
    assert audiences[("POST", BACKCHANNEL_LOGOUT)] == "public"
    assert {a for (_, path), a in audiences.items()
            if path.startswith(("/v1/bots", "/v1/workspaces")) and path != BACKCHANNEL_LOGOUT} == {"workspace", "operator"}

    async def forgotten(_: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/v1/bots/{bot_id}/forgotten", forgotten)
    assert sorted(undeclared(app)) == ["GET /v1/bots/{bot_id}/forgotten", "HEAD /v1/bots/{bot_id}/forgotten"]


def test_a_route_cannot_be_declared_without_who_may_call_it() -> None:
    routes = Routes()

    async def handler(_: web.Request) -> web.Response:
        return web.Response()

    with pytest.raises(TypeError, match="auth"):
        routes.get("/v1/a", "a", "A", tag="t", responses={200: ("ok", None)})(handler)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="public, workspace or operator"):
        routes.unlisted("GET", "/page", auth="anyone")(handler)  # type: ignore[arg-type]


async def test_a_route_added_without_a_declaration_is_the_operators() -> None:
    """Fail closed: a matched route that says nothing (init_app refuses to start with one) needs the operator."""
    from aiohttp.test_utils import make_mocked_request

    from services.gateway.access import admit, audience
    from services.gateway.http_errors import ApiError

    app = gateway()

    async def forgotten(_: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/v1/bots/{bot_id}/forgotten", forgotten)
    request = make_mocked_request("GET", "/v1/bots/x/forgotten", app=app)
    request._match_info = await app.router.resolve(request)
    assert audience(request) == "operator"
    with pytest.raises(ApiError) as refused:
        await admit(request, audience(request))
    assert refused.value.status == 401
