"""``GET /openapi.json``: the OpenAPI 3.1 document of the gateway's HTTP API, made from the app itself.

Each API route is declared once, with its operation (:mod:`shared.routes`): this module walks the
app's router and writes what each route's declaration says. Request bodies and query parameters are
the models the handlers parse (``schemas``); responses are the models and TypedDicts the handlers
build (``admin.views``, ``shared.widget_view``, ``widget.api``, ``http_errors``). Each operation's
``security`` is its route's ``auth=``, the declaration the middleware enforces (``access.admit``).
Made once, at start-up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from shared.routes import Link, Operation, Response, Routes, Stream, operation_of

from .access import OPERATOR_ONLY, UNAUTHORIZED
from .admin.bots import ADMIN_BODY_MAX_BYTES, TOKEN_SECRET_KID
from .http_errors import METHOD_NOT_ALLOWED
from .keys import SETTINGS

REF_TEMPLATE = "#/components/schemas/{model}"
JSON = "application/json"
EVENT_STREAM = "text/event-stream"
FORM = "application/x-www-form-urlencoded"
DOCUMENT = web.AppKey("openapi", bytes)

TAGS = [
    {"name": "widget", "description": "Public, CORS for any origin; the widget script uses it."},
    {"name": "bots", "description": "Admin: bots."},
    {"name": "custom-auth", "description": "Admin: Custom Authentication settings and the Testing panel."},
    {"name": "contacts", "description": "Admin: contacts and the authentication activity log."},
    {"name": "webhooks", "description": "Admin: the bot's webhook to the business and its delivery log."},
    {"name": "operations", "description": "Health, readiness and this document."},
]
PATH_PARAMETERS = {
    "bot_id": ("The bot's id.", {"type": "string", "format": "uuid"}),
    "session_id": ("The session id `POST /v1/widget/sessions` returned.", {"type": "string"}),
    "contact_id": ("The contact's id.", {"type": "string", "format": "uuid"}),
    "workspace_id": ("The workspace's id.", {"type": "string", "format": "uuid"}),
    "key_id": ("The API key's id.", {"type": "string", "format": "uuid"}),
    "delivery_id": ("The webhook delivery's id (its `Doorman-Delivery` header).", {"type": "string", "format": "uuid"}),
    "kid": ("The `kid` of one of the bot's HS256 token secrets (`POST .../custom-auth/token-secret` showed it).",
            {"type": "string", "pattern": f"^{TOKEN_SECRET_KID.pattern}$"}),
}
# An operation's security requirement and the answers it adds, from its route's ``auth=``. The role ``operator``
# (OpenAPI 3.1 lets a bearer requirement name roles): only the operator's token, not a workspace's key.
SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "public": [], "workspace": [{"adminToken": []}], "operator": [{"adminToken": ["operator"]}]}
AUTH_RESPONSES: dict[str, dict[int, Response]] = {"public": {}, "workspace": UNAUTHORIZED,
                                        "operator": {**UNAUTHORIZED, **OPERATOR_ONLY}}
DESCRIPTION = (
    "The widget API (public, CORS for any origin) opens a session and delivers its outcome; the admin API "
    "(`Authorization: Bearer <admin token>`) manages bots, Custom Authentication settings, the Testing "
    "panel, contacts and the authentication activity log. Every error is JSON: "
    '`{"error": {"code", "message", "fields"?: [{"field", "message"}]}}`. A method a path does not have is '
    "answered `405` with `Allow` (`#/components/responses/MethodNotAllowed`)."
)


def operations(app: web.Application) -> Iterator[tuple[str, str, Operation]]:
    """``(method, path, operation)`` of each API route the app has; a ``/v1/`` route declared without
    its operation is an error (pages, scripts and ``/metrics`` are not part of the API)."""
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:  # a HEAD route is added beside each GET
            continue
        path, operation = route.resource.canonical, operation_of(route.handler)
        if operation is not None:
            yield route.method, path, operation
        elif path.startswith("/v1/"):
            raise ValueError(f"{route.method} {path} is routed without its operation (declare it with shared.routes)")


class _Components:
    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, shape: Any) -> dict[str, Any]:
        """A reference to ``shape`` (a model or TypedDict, put in components with what it refers to);
        a literal JSON schema as it is."""
        if isinstance(shape, Mapping):
            return dict(shape)
        schema = self.hoist(TypeAdapter(shape).json_schema(ref_template=REF_TEMPLATE))
        self._put(shape.__name__, schema)
        return {"$ref": REF_TEMPLATE.format(model=shape.__name__)}

    def hoist(self, schema: dict[str, Any]) -> dict[str, Any]:
        """``schema`` without its ``$defs``, which go to components."""
        schema = dict(schema)
        for name, definition in schema.pop("$defs", {}).items():
            self._put(name, definition)
        return schema

    def _put(self, name: str, schema: dict[str, Any]) -> None:
        if self.schemas.setdefault(name, schema) != schema:
            raise ValueError(f"two different schemas are both called {name!r}")


def _query_parameters(model: type[BaseModel], components: _Components) -> list[dict[str, Any]]:
    schema = components.hoist(model.model_json_schema(ref_template=REF_TEMPLATE))
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        # A query parameter is absent or a string, never null: drop the null branch pydantic adds.
        branches = [b for b in prop.get("anyOf", []) if b != {"type": "null"}]
        if "anyOf" in prop and len(branches) == 1:
            del prop["anyOf"]
            prop = {**branches[0], **prop}
            if prop.get("default", 0) is None:
                del prop["default"]
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        # A description on an optional field's type (``Annotated[..., Field(description=...)] | None``) is
        # in its schema, not on the field: either way it is the parameter's.
        if description := model.model_fields[name].description or prop.pop("description", None):
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _event(stream: Stream, components: _Components) -> dict[str, Any]:
    """One event of the stream (OpenAPI 3.1 has an event stream's ``schema`` describe each event, as 3.2's
    ``itemSchema`` does): its name, and its ``data``, JSON of the event's shape."""
    return {"description": stream.description, "oneOf": [
        {"type": "object", "required": ["event", "data"], "properties": {
            "event": {"const": name},
            "data": {"type": "string", "contentMediaType": JSON, "contentSchema": components.ref(shape)},
        }} for name, shape in stream.events.items()
    ]}


