"""Signed identity tokens (``identity_source: signed_token``) against the real services: the known
attacks, each refused with its named check; HS256 secrets and their rotation; RS256/ES256 through a
JWKS the fake business serves; the JWKS cache; no call to the Authentication URL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from datetime import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from services.verifier.jwks import JwksCache, UnknownKey
from services.verifier.outbound import outbound_client
from services.verifier.tokens import LEEWAY_SECONDS, MAX_TOKEN_CHARS, check_token
from shared.auth_config import AuthConfig, SignedToken
from shared.db import CONFIG_CHANNEL
from shared.events import IdentifyMethod
from tests.conftest import Stack, admin_headers, create_bot, logged_detail, verify_once
from tests.fake_customer import Answer, FakeCustomerAPI, verified

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
# More RSA keys, made at import: making one blocks the event loop the in-process gateway shares for
# a while, which its admission control would rightly read as overload.
OTHER_RSA_KEY, ROTATED_RSA_KEY, ATTACKER_RSA_KEY = (rsa.generate_private_key(public_exponent=65537, key_size=2048)
                                                    for _ in range(3))
RSA_KID, EC_KID = "rsa-2026", "ec-2026"


def jwk(key: Any, kid: str) -> dict[str, Any]:
    algorithm = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm
    return {**algorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}


def jwks(*keys: tuple[Any, str]) -> Answer:
    return Answer(json={"keys": [jwk(key, kid) for key, kid in keys]})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(aud: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "visitor-1", "aud": aud, "iat": now, "exp": now + 300, "name": "Token Visitor",
            "email": "Visitor@Example.com", **extra}


def unsigned(header: dict[str, Any], payload: dict[str, Any], sign: Callable[[bytes], bytes] | None = None) -> str:
    """A token made by hand, as an attacker would (PyJWT refuses to make most of these)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode())) if sign else ''}"


async def new_token_secret(stack: Stack, bot_id: str) -> dict[str, str]:
    async with stack.http.post(f"{stack.gateway.url}/v1/bots/{bot_id}/custom-auth/token-secret",
                               headers=admin_headers()) as resp:
        assert resp.status == 201, await resp.text()
        return await resp.json()


async def signed_token_bot(stack: Stack, **signed_token: Any) -> str:
    return await create_bot(stack.http, stack.gateway.url, enabled=True, identity_source="signed_token",
                            signed_token=signed_token)


@dataclass
class Bots:
    hs: str  # HS256, with a token secret
    secret: dict[str, str]
    rs: str  # RS256 against a JWKS ...
    rs_sibling: str  # ... and a second bot of the same business, same JWKS
    issuer: str  # HS256 with an issuer set
    issuer_secret: dict[str, str]

    def hs_token(self, payload: dict[str, Any], **header: Any) -> str:
        return jwt.encode(payload, self.secret["secret"], algorithm="HS256", headers={"kid": self.secret["kid"], **header})

    def rs_token(self, payload: dict[str, Any], **header: Any) -> str:
        return jwt.encode(payload, RSA_KEY, algorithm="RS256", headers={"kid": RSA_KID, **header})


@pytest.fixture(scope="module")
async def bots(stack: Stack, customer_api: FakeCustomerAPI) -> Bots:
    hs = await signed_token_bot(stack)
    jwks_url = customer_api.endpoint(jwks((RSA_KEY, RSA_KID)))
    rs = await signed_token_bot(stack, algorithm="RS256", jwks_url=jwks_url)
    rs_sibling = await signed_token_bot(stack, algorithm="RS256", jwks_url=jwks_url)
    issuer = await signed_token_bot(stack, issuer="https://shop.example.com")
    return Bots(hs, await new_token_secret(stack, hs), rs, rs_sibling, issuer, await new_token_secret(stack, issuer))


def _tampered(b: Bots) -> str:
    header, _payload, signature = b.hs_token(claims(b.hs)).split(".")
    return f"{header}.{b64(json.dumps(claims(b.hs, sub='someone-else')).encode())}.{signature}"


def _confused(b: Bots) -> str:
    """HS256 'signed' with the RSA public key, as if it were a shared secret (algorithm confusion)."""
    public_pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return unsigned({"alg": "HS256", "typ": "JWT", "kid": RSA_KID}, claims(b.rs),
                    lambda data: hmac.new(public_pem, data, hashlib.sha256).digest())


NOW = int(time.time())


