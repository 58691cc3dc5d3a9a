"""OpenTelemetry tracing, off unless DOORMAN_TRACING=true.

The maintained instrumentations do the work: aio-pika (the trace context rides in each
message's AMQP headers, so a session's spans join across gateway, verifier and contacts),
aiohttp server (the gateway) and aiohttp client (identity calls). Spans are exported over
OTLP/HTTP when the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is
set; log lines carry the ``trace_id`` either way. No span carries a session id
(shared/tracing_redaction.py): a widget session's path says ``{session_id}``, and the span its
``session_ref``.
"""

from __future__ import annotations

import os
from typing import Any


def configure(service: str, enabled: bool) -> None:
    if not enabled:
        return
    from opentelemetry import trace
    from opentelemetry.instrumentation.aio_pika import AioPikaInstrumentor
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from shared.tracing_redaction import SessionIdsRedacted

    provider = TracerProvider(resource=Resource.create({"service.name": f"doorman-{service}"}))
    provider.add_span_processor(SessionIdsRedacted())  # first: what the exporters get is redacted
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    AioPikaInstrumentor().instrument()
    AioHttpClientInstrumentor().instrument()
    AioHttpServerInstrumentor().instrument()


def add_trace_id(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the current span's trace id, when tracing is on and a span is active."""
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - a dependency, but stay harmless
        return event
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
    return event
