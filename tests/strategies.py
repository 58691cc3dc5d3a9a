"""Hypothesis strategies for what others send the verifier: JSON as anyone may write it (NaN, Infinity,
huge numbers, nesting, unicode), the business's answers to the identity call, and signed tokens (JWTs
made by hand, as an attacker would: PyJWT refuses to write some of these)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from hypothesis import strategies as st

from services.verifier.tokens import MAX_NUMERIC_DATE

HUGE = (10**400, -(10**400), 2**63, 1e308)
SCALARS = (st.none() | st.booleans() | st.floats() | st.text(max_size=30)
           | st.integers(min_value=-(10**30), max_value=10**30) | st.sampled_from(HUGE))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                    max_leaves=15)


def encoded(document: Any) -> bytes:
    return json.dumps(document).encode()  # NaN and Infinity as Python writes them: not JSON


# -- the business's answer to the identity call ----------------------------------------------------

PROFILE_FIELDS = ("id", "name", "email", "phone_number", "country_code", "avatar", "label", "metadata",
                  "external_workspace_id")
PROFILES = st.fixed_dictionaries({}, optional={
    field: st.sampled_from(["7", " Ada@Example.com ", "0912345678", "+84", "", "  "]) | JSON for field in PROFILE_FIELDS
})
DOCUMENTS = st.fixed_dictionaries({}, optional={"status": st.sampled_from([True, False]) | JSON,
                                                "message": JSON, "data": PROFILES | JSON}) | JSON
BODIES = (st.binary(max_size=200) | DOCUMENTS.map(encoded)
          | st.tuples(st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe"]), DOCUMENTS.map(encoded)).map(b"".join))


# -- signed identity tokens --------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_token(header: Any, claims: Any, key: str | None) -> str:
    """A JWT as anyone can write one: JSON (NaN and Infinity allowed), base64url, HMAC-SHA256 with ``key``
    (None: a signature that is not one)."""
    signing_input = f"{b64(encoded(header))}.{b64(encoded(claims))}"
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest() if key else b"not a signature"
    return f"{signing_input}.{b64(signature)}"


def good_times() -> dict[str, int]:
    now = int(time.time())
    return {"iat": now - 10, "exp": now + 300}


# A time claim: mostly plausible, else anything (NaN, Infinity, huge, a string, an object...).
TIMES = (st.integers(int(time.time()) - 4000, int(time.time()) + 4000)
         | st.sampled_from([float("nan"), float("inf"), -float("inf"), 0, MAX_NUMERIC_DATE, *HUGE]) | JSON)
CLAIM_NAMES = ("exp", "nbf", "iat", "aud", "iss", "sub", *PROFILE_FIELDS)


@st.composite
def claims(draw: st.DrawFn, aud: str) -> dict[str, Any]:
    """Plausible claims for audience ``aud``, with some of them replaced by anything, some left out."""
    base: dict[str, Any] = {"sub": "visitor-1", "aud": aud, **good_times(), "email": "v@example.com"}
    for name in draw(st.lists(st.sampled_from(CLAIM_NAMES), max_size=5, unique=True)):
        base[name] = draw(TIMES if name in ("exp", "nbf", "iat") else JSON)
    for name in draw(st.lists(st.sampled_from(CLAIM_NAMES), max_size=2, unique=True)):
        base.pop(name, None)
    return base


def headers(kid: str) -> st.SearchStrategy[dict[str, Any]]:
    """JOSE headers: mostly HS256 with ``kid``, else any ``alg`` and ``kid``, and extra members."""
    return st.fixed_dictionaries(
        {"alg": st.sampled_from(["HS256", "RS256", "none", "hs256"]) | JSON, "kid": st.just(kid) | JSON},
        optional={"typ": JSON, "crit": JSON, "x5u": JSON},
    )