def _hand_signed(b: Bots, payload: dict[str, Any]) -> str:
    """HS256 with the bot's secret, made by hand: PyJWT refuses to put NaN or Infinity in a token."""
    return unsigned({"alg": "HS256", "typ": "JWT", "kid": b.secret["kid"]}, payload,
                    lambda data: hmac.new(b.secret["secret"].encode(), data, hashlib.sha256).digest())


def _time_claim(name: str, value: Any, **others: Any) -> Callable[[Bots], str]:
    return lambda b: _hand_signed(b, {**claims(b.hs, **others), name: value})


YEAR = 365 * 24 * 3600
# A time claim that is not a finite NumericDate (1970 to 9999): invalid_claim, right after bad_signature.
NOT_A_TIME: list[tuple[str, str, Callable[[Bots], str], str]] = [
    ("exp NaN", "hs", _time_claim("exp", float("nan")), "invalid_claim"),
    ("iat NaN, exp a year out", "hs", _time_claim("iat", float("nan"), exp=int(time.time()) + YEAR), "invalid_claim"),
    ("nbf NaN", "hs", _time_claim("nbf", float("nan")), "invalid_claim"),
    ("exp Infinity", "hs", _time_claim("exp", float("inf")), "invalid_claim"),
    ("exp -Infinity", "hs", _time_claim("exp", float("-inf")), "invalid_claim"),
    ("iat -Infinity", "hs", _time_claim("iat", float("-inf")), "invalid_claim"),
    ("nbf Infinity", "hs", _time_claim("nbf", float("inf")), "invalid_claim"),
    ("exp a huge integer", "hs", _time_claim("exp", 10**400), "invalid_claim"),
    ("exp 1e308, iat -1e308", "hs", _time_claim("exp", 1e308, iat=-1e308), "invalid_claim"),
    ("exp past year 9999", "hs", _time_claim("exp", 253402300800), "invalid_claim"),
    ("exp true", "hs", _time_claim("exp", True), "invalid_claim"),
    ("exp a string", "hs", _time_claim("exp", str(int(time.time()) + 60)), "invalid_claim"),
    ("iat null", "hs", _time_claim("iat", None), "invalid_claim"),
    ("nbf an object", "hs", _time_claim("nbf", {"$gt": 0}), "invalid_claim"),
    ("a NaN exp in a tampered token", "hs", lambda b: ".".join([
        _hand_signed(b, {**claims(b.hs), "exp": float("nan")}).rsplit(".", 1)[0],
        b.hs_token(claims(b.hs)).rsplit(".", 1)[1]]), "bad_signature"),
    ("expired, with a NaN nbf", "hs", _time_claim("nbf", float("nan"), iat=NOW - 4000, exp=NOW - 3600), "invalid_claim"),
    ("a lifetime of 9999 years", "hs", _time_claim("exp", 253402300799, iat=0), "lifetime_too_long"),
    ("metadata holding NaN", "hs", lambda b: _hand_signed(b, claims(b.hs, metadata={"score": float("nan")})),
     "invalid_claim"),
]


