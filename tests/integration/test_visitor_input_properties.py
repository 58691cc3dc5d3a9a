"""Property tests: whatever a visitor's browser (or anyone on the internet) sends the gateway's public parsers ends
in a defined answer, sent to the running stack.

* header values that are not text (``Origin``, ``Authorization``), written byte by byte.

Never a 5xx, never a stack trace: a 2xx, or a 4xx whose body is ``{"error": {"code", "message"}}`` (with field
errors on 422). Examples are few and reproducible (the stack is real: each one is a request).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from yarl import URL

from tests.conftest import Stack, admin_headers, await_outcome, create_bot, open_session

EXAMPLES = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
CONTENT_TYPES = st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain",
                                 "application/x-www-form-urlencoded", "multipart/form-data", "", "application/jsonx"])
# Header values as a browser or a script may send them (aiohttp sends latin-1; no line breaks).
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80)


@pytest.fixture(scope="module")
async def session_loop() -> asyncio.AbstractEventLoop:
    """The loop the gateway runs on (pytest-asyncio's session loop); driven by the sync property tests."""
    return asyncio.get_running_loop()


async def send(stack: Stack, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    """The answer's status and JSON body (None when it has none), checked to be a defined one."""
    async with stack.http.request(method, stack.gateway.url + path, **kwargs) as resp:
        text = await resp.text()
        status = resp.status
        body = json.loads(text) if resp.content_type == "application/json" else None
    assert status < 500, (status, text)
    if status >= 400:
        assert isinstance(body, dict) and set(body) == {"error"}, text
        assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str), text
        if status == 422:
            assert body["error"]["fields"] and all(f["field"] and f["message"] for f in body["error"]["fields"]), text
    return status, body


def run(loop: asyncio.AbstractEventLoop) -> Callable[[Awaitable[Any]], Any]:
    return loop.run_until_complete


@pytest.fixture(scope="module")
async def bots(stack: Stack) -> dict[str, str]:
    return {"plain": await create_bot(stack.http, stack.gateway.url)}  # Custom Authentication off: falls back


# --- headers that are not text ----------------------------------------------------------------------


async def raw_request(stack: Stack, method: str, path: str, headers: dict[bytes, bytes], body: bytes = b"") -> tuple[int, Any]:
    """A request written byte by byte, as no HTTP client library would: header values that are not UTF-8."""
    url = URL(stack.gateway.url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    lines = [b"%s %s HTTP/1.1" % (method.encode(), path.encode()), b"Host: " + url.raw_authority.encode(),
             b"Connection: close", b"Content-Length: %d" % len(body), *(k + b": " + v for k, v in headers.items())]
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    answer = await reader.read()
    writer.close()
    head, _, content = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert status < 500, answer
    if status == 400 and b"application/json" not in head:  # refused by aiohttp's HTTP parser, before any handler
        return status, None
    error = json.loads(content)["error"] if status >= 400 else None
    assert error is None or isinstance(error["code"], str), answer
    return status, json.loads(content) if content else None


# Bytes a header value may carry on the wire that are not text: aiohttp hands them on as lone surrogates.
HEADER_BYTES = st.binary(min_size=1, max_size=40).map(lambda b: bytes(c for c in b if c not in b"\r\n\x00") or b"\xff")


def test_an_origin_that_is_not_text_is_no_origin_and_harms_no_other_open(
        stack: Stack, bots: dict[str, str], session_loop: asyncio.AbstractEventLoop) -> None:
    """An open whose Origin is bytes no browser sends is decided as one without an Origin; it used to fail the
    database statement that stores a batch of opens, answering 503 to it and to every open batched with it."""
    body = json.dumps({"bot_id": bots["plain"]}).encode()

    async def both(origin: bytes) -> tuple[tuple[int, Any], tuple[int, Any]]:
        return await asyncio.gather(  # batched together: the other visitor's open must not pay for this one
            raw_request(stack, "POST", "/v1/widget/sessions", {b"Origin": b"https://" + origin + b".example.com",
                                                              b"Content-Type": b"application/json"}, body),
            send(stack, "POST", "/v1/widget/sessions", json={"bot_id": bots["plain"]},
                 headers={"Origin": "https://shop.example.com"}))

    @settings(EXAMPLES, max_examples=20)
    @given(origin=HEADER_BYTES)
    @example(origin=b"\xff\xfe")
    def check(origin: bytes) -> None:
        (status, answer), (other, _) = run(session_loop)(both(origin))
        assert other == 202 and status in (202, 400), answer
        if status == 202:
            stored = run(session_loop)(stack.pool.fetchval(
                "SELECT origin FROM widget_sessions WHERE session_id = $1", answer["session_id"]))
            assert stored is None or stored.isascii()

    check()


def test_an_authorization_header_that_is_not_text_is_refused_as_any_wrong_token(
        stack: Stack, session_loop: asyncio.AbstractEventLoop) -> None:
    @settings(EXAMPLES, max_examples=20)
    @given(token=HEADER_BYTES, prefix=st.sampled_from([b"", b"dk_", b"dk_abc_"]))
    @example(token=b"\xff\xfe", prefix=b"")
    def check(token: bytes, prefix: bytes) -> None:
        status, answer = run(session_loop)(raw_request(stack, "GET", "/v1/bots", {b"Authorization": b"Bearer " + prefix + token}))
        assert status == 400 or (status, answer["error"]["code"]) == (401, "unauthorized"), answer

    check()
