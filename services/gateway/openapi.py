"""``GET /openapi.json``: an OpenAPI 3.1 document for the gateway's whole HTTP API.

Responses are documented by the models and TypedDicts the handlers build (``views``,
``shared.sessions``, ``widget``, ``http_errors``, ``shared.health``); request bodies and query
parameters come from the models the handlers parse (``schemas``). ``tests/integration/test_openapi.py`` keeps the two honest: every route is
documented, every documented operation exists, and live responses validate against the document.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from shared.health import Health, Readiness
from shared.sessions import SessionView

from .admin import ADMIN_BODY_MAX_BYTES
from .http_errors import Error
from .keys import SETTINGS
from .schemas import (
    AuthEventQuery,
    BotQuery,
    CollectedContact,
    ContactQuery,
    CustomAuthSettingsIn,
    NewApiKey,
    NewBot,
    NewWorkspace,
    OpenQuery,
    OpenSession,
    TestRequest,
)
from .views import (
    ApiKeyCreated,
    ApiKeyList,
    AuthEventPage,
    Bot,
    BotPage,
    ContactDetail,
    ContactPage,
    CustomAuthSettings,
    SigningSecret,
    TestResult,
    Workspace,
    WorkspaceList,
)
from .widget import ContactAccepted, SessionCreated

REF_TEMPLATE = "#/components/schemas/{model}"


# --- the operations -----------------------------------------------------------------------------

ADMIN = "admin"
JSON = "application/json"
EVENT_STREAM = "text/event-stream"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    request: type[BaseModel] | None
    query: type[BaseModel] | None
    security: str | None
    # status -> (description, model or TypedDict or None); JSON unless the status is in ``streams``
    responses: dict[int, tuple[str, Any]]
    streams: dict[int, str] = field(default_factory=dict)  # status -> description of a text/event-stream
    headers: dict[int, dict[str, str]] = field(default_factory=dict)  # status -> {header: description}


NOT_FOUND_BOT = (404, ("No bot has this `bot_id` (or it belongs to another workspace).", Error))
NOT_FOUND_WORKSPACE = {404: ("No workspace has this id (or it is not yours).", Error)}
OPERATOR_ONLY = {403: ("Only the operator's admin token may do this.", Error)}
BODY_ERRORS = {
    413: ("The body is too large.", Error),
    415: ("The body is not `application/json`.", Error),
    422: ("The body is not valid: `fields` says which fields and why.", Error),
}
QUERY_ERRORS = {422: ("A query parameter is not valid (or `cursor` is not one this API returned).", Error)}

LIMITED = {429: ("Too many requests from this client address (or for this bot); retry after `Retry-After`.", Error)}
LIMITED_HEADERS = {429: {"Retry-After": "seconds to wait before retrying"}}

OPERATIONS: tuple[Operation, ...] = (
    # widget API (public, CORS for any origin)
    Operation("POST", "/v1/widget/sessions", "openSession", "Open a widget session", "widget", OpenSession, OpenQuery,
              None, {
        200: ("Only with `wait`: the outcome came within `wait` seconds; the session as `GET "
              "/v1/widget/sessions/{session_id}` returns it (verified, or fallback with the reason). An open refused "
              "by admission control answers here at once as fallback with reason `busy`.", SessionView),
        202: ("Accepted: the outcome arrives on the session's event stream (with `wait`: it did not come in time). "
              "When the gateway is too busy to answer in time (admission control), the open is still accepted but "
              "stored already resolved as fallback with reason `busy` and sent to no one: its stream and `GET` "
              "answer at once, and the Collect Information form may be sent for it.", SessionCreated),
        404: ("No bot has this `bot_id`.", Error),
        **BODY_ERRORS,
        422: ("The body or the `wait` query parameter is not valid: `fields` says which and why.", Error),
        **LIMITED,
        503: ("The broker is unavailable; retry after `Retry-After` seconds.", Error),
    }, headers={**LIMITED_HEADERS, 503: {"Retry-After": "seconds to wait before retrying"}}),
    Operation("GET", "/v1/widget/sessions/{session_id}", "getSession", "Read a widget session", "widget", None, None, None, {
        200: ("The session: pending, verified (with the contact) or fallback (with the reason).", SessionView),
        404: ("No session has this id.", Error), **LIMITED,
    }, headers=LIMITED_HEADERS),
    Operation("GET", "/v1/widget/sessions/{session_id}/events", "streamSession", "Stream a widget session's outcome",
              "widget", None, None, None, {
        200: ("Server-Sent Events.", None),
        404: ("No session has this id.", Error), **LIMITED,
    }, headers=LIMITED_HEADERS, streams={200: (
        "Exactly one event, `event: outcome`, sent when the session resolves (at once if it already has, as an open "
        "refused with reason `busy` has); its `data` is the session as JSON, the same object "
        "`GET /v1/widget/sessions/{session_id}` returns (schema `SessionView`). "
        "Then the stream ends. Comment pings keep the connection open while the session is pending."
    )}),
    Operation("POST", "/v1/widget/sessions/{session_id}/contact", "collectContact", "Send the Collect Information form",
              "widget", CollectedContact, None, None, {
        202: ("Accepted: a non-verified contact is made (it never overwrites a verified one).", ContactAccepted),
        404: ("No session has this id.", Error),
        409: ("The session did not fall back, or its form was already sent.", Error),
        **BODY_ERRORS, **LIMITED,
        503: ("The broker is unavailable; retry after `Retry-After` seconds.", Error),
    }, headers={**LIMITED_HEADERS, 503: {"Retry-After": "seconds to wait before retrying"}}),
    # admin API (bearer admin token)
    Operation("GET", "/v1/bots", "listBots", "List bots", "bots", None, BotQuery, ADMIN, {
        200: ("Bots, newest first.", BotPage), 422: ("Bad query parameters.", Error),
    }),
    Operation("POST", "/v1/bots", "createBot", "Create a bot", "bots", NewBot, None, ADMIN, {
        201: ("The new bot (Custom Authentication off).", Bot), **NOT_FOUND_WORKSPACE, **BODY_ERRORS,
    }),
    Operation("GET", "/v1/bots/{bot_id}", "getBot", "Read a bot", "bots", None, None, ADMIN, {
        200: ("The bot.", Bot), NOT_FOUND_BOT[0]: NOT_FOUND_BOT[1],
    }),
    Operation("GET", "/v1/bots/{bot_id}/custom-auth", "getCustomAuth", "Read Custom Authentication settings",
              "custom-auth", None, None, ADMIN, {
        200: ("The settings, with `header_token_set` instead of the token.", CustomAuthSettings),
        NOT_FOUND_BOT[0]: NOT_FOUND_BOT[1],
    }),
    Operation("PUT", "/v1/bots/{bot_id}/custom-auth", "putCustomAuth", "Replace Custom Authentication settings",
              "custom-auth", CustomAuthSettingsIn, None, ADMIN, {
        200: ("The stored settings.", CustomAuthSettings), NOT_FOUND_BOT[0]: NOT_FOUND_BOT[1], **BODY_ERRORS,
    }),
    Operation("POST", "/v1/bots/{bot_id}/custom-auth/test", "testCustomAuth", "Run the Testing panel",
              "custom-auth", TestRequest, None, ADMIN, {
        200: ("The request sent (tokens masked), the answer received, the identity parsed or the precise failure.",
              TestResult),
        NOT_FOUND_BOT[0]: NOT_FOUND_BOT[1],
        **BODY_ERRORS,
        422: ("The body is not valid, or the bot has no `auth_url` yet (`invalid_settings`).", Error),
    }),
    Operation("GET", "/v1/bots/{bot_id}/contacts", "listContacts", "List and search contacts", "contacts",
              None, ContactQuery, ADMIN, {
        200: ("A page of contacts, newest first.", ContactPage), NOT_FOUND_BOT[0]: NOT_FOUND_BOT[1], **QUERY_ERRORS,
    }),
    Operation("GET", "/v1/bots/{bot_id}/contacts/{contact_id}", "getContact", "Read a contact", "contacts",
              None, None, ADMIN, {
        200: ("The contact, with `metadata` and where each field came from.", ContactDetail),
        404: ("No bot has this `bot_id`, or no contact of that bot has this id.", Error),
    }),
    Operation("GET", "/v1/bots/{bot_id}/auth-events", "listAuthEvents", "The authentication activity log",
              "contacts", None, AuthEventQuery, ADMIN, {
        200: ("A page of widget sessions, newest first, with why each ended as it did.", AuthEventPage),
        NOT_FOUND_BOT[0]: NOT_FOUND_BOT[1], **QUERY_ERRORS,
    }),
    # operations
    Operation("GET", "/healthz", "healthz", "Liveness: the event loop answers", "operations", None, None, None, {
        200: ("Alive.", Health),
    }),
    Operation("GET", "/readyz", "readyz", "Readiness: the database answers and the broker channel is open",
              "operations", None, None, None, {
        200: ("Ready.", Readiness), 503: ("A dependency is not ready: `checks` says which.", Readiness),
    }),
    Operation("POST", "/v1/workspaces", "createWorkspace", "Create a workspace (operator only)", "workspaces",
              NewWorkspace, None, ADMIN, {
        201: ("The new workspace.", Workspace), **OPERATOR_ONLY, **BODY_ERRORS,
    }),
    Operation("GET", "/v1/workspaces", "listWorkspaces", "List workspaces (operator only)", "workspaces",
              None, None, ADMIN, {200: ("Every workspace.", WorkspaceList), **OPERATOR_ONLY}),
    Operation("POST", "/v1/workspaces/{workspace_id}/api-keys", "createApiKey", "Create a workspace API key",
              "workspaces", NewApiKey, None, ADMIN, {
        201: ("The key, shown once.", ApiKeyCreated), **NOT_FOUND_WORKSPACE, **BODY_ERRORS,
    }),
    Operation("GET", "/v1/workspaces/{workspace_id}/api-keys", "listApiKeys", "List a workspace's API keys",
              "workspaces", None, None, ADMIN, {200: ("The keys (never their secrets).", ApiKeyList),
                                                **NOT_FOUND_WORKSPACE}),
    Operation("DELETE", "/v1/workspaces/{workspace_id}/api-keys/{key_id}", "revokeApiKey", "Revoke an API key",
              "workspaces", None, None, ADMIN, {
        204: ("Revoked: the key is refused from now on.", None),
        404: ("No such workspace or key (or not yours).", Error),
    }),
    Operation("POST", "/v1/bots/{bot_id}/custom-auth/signing-secret", "rotateSigningSecret",
              "Create or rotate the bot's signing secret", "custom-auth", None, None, ADMIN, {
        201: ("The new secret, shown this once; the previous one keeps signing (a second signature) until "
              "`previous_valid_until`.", SigningSecret),
        NOT_FOUND_BOT[0]: NOT_FOUND_BOT[1],
    }),
    Operation("GET", "/openapi.json", "openapi", "This document", "operations", None, None, None, {
        200: ("The OpenAPI 3.1 document for this API.", None),
    }),
)

TAGS = [
    {"name": "widget", "description": "Public, CORS for any origin; the widget script uses it."},
    {"name": "bots", "description": "Admin: bots."},
    {"name": "custom-auth", "description": "Admin: Custom Authentication settings and the Testing panel."},
    {"name": "contacts", "description": "Admin: contacts and the authentication activity log."},
    {"name": "operations", "description": "Health, readiness and this document."},
]

PATH_PARAMETERS = {
    "bot_id": ("The bot's id.", {"type": "string", "format": "uuid"}),
    "session_id": ("The session id `POST /v1/widget/sessions` returned.", {"type": "string"}),
    "contact_id": ("The contact's id.", {"type": "string", "format": "uuid"}),
    "workspace_id": ("The workspace's id.", {"type": "string", "format": "uuid"}),
    "key_id": ("The API key's id.", {"type": "string", "format": "uuid"}),
}


# --- building the document ----------------------------------------------------------------------


class _Components:
    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def _put(self, name: str, schema: dict[str, Any]) -> None:
        if self.schemas.setdefault(name, schema) != schema:
            raise ValueError(f"two different schemas are both called {name!r}")

    def model(self, model: Any) -> dict[str, Any]:
        """``model`` (a pydantic model or TypedDict, and what it refers to) into components; returns a reference to it."""
        schema = TypeAdapter(model).json_schema(ref_template=REF_TEMPLATE)
        return {"$ref": REF_TEMPLATE.format(model=self.add(schema, model.__name__))}

    def add(self, schema: dict[str, Any], name: str) -> str:
        schema = dict(schema)
        for def_name, definition in schema.pop("$defs", {}).items():
            self._put(def_name, definition)
        self._put(name, schema)
        return name

    def inline(self, schema: dict[str, Any]) -> dict[str, Any]:
        """A schema used in place (a query parameter's): its ``$defs`` hoisted into components."""
        schema = dict(schema)
        for def_name, definition in schema.pop("$defs", {}).items():
            self._put(def_name, definition)
        return schema


def _query_parameters(model: type[BaseModel], components: _Components) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    components.inline({"$defs": schema.get("$defs", {})})
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


def _operation(op: Operation, components: _Components) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag]}
    parameters = [
        {"name": name, "in": "path", "required": True, "description": PATH_PARAMETERS[name][0],
         "schema": PATH_PARAMETERS[name][1]}
        for name in _placeholders(op.path)
    ]
    if op.query is not None:
        parameters += _query_parameters(op.query, components)
    if parameters:
        out["parameters"] = parameters
    if op.request is not None:
        out["requestBody"] = {"required": True, "content": {JSON: {"schema": components.model(op.request)}}}
    responses = dict(op.responses)
    if op.security == ADMIN:
        responses[401] = ("Missing or wrong admin token.", Error)
        out["security"] = [{"adminToken": []}]
    else:
        out["security"] = []
    out["responses"] = {}
    for status in sorted(responses):
        description, model = responses[status]
        response: dict[str, Any] = {"description": description}
        if status in op.streams:
            response["content"] = {EVENT_STREAM: {
                "schema": {"type": "string", "description": op.streams[status]},
                "x-events": {"outcome": components.model(SessionView)},
            }}
        elif model is not None:
            response["content"] = {JSON: {"schema": components.model(model)}}
        elif op.path == "/openapi.json":
            response["content"] = {JSON: {"schema": {"type": "object"}}}
        headers = dict(op.headers.get(status, {}))
        if status == 401:
            headers["WWW-Authenticate"] = '`Bearer realm="doorman-admin"`'
        if headers:
            response["headers"] = {name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()}
        out["responses"][str(status)] = response
    return out


