"""Widget tokens (dmw_...) never reach a log: push, open, reuse, the Testing panel and a wrong bot, run
as real processes at debug level, every line captured."""

from __future__ import annotations

import secrets
from typing import Any

import aiohttp
import asyncpg

from tests.conftest import ADMIN_TOKEN, await_outcome, open_session
from tests.e2e.test_log_secrets import processes  # noqa: F401  (the fixture: the three services as processes)
from tests.fake_customer import FakeCustomerAPI, verified


async def test_no_widget_token_in_any_log(processes: Any, customer_api: FakeCustomerAPI,  # noqa: F811
                                          database_url: str) -> None:
    url, logs, stop = processes
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    auth_url = customer_api.endpoint(verified(email="never@example.com"))
    tokens: list[str] = []
    async with aiohttp.ClientSession() as http:
        async def bot() -> str:
            async with http.post(f"{url}/v1/bots", json={"name": "push logs"}, headers=admin) as resp:
                bot_id = (await resp.json())["bot_id"]
            async with http.put(f"{url}/v1/bots/{bot_id}/custom-auth", headers=admin,
                                json={"enabled": True, "auth_url": auth_url, "identify_method": "email"}) as resp:
                assert resp.status == 200, await resp.text()
            return bot_id

        async def push(bot_id: str) -> str:
            body = {"email": "pushed.visitor@example.com", "name": "Pushed Visitor", "metadata": {"plan": "pro"}}
            async with http.post(f"{url}/v1/bots/{bot_id}/identities", json=body, headers=admin) as resp:
                assert resp.status == 201, await resp.text()
                tokens.append((await resp.json())["widget_token"])
            return tokens[-1]

        async def visit(bot_id: str, token: str) -> str:
            """``verified``, or the code the activity log's detail starts with (the widget's is for visitors)."""
            outcome = await await_outcome(http, url, await open_session(http, url, {"bot_id": bot_id, "access_token": token}))
            if outcome["status"] == "verified":
                return "verified"
            async with http.get(f"{url}/v1/bots/{bot_id}/auth-events", headers=admin) as resp:
                [event] = [e for e in (await resp.json())["events"] if e["session_id"] == outcome["session_id"]]
            return str(event["detail"]).partition(":")[0]

        mine, other = await bot(), await bot()
        token = await push(mine)
        async with http.post(f"{url}/v1/bots/{mine}/custom-auth/test", json={"access_token": token}, headers=admin) as resp:
            assert resp.status == 200 and (await resp.json())["visitor_outcome"]["status"] == "verified"
        details = [await visit(mine, token), await visit(mine, token), await visit(other, await push(mine))]
        expired = await push(mine)
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("""UPDATE pushed_identities SET created_at = now() - interval '1 hour',
                                  expires_at = now() - interval '1 minute' WHERE bot_id = $1 AND used_by IS NULL""", mine)
        finally:
            await conn.close()
        details.append(await visit(mine, expired))
        tokens.append("dmw_" + secrets.token_urlsafe(32))
        details.append(await visit(mine, tokens[-1]))

    assert details == ["verified", "already_used", "wrong_bot", "expired", "unknown_widget_token"]
    await stop()  # graceful: every line written
    text = "".join(log.read_text() for log in logs)
    assert "session verified" in text and "session fell back" in text  # the logs are really there
    for token in tokens:
        assert token not in text and token.removeprefix("dmw_") not in text, f"a widget token leaked: {token[:8]}..."
    for private in ("pushed.visitor@example.com", "Pushed Visitor"):
        assert private not in text, f"contact data in the logs: {private}"
