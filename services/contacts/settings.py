from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import Delays, SecretKeySettings


class ContactsRetrySettings(BaseSettings):
    """The contacts stage's retry policy (`doorman queues` reads it too: the delays name delay queues)."""

    model_config = SettingsConfigDict(env_prefix="DOORMAN_", extra="ignore", frozen=True)

    # A contact must not be lost: keep trying through a database restart (about a minute).
    contacts_retry_delays: Delays = Field((0.25, 1.0, 4.0, 15.0), description=(
        "seconds between attempts at recording an outcome, comma-separated (the last repeats)"))
    contacts_max_attempts: int = Field(8, ge=1, le=1000, description="attempts at recording an outcome, the first included")


class ContactsSettings(SecretKeySettings, ContactsRetrySettings):  # the key hashes erased contacts' keys (shared/tombstones.py)
    """The contacts service: contacts, session outcomes, the sweepers."""

    contacts_port: int = Field(8082, ge=0, le=65535, description="/healthz, /readyz; 0 picks a free port")
    contacts_batch_size: int = Field(
        100, ge=1, le=5000, description="most events written in one transaction (what waits while one commits)",
    )
    contacts_flushes: int = Field(1, ge=1, le=16, description="batches being written at once (each its own transaction)")
    contacts_sweepers: bool = Field(True, description=(
        "run the sweepers here (overdue sessions, webhook deliveries not yet published, retention); every replica may "
        "(rows are locked with SKIP LOCKED), at least one of a deployment must"))
    session_retention_hours: float = Field(
        168.0, gt=0, description="sessions (the activity log) older than this are deleted",
    )
