"""`doorman dlq list | show | purge` as an operator runs them (the installed command, in a process of its own)
against a dead letter a stage really gave up on: a widget open of a bot whose stored header token no key decrypts."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from typing import Any

import aio_pika

from shared import messaging
from tests.conftest import AMQP_URL, Stack, await_outcome, create_bot, service_env
from tests.fake_customer import FakeCustomerAPI, verified
from tests.integration.test_batched_events import purge_dead_letters
from tests.waits import wait_until

QUEUE = messaging.VERIFIER_QUEUE


async def doorman(stack: Stack, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "doorman.cli", *args, env={**service_env(stack.config), "DOORMAN_LOG_JSON": "true"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def waiting(stack: Stack) -> int:
    """Dead letters waiting in the queue now (counted, not taken)."""
    async with await aio_pika.connect(AMQP_URL) as conn:
        dlq = messaging.Topology(stack.config["amqp_prefix"]).dead_letter_queue(QUEUE)
        return (await (await conn.channel()).declare_queue(dlq, passive=True)).declaration_result.message_count or 0


def listed(out: str) -> dict[str, tuple[int, str]]:
    """`dlq list`'s rows: work queue -> (dead letters, age of the oldest)."""
    rows = {}
    for line in out.splitlines()[1:]:
        queue, count, age, _ = line.split(maxsplit=3)
        rows[queue] = (int(count), age)
    return rows


async def _is(count: Any, expected: int) -> bool:
    return await count == expected


async def test_list_show_and_purge_a_real_dead_letter(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(verified(id="never"))
    bot = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=url, header_token="t0ken")
    # As if the key that encrypted its header token had been dropped: the verifier gives up on its opens.
    await stack.pool.execute("UPDATE custom_auth_settings SET header_token_cipher = $2 WHERE bot_id = $1",
                             bot, b"garbage")
    await purge_dead_letters(stack, QUEUE)
    access_token = "visitor-access-token-3f9a"
    async with stack.http.post(f"{stack.gateway.url}/v1/widget/sessions",
                               json={"bot_id": bot, "access_token": access_token}) as resp:
        assert resp.status == 202, await resp.text()
        session_id = (await resp.json())["session_id"]
    assert (await await_outcome(stack.http, stack.gateway.url, session_id))["fallback"]["reason"] == "internal_error"
    await wait_until(lambda: _is(waiting(stack), 1), what="the dead letter")

    code, out, err = await doorman(stack, "dlq", "list")
    assert code == 0, err
    count, age = listed(out)[QUEUE]
    assert count == 1 and re.fullmatch(r"\d+[smhd]", age), out

    code, out, err = await doorman(stack, "dlq", "show", QUEUE, "--limit", "5")
    assert code == 0, err
    assert out.startswith(f"1 dead letter(s) in {QUEUE}; showing 1"), out
    assert "widget.opened" in out and "attempts 1" in out and "failure " in out and "failure -" not in out, out
    body = json.loads(out[out.index("\n[") if "\n[" in out else out.index("\n{"):])
    event = body[0] if isinstance(body, list) else body
    assert event["access_token"] == "[masked]" and "session_id" not in event and re.fullmatch(r"[0-9a-f]{16}", event["session_ref"])
    assert access_token not in out and session_id not in out
    assert await waiting(stack) == 1, "show took the dead letter away"

    code, _, err = await doorman(stack, "dlq", "purge", QUEUE)
    assert code == 2 and "--yes" in err
    assert await waiting(stack) == 1, "purge without --yes deleted"
    code, out, err = await doorman(stack, "dlq", "purge", QUEUE, "--yes")
    assert (code, out.strip()) == (0, f"purged 1 dead letter(s) of {QUEUE}"), err
    code, out, err = await doorman(stack, "dlq", "list")
    assert listed(out)[QUEUE] == (0, "-"), out


async def test_unknown_queue_names_the_valid_ones(stack: Stack) -> None:
    for command in (["dlq", "show", "nope"], ["dlq", "purge", "nope", "--yes"], ["dlq", "replay", "nope"]):
        code, out, err = await doorman(stack, *command)
        assert code != 0 and "unknown queue 'nope'" in err and all(q in err for q in messaging.WORK_QUEUES), (command, err)


async def test_help_is_plain_text_and_names_the_queues(stack: Stack) -> None:
    code, out, _ = await doorman(stack, "--help")
    assert code == 0 and "``" not in out and "dlq" in out
    code, out, _ = await doorman(stack, "dlq", "--help")
    assert code == 0 and all(q in out.replace("\n", " ") for q in messaging.WORK_QUEUES), out
    for sub in ("list", "show", "replay", "purge", "ttl"):
        assert sub in out
