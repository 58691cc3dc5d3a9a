"""Rate limits on the widget API: per client address, per bot, and on reads; 429 with Retry-After."""

from __future__ import annotations

import secrets
from contextlib import AsyncExitStack

import pytest

from tests.conftest import Stack, create_bot, start_gateway


async def test_limits_per_client_and_per_bot(stack: Stack) -> None:
    config = {**stack.config, "rate_limit_opens_per_client": "3/minute", "rate_limit_opens_per_bot": "5/minute",
              "trust_forwarded_for": True}
    bot, other_bot = [await create_bot(stack.http, stack.gateway.url) for _ in range(2)]
    async with AsyncExitStack() as es:
        gateway = await start_gateway(es, config)

        async def open_(bot_id: str, client: str) -> tuple[int, str | None]:
            async with stack.http.post(f"{gateway.url}/v1/widget/sessions", json={"bot_id": bot_id},
                                       headers={"X-Forwarded-For": f"198.51.100.9, {client}"}) as resp:
                if resp.status == 429:
                    assert (await resp.json())["error"]["code"] == "rate_limited"
                    assert resp.headers["Access-Control-Allow-Origin"] == "*"
                return resp.status, resp.headers.get("Retry-After")

        assert [(await open_(bot, "10.0.0.1"))[0] for _ in range(3)] == [202, 202, 202]
        status, retry_after = await open_(bot, "10.0.0.1")
        assert status == 429 and retry_after is not None and 1 <= int(retry_after) <= 60
        # Another client is not held back by the first one's count...
        assert (await open_(bot, "10.0.0.2"))[0] == 202
        assert (await open_(bot, "10.0.0.3"))[0] == 202
        # ...but the bot as a whole is: 5 opens per minute, whoever opens.
        assert (await open_(bot, "10.0.0.4"))[0] == 429
        assert (await open_(other_bot, "10.0.0.4"))[0] == 202


async def test_reads_are_limited_per_client(stack: Stack) -> None:
    config = {**stack.config, "rate_limit_reads_per_client": "2/minute"}
    async with AsyncExitStack() as es:
        gateway = await start_gateway(es, config)
        statuses = []
        for _ in range(3):
            async with stack.http.get(f"{gateway.url}/v1/widget/sessions/whatever") as resp:
                statuses.append(resp.status)
        assert statuses == [404, 404, 429]


async def test_forwarded_for_is_ignored_unless_trusted(stack: Stack) -> None:
    config = {**stack.config, "rate_limit_opens_per_client": "1/minute"}
    bot = await create_bot(stack.http, stack.gateway.url)
    async with AsyncExitStack() as es:
        gateway = await start_gateway(es, config)
        statuses = []
        for spoofed in ("10.0.0.1", "10.0.0.2"):  # a client cannot escape its limit by lying
            async with stack.http.post(f"{gateway.url}/v1/widget/sessions", json={"bot_id": bot},
                                       headers={"X-Forwarded-For": spoofed}) as resp:
                statuses.append(resp.status)
        assert statuses == [202, 429]


async def test_a_forwarded_for_that_is_not_an_address_counts_as_the_proxy_itself(stack: Stack) -> None:
    """Behind a trusted proxy, junk in the last hop (8 KB of it, or a made-up name per request) cannot
    mint a fresh counter per request: it is counted against the connecting address."""
    config = {**stack.config, "rate_limit_opens_per_client": "2/minute", "trust_forwarded_for": True}
    bot = await create_bot(stack.http, stack.gateway.url)
    async with AsyncExitStack() as es:
        gateway = await start_gateway(es, config)
        statuses = []
        for junk in ("x" * 8000, "not-an-ip-1", "not-an-ip-2"):
            async with stack.http.post(f"{gateway.url}/v1/widget/sessions", json={"bot_id": bot},
                                       headers={"X-Forwarded-For": f"10.0.0.9, {junk}"}) as resp:
                statuses.append(resp.status)
        assert statuses == [202, 202, 429]


REDIS = "redis://127.0.0.1:6379/0"


async def test_replicas_share_one_budget_with_redis_storage(stack: Stack) -> None:
    """Two gateway replicas on the real Redis: a client gets the limit once, not once per replica."""
    config = {**stack.config, "rate_limit_opens_per_client": "4/minute", "trust_forwarded_for": True,
              "rate_limit_storage": REDIS}
    bot = await create_bot(stack.http, stack.gateway.url)
    client = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"  # fresh in Redis
    async with AsyncExitStack() as es:
        replicas = [await start_gateway(es, config), await start_gateway(es, config)]
        statuses = []
        for i in range(6):
            async with stack.http.post(f"{replicas[i % 2].url}/v1/widget/sessions", json={"bot_id": bot},
                                       headers={"X-Forwarded-For": client}) as resp:
                statuses.append(resp.status)
    assert statuses == [202, 202, 202, 202, 429, 429]


async def test_a_redis_that_cannot_be_reached_does_not_refuse_visitors(stack: Stack) -> None:
    config = {**stack.config, "rate_limit_opens_per_client": "1/minute", "rate_limit_storage": "redis://127.0.0.1:1/0"}
    bot = await create_bot(stack.http, stack.gateway.url)
    async with AsyncExitStack() as es:
        gateway = await start_gateway(es, config)
        statuses = []
        for _ in range(3):
            async with stack.http.post(f"{gateway.url}/v1/widget/sessions", json={"bot_id": bot}) as resp:
                statuses.append(resp.status)
    assert statuses == [202, 202, 202]


def test_rate_limit_storage_setting_is_checked(stack: Stack) -> None:
    from pydantic import ValidationError

    from services.gateway.settings import GatewaySettings

    for good in ("memory://", REDIS, "rediss://cache.internal:6380/1"):
        assert GatewaySettings(**{**stack.config, "rate_limit_storage": good}).rate_limit_storage.get_secret_value() == good
    with pytest.raises(ValidationError, match="rate_limit_storage") as refused:
        GatewaySettings(**{**stack.config, "rate_limit_storage": "memcached://user:hunter2@x:11211"})
    # What `doorman` prints of a bad setting (errors without their input) does not repeat the password.
    assert "hunter2" not in str(refused.value.errors(include_input=False))


async def test_back_channel_logout_posts_are_limited_per_client(stack: Stack) -> None:
    """The logout endpoint is public: a client posting made-up logout tokens runs into the per-client limit, and its
    429 is not cached either."""
    config = {**stack.config, "rate_limit_opens_per_client": "2/minute"}
    bot = await create_bot(stack.http, stack.gateway.url)
    async with AsyncExitStack() as es:
        gateway = await start_gateway(es, config)
        answers = []
        for _ in range(3):
            async with stack.http.post(f"{gateway.url}/v1/bots/{bot}/oidc/backchannel-logout",
                                       data={"logout_token": "a.b.c"}) as resp:
                answers.append((resp.status, resp.headers.get("Cache-Control")))
        assert answers == [(400, "no-store"), (400, "no-store"), (429, "no-store")]