ATTACKS: list[tuple[str, str, Callable[[Bots], str], str]] = [
    # (row, bot, token, the check that must refuse it)
    ("alg none", "hs", lambda b: unsigned({"alg": "none", "kid": b.secret["kid"]}, claims(b.hs)), "algorithm_not_allowed"),
    ("alg none, RS256 bot", "rs", lambda b: unsigned({"alg": "none", "kid": RSA_KID}, claims(b.rs)), "algorithm_not_allowed"),
    ("algorithm confusion", "rs", _confused, "algorithm_not_allowed"),
    ("RS256 token for an HS256 bot", "hs", lambda b: b.rs_token(claims(b.hs), kid=b.secret["kid"]), "algorithm_not_allowed"),
    ("unknown kid", "hs", lambda b: b.hs_token(claims(b.hs), kid="no-such-kid"), "unknown_kid"),
    ("no kid", "hs", lambda b: jwt.encode(claims(b.hs), b.secret["secret"], algorithm="HS256"), "unknown_kid"),
    ("injected kid (path)", "hs", lambda b: b.hs_token(claims(b.hs), kid="../../../../etc/passwd"), "unknown_kid"),
    ("injected kid (SQL)", "hs", lambda b: b.hs_token(claims(b.hs), kid="x' OR '1'='1"), "unknown_kid"),
    ("injected kid (JWKS)", "rs", lambda b: b.rs_token(claims(b.rs), kid="../keys?kid=*"), "unknown_kid"),
    ("kid not a string", "hs", lambda b: unsigned({"alg": "HS256", "kid": {"$ne": ""}}, claims(b.hs),
                                                  lambda data: hmac.new(b.secret["secret"].encode(), data,
                                                                        hashlib.sha256).digest()), "unknown_kid"),
    ("tampered payload", "hs", _tampered, "bad_signature"),
    ("signed with another secret", "hs", lambda b: jwt.encode(claims(b.hs), "dmts_guessed-secret-of-32-bytes-or-more",
                                                              algorithm="HS256", headers={"kid": b.secret["kid"]}),
     "bad_signature"),
    ("signed with another RSA key", "rs", lambda b: jwt.encode(
        claims(b.rs), ATTACKER_RSA_KEY, algorithm="RS256",
        headers={"kid": RSA_KID}), "bad_signature"),
    ("expired", "hs", lambda b: b.hs_token(claims(b.hs, iat=NOW - 4000, exp=NOW - 3600)), "expired"),
    ("no exp", "hs", lambda b: b.hs_token({k: v for k, v in claims(b.hs).items() if k != "exp"}), "expired"),
    ("not yet valid", "hs", lambda b: b.hs_token(claims(b.hs, nbf=int(time.time()) + 600)), "not_yet_valid"),
    ("issued in future", "hs", lambda b: b.hs_token(claims(b.hs, iat=int(time.time()) + 600, exp=int(time.time()) + 900)),
     "issued_in_future"),
    ("no iat", "hs", lambda b: b.hs_token({k: v for k, v in claims(b.hs).items() if k != "iat"}), "issued_in_future"),
    ("lifetime over the maximum", "hs", lambda b: b.hs_token(claims(b.hs, exp=int(time.time()) + 7200)), "lifetime_too_long"),
    ("wrong audience", "hs", lambda b: b.hs_token(claims("https://shop.example.com"), ), "wrong_audience"),
    ("no audience", "hs", lambda b: b.hs_token({k: v for k, v in claims(b.hs).items() if k != "aud"}), "wrong_audience"),
    ("a token for another bot", "rs", lambda b: b.rs_token(claims(b.rs_sibling)), "wrong_audience"),
    ("wrong issuer", "issuer", lambda b: jwt.encode(claims(b.issuer, iss="https://evil.example"), b.issuer_secret["secret"],
                                                    algorithm="HS256", headers={"kid": b.issuer_secret["kid"]}),
     "wrong_issuer"),
    ("no issuer", "issuer", lambda b: jwt.encode(claims(b.issuer), b.issuer_secret["secret"], algorithm="HS256",
                                                 headers={"kid": b.issuer_secret["kid"]}), "wrong_issuer"),
    ("missing claim", "hs", lambda b: b.hs_token({k: v for k, v in claims(b.hs).items() if k != "sub"}), "missing_claim"),
    ("blank claim", "hs", lambda b: b.hs_token(claims(b.hs, sub="  ")), "missing_claim"),
    ("not a JWT", "hs", lambda b: "opaque-session-token", "malformed_token"),
    *NOT_A_TIME,
]


@pytest.mark.parametrize(("row", "bot", "make", "code"), ATTACKS, ids=[row for row, *_ in ATTACKS])
async def test_each_attack_is_refused_with_its_check(
    stack: Stack, bots: Bots, row: str, bot: str, make: Callable[[Bots], str], code: str,
) -> None:
    outcome = await verify_once(stack, getattr(bots, bot), access_token=make(bots))
    assert outcome["status"] == "fallback", row
    assert outcome["fallback"]["reason"] == "auth_rejected", outcome
    detail = await logged_detail(stack, getattr(bots, bot), outcome["session_id"])  # the widget's is for visitors
    assert detail is not None and detail.startswith(f"{code}: "), detail


async def test_checks_run_in_design_order(stack: Stack, bots: Bots) -> None:
    """A token failing several checks is refused by the first in docs/codes.md's order."""
    now = int(time.time())
    everything_wrong = claims("another-bot", iat=now + 600, exp=now - 100, nbf=now + 600, iss="x")
    del everything_wrong["sub"]
    order = ["expired", "not_yet_valid", "issued_in_future", "lifetime_too_long", "wrong_audience", "missing_claim"]
    fixes: list[dict[str, Any]] = [{"exp": now + 120}, {"nbf": now}, {"iat": now - 7000}, {"iat": now}, {"aud": bots.hs},
                                   {"sub": "v"}]
    for code, fix in zip(order, fixes, strict=True):
        outcome = await verify_once(stack, bots.hs, access_token=bots.hs_token(everything_wrong))
        detail = await logged_detail(stack, bots.hs, outcome["session_id"])
        assert detail is not None and detail.startswith(f"{code}: "), (code, detail)
        everything_wrong.update(fix)
    assert (await verify_once(stack, bots.hs, access_token=bots.hs_token(everything_wrong)))["status"] == "verified"


