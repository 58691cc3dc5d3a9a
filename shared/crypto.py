"""Header tokens are encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256).

``DOORMAN_SECRET_KEY`` holds one key, or several separated by commas: the first
encrypts, every one decrypts (MultiFernet), which is how keys are rotated.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

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


class Secrets:
    def __init__(self, keys: str) -> None:
        self._fernet = MultiFernet(_fernets(keys))

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, ciphertext: bytes) -> str:
        return self._fernet.decrypt(ciphertext).decode()

    def rotate(self, ciphertext: bytes) -> bytes:
        """Re-encrypt under the first key (the token's timestamp is kept)."""
        return self._fernet.rotate(ciphertext)

    def __repr__(self) -> str:
        return "Secrets(<redacted>)"
