"""The admin page's Discover action as the verifier reads a provider's answer (``services.verifier.discover``): any
status and any bytes end in a :class:`DiscoverResult` with a defined verdict, never an exception; it says a document
can be used exactly when the verifier's own reader (``read_discovery``) takes it and a method works with it; and it
travels to the gateway as JSON whatever the provider put in it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Hashable
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.verifier.discover import discover, read
from services.verifier.failures import AuthFailure
from services.verifier.oidc_answers import read_discovery
from services.verifier.outbound import HostBusy, ResponseTooLarge
from shared.destinations import DestinationBlocked
from shared.discover import DiscoverResult
from tests.strategies import JSON, encoded

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
ISSUER = "https://id.example.com"
STATUSES = st.integers(min_value=0, max_value=999) | st.sampled_from([200, 200, 200, 404, 500, 503])
URLS = st.sampled_from([ISSUER + "/me", ISSUER + "/introspect", "https://elsewhere.example/i", "ftp://x", ""]) | JSON
DOCUMENTS = st.fixed_dictionaries({}, optional={
    "issuer": st.sampled_from([ISSUER, ISSUER + "/", "https://other.example"]) | JSON,
    "userinfo_endpoint": URLS, "introspection_endpoint": URLS, "jwks_uri": URLS, "end_session_endpoint": URLS,
    "introspection_endpoint_auth_methods_supported": st.sampled_from([["client_secret_post"], ["private_key_jwt"]]) | JSON,
    "token_endpoint_auth_methods_supported": JSON, "id_token_signing_alg_values_supported": JSON,
    "backchannel_logout_supported": JSON,
})
BODIES = st.binary(max_size=200) | DOCUMENTS.map(encoded) | JSON.map(encoded)
LONE_SURROGATE = b'{"issuer": "https://id.example.com", "userinfo_endpoint": "https://id.example.com/\\ud800"}'


def _reader_takes(status: int, body: bytes) -> bool:
    try:
        read_discovery(status, body, ISSUER)
    except AuthFailure:
        return False
    return True


@PROPERTY
@given(status=STATUSES, body=BODIES)
@example(status=200, body=LONE_SURROGATE)
@example(status=200, body=b"\xef\xbb\xbf" + encoded({"issuer": ISSUER, "userinfo_endpoint": ISSUER + "/me"}))
@example(status=200, body=b'{"issuer": "https://id.example.com", "signing": NaN}')
def test_any_answer_ends_in_a_defined_verdict(status: int, body: bytes) -> None:
    result = read(ISSUER, status, body)

    assert result.verdict and (result.failure is None) == result.ok
    assert result.ok == (_reader_takes(status, body) and (result.userinfo.usable or result.introspection.usable))
    assert result.ok <= result.issuer_matches
    assert (result.detail is None) == result.ok
    assert DiscoverResult.model_validate_json(result.model_dump_json()) == result  # the wire to the gateway
    if result.provider is not None:
        assert result.issuer_matches == (result.provider.issuer == ISSUER)


def test_a_trailing_slash_is_named_as_the_difference() -> None:
    result = read(ISSUER, 200, encoded({"issuer": ISSUER + "/", "userinfo_endpoint": ISSUER + "/me"}))

    assert (result.ok, result.failure, result.issuer_matches) == (False, "issuer_mismatch", False)
    assert "trailing slash" in result.verdict
    assert result.provider is not None and result.provider.issuer == ISSUER + "/"  # shown even so


def test_a_provider_without_introspection_says_to_use_userinfo() -> None:
    result = read(ISSUER, 200, encoded({"issuer": ISSUER, "userinfo_endpoint": ISSUER + "/me", "jwks_uri": ISSUER + "/k"}))

    assert result.ok and result.userinfo.usable and not result.introspection.usable
    assert result.introspection.why == "This provider publishes no introspection endpoint: use userinfo."
    assert result.provider is not None and result.provider.introspection_endpoint is None


def test_an_introspection_endpoint_on_another_origin_would_not_get_the_secret() -> None:
    result = read(ISSUER, 200, encoded({"issuer": ISSUER, "introspection_endpoint": "https://elsewhere.example/i"}))

    assert (result.ok, result.failure) == (False, "no_endpoint")
    assert "another origin" in result.introspection.why


@pytest.mark.parametrize(("status", "body", "failure"), [
    (404, b"not here", "http_status"),
    (503, b"", "http_status"),
    (200, b"<html>a login page</html>", "not_json"),
    (200, encoded({"issuer": ISSUER, "userinfo_endpoint": "ftp://id.example.com/me"}), "invalid_document"),
])
def test_each_way_of_failing_has_its_code(status: int, body: bytes, failure: str) -> None:
    result = read(ISSUER, status, body)
    assert (result.ok, result.failure, result.http_status) == (False, failure, status)


class _Raising:
    def __init__(self, exc: BaseException) -> None:
        self._exc = exc
        self.urls: list[str] = []

    async def request(self, method: str, url: str, *, headers: dict[str, str], tenant: Hashable = None,
                      **_: Any) -> Any:
        self.urls.append(url)
        raise self._exc


@pytest.mark.parametrize(("exc", "failure"), [
    (DestinationBlocked("localhost resolves to 127.0.0.1, which is not a public address (loopback)"), "blocked"),
    (TimeoutError(), "timeout"),
    (aiohttp.ClientConnectionError(), "unreachable"),
    (ResponseTooLarge("response is longer than 65536 bytes"), "unreadable"),
    (HostBusy("all in use"), "busy"),
])
def test_no_answer_is_a_failed_verdict_with_no_document(exc: BaseException, failure: str) -> None:
    http = _Raising(exc)
    result = asyncio.run(discover(http, ISSUER + "/", tenant="bot"))  # type: ignore[arg-type]

    assert http.urls == [ISSUER + "/.well-known/openid-configuration"]
    assert (result.ok, result.failure, result.http_status, result.provider, result.document) == (
        False, failure, None, None, None)
    assert result.verdict and result.detail
    json.loads(result.model_dump_json())


def test_a_bug_is_not_taken_for_a_provider_failure() -> None:
    with pytest.raises(RuntimeError):
        asyncio.run(discover(_Raising(RuntimeError("a bug")), ISSUER))  # type: ignore[arg-type]