async def test_clock_skew_leeway(stack: Stack, bots: Bots) -> None:
    now = int(time.time())
    within = claims(bots.hs, iat=now + LEEWAY_SECONDS - 10, nbf=now + LEEWAY_SECONDS - 10, exp=now + 60)
    assert (await verify_once(stack, bots.hs, access_token=bots.hs_token(within)))["status"] == "verified"
    just_expired = claims(bots.hs, iat=now - 100, exp=now - LEEWAY_SECONDS + 10)
    assert (await verify_once(stack, bots.hs, access_token=bots.hs_token(just_expired)))["status"] == "verified"


# -- successes ------------------------------------------------------------------------------------


async def test_hs256_opens_verified_with_no_call_to_the_authentication_url(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    auth_url = customer_api.endpoint(verified(id="never-called"))
    bot_id = await create_bot(stack.http, stack.gateway.url, enabled=True, identity_source="signed_token", auth_url=auth_url,
                              identify_method="email")
    secret = await new_token_secret(stack, bot_id)
    token = jwt.encode(claims(bot_id, sub=42, phone_number="0912345678", country_code="+84", metadata={"plan": "pro"}),
                       secret["secret"], algorithm="HS256", headers={"kid": secret["kid"]})
    outcome = await verify_once(stack, bot_id, access_token=token)
    assert outcome["status"] == "verified", outcome
    assert outcome["contact"]["email"] == "visitor@example.com"
    assert customer_api.received(auth_url) == []

    contact_id = outcome["contact"]["contact_id"]
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot_id}/contacts/{contact_id}", headers=admin_headers()) as resp:
        contact = await resp.json()
    assert contact["verified"] is True and contact["identifier"] == "visitor@example.com"
    assert contact["external_id"] == "42" and contact["phone_number"] == "+84912345678"
    assert contact["metadata"] == {"plan": "pro"} and contact["name"] == "Token Visitor"


async def test_configured_claim_names(stack: Stack) -> None:
    bot_id = await signed_token_bot(stack, claims={"id": "uid", "email": "mail", "name": "display_name",
                                                   "phone_number": "tel", "metadata": "extra"})
    secret = await new_token_secret(stack, bot_id)
    now = int(time.time())
    token = jwt.encode({"uid": "u-7", "display_name": "Configured", "mail": "c@example.com", "extra": {"a": 1},
                        "sub": "ignored", "aud": [bot_id, "another"], "iat": now, "exp": now + 60}, secret["secret"],
                       algorithm="HS256", headers={"kid": secret["kid"]})
    outcome = await verify_once(stack, bot_id, access_token=token)
    assert outcome["status"] == "verified", outcome
    assert outcome["contact"]["name"] == "Configured" and outcome["contact"]["email"] == "c@example.com"


async def test_previous_secret_verifies_for_24_hours(stack: Stack) -> None:
    bot_id = await signed_token_bot(stack)
    first = await new_token_secret(stack, bot_id)
    second = await new_token_secret(stack, bot_id)
    assert first["kid"] != second["kid"] and first["secret"] != second["secret"]

    def token(secret: dict[str, str]) -> str:
        return jwt.encode(claims(bot_id), secret["secret"], algorithm="HS256", headers={"kid": secret["kid"]})

    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot_id}/custom-auth", headers=admin_headers()) as resp:
        settings = await resp.json()
    assert settings["signed_token"]["secret_kid"] == second["kid"] and second["secret"] not in json.dumps(settings)
    assert (await verify_once(stack, bot_id, access_token=token(second)))["status"] == "verified"
    assert (await verify_once(stack, bot_id, access_token=token(first)))["status"] == "verified"

    # A day later the previous secret no longer verifies.
    async with stack.pool.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE custom_auth_settings SET token_previous_until = now() - interval '1 second' "
                           "WHERE bot_id = $1", UUID(bot_id))
        await conn.execute("SELECT pg_notify($1, $2)", CONFIG_CHANNEL, bot_id)
    outcome = await verify_once(stack, bot_id, access_token=token(first))
    assert (await logged_detail(stack, bot_id, outcome["session_id"]) or "").startswith("unknown_kid: "), outcome
    assert (await verify_once(stack, bot_id, access_token=token(second)))["status"] == "verified"

    # A third secret: the second is now the previous one, the first is gone.
    third = await new_token_secret(stack, bot_id)
    assert (await verify_once(stack, bot_id, access_token=token(third)))["status"] == "verified"
    assert (await verify_once(stack, bot_id, access_token=token(second)))["status"] == "verified"
    assert (await verify_once(stack, bot_id, access_token=token(first)))["fallback"]["reason"] == "auth_rejected"


