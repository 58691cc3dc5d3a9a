"""A tombstone's key hash: the contact's whole key, nothing readable, and still matched across a
``DOORMAN_SECRET_KEY`` rotation while the old key stays listed. A form is matched against every key it
may be filed under, so its contact's tombstone holds whatever the bot's identify method."""

from __future__ import annotations

from uuid import uuid4

from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st

from services.contacts.repository import collected_key, collected_keys
from shared.events import ContactCollected
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


@given(email=st.none() | st.emails(), phone=st.none() | st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True),
       method=st.sampled_from([None, "id", "email", "phone_number"]))
def test_a_form_is_filed_under_one_of_the_keys_its_tombstone_check_covers(
        email: str | None, phone: str | None, method: str | None) -> None:
    form = ContactCollected(correlation_id="c", session_id="s", bot_id=BOT, email=email, phone_number=phone)
    filed = collected_key(form, method)
    assert filed in collected_keys(form).items()  # whatever the method, the tombstone check covers where it went
    if method in collected_keys(form):
        assert filed[0] == method  # the bot's identify method first, when the form has that field
