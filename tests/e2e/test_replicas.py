"""Two verifier and two contacts processes at once: one outcome per session, one contact per identifier."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from shared import messaging
from shared.logging import session_ref
from tests.conftest import (
    Stack, await_outcome, create_bot, open_session, service_config, service_env, start_gateway, wait_for_consumers,
)
from tests.fake_customer import FakeCustomerAPI, verified

BOTS = 4
SESSIONS_PER_BOT = 40
IDENTIFIERS_PER_BOT = 5


@pytest.fixture
async def replicas(database_url: str, fresh_prefix: Callable[[], str], secret_key: str,
                   tmp_path: Path) -> AsyncIterator[tuple[dict[str, Any], list[Path]]]:
    config = service_config(database_url, fresh_prefix(), secret_key)
    env = service_env(config)
    logs: list[Path] = []
    procs = []
    for service in ("verifier", "verifier", "contacts", "contacts"):
        log = tmp_path / f"{service}-{len(procs)}.log"
        logs.append(log)
        procs.append(await asyncio.create_subprocess_exec(
            sys.executable, "-m", "doorman.cli", service, env=env, stdout=log.open("wb"), stderr=asyncio.subprocess.STDOUT,
        ))
    try:
        await wait_for_consumers(config["amqp_prefix"], {messaging.VERIFIER_QUEUE: 2, messaging.CONTACTS_QUEUE: 2})
        yield config, logs
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), 30)
    assert codes == [0, 0, 0, 0], "a worker did not stop cleanly on SIGTERM"


async def test_competing_replicas_resolve_each_session_once(replicas: tuple[dict[str, Any], list[Path]], stack: Stack,
                                                          customer_api: FakeCustomerAPI) -> None:
    config, logs = replicas
    async with AsyncExitStack() as es:
        gateway = await start_gateway(es, config)
        bots = []
        for b in range(BOTS):
            answers = [verified(id=f"user-{i % IDENTIFIERS_PER_BOT}", name=f"Visitor {i}") for i in range(SESSIONS_PER_BOT)]
            bots.append(await create_bot(stack.http, gateway.url, enabled=True, auth_url=customer_api.endpoint(*answers)))

        async def one(bot: str) -> tuple[str, dict[str, Any]]:
            session_id = await open_session(stack.http, gateway.url, {"bot_id": bot, "access_token": "t"})
            return session_id, await await_outcome(stack.http, gateway.url, session_id, timeout=30)

        results = await asyncio.gather(*(one(bot) for bot in bots for _ in range(SESSIONS_PER_BOT)))

    assert len({sid for sid, _ in results}) == BOTS * SESSIONS_PER_BOT
    assert Counter(o["status"] for _, o in results) == {"verified": BOTS * SESSIONS_PER_BOT}
    for bot in bots:
        rows = await stack.pool.fetch("SELECT identifier FROM contacts WHERE bot_id = $1", bot)
        assert sorted(r["identifier"] for r in rows) == [f"user-{i}" for i in range(IDENTIFIERS_PER_BOT)]

    # The two contacts processes together recorded each session's outcome exactly once.
    resolved = Counter()
    for log in logs:
        for line in log.read_text().splitlines():
            if line.startswith("{") and json.loads(line).get("event") == "session resolved":
                resolved[json.loads(line)["session_ref"]] += 1
    assert resolved == Counter({session_ref(sid): 1 for sid, _ in results})
    # Competing consumers: the broker spread the work over every replica.
    work = {log.name: log.read_text().count('"session resolved"') + log.read_text().count('"session verified"') for log in logs}
    assert all(work.values()), work
    pending = await stack.pool.fetchval(
        "SELECT count(*) FROM widget_sessions WHERE session_id = ANY($1) AND status = 'pending'", [s for s, _ in results])
    assert pending == 0