async def test_token_secret_for_an_unknown_bot_is_404(stack: Stack) -> None:
    async with stack.http.post(f"{stack.gateway.url}/v1/bots/{uuid4()}/custom-auth/token-secret",
                               headers=admin_headers()) as resp:
        assert resp.status == 404


async def delete_token_secret(stack: Stack, bot_id: str, kid: str) -> tuple[int, Any]:
    async with stack.http.delete(f"{stack.gateway.url}/v1/bots/{bot_id}/custom-auth/token-secret/{kid}",
                                 headers=admin_headers()) as resp:
        return resp.status, (await resp.json() if resp.status != 204 else None)


async def secret_kid(stack: Stack, bot_id: str) -> str | None:
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot_id}/custom-auth", headers=admin_headers()) as resp:
        return (await resp.json())["signed_token"]["secret_kid"]


async def refused_because(stack: Stack, bot_id: str, token: str) -> str:
    """Open the widget with ``token``; it must fall back: the admin-side detail, from the activity log."""
    outcome = await verify_once(stack, bot_id, access_token=token)
    assert outcome["status"] == "fallback" and outcome["fallback"]["reason"] == "auth_rejected", outcome
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot_id}/auth-events", params={"limit": "1"},
                              headers=admin_headers()) as resp:
        [event] = (await resp.json())["events"]
    assert event["session_id"] == outcome["session_id"]
    return event["detail"]


def hs_token(bot_id: str, secret: dict[str, str], **extra: Any) -> str:
    return jwt.encode(claims(bot_id, **extra), secret["secret"], algorithm="HS256", headers={"kid": secret["kid"]})


async def test_a_leaked_token_secret_is_cut_off_at_once(stack: Stack) -> None:
    """Whoever holds a leaked HS256 secret signs any identity they like; deleting the secret stops that
    with the next open, and the bot has no secret until a new one is made."""
    bot_id = await signed_token_bot(stack)
    leaked = await new_token_secret(stack, bot_id)
    forged = hs_token(bot_id, leaked, sub="someone-else")
    assert (await verify_once(stack, bot_id, access_token=forged))["status"] == "verified"

    assert await delete_token_secret(stack, bot_id, leaked["kid"]) == (204, None)

    assert (await refused_because(stack, bot_id, forged)).startswith("unknown_kid: ")
    assert await secret_kid(stack, bot_id) is None
    status, body = await delete_token_secret(stack, bot_id, leaked["kid"])  # gone already
    assert status == 404 and body["error"]["code"] == "token_secret_not_found"
    fresh = await new_token_secret(stack, bot_id)
    assert (await verify_once(stack, bot_id, access_token=hs_token(bot_id, fresh)))["status"] == "verified"
    assert (await refused_because(stack, bot_id, forged)).startswith("unknown_kid: ")


async def test_deleting_one_token_secret_leaves_the_other(stack: Stack) -> None:
    bot_id = await signed_token_bot(stack)
    first, second = await new_token_secret(stack, bot_id), await new_token_secret(stack, bot_id)

    assert (await delete_token_secret(stack, bot_id, first["kid"]))[0] == 204  # the previous one
    assert (await refused_because(stack, bot_id, hs_token(bot_id, first))).startswith("unknown_kid: ")
    assert (await verify_once(stack, bot_id, access_token=hs_token(bot_id, second)))["status"] == "verified"

    third = await new_token_secret(stack, bot_id)  # second is now the previous one
    assert (await delete_token_secret(stack, bot_id, third["kid"]))[0] == 204  # the current one
    assert (await refused_because(stack, bot_id, hs_token(bot_id, third))).startswith("unknown_kid: ")
    assert await secret_kid(stack, bot_id) is None
    assert (await verify_once(stack, bot_id, access_token=hs_token(bot_id, second)))["status"] == "verified"
    # A new secret with none current: the previous one keeps the rest of its 24 hours.
    fourth = await new_token_secret(stack, bot_id)
    for kept in (second, fourth):
        assert (await verify_once(stack, bot_id, access_token=hs_token(bot_id, kept)))["status"] == "verified"


