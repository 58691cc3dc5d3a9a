"""Trace context rides in the AMQP headers: the verifier's outcome joins the gateway's trace."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp

from shared import messaging
from tests.conftest import AMQP_URL, create_bot, open_session, service_config, service_env, wait_for_consumers, wait_ready
from tests.fake_customer import FakeCustomerAPI, verified
from tests.faults.infra import free_port


def trace_id(message: aio_pika.abc.AbstractIncomingMessage) -> str:
    traceparent = (message.headers or {}).get("traceparent")
    assert isinstance(traceparent, str), f"no trace context in {message.type}"
    return traceparent.split("-")[1]


async def test_one_trace_from_widget_open_to_outcome(
    database_url: str, broker_prefix: Any, secret_key: str, tmp_path: Path, customer_api: FakeCustomerAPI,
) -> None:
    config = {**service_config(database_url, broker_prefix(), secret_key), "gateway_port": free_port(), "tracing": True}
    env = service_env(config)
    logs = [tmp_path / f"{s}.log" for s in ("gateway", "verifier")]
    procs = [await asyncio.create_subprocess_exec(sys.executable, "-m", "doorman.cli", s, env=env,
                                                  stdout=log.open("wb"), stderr=asyncio.subprocess.STDOUT)
             for s, log in zip(("gateway", "verifier"), logs)]
    url = f"http://127.0.0.1:{config['gateway_port']}"
    topology = messaging.Topology(config["amqp_prefix"])
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
            await open_session(http, url, {"bot_id": bot, "access_token": "t"})
            got = {}
            for key, queue in taps.items():
                async with queue.iterator(timeout=10) as messages:
                    async for message in messages:
                        got[key] = message
                        break
        assert trace_id(got["widget.opened"]) == trace_id(got["identity.verified"])
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        await asyncio.gather(*(p.wait() for p in procs))
    lines = [json.loads(line) for line in logs[1].read_text().splitlines() if line.startswith("{")]
    verified_lines = [line for line in lines if line.get("event") == "session verified"]
    assert verified_lines and verified_lines[0]["trace_id"] == trace_id(got["widget.opened"])
