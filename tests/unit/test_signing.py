"""Signed identity calls: what Doorman sends and what a business checks."""

from __future__ import annotations

import pytest

from shared.signing import DELIVERY, SIGNATURE, TIMESTAMP, new_secret, sign, verify

BODY = b'{"access_token":"t","user_id":"42"}'


def test_a_signed_call_verifies_with_the_secret() -> None:
    secret = new_secret()
    headers = sign(BODY, [secret], now=1_000_000)
    assert set(headers) == {TIMESTAMP, DELIVERY, SIGNATURE} and headers[SIGNATURE].startswith("v1=")
    assert verify(secret, headers, BODY, now=1_000_010)


@pytest.mark.parametrize("tamper", ["body", "timestamp", "delivery", "secret", "stale", "missing"])
def test_forged_or_replayed_calls_fail(tamper: str) -> None:
    secret = new_secret()
    headers = sign(BODY, [secret], now=1_000_000)
    body, now, key = BODY, 1_000_010, secret
    if tamper == "body":
        body = BODY.replace(b"42", b"43")
    elif tamper == "timestamp":
        headers[TIMESTAMP] = "1000001"
    elif tamper == "delivery":
        headers[DELIVERY] = "another-delivery"
    elif tamper == "secret":
        key = new_secret()
    elif tamper == "stale":
        now = 1_000_000 + 301  # an old capture replayed later
    elif tamper == "missing":
        del headers[SIGNATURE]
    assert not verify(key, headers, body, now=now)


def test_deliveries_are_unique_so_a_replay_can_be_spotted() -> None:
    secret = new_secret()
    assert len({sign(BODY, [secret])[DELIVERY] for _ in range(100)}) == 100


def test_during_rotation_both_secrets_verify() -> None:
    new, old = new_secret(), new_secret()
    headers = sign(BODY, [new, old], now=1_000_000)
    assert headers[SIGNATURE].count("v1=") == 2
    assert verify(new, headers, BODY, now=1_000_000) and verify(old, headers, BODY, now=1_000_000)


def test_no_secret_no_headers() -> None:
    assert sign(BODY, []) == {}


def test_keyed_hashes_are_stable_keyed_and_survive_key_rotation() -> None:
    """Tokens kept only as keyed hashes: the same value and key give the same hash, another key another
    hash, and after a rotation (new key first) a hash stored under the old key still matches."""
    from cryptography.fernet import Fernet

    from shared.crypto import Secrets

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = Secrets(old)
    stored = before.keyed_hash("dmw_token")
    assert stored == Secrets(old).keyed_hash("dmw_token") and len(stored) == 32
    assert stored != before.keyed_hash("dmw_other") and b"dmw_token" not in stored
    after = Secrets(f"{new},{old}")
    assert after.keyed_hash("dmw_token") != stored  # new hashes under the new key...
    assert stored in after.keyed_hashes("dmw_token")  # ...old ones still match