async def test_deleting_a_token_secret_that_is_not_there_is_404(stack: Stack) -> None:
    bot_id = await signed_token_bot(stack)
    for kid in ("never-made", "a" * 300, "ünïcode kid", "nul\x00kid"):
        status, body = await delete_token_secret(stack, bot_id, kid)
        assert status == 404 and body["error"]["code"] == "token_secret_not_found", (kid, body)
    made = await new_token_secret(stack, bot_id)
    status, body = await delete_token_secret(stack, str(uuid4()), made["kid"])
    assert status == 404 and body["error"]["code"] == "bot_not_found"
    status, body = await delete_token_secret(stack, "not-a-bot", made["kid"])
    assert status == 404 and body["error"]["code"] == "bot_not_found"

    # A previous secret past its 24 hours verifies nothing: it is not one of the bot's any more.
    await new_token_secret(stack, bot_id)
    await stack.pool.execute("UPDATE custom_auth_settings SET token_previous_until = now() - interval '1 second' "
                             "WHERE bot_id = $1", UUID(bot_id))
    status, body = await delete_token_secret(stack, bot_id, made["kid"])
    assert status == 404 and body["error"]["code"] == "token_secret_not_found"


@pytest.mark.parametrize(("algorithm", "key", "kid"), [("RS256", RSA_KEY, RSA_KID), ("ES256", EC_KEY, EC_KID)])
async def test_rs256_and_es256_through_the_jwks(
    stack: Stack, customer_api: FakeCustomerAPI, algorithm: str, key: Any, kid: str,
) -> None:
    jwks_url = customer_api.endpoint(jwks((OTHER_RSA_KEY, "other"), (RSA_KEY, RSA_KID), (EC_KEY, EC_KID)))
    bot_id = await signed_token_bot(stack, algorithm=algorithm, jwks_url=jwks_url)
    for n in range(3):
        token = jwt.encode(claims(bot_id, sub=f"{algorithm}-{n}"), key, algorithm=algorithm, headers={"kid": kid})
        outcome = await verify_once(stack, bot_id, access_token=token)
        assert outcome["status"] == "verified", outcome
    assert len(customer_api.received(jwks_url)) == 1  # cached
    # A key of the JWKS that is not for this algorithm is not this token's key.
    wrong_type = EC_KID if algorithm == "RS256" else RSA_KID
    token = jwt.encode(claims(bot_id), key, algorithm=algorithm, headers={"kid": wrong_type})
    outcome = await verify_once(stack, bot_id, access_token=token)
    assert (await logged_detail(stack, bot_id, outcome["session_id"]) or "").startswith("unknown_kid: "), outcome


async def test_a_kid_the_business_adds_is_used_within_10_seconds_and_unknown_kids_fetch_at_most_once_per_10_seconds(
        stack: Stack, customer_api: FakeCustomerAPI) -> None:
    published = [(RSA_KEY, RSA_KID)]
    jwks_url = customer_api.responder(lambda _request: jwks(*published))
    bot_id = await signed_token_bot(stack, algorithm="RS256", jwks_url=jwks_url)
    loop = asyncio.get_running_loop()
    started = loop.time()
    token = jwt.encode(claims(bot_id), RSA_KEY, algorithm="RS256", headers={"kid": RSA_KID})
    assert (await verify_once(stack, bot_id, access_token=token))["status"] == "verified"
    assert len(customer_api.received(jwks_url)) == 1

    published.append((ROTATED_RSA_KEY, "rotated"))  # the business adds a key and signs with it at once
    fresh = jwt.encode(claims(bot_id), ROTATED_RSA_KEY, algorithm="RS256", headers={"kid": "rotated"})
    first_token = loop.time()
    made_up = 0
    while True:  # its visitor tries again, among a flood of tokens with made-up kids
        attempt = loop.time()
        flood = [jwt.encode(claims(bot_id), ATTACKER_RSA_KEY, algorithm="RS256", headers={"kid": f"made-up-{made_up + n}"})
                 for n in range(3)]
        made_up += len(flood)
        outcome, *refused = await asyncio.gather(*(verify_once(stack, bot_id, access_token=t) for t in (fresh, *flood)))
        for r in refused:  # the precise detail is the activity log's (the widget's is for visitors)
            assert (await logged_detail(stack, bot_id, r["session_id"]) or "").startswith("unknown_kid: "), r
        if outcome["status"] == "verified":
            break
        assert (await logged_detail(stack, bot_id, outcome["session_id"]) or "").startswith("unknown_kid: "), outcome
        # An attempt begun 10 s after the first token finds the kid: the JWKS was last read before that token.
        assert attempt - first_token < 10, f"the new kid was still unknown {attempt - first_token:.1f} s after its first token"
    # At most one fetch per 10 s since the first (the flood included).
    assert len(customer_api.received(jwks_url)) <= 1 + (loop.time() - started) // 10, len(customer_api.received(jwks_url))
    assert made_up > 3  # the flood ran


