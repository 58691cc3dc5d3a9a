"""Property tests for the back-channel logout token checker (``services.verifier.logout``): whatever is posted as a
logout token (any string; any header and claims JSON, NaN, Infinity, huge numbers, nesting and unicode included;
signed with the provider's key or not) ends in the claims of a valid token or a :class:`LogoutRefused` saying why,
never another exception; and what passes satisfies every rule of the spec's section 2.6.

The provider's key is an RSA key made here, so no JWKS (no I/O) is involved; the key lookup is exercised against a
real provider in tests/integration/test_backchannel_logout.py.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.verifier.logout import (
    ALGORITHMS,
    BACKCHANNEL_EVENT,
    LEEWAY_SECONDS,
    MAX_AGE_SECONDS,
    LogoutRefused,
    check_claims,
    check_header,
    check_signature,
)
from shared.logout import LogoutClaims
from tests.strategies import JSON, TIMES, b64, encoded

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
ISSUER, CLIENT = "https://id.example.com", "shop-web"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC = KEY.public_key()
PEM = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def valid_claims(now: float) -> dict[str, Any]:
    return {"iss": ISSUER, "aud": CLIENT, "iat": int(now), "exp": int(now) + 120, "jti": "j-1", "sub": "alice",
            "sid": "s-1", "events": {BACKCHANNEL_EVENT: {}}}


CLAIM_NAMES = ("iss", "aud", "iat", "exp", "jti", "sub", "sid", "events", "nonce")
VALUES = {
    "iss": st.sampled_from([ISSUER, ISSUER + "/", "https://evil.example"]) | JSON,
    "aud": st.sampled_from([CLIENT, [CLIENT, "other"], ["other"], "other"]) | JSON,
    "events": st.sampled_from([{BACKCHANNEL_EVENT: {}}, {BACKCHANNEL_EVENT: []}, {"other": {}}, {}]) | JSON,
}


@st.composite
def claims(draw: st.DrawFn) -> dict[str, Any]:
    """A valid token's claims with some replaced by anything, some left out, perhaps a nonce added."""
    base = valid_claims(time.time())
    for name in draw(st.lists(st.sampled_from(CLAIM_NAMES), max_size=4, unique=True)):
        base[name] = draw(TIMES if name in ("iat", "exp") else VALUES.get(name, JSON))
    for name in draw(st.lists(st.sampled_from(CLAIM_NAMES), max_size=2, unique=True)):
        base.pop(name, None)
    return base


def assert_valid(read: LogoutClaims, claims: dict[str, Any], now: float) -> None:
    """What passed obeys every rule: no claim at fault slipped through."""
    assert claims["iss"] == ISSUER == read.issuer
    assert claims["aud"] == CLIENT or (isinstance(claims["aud"], list) and CLIENT in claims["aud"])
    iat = claims["iat"]
    assert isinstance(iat, int | float) and not isinstance(iat, bool)
    assert now - MAX_AGE_SECONDS - LEEWAY_SECONDS <= iat <= now + LEEWAY_SECONDS
    assert "exp" not in claims or claims["exp"] > now - LEEWAY_SECONDS
    assert isinstance(claims["events"], dict) and isinstance(claims["events"][BACKCHANNEL_EVENT], dict)
    assert read.jti == claims["jti"] and isinstance(read.jti, str)
    assert read.sub is not None or read.sid is not None
    assert "nonce" not in claims


def checked(claims: dict[str, Any], now: float) -> LogoutClaims | None:
    try:
        read = check_claims(claims, issuer=ISSUER, client_id=CLIENT, now=now)
    except LogoutRefused as refused:
        assert str(refused)
        return None
    assert_valid(read, claims, now)
    return read


@PROPERTY
@given(claims())
@example(valid_claims(time.time()))
def test_any_claims_end_in_valid_claims_or_a_refusal(payload: dict[str, Any]) -> None:
    checked(payload, time.time())


def test_the_valid_claims_pass() -> None:
    assert checked(valid_claims(time.time()), time.time()) is not None


@PROPERTY
@given(st.text(max_size=300) | st.builds(lambda h, c, s: f"{b64(encoded(h))}.{b64(encoded(c))}.{s}",
                                           JSON | st.fixed_dictionaries({"alg": JSON, "kid": JSON}, optional={
                                               "typ": JSON}), JSON, st.text(max_size=20)))
@example("")
@example("a.b.c")
@example(b64(b'{"alg":"none","kid":"k"}') + "." + b64(b"{}") + ".")
def test_any_string_ends_in_a_header_or_a_refusal(token: str) -> None:
    try:
        alg, kid = check_header(token)
    except LogoutRefused as refused:
        assert str(refused)
        return
    assert alg in ALGORITHMS and isinstance(kid, str) and kid


@PROPERTY
@given(claims() | JSON, st.sampled_from([KEY, None]),
       st.fixed_dictionaries({}, optional={"typ": st.sampled_from(["logout+jwt", "JWT"]) | JSON}))
def test_any_signed_payload_ends_in_valid_claims_or_a_refusal(payload: Any, key: Any, extra: dict[str, Any]) -> None:
    """Signed with the provider's key or another one: the whole check, as a verifier runs it after the key lookup."""
    signer = KEY if key is not None else rsa.generate_private_key(public_exponent=65537, key_size=1024)
    header = {"alg": "RS256", "kid": "k", **extra}
    signing_input = f"{b64(encoded(header))}.{b64(encoded(payload))}"
    signature = jwt.get_algorithm_by_name("RS256").sign(signing_input.encode(), signer)
    token = f"{signing_input}.{b64(signature)}"
    now = time.time()
    try:
        alg, _ = check_header(token)
        read = check_claims(check_signature(token, PUBLIC, alg), issuer=ISSUER, client_id=CLIENT, now=now)
    except LogoutRefused as refused:
        assert str(refused)
        return
    assert key is not None, "a token signed with another key passed"
    assert_valid(read, payload, now)
