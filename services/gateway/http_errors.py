"""Every error the gateway returns is JSON: a status, a code and, for bad input, field errors."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Any, NotRequired, TypeVar
from uuid import UUID

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, with_config
from typing_extensions import TypedDict

from shared.failures import is_transient
from shared.routes import Response

log = structlog.get_logger("doorman.gateway")
M = TypeVar("M", bound=BaseModel)


@with_config(ConfigDict(extra="forbid"))
class FieldError(TypedDict):
    field: Annotated[str, Field(
        description="dotted path of the bad input, e.g. `domain_whitelist.api_url`; `body` for the whole body")]
    message: str


@with_config(ConfigDict(extra="forbid"))
class ErrorDetail(TypedDict):
    code: Annotated[str, Field(
        description="stable machine-readable code, e.g. `bot_not_found`, `invalid_body`, `unauthorized`")]
    message: str
    fields: NotRequired[Annotated[list[FieldError], Field(description=(
        "present on 422: one entry per bad field; on 409 `invalid_state`: the stored settings in the way"))]]


@with_config(ConfigDict(extra="forbid"))
class Error(TypedDict):
    """Every error response."""

    error: ErrorDetail


# Answers operations share (see shared.routes); openapi.py makes the 413's text name the operation's limit.
BODY_ERRORS = {
    413: ("The body is too large.", Error),
    415: ("The body is not `application/json`.", Error),
    422: ("The body is not valid: `fields` says which fields and why.", Error),
}
# A body naming URLs: beyond their pattern, whether Doorman calls an address or a port is the deployment's policy.
URL_BODY_ERRORS = {**BODY_ERRORS, 422: (
    "The body is not valid, or a URL in it names an address or a port Doorman will not call (loopback and private "
    "networks unless DOORMAN_ALLOW_PRIVATE_NETWORKS, special ranges never, ports other than DOORMAN_OUTBOUND_PORTS): "
    "`fields` says which fields and why.", Error)}
QUERY_ERRORS = {422: ("A query parameter is not valid (`cursor`: not of the pattern of the cursors this list returns).",
                      Error)}
RETRY_AFTER = {"Retry-After": "seconds to wait before retrying"}
UNAVAILABLE = {503: Response("The broker is unavailable; retry after `Retry-After` seconds.", Error, RETRY_AFTER)}
# Not an operation's answer: what any path answers to a method it does not have (openapi.py puts it in components).
METHOD_NOT_ALLOWED = Response("This path does not have the request's method; `Allow` lists those it has.", Error,
                              {"Allow": "the methods this path has, comma-separated"})


class ApiError(web.HTTPException):
    """An HTTP error whose body is ``{"error": {"code", "message", ...}}``."""

    def __init__(self, status: int, body: Error, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        super().__init__(text=json.dumps(body), content_type="application/json", headers=headers)


def error(status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
          fields: list[FieldError] | None = None) -> ApiError:
    detail: ErrorDetail = {"code": code, "message": message}
    if fields is not None:
        detail["fields"] = fields
    return ApiError(status, {"error": detail}, headers)


def field_errors(exc: ValidationError) -> list[FieldError]:
    errors: list[FieldError] = []
    for e in exc.errors(include_url=False, include_input=False, include_context=False):
        field = ".".join(str(p) for p in e["loc"]) or "body"
        errors.append({"field": field, "message": e["msg"]})
    return errors


async def read_model(request: web.Request, model: type[M], *, max_bytes: int) -> M:
    """Parse a JSON body into ``model``: 413 when too big, 422 with field errors when bad."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise error(413, "body_too_large", f"request body is larger than {max_bytes} bytes")
    body = await request.content.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise error(413, "body_too_large", f"request body is larger than {max_bytes} bytes")
    if request.content_type != "application/json":
        raise error(415, "unsupported_media_type", "send the body as application/json")
    try:  # strict: JSON types as the document gives them (no 0 for false, no false for 0)
        return model.model_validate_json(body or b"null", strict=True)
    except ValidationError as exc:
        errors = field_errors(exc)
        raise error(422, "invalid_body", "the request body is not valid", fields=errors) from None


def read_query(request: web.Request, model: type[M]) -> M:
    """Parse query parameters into ``model``: 422 with field errors when bad."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise error(422, "invalid_query", "the query parameters are not valid", fields=field_errors(exc)) from None


def as_json_error(request: web.Request, exc: Exception) -> web.HTTPException:
    """What a failed request answers: every error is JSON, and no stack trace ever leaves."""
    if isinstance(exc, web.HTTPException):
        if exc.content_type == "application/json" or exc.status < 400:
            return exc
        # aiohttp's own answers (405, 404 for an unknown path, ...) as JSON, with their headers (a 405's Allow).
        kept = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
        return error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason, headers=kept)
    if is_transient(exc):  # the database or the broker blinked: nothing was half-done
        log.warning("dependency unavailable", path=request.path, error=repr(exc))
        return error(503, "unavailable", "try again shortly", headers={"Retry-After": "1"})
    log.error("unhandled error", path=request.path, exc_info=exc)
    return error(500, "internal_error", "something went wrong on our side")


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(data: Any) -> str:
    return json.dumps(data, default=_default)


def json_response(data: Any, *, status: int = 200) -> web.Response:
    """``data`` (a model is dumped first) as JSON; timestamps as ``datetime.isoformat`` writes them."""
    if isinstance(data, BaseModel):
        data = data.model_dump()
    return web.json_response(data, status=status, dumps=dumps)