async def test_jwks_cache_refetch_rule(customer_api: FakeCustomerAPI) -> None:
    """The cache's own clock: a kid it lacks makes it fetch again at most once per 10 s."""
    new_key = ROTATED_RSA_KEY
    url = customer_api.endpoint(jwks((RSA_KEY, RSA_KID)), jwks((RSA_KEY, RSA_KID), (new_key, "rotated")))
    now = [1000.0]
    bot = uuid4()
    async with outbound_client(allow_private=True, timeout=1, max_body=65536, limit_per_host=4) as http:
        cache = JwksCache(http, ttl=300, clock=lambda: now[0])
        assert await cache.key(bot, url, "RS256", RSA_KID) is not None
        for at, kid in ((1001, "rotated"), (1005, "made-up"), (1009.9, "rotated")):
            now[0] = at
            with pytest.raises(UnknownKey, match="^no key in the JWKS has kid "):
                await cache.key(bot, url, "RS256", kid)
        assert len(customer_api.received(url)) == 1
        now[0] = 1010
        assert await cache.key(bot, url, "RS256", "rotated") is not None  # the business rotated: seen within 10 s
        assert len(customer_api.received(url)) == 2
        now[0] = 1015
        with pytest.raises(UnknownKey):
            await cache.key(bot, url, "RS256", "made-up")
        assert len(customer_api.received(url)) == 2
        now[0] = 1020
        with pytest.raises(UnknownKey):
            await cache.key(bot, url, "RS256", "made-up")
        assert len(customer_api.received(url)) == 3
        # A known kid never fetches while the keys are fresh; after the TTL they are read again.
        now[0] = 1300
        await cache.key(bot, url, "RS256", RSA_KID)
        assert len(customer_api.received(url)) == 3
        now[0] = 1400
        await cache.key(bot, url, "RS256", RSA_KID)
        assert len(customer_api.received(url)) == 4


async def test_jwks_cache_keeps_last_good_keys_while_the_url_fails(customer_api: FakeCustomerAPI) -> None:
    url = customer_api.endpoint(jwks((RSA_KEY, RSA_KID)), Answer(status=503))
    now = [0.0]
    async with outbound_client(allow_private=True, timeout=1, max_body=65536, limit_per_host=4) as http:
        cache = JwksCache(http, ttl=300, max_stale=3600, clock=lambda: now[0])
        bot = uuid4()
        await cache.key(bot, url, "RS256", RSA_KID)  # fetched (good)
        now[0] = 400  # stale; the refresh fails: the last good keys serve
        await cache.key(bot, url, "RS256", RSA_KID)
        now[0] = 4000  # too stale
        with pytest.raises(Exception, match="could not be fetched"):
            await cache.key(bot, url, "RS256", RSA_KID)


async def test_jwks_down_is_auth_unavailable(stack: Stack, customer_api: FakeCustomerAPI) -> None:
    jwks_url = customer_api.endpoint(Answer(status=503))
    bot_id = await signed_token_bot(stack, algorithm="ES256", jwks_url=jwks_url)
    token = jwt.encode(claims(bot_id), EC_KEY, algorithm="ES256", headers={"kid": EC_KID})
    outcome = await verify_once(stack, bot_id, access_token=token)
    assert outcome["status"] == "fallback" and outcome["fallback"]["reason"] == "auth_unavailable", outcome
    assert "JWKS" in (await logged_detail(stack, bot_id, outcome["session_id"]) or "")


async def test_missing_token_and_disabled_come_first(stack: Stack, bots: Bots) -> None:
    assert (await verify_once(stack, bots.hs))["fallback"]["reason"] == "missing_token"
    off = await create_bot(stack.http, stack.gateway.url, enabled=False, identity_source="signed_token")
    assert (await verify_once(stack, off, access_token="x.y.z"))["fallback"]["reason"] == "ca_disabled"


