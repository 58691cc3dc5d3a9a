"""Scale-out on one machine: 3 gateways on their own ports, 2 verifiers, 2 contacts, as processes.

Every session resolves (its stream read from another gateway than the one that opened it),
and the metrics of the replicas add up to what was done.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared import messaging
from tests.conftest import await_outcome, create_bot, open_session, service_config, service_env, wait_for_consumers, wait_ready
from tests.fake_customer import FakeCustomerAPI, verified
from tests.faults.infra import free_port

SESSIONS = 150


async def metric_sum(http: aiohttp.ClientSession, urls: list[str], name: str, **labels: str) -> float:
    total = 0.0
    for url in urls:
        async with http.get(f"{url}/metrics") as resp:
            text = await resp.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
    return total


def health_port(log: Path) -> int:
    for line in log.read_text().splitlines():
        if line.startswith("{") and (entry := json.loads(line)).get("event") == "health and metrics served":
            return int(entry["health_port"])
    raise AssertionError(f"no health port in {log}")


@pytest.fixture
async def cluster(database_url: str, fresh_prefix: Any, secret_key: str, tmp_path: Path) -> Any:
    config = service_config(database_url, fresh_prefix(), secret_key)
    procs, gateways, workers, logs = [], [], [], []
    for index, service in enumerate(["gateway"] * 3 + ["verifier"] * 2 + ["contacts"] * 2):
        port = free_port()
        env = service_env({**config, "gateway_port": port})
        log = tmp_path / f"{service}-{index}.log"
        procs.append(await asyncio.create_subprocess_exec(
            sys.executable, "-m", "doorman.cli", service, env=env, stdout=log.open("wb"), stderr=asyncio.subprocess.STDOUT))
        (gateways if service == "gateway" else workers).append(
            f"http://127.0.0.1:{port}" if service == "gateway" else (service, log))
        logs.append(log)
    try:
        for url in gateways:
            await wait_ready(url)
        await wait_for_consumers(config["amqp_prefix"], {messaging.VERIFIER_QUEUE: 2, messaging.CONTACTS_QUEUE: 2})
        worker_urls = {kind: [f"http://127.0.0.1:{health_port(log)}" for k, log in workers if k == kind]
                       for kind in ("verifier", "contacts")}
        yield gateways, worker_urls, logs
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        assert await asyncio.gather(*(p.wait() for p in procs)) == [0] * len(procs)


async def test_replicas_share_the_work_and_their_metrics_add_up(cluster: Any, customer_api: FakeCustomerAPI) -> None:
    gateways, workers, _ = cluster
    async with aiohttp.ClientSession() as http:
        url = customer_api.endpoint(*[verified(id=f"v-{i % 30}", name=f"V{i}") for i in range(SESSIONS)])
        bot = await create_bot(http, gateways[0], enabled=True, auth_url=url)

        async def one(i: int) -> dict[str, Any]:
            opened_on, streamed_on = gateways[i % 3], gateways[(i + 1) % 3]
            session_id = await open_session(http, opened_on, {"bot_id": bot, "access_token": f"t-{i}"})
            return await await_outcome(http, streamed_on, session_id, timeout=30)

        outcomes = await asyncio.gather(*(one(i) for i in range(SESSIONS)))
        assert [o["status"] for o in outcomes] == ["verified"] * SESSIONS

        opened = await metric_sum(http, gateways, "doorman_sessions_opened_total")
        calls = await metric_sum(http, workers["verifier"], "doorman_auth_calls_total", bot=bot, result="2xx")
        resolved = await metric_sum(http, workers["contacts"], "doorman_outcomes_total", status="verified")
        recorded = await metric_sum(http, workers["contacts"], "doorman_session_seconds_count", status="verified")
        per_gateway = [await metric_sum(http, [g], "doorman_sessions_opened_total") for g in gateways]
        per_verifier = [await metric_sum(http, [v], "doorman_auth_calls_total", bot=bot) for v in workers["verifier"]]
    assert (opened, calls, resolved, recorded) == (SESSIONS, SESSIONS, SESSIONS, SESSIONS)
    assert per_gateway == [SESSIONS / 3] * 3  # round-robin opens
    assert all(n > 0 for n in per_verifier)  # competing consumers both worked


async def test_a_gateway_process_starts_clean_and_takes_long_request_lines(cluster: Any) -> None:
    """`doorman gateway` hands its server options to aiohttp as aiohttp expects them: no "custom kwargs"
    warning on start, and request lines up to 16 KiB (aiohttp's default is 8 KiB) are read."""
    gateways, _, logs = cluster
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateways[0]}/v1/bots", params={"cursor": "c" * 12_000}) as resp:
            assert resp.status == 401  # read and answered by the API (no token), not refused as too long
        async with http.get(f"{gateways[0]}/v1/bots", params={"cursor": "c" * 20_000}) as resp:
            assert resp.status == 400  # the limit still holds
    for log in logs:
        assert "Failed to create request handler" not in log.read_text(), log
