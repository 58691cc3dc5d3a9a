"""Header tokens are encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256), and visitors' access
tokens on the broker (``widget.opened`` events, sealed by shared/events.py); tokens that need only be
recognised (widget tokens, visitors' access tokens in the grace cache) are kept as keyed hashes.

``DOORMAN_SECRET_KEY`` holds one key, or several separated by commas: the first
encrypts, every one decrypts (MultiFernet), which is how keys are rotated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["Secrets", "InvalidToken", "validate_keys"]


def _fernets(keys: str) -> list[Fernet]:
    parts = [k.strip() for k in keys.split(",") if k.strip()]
    if not parts:
        raise ValueError("no encryption key given")
    try:
        return [Fernet(k.encode()) for k in parts]
    except (ValueError, TypeError):
        raise ValueError(
            "DOORMAN_SECRET_KEY must be Fernet keys (32 url-safe base64-encoded bytes), comma-separated"
        ) from None


def validate_keys(keys: str) -> None:
    _fernets(keys)


def _hash_key(fernet_key: str) -> bytes:
    """A key of its own for keyed hashes, derived from an encryption key (never the key itself)."""
    material = base64.urlsafe_b64decode(fernet_key.encode())
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"doorman keyed hash v1").derive(material)


class Secrets:
    def __init__(self, keys: str) -> None:
        self._fernet = MultiFernet(_fernets(keys))
        self._hash_keys = [_hash_key(k.strip()) for k in keys.split(",") if k.strip()]

    def keyed_hash(self, value: str) -> bytes:
        """HMAC-SHA256 of ``value`` under the first key: what is stored in place of a token."""
        return self.keyed_hashes(value)[0]

    def keyed_hashes(self, value: str) -> list[bytes]:
        """The hash under every key, the first key's first: a stored hash matches one of them, also
        while keys rotate."""
        return [hmac.new(key, value.encode(), hashlib.sha256).digest() for key in self._hash_keys]

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, ciphertext: bytes) -> str:
        return self._fernet.decrypt(ciphertext).decode()

    def rotate(self, ciphertext: bytes) -> bytes:
        """Re-encrypt under the first key (the token's timestamp is kept)."""
        return self._fernet.rotate(ciphertext)

    def __repr__(self) -> str:
        return "Secrets(<redacted>)"
