"""Property tests for the signed-token checker (``services.verifier.tokens``): whatever a visitor sends
as a token (any string; any header and claims JSON, NaN, Infinity, huge numbers, nesting and unicode
included; signed with the bot's secret or not) ends in a defined check result, never an exception.

HS256 only: its key is the bot's secret, so no JWKS (no I/O) is involved; the RS256/ES256 key lookup
is exercised against a served JWKS in tests/integration/test_tokens.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from services.verifier.tokens import MAX_NUMERIC_DATE, TokenCheck, TokenRejected, check_token, read_claims, read_header
from shared.auth_config import AuthConfig, SignedToken, TokenSecret
from shared.events import FallbackReason, IdentifyMethod
from tests.strategies import JSON, b64, claims, good_times, headers, make_token

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

BOT = UUID("0b7c3e52-6f0e-4a8a-9d51-3f4b2c1a0e99")
KID, SECRET = "kid-1", "dmts_" + "s" * 40
# The checks of tokens.py's docstring, the order docs/codes.md gives them in.
CODES = {"malformed_token", "algorithm_not_allowed", "unknown_kid", "bad_signature", "invalid_claim", "expired",
         "not_yet_valid", "issued_in_future", "lifetime_too_long", "wrong_audience", "wrong_issuer", "missing_claim"}


def config(method: IdentifyMethod, issuer: str | None) -> AuthConfig:
    return AuthConfig(
        enabled=True, auth_url=None, header_token=None, identify_method=method, request_fields=(),
        whitelist_enabled=False, whitelist_source="manual", whitelist_domains=(), whitelist_api_url=None,
        identity_source="signed_token",
        signed_token=SignedToken(issuer=issuer, secret=TokenSecret(KID, SecretStr(SECRET))),
    )


def check(token: str, method: IdentifyMethod = IdentifyMethod.id, issuer: str | None = None) -> TokenCheck:
    return asyncio.run(check_token(token, config(method, issuer), BOT, jwks=None))  # type: ignore[arg-type]


def assert_defined(result: TokenCheck) -> None:
    """Exactly one of an identity and a refusal; a refusal is auth_rejected naming its check."""
    assert (result.identity is None) != (result.failure is None), result
    if result.failure is not None:
        assert result.failure.reason is FallbackReason.auth_rejected
        assert result.code in CODES and result.failure.detail.startswith(f"{result.code}: "), result.failure.detail


# -- strategies ----------------------------------------------------------------------------------

KEYS = st.sampled_from([SECRET, "dmts_guessed", None])
METHODS = st.sampled_from(list(IdentifyMethod))


# -- properties ----------------------------------------------------------------------------------


@PROPERTY
@given(st.text(max_size=300) | st.lists(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/",
                                                 max_size=60), min_size=1, max_size=4).map(".".join))
@example("")
@example("a.b.c")
@example(b64(b"[" * 3000) + ".e30.")
@example(b64(b'{"alg": NaN}') + "." + b64(b'{"exp": Infinity}') + ".x")
def test_any_string_is_a_defined_check_result(token: str) -> None:
    assert_defined(check(token))


@PROPERTY
@given(headers(KID) | JSON, claims(str(BOT)) | JSON, KEYS, METHODS, st.sampled_from([None, "https://shop.example.com"]))
@example({"alg": "HS256", "kid": KID}, {**good_times(), "sub": "v", "aud": str(BOT), "exp": float("nan")}, SECRET,
         IdentifyMethod.id, None)
@example({"alg": "HS256", "kid": KID}, {"sub": "v", "aud": str(BOT), "exp": 1e308, "iat": -1e308}, SECRET,
         IdentifyMethod.id, None)
@example({"alg": "HS256", "kid": KID}, {**good_times(), "sub": "v", "aud": str(BOT), "metadata": {"x": float("inf")}},
         SECRET, IdentifyMethod.id, None)
def test_any_header_and_claims_signed_or_not_are_a_defined_check_result(
        header: Any, payload: Any, key: str | None, method: IdentifyMethod, issuer: str | None) -> None:
    result = check(make_token(header, payload, key), method, issuer)
    assert_defined(result)
    if key != SECRET and result.code not in ("malformed_token", "algorithm_not_allowed", "unknown_kid"):
        assert result.code == "bad_signature"  # nothing after the signature is read without it


def numeric_date(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= MAX_NUMERIC_DATE


@PROPERTY
@given(claims(str(BOT)))
def test_a_time_claim_that_is_not_a_numeric_date_is_invalid_claim_whatever_else_is_wrong(payload: dict[str, Any]) -> None:
    result = check(make_token({"alg": "HS256", "kid": KID}, payload, SECRET))
    assert_defined(result)
    wrong = [name for name in ("exp", "nbf", "iat") if name in payload and not numeric_date(payload[name])]
    if wrong:
        assert result.failure is not None and result.failure.detail.startswith(f"invalid_claim: {wrong[0]} "), result


@PROPERTY
@given(st.text(min_size=1, max_size=40).filter(str.strip), st.text(max_size=40), JSON)
def test_a_token_signed_right_with_sane_claims_verifies(sub: str, name: str, extra: Any) -> None:
    payload = {"sub": sub, "name": name, "aud": str(BOT), "x-extra": extra, **good_times()}
    result = check(make_token({"alg": "HS256", "kid": KID, "typ": "JWT"}, payload, SECRET))
    assert result.identity is not None, result.failure
    assert result.identity.identifier == sub.strip()


@PROPERTY
@given(st.text(max_size=300) | st.builds(make_token, headers(KID) | JSON, claims(str(BOT)) | JSON, KEYS))
def test_the_unverified_header_and_claims_are_json_objects_or_malformed_token(token: str) -> None:
    """What the Testing panel shows: strict JSON (no NaN, no Infinity), or malformed_token."""
    for read in (read_header, read_claims):
        try:
            shown = read(token)
        except TokenRejected as exc:
            assert exc.code == "malformed_token"
        else:
            assert isinstance(shown, dict)
            json.dumps(shown, allow_nan=False)
