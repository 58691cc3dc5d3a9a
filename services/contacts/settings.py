from __future__ import annotations

from pydantic import Field

from shared.settings import SecretKeySettings


class ContactsSettings(SecretKeySettings):  # the key hashes erased contacts' keys (shared/tombstones.py)
    contacts_port: int = Field(8082, ge=0, le=65535, description="/healthz, /readyz; 0 picks a free port")
    contacts_batch_size: int = Field(
        100, ge=1, le=5000, description="most events written in one transaction (what waits while one commits)",
    )
    contacts_flushes: int = Field(1, ge=1, le=16, description="batches being written at once (each its own transaction)")
    session_retention_hours: float = Field(
        168.0, gt=0, description="sessions (the activity log) older than this are deleted",
    )