async def test_testing_panel_shows_the_token(stack: Stack, bots: Bots) -> None:
    async def panel(bot_id: str, token: str) -> dict[str, Any]:
        async with stack.http.post(f"{stack.gateway.url}/v1/bots/{bot_id}/custom-auth/test", headers=admin_headers(),
                                   json={"access_token": token}) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    expired = bots.hs_token(claims(bots.hs, iat=NOW - 4000, exp=NOW - 3600, plan="pro"))
    result = await panel(bots.hs, expired)
    assert result["ok"] is False and result["identity_source"] == "signed_token" and result["request"] is None
    assert result["token"]["header"] == {"alg": "HS256", "typ": "JWT", "kid": bots.secret["kid"]}
    assert result["token"]["claims"]["plan"] == "pro" and result["token"]["failed_check"] == "expired"
    assert result["failure"]["reason"] == "auth_rejected" and result["failure"]["detail"].startswith("expired: ")
    assert result["visitor_outcome"]["status"] == "fallback"

    result = await panel(bots.hs, bots.hs_token(claims(bots.hs)))
    assert result["ok"] is True and result["token"]["failed_check"] is None
    assert result["identity"]["identifier"] == "visitor-1" and result["match"]["action"] in ("create", "update")
    assert result["visitor_outcome"]["status"] == "verified"


async def test_testing_panel_shows_a_token_whose_time_claims_are_not_numbers(stack: Stack, bots: Bots) -> None:
    token = _hand_signed(bots, claims(bots.hs, exp=float("nan"), nbf=float("inf"), iat=10**400))
    async with stack.http.post(f"{stack.gateway.url}/v1/bots/{bots.hs}/custom-auth/test", headers=admin_headers(),
                               json={"access_token": token}) as resp:
        assert resp.status == 200, await resp.text()
        result = json.loads(await resp.text(), parse_constant=lambda constant: pytest.fail(f"{constant} is not JSON"))
    assert result["ok"] is False and result["token"]["failed_check"] == "invalid_claim"
    assert (result["token"]["claims"]["exp"], result["token"]["claims"]["nbf"]) == ("NaN", "Infinity")
    assert result["failure"]["detail"].startswith("invalid_claim: exp ")
    assert result["visitor_outcome"]["status"] == "fallback"


# -- the checks alone (no I/O) ----------------------------------------------------------------------


def _config(**signed_token: Any) -> AuthConfig:
    return AuthConfig(
        enabled=True, auth_url=None, header_token=None, identify_method=IdentifyMethod.id, request_fields=(),
        whitelist_enabled=False, whitelist_source="manual", whitelist_domains=(), whitelist_api_url=None,
        identity_source="signed_token", signed_token=SignedToken(**signed_token),
    )


async def test_oversized_and_garbage_tokens_are_malformed() -> None:
    bot = uuid4()
    for token in ("x" * (MAX_TOKEN_CHARS + 1), "a.b", "....", "%%%.%%%.%%%", b64(b"[" * 3000) + ".e30.", ""):
        result = await check_token(token, _config(), bot, jwks=None)  # type: ignore[arg-type]
        assert result.failure is not None and result.code == "malformed_token", token[:20]


async def test_an_invalid_identifier_claim_is_named() -> None:
    from pydantic import SecretStr

    from shared.auth_config import TokenSecret

    bot = uuid4()
    config = AuthConfig(**{**_config().__dict__, "identify_method": IdentifyMethod.phone_number,
                           "signed_token": SignedToken(secret=TokenSecret("k", SecretStr("s" * 40)))})
    token = jwt.encode(claims(str(bot), phone_number="not a phone"), "s" * 40, algorithm="HS256", headers={"kid": "k"})
    result = await check_token(token, config, bot, jwks=None)  # type: ignore[arg-type]
    assert result.code == "invalid_claim" and "claim 'phone_number'" in result.failure.detail  # type: ignore[union-attr]


async def test_the_view_says_when_a_signed_tokens_identity_expires(stack: Stack, bots: Bots,
                                                                    customer_api: FakeCustomerAPI) -> None:
    """identity_expires_at is the token's exp: the widget asks the host page for a fresh token before then. An
    Authentication URL's identity has none."""
    payload = claims(bots.hs)
    outcome = await verify_once(stack, bots.hs, access_token=bots.hs_token(payload))
    assert outcome["status"] == "verified", outcome
    assert datetime.fromisoformat(outcome["identity_expires_at"]).timestamp() == payload["exp"], outcome

    auth_url_bot = await create_bot(stack.http, stack.gateway.url, enabled=True,
                                    auth_url=customer_api.endpoint(verified(id="no-expiry")))
    outcome = await verify_once(stack, auth_url_bot, access_token="opaque")
    assert (outcome["status"], outcome["identity_expires_at"]) == ("verified", None), outcome
