"""``GET /openapi.json``: an OpenAPI 3.1 document for the gateway's whole HTTP API.

The response models below document what the handlers return (``store``, ``directory``,
``testing``); request bodies and query parameters come from the models the handlers parse
(``schemas``). ``tests/integration/test_openapi.py`` keeps the two honest: every route is
documented, every documented operation exists, and live responses validate against the document.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from shared.events import FallbackReason, IdentifyMethod, Identity

from .admin import ADMIN_BODY_MAX_BYTES
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
    RequestField,
    TestRequest,
)
from shared.sessions import WIDGET_CONTACT_FIELDS

REF_TEMPLATE = "#/components/schemas/{model}"
SessionStatus = Literal["pending", "verified", "fallback"]


class Doc(BaseModel):
    """A documentation model: exactly these fields, no others (so drift fails validation)."""

    model_config = ConfigDict(extra="forbid")


# --- errors and health --------------------------------------------------------------------------


class FieldError(Doc):
    field: str = Field(description="dotted path of the bad input, e.g. `domain_whitelist.api_url`; `body` for the whole body")
    message: str


class ErrorDetail(Doc):
    code: str = Field(description="stable machine-readable code, e.g. `bot_not_found`, `invalid_body`, `unauthorized`")
    message: str
    fields: list[FieldError] = Field(default_factory=list, description="present on 422: one entry per bad field")


class Error(Doc):
    """Every error response."""

    error: ErrorDetail


class Health(Doc):
    status: Literal["ok"]


class Readiness(Doc):
    status: Literal["ok", "unavailable"]
    checks: dict[str, bool] = Field(description="each dependency (`database`, `broker`) and whether it answers")


# --- bots and Custom Authentication settings ----------------------------------------------------


class Bot(Doc):
    bot_id: UUID
    name: str
    workspace_id: UUID | None = Field(description="null: reached only with the operator's admin token")
    created_at: datetime
    updated_at: datetime


class SigningSecret(Doc):
    signing_secret: str = Field(description="`whsec_...`: verify `Doorman-Signature` with it")
    previous_valid_until: datetime | None


class Workspace(Doc):
    workspace_id: UUID
    name: str
    created_at: datetime


class WorkspaceList(Doc):
    workspaces: list[Workspace]


class ApiKeyCreated(Doc):
    key_id: UUID
    workspace_id: UUID
    name: str
    created_at: datetime
    api_key: str = Field(description="`dk_...`: shown this once; only its SHA-256 is stored")


class ApiKey(Doc):
    key_id: UUID
    workspace_id: UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyList(Doc):
    api_keys: list[ApiKey]


class BotPage(Doc):
    bots: list[Bot]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class DomainWhitelistView(Doc):
    enabled: bool
    source: Literal["manual", "api"]
    domains: list[str]
    api_url: str | None


class CustomAuthSettings(Doc):
    """The stored settings. The header token is write-only: only whether one is set is shown."""

    enabled: bool
    auth_url: str | None
    header_token_set: bool
    signing_secret_set: bool = Field(description="identity calls carry `Doorman-Signature`")
    identify_method: IdentifyMethod
    request_fields: list[RequestField]
    domain_whitelist: DomainWhitelistView
    revision: int = Field(description="incremented by every PUT")
    updated_at: datetime


# --- widget sessions ----------------------------------------------------------------------------


class SessionCreated(Doc):
    session_id: str = Field(description="256 random bits, URL-safe; the only key to the outcome")
    status: Literal["pending"]


class WidgetContact(Doc):
    """What the visitor's browser may learn about its own contact (no label, no metadata)."""

    contact_id: UUID
    name: str | None
    email: str | None
    phone_number: str | None
    avatar: str | None
    verified: bool


class Fallback(Doc):
    reason: FallbackReason
    detail: str | None


class ContactAccepted(Doc):
    session_id: str
    status: Literal["accepted"]