def _placeholders(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def build_document(*, widget_body_max_bytes: int = 16 * 1024) -> dict[str, Any]:
    components = _Components()
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        operation = _operation(op, components)
        if "413" in operation["responses"]:
            limit = widget_body_max_bytes if op.path.startswith("/v1/widget/") else ADMIN_BODY_MAX_BYTES
            operation["responses"]["413"]["description"] = f"The body is larger than {limit} bytes."
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Doorman",
            "version": _version(),
            "summary": "Custom Authentication for a chat widget",
            "description": (
                "The widget API (public, CORS for any origin) opens a session and delivers its outcome; the admin API "
                "(`Authorization: Bearer <admin token>`) manages bots, Custom Authentication settings, the Testing "
                "panel, contacts and the authentication activity log. Every error is JSON: "
                '`{"error": {"code", "message", "fields"?: [{"field", "message"}]}}`.'
            ),
        },
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.schemas.items())),
            "securitySchemes": {"adminToken": {
                "type": "http", "scheme": "bearer", "description": "`DOORMAN_ADMIN_TOKEN`",
            }},
        },
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("doorman")
    except PackageNotFoundError:
        return "0.0.0"


# --- serving it ---------------------------------------------------------------------------------

routes = web.RouteTableDef()
_built: weakref.WeakKeyDictionary[web.Application, bytes] = weakref.WeakKeyDictionary()


def document_for(app: web.Application) -> bytes:
    """The document, built once per app (it names the app's body limits)."""
    body = _built.get(app)
    if body is None:
        settings = app.get(SETTINGS)
        limit = settings.widget_body_max_bytes if settings is not None else 16 * 1024
        body = _built[app] = json.dumps(build_document(widget_body_max_bytes=limit)).encode()
    return body


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    """No auth: it documents, it grants nothing."""
    return web.Response(body=document_for(request.app), content_type=JSON)
