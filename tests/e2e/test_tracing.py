"""Trace context rides in the AMQP headers: the verifier's outcome joins the gateway's trace. The spans exported
(OTLP/HTTP, to a collector of the test's own) never carry a session id, a bearer value: a session's URL path says
``{session_id}`` where the id was, and the span carries its ``session_ref``, as the logs do."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from shared import messaging
from shared.logging import session_ref
from tests.conftest import (AMQP_URL, create_bot, open_session, service_config, service_env,
                            wait_for_consumers, wait_ready)
from tests.fake_customer import FakeCustomerAPI, verified
from tests.faults.infra import free_port


def trace_id(message: aio_pika.abc.AbstractIncomingMessage) -> str:
    traceparent = (message.headers or {}).get("traceparent")
    assert isinstance(traceparent, str), f"no trace context in {message.type}"
    return traceparent.split("-")[1]


@asynccontextmanager
async def collector() -> AsyncIterator[tuple[str, list[Span]]]:
    """An OTLP/HTTP trace collector on 127.0.0.1: its endpoint, and every span exported to it."""
    spans: list[Span] = []

    async def traces(request: web.Request) -> web.Response:
        exported = ExportTraceServiceRequest.FromString(await request.read())
        spans.extend(s for r in exported.resource_spans for scope in r.scope_spans for s in scope.spans)
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", spans
    finally:
        await runner.cleanup()


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return [_value(v) for v in value.array_value.values] if kind == "array_value" else getattr(value, kind or "string_value")


def texts(span: Span) -> Iterator[str]:
    """Every string a span carries: its name, attributes, events, links' attributes, status."""
    yield span.name
    yield span.status.message
    for attributes in (span.attributes, *(e.attributes for e in span.events), *(ln.attributes for ln in span.links)):
        for attribute in attributes:
            yield f"{attribute.key}={_value(attribute.value)}"
    yield from (e.name for e in span.events)


def attributes(span: Span) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in span.attributes}


async def test_one_trace_from_widget_open_to_outcome_and_no_session_id_in_a_span(
    database_url: str, fresh_prefix: Any, secret_key: str, tmp_path: Path, customer_api: FakeCustomerAPI,
) -> None:
    config = {**service_config(database_url, fresh_prefix(), secret_key), "gateway_port": free_port(), "tracing": True}
    logs = [tmp_path / f"{s}.log" for s in ("gateway", "verifier")]
    url = f"http://127.0.0.1:{config['gateway_port']}"
    topology = messaging.Topology(config["amqp_prefix"])
    async with collector() as (endpoint, spans):
        env = {**service_env(config), "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        procs = [await asyncio.create_subprocess_exec(sys.executable, "-m", "doorman.cli", s, env=env,
                                                      stdout=log.open("wb"), stderr=asyncio.subprocess.STDOUT)
                 for s, log in zip(("gateway", "verifier"), logs)]
        try:
            await wait_ready(url)
            await wait_for_consumers(config["amqp_prefix"], {messaging.VERIFIER_QUEUE: 1, messaging.CONTACTS_QUEUE: 0})
            async with await aio_pika.connect(AMQP_URL) as conn, aiohttp.ClientSession() as http:
                channel = await conn.channel()
                exchange = await channel.get_exchange(topology.exchange)
                taps = {}
                for key in ("widget.opened", "identity.verified"):
                    taps[key] = await channel.declare_queue(exclusive=True)
                    await taps[key].bind(exchange, routing_key=key)
                bot = await create_bot(http, url, enabled=True, auth_url=customer_api.endpoint(verified(id="traced")))
                session_id = await open_session(http, url, {"bot_id": bot, "access_token": "t"})
                got = {}
                for key, queue in taps.items():
                    async with queue.iterator(timeout=10) as messages:
                        async for message in messages:
                            got[key] = message
                            break
                # The routes that name the session in their path (no contacts service runs: it stays pending).
                async with http.get(f"{url}/v1/widget/sessions/{session_id}") as resp:
                    assert resp.status == 200
                async with http.delete(f"{url}/v1/widget/sessions/{session_id}") as resp:
                    assert resp.status == 204
                async with http.get(f"{url}/v1/widget/sessions/{session_id}/events") as resp:
                    assert resp.status == 200 and b"event: ended" in await resp.read()
            assert trace_id(got["widget.opened"]) == trace_id(got["identity.verified"])
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            await asyncio.gather(*(p.wait() for p in procs))  # each exports what it still holds on the way out

    lines = [json.loads(line) for line in logs[1].read_text().splitlines() if line.startswith("{")]
    verified_lines = [line for line in lines if line.get("event") == "session verified"]
    assert verified_lines and verified_lines[0]["trace_id"] == trace_id(got["widget.opened"])

    by_route = {}
    for span in spans:
        if route := attributes(span).get("http.route"):
            by_route.setdefault(route, []).append(span)
    assert {"/v1/widget/sessions/{session_id}", "/v1/widget/sessions/{session_id}/events"} <= set(by_route)
    for span in by_route["/v1/widget/sessions/{session_id}"]:
        assert attributes(span)["session_ref"] == session_ref(session_id)
        assert attributes(span)["http.target"] == "/v1/widget/sessions/{session_id}"
    leaked = [text for span in spans for text in texts(span) if session_id in text]
    assert not leaked, f"the session id in the spans: {leaked}"
