"""No secret ever reaches a log: a full run as real processes, success and every failure, logs captured.

The access tokens, the header token, a signing secret, the admin token and the whitelist API's token are
unique strings; none of them may appear anywhere in any service's output. Nor may a session id (a bearer
value: it reads the outcome): the logs carry its ``session_ref``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from shared.logging import session_ref
from tests.conftest import ADMIN_TOKEN, await_outcome, open_session, service_config, service_env, wait_for_consumers, wait_ready
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.faults.infra import free_port
from shared import messaging

HEADER_TOKEN = "Bearer header-" + secrets.token_hex(12)


@pytest.fixture
async def processes(database_url: str, fresh_prefix: Any, secret_key: str, tmp_path: Path) -> Any:
    config = {**service_config(database_url, fresh_prefix(), secret_key), "gateway_port": free_port(),
              "log_level": "debug"}
    env = service_env(config)
    logs, procs = [], []
    for service in ("gateway", "verifier", "contacts"):
        log = tmp_path / f"{service}.log"
        logs.append(log)
        procs.append(await asyncio.create_subprocess_exec(
            sys.executable, "-m", "doorman.cli", service, env=env, stdout=log.open("wb"),
            stderr=asyncio.subprocess.STDOUT))
    url = f"http://127.0.0.1:{config['gateway_port']}"

    async def stop() -> None:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        await asyncio.gather(*(p.wait() for p in procs))

    try:
        await wait_ready(url)
        await wait_for_consumers(config["amqp_prefix"], {messaging.VERIFIER_QUEUE: 1, messaging.CONTACTS_QUEUE: 1})
        yield url, logs, stop
    finally:
        await stop()


async def test_no_secret_in_any_log(processes: Any, customer_api: FakeCustomerAPI, database_url: str) -> None:
    url, logs, stop = processes
    tokens: list[str] = []
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession() as http:
        async def bot(**settings: Any) -> str:
            async with http.post(f"{url}/v1/bots", json={"name": "logs"}, headers=admin) as resp:
                bot_id = (await resp.json())["bot_id"]
            async with http.put(f"{url}/v1/bots/{bot_id}/custom-auth", headers=admin,
                                json={"header_token": HEADER_TOKEN, **settings}) as resp:
                assert resp.status == 200, await resp.text()
            return bot_id

        async def visit(bot_id: str, *, token: bool = True, origin: str | None = None) -> dict[str, Any]:
            body: dict[str, Any] = {"bot_id": bot_id, "email": "visitor@example.com", "phone_number": "+84912345678"}
            if token:
                tokens.append(f"access-{secrets.token_hex(12)}")
                body["access_token"] = tokens[-1]
            return await await_outcome(http, url, await open_session(http, url, body, origin=origin))

        answers = {
            "verified": verified(id="1", email="v@example.com", name="Vera"),
            "status_false": Answer(json={"status": False, "message": "no"}),
            "401": Answer(status=401, json={}), "500": Answer(status=500, body=b"down", content_type="text/plain"),
            "not_json": Answer(body=b"<html>", content_type="text/html"), "no_id": verified(name="x"),
            "redirect": Answer(status=302, json={}),
        }
        outcomes = []
        for answer in answers.values():
            outcomes.append(await visit(await bot(enabled=True, auth_url=customer_api.endpoint(answer),
                                                  request_fields=["email", "phone_number"])))
        signed = await bot(enabled=True, auth_url=customer_api.endpoint(answers["verified"]))
        async with http.post(f"{url}/v1/bots/{signed}/custom-auth/signing-secret", headers=admin) as resp:
            tokens.append((await resp.json())["signing_secret"])
        outcomes.append(await visit(signed))
        outcomes.append(await visit(await bot(enabled=False)))
        outcomes.append(await visit(await bot(enabled=True, auth_url=customer_api.endpoint(answers["verified"])), token=False))
        whitelist = {"enabled": True, "source": "api", "api_url": customer_api.endpoint(Answer(status=500, json={}))
                     + "?token=" + secrets.token_hex(8)}
        tokens.append(whitelist["api_url"].rsplit("=", 1)[1])
        outcomes.append(await visit(await bot(enabled=True, auth_url=customer_api.endpoint(answers["verified"]),
                                              domain_whitelist=whitelist), origin="https://shop.example.com"))
        blocked = await bot(enabled=True, auth_url="https://auth.example.com/x")  # 0.0.0.0 is refused when saved
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE custom_auth_settings SET auth_url = 'http://0.0.0.0:9/auth', "
                               "header_token_for_auth_url = 'http://0.0.0.0:9/auth' WHERE bot_id = $1", blocked)
            await conn.execute("SELECT pg_notify('doorman_config_changed', $1)", blocked)
        finally:
            await conn.close()
        outcomes.append(await visit(blocked))
        last = await bot(enabled=True, auth_url=customer_api.endpoint(answers["401"]))
        tokens.append(f"panel-{secrets.token_hex(12)}")
        async with http.post(f"{url}/v1/bots/{last}/custom-auth/test", json={"access_token": tokens[-1]}, headers=admin) as resp:
            assert resp.status == 200
        async with http.post(f"{url}/v1/widget/sessions/{outcomes[1]['session_id']}/contact",
                             json={"name": "Form Filler", "email": "form@example.com"}) as resp:
            assert resp.status == 202
        # Every route that names a session: read it, send its form twice (409), end it (logout), end it again.
        for method, path, status in (("GET", "", 200), ("POST", "/contact", 409), ("DELETE", "", 204),
                                     ("DELETE", "", 204)):
            async with http.request(method, f"{url}/v1/widget/sessions/{outcomes[1]['session_id']}{path}",
                                    json={"name": "Again"} if method == "POST" else None) as resp:
                assert resp.status == status, (method, path, await resp.text())
        async with http.get(f"{url}/v1/bots", headers={"Authorization": "Bearer wrong-" + secrets.token_hex(8)}) as resp:
            assert resp.status == 401

    reasons = {o["status"] if o["status"] == "verified" else o["fallback"]["reason"] for o in outcomes}
    assert reasons == {"verified", "auth_rejected", "auth_unavailable", "invalid_response", "ca_disabled",
                       "missing_token", "domain_not_allowed", "destination_blocked"}
    await stop()  # graceful: every line written
    text = "".join(log.read_text() for log in logs)
    assert "session verified" in text and "session resolved" in text  # the logs are really there
    for secret in (*tokens, HEADER_TOKEN, HEADER_TOKEN.split()[1], ADMIN_TOKEN):
        assert secret not in text, f"a secret leaked into the logs: {secret[:12]}..."
    for private in ("visitor@example.com", "+84912345678", "form@example.com", "Form Filler", "Vera"):
        assert private not in text, f"contact data in the logs: {private}"
    refs = {json.loads(line).get("session_ref") for line in text.splitlines() if line.startswith("{")}
    for outcome in outcomes:
        assert outcome["session_id"] not in text, f"a session id in the logs: {outcome['session_id'][:8]}..."
        assert session_ref(outcome["session_id"]) in refs  # what the logs carry instead