def _response(status: int, response: Response, components: _Components, body_limit: int) -> dict[str, Any]:
    out: dict[str, Any] = {"description": response.description}
    if status == 413:
        out["description"] = f"The body is larger than {body_limit} bytes."
    if response.stream is not None:
        out["content"] = {EVENT_STREAM: {"schema": _event(response.stream, components)}}
    elif response.shape is not None:
        out["content"] = {JSON: {"schema": components.ref(response.shape)}}
    if response.headers:
        out["headers"] = {name: {"description": text, "required": True, "schema": {"type": "string"}}
                          for name, text in response.headers.items()}
    if response.links:
        out["links"] = {name: _link(link) for name, link in response.links.items()}
    return out


def _link(link: Link) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": link.operation_id}
    if link.parameters:
        out["parameters"] = dict(link.parameters)
    if link.body:
        out["requestBody"] = dict(link.body)  # merged into the body the target is otherwise sent
    return out


def _check_links(paths: dict[str, dict[str, Any]], schemas: dict[str, Any]) -> None:
    """Every link leads to an operation of the document, and names parameters and body fields it has."""
    targets = {op["operationId"]: op for item in paths.values() for op in item.values()}
    for item in paths.values():
        for op in item.values():
            for response in op["responses"].values():
                for name, link in response.get("links", {}).items():
                    target = targets.get(link["operationId"])
                    if target is None:
                        raise ValueError(f"{op['operationId']}: link {name} leads to no operation")
                    names = {p["name"] for p in target.get("parameters", [])}
                    if unknown := set(link.get("parameters", {})) - names:
                        raise ValueError(f"{op['operationId']}: link {name} names no such parameter: {unknown}")
                    if "requestBody" in link:
                        ref = target.get("requestBody", {}).get("content", {}).get(JSON, {}).get("schema", {})
                        fields = schemas.get(ref.get("$ref", "").rsplit("/", 1)[-1], {}).get("properties", {})
                        if unknown := set(link["requestBody"]) - set(fields):
                            raise ValueError(f"{op['operationId']}: link {name} names no such body field: {unknown}")


def _operation(path: str, op: Operation, components: _Components, widget_body_limit: int) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag]}
    parameters = [
        {"name": name, "in": "path", "required": True, "description": PATH_PARAMETERS[name][0],
         "schema": PATH_PARAMETERS[name][1]}
        for name in (part[1:-1] for part in path.split("/") if part.startswith("{"))
    ]
    if op.query is not None:
        parameters += _query_parameters(op.query, components)
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {JSON: {"schema": components.ref(op.body)}}}
    if op.form is not None:
        out["requestBody"] = {"required": True, "content": {FORM: {"schema": components.ref(op.form)}}}
    out["security"] = SECURITY[op.auth]
    responses = {**op.responses, **AUTH_RESPONSES[op.auth]}
    limit = widget_body_limit if op.auth == "public" else ADMIN_BODY_MAX_BYTES  # public: the widget API's limit
    out["responses"] = {str(status): _response(status, responses[status], components, limit)
                        for status in sorted(responses)}
    return out


def build_document(app: web.Application) -> dict[str, Any]:
    components = _Components()
    paths: dict[str, dict[str, Any]] = {}
    for method, path, operation in operations(app):
        paths.setdefault(path, {})[method.lower()] = _operation(
            path, operation, components, app[SETTINGS].widget_body_max_bytes)
    _check_links(paths, components.schemas)
    method_not_allowed = _response(405, METHOD_NOT_ALLOWED, components, ADMIN_BODY_MAX_BYTES)
    try:
        release = version("doorman")
    except PackageNotFoundError:
        release = "0.0.0"
    return {
        "openapi": "3.1.0",
        "info": {"title": "Doorman", "version": release, "summary": "Custom Authentication for a chat widget",
                 "description": DESCRIPTION},
        "tags": TAGS,
        "paths": paths,
        "components": {
            "responses": {"MethodNotAllowed": method_not_allowed},
            "schemas": dict(sorted(components.schemas.items())),
            "securitySchemes": {"adminToken": {
                "type": "http", "scheme": "bearer",
                "description": "The operator's token (`DOORMAN_ADMIN_TOKEN`) or a workspace's API key (`dk_...`); "
                               "an operation that requires the role `operator` takes the operator's token only.",
            }},
        },
    }


async def publish(app: web.Application) -> None:
    """On start-up, when every route is in: the document, made once."""
    app[DOCUMENT] = json.dumps(build_document(app)).encode()


routes = Routes()


@routes.get("/openapi.json", "openapi", "This document", auth="public", tag="operations",
            responses={200: ("The OpenAPI 3.1 document for this API.", {"type": "object"})})
async def openapi_json(request: web.Request) -> web.Response:
    """No auth: it documents, it grants nothing."""
    return web.Response(body=request.app[DOCUMENT], content_type=JSON)
