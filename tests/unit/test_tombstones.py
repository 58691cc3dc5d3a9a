"""A tombstone's key hash: the contact's whole key, nothing readable, and still matched across a
``DOORMAN_SECRET_KEY`` rotation while the old key stays listed."""

from __future__ import annotations

from uuid import uuid4

from cryptography.fernet import Fernet

from shared.tombstones import key_hash, key_hashes
from shared.crypto import Secrets

BOT = uuid4()


def test_the_hash_is_of_the_whole_key_and_holds_nothing_readable() -> None:
    secrets = Secrets(Fernet.generate_key().decode())
    key = (BOT, "email", "ann@example.com", None)
    stored = key_hash(secrets, key)
    assert len(stored) == 32 and b"ann" not in stored
    assert stored == key_hash(secrets, (BOT, "email", "ann@example.com", None))
    others = [(uuid4(), "email", "ann@example.com", None), (BOT, "id", "ann@example.com", None),
              (BOT, "email", "ann@example.org", None), (BOT, "email", "ann@example.com", "ws-1"),
              (BOT, "email", "ann@example.com", "")]
    assert stored not in {key_hash(secrets, other) for other in others}


def test_a_tombstone_made_before_a_key_rotation_still_matches() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    key = (BOT, "id", "42", None)
    stored = key_hash(Secrets(old), key)
    assert stored in key_hashes(Secrets(f"{new},{old}"), key)
    assert stored not in key_hashes(Secrets(new), key)  # once the old key is dropped, it no longer matches


def test_without_secrets_nothing_matches() -> None:
    assert key_hashes(None, (BOT, "id", "42", None)) == []
