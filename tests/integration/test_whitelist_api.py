"""The API-sourced domain whitelist against a real HTTP server: caching, refresh, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID, uuid4

import pytest
from pydantic import SecretStr

from services.verifier import whitelist as whitelist_module
from services.verifier.outbound import OutboundClient, outbound_client
from services.verifier.whitelist import ApiWhitelist, WhitelistLookup
from shared.auth_config import WHITELIST_API_URL, BoundSecret, NotBound
from tests.fake_customer import Answer, FakeCustomerAPI
from tests.waits import wait_until

TTL = 100.0
RETRY = 10.0
SECRET = "Bearer s3cr3t-Token with spaces"
LIST_A = Answer(json={"domains": ["shop.example.com", "*.example.org"]})
LIST_B = Answer(json={"domains": ["other.example.net"]})
A = ("shop.example.com", "*.example.org")
B = ("other.example.net",)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingLog:
    """Stands in for the module's structlog logger."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def _record(self, level: str) -> Callable[..., None]:
        return lambda event, **kw: self.events.append((level, event, kw))

    def __getattr__(self, level: str) -> Callable[..., None]:
        return self._record(level)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [kw for _, name, kw in self.events if name == event]


@pytest.fixture
async def http() -> AsyncIterator[OutboundClient]:
    async with outbound_client(allow_private=True, timeout=0.5, max_body=65536, limit_per_host=8) as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> RecordingLog:
    recorder = RecordingLog()
    monkeypatch.setattr(whitelist_module, "log", recorder)
    return recorder


@pytest.fixture
async def wl(http: OutboundClient, clock: FakeClock, logs: RecordingLog) -> AsyncIterator[ApiWhitelist]:
    cache = ApiWhitelist(http, ttl=TTL, refresh_ahead=0.8, retry_after_failure=RETRY, clock=clock)
    yield cache
    await cache.close()


def bot() -> UUID:
    return uuid4()


def token(api_url: str) -> BoundSecret:
    """The header token, as saved with ``api_url`` as the whitelist API."""
    return BoundSecret("header_token", SecretStr(SECRET), {WHITELIST_API_URL: api_url})