class SessionView(Doc):
    session_id: str
    status: SessionStatus
    contact: WidgetContact | None = Field(description="set when verified")
    fallback: Fallback | None = Field(description="set when status is `fallback`: show the Collect Information form")
    collected: bool = Field(description="the Collect Information form was sent for this session")


# --- contacts and the authentication activity log ----------------------------------------------


class ContactSummary(Doc):
    contact_id: UUID
    identify_method: IdentifyMethod | Literal["session"] = Field(
        description="`session`: a Collect Information contact with neither email nor phone, its own contact")
    identifier: str = Field(description="the normalised value of the identify method's field")
    external_id: str | None = Field(description="the business's `id` for the visitor")
    name: str | None
    email: str | None
    phone_number: str | None
    country_code: str | None
    avatar: str | None
    label: str | None
    verified: bool
    created_at: datetime
    updated_at: datetime
    last_verified_at: datetime | None


class ContactDetail(ContactSummary):
    metadata: dict[str, Any]
    sources: dict[str, Literal["api", "visitor"]] = Field(
        description="where each field's current value came from: the business's API or the visitor's form")


class ContactPage(Doc):
    contacts: list[ContactSummary] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class AuthEvent(Doc):
    """One widget session and why it ended as it did."""

    session_id: str
    origin: str | None
    status: SessionStatus
    reason: FallbackReason | None
    detail: str | None
    contact_id: UUID | None
    created_at: datetime
    resolved_at: datetime | None
    latency_ms: int | None = Field(description="open to outcome")
    auth_http_status: int | None = Field(description="the Authentication URL's HTTP status, if it answered")
    auth_latency_ms: float | None = Field(description="duration of the identity call")
    whitelist_note: str | None


class AuthEventPage(Doc):
    events: list[AuthEvent] = Field(description="newest first")
    next_cursor: str | None


# --- the Testing panel --------------------------------------------------------------------------


class TestRequestSent(Doc):
    method: Literal["POST"]
    url: str
    headers: dict[str, str] = Field(description="as sent; `Authorization` masked")
    body: dict[str, Any] = Field(description="as sent; `access_token` masked")


class TestResponseReceived(Doc):
    status: int
    headers: dict[str, str] = Field(description="without `Set-Cookie` and authorization headers")
    body: str = Field(description="the first 4096 characters")
    body_truncated: bool
    body_bytes: int


class TestMatch(Doc):
    action: Literal["create", "update"]
    contact_id: UUID | None = Field(description="the contact a real session would update")


class TestFailure(Doc):
    reason: FallbackReason
    detail: str
    hint: str = Field(description="what to fix")


class VisitorOutcome(Doc):
    status: Literal["verified", "fallback"]
    reason: FallbackReason | None = Field(description="null when verified")
    detail: str | None


class TestResult(Doc):
    """The identity call made with the bot's current settings; nothing is written."""

    ok: bool
    enabled: bool = Field(description="whether Custom Authentication is on (the test runs either way)")
    identify_method: IdentifyMethod
    request: TestRequestSent
    response: TestResponseReceived | None = Field(description="null when no answer arrived")
    identity: Identity | None = Field(description="the profile parsed from the answer")
    match: TestMatch | None
    elapsed_ms: float
    failure: TestFailure | None
    visitor_outcome: VisitorOutcome = Field(description=(
        "what a real widget open from `origin` would get today with these settings (Custom Authentication off, "
        "domain not allowed, missing token and the call's own result), decided by the verifier's own code in a "
        "dry run"))


assert set(WIDGET_CONTACT_FIELDS) == set(WidgetContact.model_fields), "WidgetContact drifted from store"


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
    # status -> (description, model or None); a model is JSON unless the status is in ``streams``
    responses: dict[int, tuple[str, type[BaseModel] | None]]
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

    def model(self, model: type[BaseModel]) -> dict[str, Any]:
        """``model`` (and what it refers to) into components; returns a reference to it."""
        return {"$ref": REF_TEMPLATE.format(model=self.add(model.model_json_schema(ref_template=REF_TEMPLATE), model.__name__))}

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
