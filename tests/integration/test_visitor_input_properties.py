"""Property tests: whatever a visitor's browser (or anyone on the internet) sends the gateway's public parsers ends
in a defined answer, sent to the running stack.

* ``POST /v1/widget/sessions``: any JSON value, any bytes, any content type, any ``Origin`` and ``?wait``;
* ``POST /v1/widget/sessions/{id}/contact`` (the Collect Information form): any JSON value, any bytes;
* the admin lists' ``cursor``: any string (and every string of its documented pattern is a page).

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


# --- opening a session ------------------------------------------------------------------------------------


def test_any_json_body_opens_a_session_or_is_refused_field_by_field(
        stack: Stack, bots: dict[str, str], session_loop: asyncio.AbstractEventLoop) -> None:
    @EXAMPLES
    @given(body=JSON_VALUES | st.fixed_dictionaries({"bot_id": st.just(bots["plain"])}, optional={
        name: JSON_VALUES for name in ("access_token", "user_id", "email", "name", "phone_number",
                                       "external_workspace_id", "lang")}))
    @example(body={"bot_id": bots["plain"], "name": "\x00"})
    @example(body={"bot_id": bots["plain"], "access_token": "x" * 9000})
    def check(body: Any) -> None:
        status, answer = run(session_loop)(send(stack, "POST", "/v1/widget/sessions", data=json.dumps(body),
                                                headers={"Content-Type": "application/json"}))
        assert status in (202, 404, 422), answer
        if status == 202:
            assert answer["status"] == "pending"

    check()


def test_any_bytes_of_any_content_type_opens_or_is_refused(
        stack: Stack, bots: dict[str, str], session_loop: asyncio.AbstractEventLoop) -> None:
    valid = json.dumps({"bot_id": bots["plain"]}).encode()

    @EXAMPLES
    @given(data=st.binary(max_size=200) | st.just(valid) | st.binary(min_size=17_000, max_size=17_000),
           content_type=CONTENT_TYPES)
    @example(data=b'{"bot_id": "' + bots["plain"].encode() + b'", "name": "\\ud800"}', content_type="application/json")
    @example(data=b"\xff\xfe{", content_type="application/json")
    @example(data=b"[" * 5000, content_type="application/json")
    def check(data: bytes, content_type: str) -> None:
        status, _ = run(session_loop)(send(stack, "POST", "/v1/widget/sessions", data=data,
                                           headers={"Content-Type": content_type}))
        assert status in (202, 404, 413, 415, 422)

    check()


def test_any_origin_header_and_wait_parameter_end_in_a_defined_answer(
        stack: Stack, bots: dict[str, str], session_loop: asyncio.AbstractEventLoop) -> None:
    @EXAMPLES
    @given(origin=HEADER_TEXT | st.sampled_from(["null", "https://shop.example.com", "https://xn--bcher-kva.de:8443"]),
           wait=st.none() | HEADER_TEXT | st.sampled_from(["0.5", "1e400", "nan", "-1", "30", "inf"]))
    def check(origin: str, wait: str | None) -> None:
        params = {} if wait is None else {"wait": wait}
        status, answer = run(session_loop)(send(stack, "POST", "/v1/widget/sessions", json={"bot_id": bots["plain"]},
                                                headers={"Origin": origin}, params=params))
        assert status in (200, 202, 422), answer
        if status == 422:
            assert [f["field"] for f in answer["error"]["fields"]] == ["wait"]

    check()


async def raw_request(stack: Stack, method: str, path: str, headers: dict[bytes, bytes],
                      body: bytes = b"") -> tuple[int, Any]:
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
        header = {b"Authorization": b"Bearer " + prefix + token}
        status, answer = run(session_loop)(raw_request(stack, "GET", "/v1/bots", header))
        assert status == 400 or (status, answer["error"]["code"]) == (401, "unauthorized"), answer

    check()


# --- the Collect Information form --------------------------------------------------------------------------


def test_any_form_body_makes_a_contact_or_is_refused_field_by_field(
        stack: Stack, bots: dict[str, str], session_loop: asyncio.AbstractEventLoop) -> None:
    fields = st.fixed_dictionaries({}, optional={
        "name": JSON_VALUES, "email": JSON_VALUES | st.emails(), "phone_number": JSON_VALUES | st.just("+84912345678"),
        "country_code": JSON_VALUES | st.sampled_from(["+84", "VN", "84", "zz"])})

    async def fallen_back() -> str:
        session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bots["plain"]})
        assert (await await_outcome(stack.http, stack.gateway.url, session_id))["status"] == "fallback"
        return session_id

    @EXAMPLES
    @given(body=JSON_VALUES | fields, content_type=st.just("application/json") | CONTENT_TYPES)
    @example(body={"name": "   ", "email": "\u3000"}, content_type="application/json")
    @example(body={"phone_number": "0912345678", "country_code": "+999"}, content_type="application/json")
    def check(body: Any, content_type: str) -> None:
        session_id = run(session_loop)(fallen_back())
        status, answer = run(session_loop)(send(
            stack, "POST", f"/v1/widget/sessions/{session_id}/contact", data=json.dumps(body).encode(),
            headers={"Content-Type": content_type}))
        assert status in (202, 415, 422), answer

    check()


# --- cursors ------------------------------------------------------------------------------------------------


LISTS = ["/v1/bots", "/v1/bots/{bot_id}/contacts", "/v1/bots/{bot_id}/auth-events", "/v1/bots/{bot_id}/webhook/deliveries"]


@pytest.mark.parametrize("path", LISTS)
def test_any_cursor_is_a_page_or_refused_on_the_cursor(
        stack: Stack, bots: dict[str, str], session_loop: asyncio.AbstractEventLoop, path: str) -> None:
    """Every string of the documented pattern is a position (200, maybe an empty page); anything else is 422 on
    ``cursor``, whatever it holds."""
    doc = run(session_loop)(send(stack, "GET", "/openapi.json"))[1]
    [parameter] = [p for p in doc["paths"][path]["get"]["parameters"] if p["name"] == "cursor"]
    pattern = parameter["schema"]["pattern"]
    url = path.format(bot_id=bots["plain"])

    @EXAMPLES
    @given(cursor=st.from_regex(re.compile(pattern.removesuffix("$") + r"\Z")) | HEADER_TEXT)
    @example(cursor="0.00000000-0000-0000-0000-000000000000")
    @example(cursor="9999999999999999.zzzz")
    def check(cursor: str) -> None:
        status, answer = run(session_loop)(send(stack, "GET", url, params={"cursor": cursor}, headers=admin_headers()))
        assert status == (200 if re.fullmatch(pattern, cursor) else 422), (cursor, answer)
        if status == 422:
            assert [f["field"] for f in answer["error"]["fields"]] == ["cursor"]

    check()