async def test_object_shape_normalised_with_invalid_entry_skipped(wl: ApiWhitelist, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(Answer(json={"domains": ["Shop.Example.COM.", "https://bad.example.com", "*.Bücher.de", 7]}))
    assert await wl.lookup(bot(), url, token(url)) == WhitelistLookup(("shop.example.com", "*.xn--bcher-kva.de"), None)


async def test_bare_list_shape(wl: ApiWhitelist, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(Answer(json=["Shop.Example.COM.", "bad domain", "localhost", "shop.example.com"]))
    assert await wl.lookup(bot(), url, None) == WhitelistLookup(("shop.example.com", "localhost"), None)


async def test_request_headers_token_verbatim(wl: ApiWhitelist, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(LIST_A)
    await wl.lookup(bot(), url, token(url))
    [request] = customer_api.received(url)
    assert request.headers["Authorization"] == SECRET
    assert request.headers["Accept"] == "application/json"

    no_token = customer_api.endpoint(LIST_A)
    await wl.lookup(bot(), no_token, None)
    [request] = customer_api.received(no_token)
    assert "Authorization" not in request.headers


async def test_a_token_saved_for_another_origin_is_not_sent(wl: ApiWhitelist, customer_api: FakeCustomerAPI) -> None:
    """The same path on another port, or a token saved with no whitelist API: refused before any request."""
    url = customer_api.endpoint(LIST_A)
    elsewhere = url.replace(customer_api.url, "http://127.0.0.1:9")
    for saved in (token(elsewhere), BoundSecret("header_token", SecretStr(SECRET), {WHITELIST_API_URL: None})):
        with pytest.raises(NotBound, match=r"^header_token: .*enter the header token again for the new URL$") as refused:
            await wl.lookup(bot(), url, saved)
        assert SECRET not in str(refused.value)
    assert customer_api.received(url) == []
    assert (await wl.lookup(bot(), url, token(url))).domains == A  # saved for this origin: asked


async def test_fresh_hits_make_no_request(wl: ApiWhitelist, clock: FakeClock, customer_api: FakeCustomerAPI) -> None:
    url, b = customer_api.endpoint(LIST_A), bot()
    assert (await wl.lookup(b, url, token(url))).domains == A
    for _ in range(3):
        clock.advance(TTL * 0.2)  # up to 0.6 * ttl: still fresh
        assert await wl.lookup(b, url, token(url)) == WhitelistLookup(A, None)
    assert len(customer_api.received(url)) == 1


async def test_refresh_ahead_answers_at_once_with_one_background_request(
    wl: ApiWhitelist, clock: FakeClock, customer_api: FakeCustomerAPI,
) -> None:
    url, b = customer_api.endpoint(LIST_A, Answer(json=LIST_B.json, delay=0.2)), bot()
    await wl.lookup(b, url, token(url))
    clock.advance(TTL * 0.85)
    # The refresh answers only after 0.2 s: getting list A back proves the lookup did not wait.
    assert await wl.lookup(b, url, token(url)) == WhitelistLookup(A, None)
    assert await wl.lookup(b, url, token(url)) == WhitelistLookup(A, None)  # refresh already under way
    results: list[WhitelistLookup] = []

    async def refreshed() -> bool:
        results.append(await wl.lookup(b, url, token(url)))
        return results[-1].domains == B

    await wait_until(refreshed, 5, "the background refresh to land")
    assert results[-1] == WhitelistLookup(B, None)
    assert len(customer_api.received(url)) == 2


async def test_server_error_after_success_serves_stale_once_expired(
    wl: ApiWhitelist, clock: FakeClock, customer_api: FakeCustomerAPI, logs: RecordingLog,
) -> None:
    url, b = customer_api.endpoint(LIST_A, Answer(status=500, json={"error": "boom"})), bot()
    await wl.lookup(b, url, token(url))
    clock.advance(TTL)
    assert await wl.lookup(b, url, token(url)) == WhitelistLookup(A, "stale: the whitelist API answered HTTP 500")
    [warning] = logs.named("whitelist_fetch_failed")
    assert warning["bot_id"] == str(b)
    assert warning["reason"] == "the whitelist API answered HTTP 500"


@pytest.mark.parametrize("garbage", [
    Answer(body=b"<html>not json</html>", content_type="text/html"),
    Answer(json={"foo": 1}),
    Answer(json={"domains": "shop.example.com"}),
    Answer(json="shop.example.com"),
], ids=["not-json", "wrong-object", "domains-not-a-list", "bare-string"])
async def test_garbage_answer_serves_stale(
    wl: ApiWhitelist, clock: FakeClock, customer_api: FakeCustomerAPI, garbage: Answer,
) -> None:
    url, b = customer_api.endpoint(LIST_A, garbage), bot()
    await wl.lookup(b, url, token(url))
    clock.advance(TTL + 1)
    result = await wl.lookup(b, url, token(url))
    assert result.domains == A
    assert result.note is not None and result.note.startswith("stale: the whitelist API's answer is")


async def test_too_many_domains_fails(http: OutboundClient, clock: FakeClock, customer_api: FakeCustomerAPI, logs: RecordingLog) -> None:
    url = customer_api.endpoint(Answer(json=[f"d{i}.example.com" for i in range(4)]))
    cache = ApiWhitelist(http, max_domains=3, clock=clock)
    try:
        assert await cache.lookup(bot(), url, None) == WhitelistLookup(
            None, "missing: the whitelist API's answer lists more than 3 domains",
        )
    finally:
        await cache.close()


async def test_slow_api_serves_stale_after_success(wl: ApiWhitelist, clock: FakeClock, customer_api: FakeCustomerAPI) -> None:
    url, b = customer_api.endpoint(LIST_A, Answer(json=LIST_B.json, delay=1.0)), bot()
    await wl.lookup(b, url, token(url))
    clock.advance(TTL)
    assert await wl.lookup(b, url, token(url)) == WhitelistLookup(A, "stale: the whitelist API did not answer in time")


async def test_slow_api_on_first_fetch_is_missing(wl: ApiWhitelist, customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(Answer(json=LIST_A.json, delay=1.0))
    assert await wl.lookup(bot(), url, token(url)) == WhitelistLookup(None, "missing: the whitelist API did not answer in time")


async def test_retry_after_failure_when_expired(wl: ApiWhitelist, clock: FakeClock, customer_api: FakeCustomerAPI) -> None:
    url, b = customer_api.endpoint(LIST_A, Answer(status=503), LIST_B), bot()
    await wl.lookup(b, url, token(url))
    clock.advance(TTL)
    assert (await wl.lookup(b, url, token(url))).note == "stale: the whitelist API answered HTTP 503"
    clock.advance(RETRY - 0.5)
    assert await wl.lookup(b, url, token(url)) == WhitelistLookup(A, "stale: the whitelist API answered HTTP 503")
    assert len(customer_api.received(url)) == 2
    clock.advance(0.5)
    assert await wl.lookup(b, url, token(url)) == WhitelistLookup(B, None)
    assert len(customer_api.received(url)) == 3


async def test_retry_after_failure_when_never_read(wl: ApiWhitelist, clock: FakeClock, customer_api: FakeCustomerAPI) -> None:
    url, b = customer_api.endpoint(Answer(status=500), LIST_A), bot()
    missing = WhitelistLookup(None, "missing: the whitelist API answered HTTP 500")
    assert await wl.lookup(b, url, token(url)) == missing
    clock.advance(RETRY - 0.5)
    assert await wl.lookup(b, url, token(url)) == missing
    assert len(customer_api.received(url)) == 1
    clock.advance(0.5)
    assert await wl.lookup(b, url, token(url)) == WhitelistLookup(A, None)
    assert len(customer_api.received(url)) == 2


async def test_failed_background_refresh_keeps_list_without_note_until_expiry(
    wl: ApiWhitelist, clock: FakeClock, customer_api: FakeCustomerAPI, logs: RecordingLog,
) -> None:
    url, b = customer_api.endpoint(LIST_A, Answer(status=500), LIST_B), bot()
    await wl.lookup(b, url, token(url))
    clock.advance(TTL - RETRY / 2)  # refresh-ahead window, expiry sooner than retry_after_failure
    assert await wl.lookup(b, url, token(url)) == WhitelistLookup(A, None)
    await wait_until(lambda: logs.named("whitelist_fetch_failed"), 5, "whitelist_fetch_failed to be logged")
    assert await wl.lookup(b, url, token(url)) == WhitelistLookup(A, None)  # not expired: no note, no retry
    clock.advance(RETRY / 2)  # expired, but the failure is too recent to retry
    assert await wl.lookup(b, url, token(url)) == WhitelistLookup(A, "stale: the whitelist API answered HTTP 500")
    assert len(customer_api.received(url)) == 2
    clock.advance(RETRY / 2)
    assert await wl.lookup(b, url, token(url)) == WhitelistLookup(B, None)
    assert len(customer_api.received(url)) == 3


async def test_concurrent_first_lookups_share_one_request(wl: ApiWhitelist, customer_api: FakeCustomerAPI) -> None:
    url, b = customer_api.endpoint(Answer(json=LIST_A.json, delay=0.1)), bot()
    results = await asyncio.gather(*(wl.lookup(b, url, token(url)) for _ in range(10)))
    assert results == [WhitelistLookup(A, None)] * 10
    assert len(customer_api.received(url)) == 1


async def test_forget_refetches(wl: ApiWhitelist, customer_api: FakeCustomerAPI) -> None:
    url, b = customer_api.endpoint(LIST_A, LIST_B), bot()
    assert (await wl.lookup(b, url, token(url))).domains == A
    wl.forget(b)
    assert (await wl.lookup(b, url, token(url))).domains == B
    assert len(customer_api.received(url)) == 2
    wl.forget(uuid4())  # unknown bot: nothing to do


async def test_changed_api_url_refetches(wl: ApiWhitelist, customer_api: FakeCustomerAPI) -> None:
    first, second, b = customer_api.endpoint(LIST_A), customer_api.endpoint(LIST_B), bot()
    assert (await wl.lookup(b, first, token(first))).domains == A
    assert (await wl.lookup(b, second, token(second))).domains == B
    assert (await wl.lookup(b, second, token(second))).domains == B
    assert len(customer_api.received(first)) == 1
    assert len(customer_api.received(second)) == 1


async def test_least_recently_used_bot_is_evicted(http: OutboundClient, clock: FakeClock, customer_api: FakeCustomerAPI) -> None:
    cache = ApiWhitelist(http, max_entries=2, clock=clock)
    urls = {name: customer_api.endpoint(LIST_A) for name in "abc"}
    bots = {name: bot() for name in "abc"}
    try:
        for name in "aba":  # b is now the least recently used
            await cache.lookup(bots[name], urls[name], None)
        await cache.lookup(bots["c"], urls["c"], None)
        await cache.lookup(bots["a"], urls["a"], None)
        await cache.lookup(bots["b"], urls["b"], None)
        assert [len(customer_api.received(urls[name])) for name in "abc"] == [1, 2, 1]
    finally:
        await cache.close()


async def test_blocked_destination_is_missing(wl: ApiWhitelist) -> None:
    result = await wl.lookup(bot(), "http://0.0.0.0:9/list", token("http://0.0.0.0:9/list"))
    assert result.domains is None
    assert result.note is not None and result.note.startswith("missing: the whitelist API's address is not allowed")


async def test_unreachable_api_is_missing(wl: ApiWhitelist, customer_api: FakeCustomerAPI) -> None:
    # A closed port on loopback: connection refused.
    result = await wl.lookup(bot(), "http://127.0.0.1:9/list", token("http://127.0.0.1:9/list"))
    assert result == WhitelistLookup(None, "missing: could not reach the whitelist API (ClientConnectorError)")


async def test_logs_never_carry_token_or_query(wl: ApiWhitelist, customer_api: FakeCustomerAPI, logs: RecordingLog) -> None:
    url = customer_api.endpoint(Answer(status=500)) + "?key=query-secret"
    await wl.lookup(bot(), url, token(url))
    [warning] = logs.named("whitelist_fetch_failed")
    text = repr(logs.events)
    assert "query-secret" not in text and SECRET not in text
    assert warning["api_url"] == url.split("?")[0]


async def test_close_cancels_background_refresh(http: OutboundClient, clock: FakeClock, customer_api: FakeCustomerAPI) -> None:
    url, b = customer_api.endpoint(LIST_A, Answer(json=LIST_B.json, delay=0.4)), bot()
    cache = ApiWhitelist(http, ttl=TTL, clock=clock)
    await cache.lookup(b, url, None)
    clock.advance(TTL * 0.9)
    await cache.lookup(b, url, None)
    await wait_until(lambda: len(customer_api.received(url)) == 2, 5, "a second call to the business")
    await cache.close()
    assert await cache.lookup(b, url, None) == WhitelistLookup(A, None)  # refresh never landed; no new one after close
