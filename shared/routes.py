"""Declaring an HTTP route once: the aiohttp route, who may call it and what the API document says of it, together.

``routes = Routes()``, then on each handler::

    @routes.post("/v1/bots", "createBot", "Create a bot", auth="workspace", tag="bots", body=NewBot,
                 responses={201: ("The new bot.", Bot), **BODY_ERRORS})

registers the route (``app.add_routes(routes)``) and records its :class:`Operation` on the
handler. ``auth`` (:data:`Auth`) is required: a route cannot be added without saying who may call it, and
the service enforces it in one place from this declaration (:func:`audience_of`); a route outside the API
document (a page, a script, ``/metrics``) says it with :meth:`Routes.unlisted`. A response may say which operations its values lead to (:class:`Link`): the document's links,
which clients and the stateful tests follow. The gateway's ``/openapi.json`` is made by walking the app's router, so an operation
without a route, or a route without its operation, cannot be. A response's shape is the pydantic
model or TypedDict the code that answers builds (its JSON schema comes from pydantic's
``TypeAdapter``), or a literal JSON schema.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)
_OPERATION = "__operation__"
_AUDIENCE = "__audience__"

# Who may call a route: anyone; the operator or a workspace, by its key (which the handler then shows only its
# own); the operator only.
Auth = Literal["public", "workspace", "operator"]


@dataclass(frozen=True)
class Stream:
    """A ``text/event-stream`` body: what the stream does, and each named event's data shape."""

    description: str
    events: Mapping[str, Any]


@dataclass(frozen=True)
class Link:
    """What an answer gives another operation (an OpenAPI link): its parameters, and fields of its JSON body, as
    runtime expressions (``$response.body#/bot_id``, ``$request.path.bot_id``)."""

    operation_id: str
    parameters: Mapping[str, str] = field(default_factory=dict)  # the target's parameter -> expression
    body: Mapping[str, str] = field(default_factory=dict)  # a field of the target's body -> expression


@dataclass(frozen=True)
class Response:
    description: str
    shape: Any = None  # the JSON body's model or TypedDict (or a JSON schema); None: no JSON body
    headers: Mapping[str, str] = field(default_factory=dict)  # header -> what it says
    stream: Stream | None = None
    links: Mapping[str, Link] = field(default_factory=dict)  # name -> link


def links_to(*operation_ids: str, **parameters: str) -> dict[str, Link]:
    """Links named after the operations they lead to, each given the same ``parameters``."""
    return {operation_id: Link(operation_id, parameters) for operation_id in operation_ids}


Responses = Mapping[int, "Response | tuple[str, Any]"]  # status -> Response, or (description, shape)


@dataclass(frozen=True)
class Operation:
    operation_id: str
    summary: str
    tag: str
    responses: Mapping[int, Response]
    auth: Auth
    body: type[BaseModel] | None = None  # the JSON request body
    query: type[BaseModel] | None = None  # the query parameters
    form: type[BaseModel] | None = None  # an application/x-www-form-urlencoded request body


def operation_of(handler: object) -> Operation | None:
    """The operation declared with ``handler`` (None: a route outside the API, such as a page)."""
    return getattr(handler, _OPERATION, None)


def audience_of(handler: object) -> Auth | None:
    """Who may call the route ``handler`` answers, as declared (None: not declared with :class:`Routes`)."""
    return getattr(handler, _AUDIENCE, None)


def _declare_audience(handler: Handler, auth: Auth) -> None:
    if auth not in ("public", "workspace", "operator"):
        raise ValueError(f"{handler.__qualname__}: auth must be public, workspace or operator, not {auth!r}")
    setattr(handler, _AUDIENCE, auth)


class Routes:
    """A route table whose every route is declared with its operation."""

    def __init__(self) -> None:
        self._defs: list[web.RouteDef] = []

    def __iter__(self) -> Iterator[web.RouteDef]:
        return iter(self._defs)

    def route(self, method: str, path: str, operation_id: str, summary: str, *, auth: Auth, tag: str,
              responses: Responses, body: type[BaseModel] | None = None,
              query: type[BaseModel] | None = None, form: type[BaseModel] | None = None) -> Callable[[H], H]:
        operation = Operation(
            operation_id, summary, tag,
            {status: r if isinstance(r, Response) else Response(*r) for status, r in responses.items()}, auth,
            body, query, form,
        )

        def declare(handler: H) -> H:
            if audience_of(handler) is not None:
                raise ValueError(f"{handler.__qualname__} is already declared as {operation_of(handler)}")
            _declare_audience(handler, auth)
            setattr(handler, _OPERATION, operation)
            self._defs.append(web.route(method, path, handler))
            return handler

        return declare

    def unlisted(self, method: str, path: str, *, auth: Auth) -> Callable[[H], H]:
        """A route the API document leaves out (a page, a script, ``/metrics``), with who may call it."""

        def declare(handler: H) -> H:
            if audience_of(handler) is not None:
                raise ValueError(f"{handler.__qualname__} is already declared")
            _declare_audience(handler, auth)
            self._defs.append(web.route(method, path, handler))
            return handler

        return declare

    def get(self, path: str, operation_id: str, summary: str, **doc: Any) -> Callable[[H], H]:
        return self.route("GET", path, operation_id, summary, **doc)

    def post(self, path: str, operation_id: str, summary: str, **doc: Any) -> Callable[[H], H]:
        return self.route("POST", path, operation_id, summary, **doc)

    def put(self, path: str, operation_id: str, summary: str, **doc: Any) -> Callable[[H], H]:
        return self.route("PUT", path, operation_id, summary, **doc)

    def delete(self, path: str, operation_id: str, summary: str, **doc: Any) -> Callable[[H], H]:
        return self.route("DELETE", path, operation_id, summary, **doc)
