"""Property tests for reading an OpenID Provider's answers (``services.verifier.oidc_answers``) and for the whole
verification through them (``services.verifier.oidc.call_provider``, with a stand-in client answering what
Hypothesis draws): any status and any bytes end in what was read or an AuthFailure of a defined kind, never another
exception; a provider that did not really answer is ``auth_unavailable`` (retried, the outage grace may answer)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Hashable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import SecretStr

from services.verifier.discovery import Discovery
from services.verifier.failures import AuthFailure, Grace, Kind
from services.verifier.oidc import call_provider
from services.verifier.oidc_answers import (
    read_discovery,
    read_introspection,
    read_userinfo,
)
from shared.auth_config import ISSUER, AuthConfig, BoundSecret, Oidc
from shared.events import FallbackReason, IdentifyMethod, Identity
from services.verifier.outbound import OutboundResponse
from tests.strategies import HUGE, JSON, encoded

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
ISSUER_URL = "https://id.example.com"
STATUSES = st.integers(min_value=0, max_value=999) | st.sampled_from([200, 200, 200, 401, 403, 404, 408, 429, 500, 503])
CLAIMS = st.fixed_dictionaries({}, optional={
    "sub": st.sampled_from(["alice", "", " "]) | JSON, "email": st.sampled_from(["a@example.com", "x"]) | JSON,
    "name": JSON, "phone_number": st.sampled_from(["+84912345678", "12"]) | JSON, "metadata": JSON,
    "active": st.sampled_from([True, False]) | JSON, "client_id": st.sampled_from(["bot", "other"]) | JSON,
    "aud": st.sampled_from(["bot", ["other", "bot"], []]) | JSON,
    "exp": st.integers(int(time.time()) - 100, int(time.time()) + 100) | st.sampled_from(HUGE) | JSON,
    "issuer": st.sampled_from([ISSUER_URL, ISSUER_URL + "/"]) | JSON,
    "userinfo_endpoint": st.sampled_from([ISSUER_URL + "/me", "ftp://x"]) | JSON,
    "introspection_endpoint": st.sampled_from([ISSUER_URL + "/introspect", "https://elsewhere.example/i"]) | JSON,
    "introspection_endpoint_auth_methods_supported": st.sampled_from([["client_secret_post"], ["private_key_jwt"]])
    | JSON,
})
BODIES = st.binary(max_size=200) | CLAIMS.map(encoded) | JSON.map(encoded)
UNAVAILABLE = {Kind.TIMEOUT, Kind.UNREACHABLE, Kind.UNAVAILABLE}


def unavailable_status(status: int) -> bool:
    return status in (408, 429) or 500 <= status <= 599


@settings(PROPERTY)
@given(STATUSES, BODIES)
@example(200, b'{"issuer": "https://id.example.com", "userinfo_endpoint": 1e999}')
@example(200, b"[" * 100_000)
def test_a_discovery_document_is_read_or_refused_as_a_setting_to_fix(status: int, body: bytes) -> None:
    try:
        metadata = read_discovery(status, body, ISSUER_URL)
    except AuthFailure as failure:
        assert failure.kind is (Kind.UNAVAILABLE if unavailable_status(status) else Kind.MISCONFIGURED)
        assert failure.detail.strip()
    else:
        assert 200 <= status <= 299 and metadata.issuer == ISSUER_URL
        for url in (metadata.userinfo_endpoint, metadata.introspection_endpoint, metadata.jwks_uri):
            assert url is None or url.startswith(("http://", "https://"))
        assert metadata.introspection_auth() in ("client_secret_basic", "client_secret_post", None)


@settings(PROPERTY)
@given(STATUSES, BODIES)
def test_a_userinfo_answer_is_claims_with_a_sub_or_a_defined_failure(status: int, body: bytes) -> None:
    try:
        claims = read_userinfo(status, body)
    except AuthFailure as failure:
        assert failure.reason in (FallbackReason.auth_rejected, FallbackReason.auth_unavailable,
                                  FallbackReason.invalid_response)
        assert (failure.reason is FallbackReason.auth_unavailable) == unavailable_status(status)
        assert failure.verdict.grace is (Grace.ANSWERS if unavailable_status(status) else Grace.REFUSES)
    else:
        assert 200 <= status <= 299 and isinstance(claims["sub"], str) and claims["sub"].strip()


@settings(PROPERTY)
@given(STATUSES, BODIES)
@example(200, b'{"active": true, "client_id": "bot", "exp": 1e999}')
@example(200, b'{"active": true, "client_id": ["bot"]}')
@example(200, b'{"active": true, "client_id": "bot", "exp": -' + b"9" * 400 + b"}")
def test_an_introspection_answer_is_an_active_token_of_an_accepted_client_or_a_defined_failure(
        status: int, body: bytes) -> None:
    now = time.time()
    try:
        claims = read_introspection(status, body, accepted_clients=("bot",), now=now)
    except AuthFailure as failure:
        assert failure.reason in (FallbackReason.auth_rejected, FallbackReason.auth_unavailable,
                                  FallbackReason.invalid_response, FallbackReason.misconfigured)
        assert (failure.reason is FallbackReason.auth_unavailable) == unavailable_status(status)
        if failure.reason is FallbackReason.auth_rejected:
            assert failure.detail.split(":")[0] in ("inactive_token", "wrong_client"), failure.detail
        if status in (401, 403):  # Doorman's own client credentials were refused: nothing about the token
            assert failure.reason is FallbackReason.misconfigured and failure.verdict.grace is Grace.NOTHING
    else:
        assert 200 <= status <= 299 and claims["active"] is True
        assert "exp" not in claims or claims["exp"] > now
        aud = claims.get("aud")
        assert claims.get("client_id") == "bot" or "bot" in (aud if isinstance(aud, list) else [aud])


@pytest.mark.parametrize(("answer", "detail"), [
    ({"active": False}, "inactive_token: "),
    ({"active": True, "client_id": "bot", "exp": 1}, "inactive_token: "),
    ({"active": True, "client_id": "other"}, "wrong_client: "),
    ({"active": True, "aud": ["other"]}, "wrong_client: "),
    ({"active": True}, "wrong_client: "),
])
def test_introspection_refusals_say_which_check_failed(answer: dict[str, Any], detail: str) -> None:
    with pytest.raises(AuthFailure) as refused:
        read_introspection(200, json.dumps(answer).encode(), accepted_clients=("bot",), now=time.time())
    assert refused.value.reason is FallbackReason.auth_rejected and refused.value.detail.startswith(detail)


# --- the whole verification, through a stand-in client -------------------------------------------


class Answers:
    """Answers each request with the next (status, body) drawn; records what was sent where."""

    def __init__(self, answers: list[tuple[int, bytes]]) -> None:
        self._answers = answers
        self.sent: list[tuple[str, str, dict[str, str], bytes | None]] = []

    async def request(self, method: str, url: str, *, headers: dict[str, str], data: bytes | None = None,
                      tenant: Hashable = None, **_: Any) -> OutboundResponse:
        self.sent.append((method, url, headers, data))
        status, body = self._answers.pop(0) if self._answers else (500, b"")
        return OutboundResponse(status, CIMultiDictProxy(CIMultiDict()), body, 1.0)


DISCOVERED = encoded({"issuer": ISSUER_URL, "userinfo_endpoint": ISSUER_URL + "/me",
                      "introspection_endpoint": ISSUER_URL + "/introspect"})


def config(method: str) -> AuthConfig:
    secret = BoundSecret("oidc.client_secret", SecretStr("the-client-secret"), {ISSUER: ISSUER_URL})
    return AuthConfig(
        enabled=True, auth_url=None, header_token=None, identify_method=IdentifyMethod.email, request_fields=(),
        whitelist_enabled=False, whitelist_source="manual", whitelist_domains=(), whitelist_api_url=None,
        identity_source="oidc", oidc=Oidc(issuer=ISSUER_URL, method=method, client_id="bot",  # type: ignore[arg-type]
                                          client_secret=secret, accepted_clients=("bot",)),
    )


# Answers that verify, among the drawn ones: introspection without the email, then userinfo with it.
GOOD = st.sampled_from([(200, encoded({"active": True, "client_id": "bot", "sub": "alice"})),
                        (200, encoded({"sub": "alice", "email": "a@example.com", "name": "Alice"}))])


@settings(PROPERTY)
@given(st.sampled_from(["userinfo", "introspection"]), st.lists(GOOD | st.tuples(STATUSES, BODIES), max_size=3),
       st.sampled_from(["token-1", "a b", "x\r\ny", "abc=="]))
def test_any_answers_end_in_an_identity_or_a_defined_failure(
        method: str, answers: list[tuple[int, bytes]], token: str) -> None:
    http = Answers([(200, DISCOVERED), *answers])
    call = asyncio.run(call_provider(http, config(method), access_token=token,  # type: ignore[arg-type]
                                     discovery=Discovery(http), tenant="bot"))  # type: ignore[arg-type]
    if call.failure is None:
        assert isinstance(call.identity, Identity) and "@" in call.identity.identifier
    else:
        assert call.identity is None and call.failure.detail.strip()
    for _, url, headers, _data in http.sent:  # the client's credentials go to the introspection endpoint alone
        assert url.startswith(ISSUER_URL + "/")
        assert headers.get("Authorization", "Bearer").startswith("Bearer") or url == ISSUER_URL + "/introspect"
    if token not in ("token-1", "abc=="):  # not an RFC 6750 token: the provider is never asked about it
        assert call.failure is not None and call.failure.detail.startswith("malformed_token")
        assert http.sent == []
