"""structlog set-up: JSON lines in production, per-message context, secrets redacted.

Redaction is by allow-list: a log line keeps only the keys in ``ALLOWED`` as they
are; any other key's value is replaced by ``[redacted]`` (the key stays, so whoever
adds a field sees it and decides). Free-text values that may quote a request or a
URL (``error``, ``exception``, ``detail``, ``path``...) are scrubbed of credentials: the
value after ``Bearer``/``Basic``, URL user-info and query values, and the session id in a widget
session's path. A session id is a bearer value (it reads the outcome): log lines carry its
:func:`session_ref` instead, and so do traces (shared/tracing.py).
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from typing import Any

import structlog

from shared.tracing import add_trace_id

ALLOWED = frozenset({
    # structlog's own and the per-message context
    "event", "level", "timestamp", "logger", "exception", "stack",
    "service", "correlation_id", "session_ref", "bot_id", "event_id", "event_type", "workspace_id",
    # what the services say about their work
    "status", "reason", "detail", "error", "latency_ms", "auth_http_status", "auth_latency_ms",
    "attempt", "retry_in_s", "retries_exhausted", "size", "in_flight", "deleted", "watcher",
    "message_type", "message_id", "path", "migration", "database", "api_url",
    "domains", "kept", "skipped", "serving", "error_type", "events", "health_port", "trace_id",
    "busy", "opens", "replica", "sessions",
    # the circuit breaker and the outage grace (services/verifier/breaker.py, grace.py)
    "host", "opened", "degraded", "circuit_open", "verified_seconds_ago", "rows",
    # ending sessions (services/gateway/widget/ending.py): the status a session had, and who ended it
    "was", "ended_by",
    # webhook deliveries (services/verifier/webhooks.py, shared/webhook_outbox.py)
    "webhook_type", "http_status", "deliveries",
})
FREE_TEXT = frozenset({"event", "exception", "detail", "error", "stack", "api_url", "path"})
REDACTED = "[redacted]"
# A widget session's path, /v1/widget/sessions/<session id>[/...]: group 2 is the id (never the route's
# placeholder, {session_id}).
SESSION_PATH = re.compile(r"(/v1/widget/sessions/)([^/?#{}\s\"']+)")
_CREDENTIALS = [
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[^\s\"',;]+"), r"\1 [redacted]"),
    (re.compile(r"(?i)(https?|amqps?|postgres(?:ql)?)://[^/\s:@]+:[^@\s/]+@"), r"\1://[redacted]@"),
    (re.compile(r"([?&][^=&\s\"']+=)[^&\s\"']+"), r"\1[redacted]"),
    (SESSION_PATH, r"\1{session_id}"),  # as the route is declared
]


def session_ref(session_id: str) -> str:
    """What logs and traces carry in place of a session id: the first 16 hex digits of its SHA-256. A plain hash,
    not a keyed one: the id holds 256 random bits, so its hash can be neither reversed nor matched by guessing,
    and whoever holds an id (support, given one by a visitor) finds its lines with no key at hand, the same in
    every service and across key rotations. 64 bits: two sessions share one only among billions."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]


def scrub(text: str) -> str:
    for pattern, replacement in _CREDENTIALS:
        text = pattern.sub(replacement, text)
    return text


def redact(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in event.items():
        if key not in ALLOWED:
            clean[key] = REDACTED
        elif key in FREE_TEXT and isinstance(value, str):
            clean[key] = scrub(value)
        else:
            clean[key] = value
    return clean


def configure(level: str = "info", json: bool | None = None) -> None:
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_id,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # aio-pika and aiohttp log through the standard library: keep them quiet and on stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
