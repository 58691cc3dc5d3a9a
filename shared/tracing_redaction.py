"""Spans carry no session id: a session id is a bearer value (it reads the outcome), and the aiohttp server
instrumentation records the request's path and URL (``http.target``, ``http.url``; ``url.path``, ``url.full``
under the newer conventions), where ``/v1/widget/sessions/{session_id}`` holds it. Imported by
:func:`shared.tracing.configure` only when tracing is on (it needs the OpenTelemetry SDK)."""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor

from shared.logging import SESSION_PATH, scrub, session_ref


class SessionIdsRedacted(SpanProcessor):
    """At each span's start, before any exporter sees it: every string attribute and the name with a widget
    session's path say ``{session_id}`` where the id was, and the span carries the id's ``session_ref``, as the
    log lines do."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        found = None
        for key, value in (span.attributes or {}).items():
            if isinstance(value, str) and (match := SESSION_PATH.search(value)):
                found = match[2]
                span.set_attribute(key, scrub(value))
        if match := SESSION_PATH.search(span.name):
            found = match[2]
            span.update_name(scrub(span.name))
        if found is not None:
            span.set_attribute("session_ref", session_ref(found))
