from __future__ import annotations

from pydantic import Field

from shared.settings import OutboundSettings, SecretKeySettings


class VerifierSettings(SecretKeySettings, OutboundSettings):
    verifier_port: int = Field(8081, ge=0, le=65535, description="/healthz, /readyz; 0 picks a free port")
    whitelist_ttl_seconds: float = Field(300.0, ge=5, description="API-sourced whitelists are refreshed before this")
    verifier_prefetch: int = Field(
        128, ge=1, le=10_000, description="messages (each one open or a batch of them) handled at once per replica",
    )
    verifier_concurrency: int = Field(
        256, ge=1, le=100_000, description="widget opens decided at once per replica (the rest wait their turn in order)",
    )
    verifier_emit_batch: int = Field(256, ge=1, le=5000, description="most outcomes published in one message")
    verifier_emit_flushes: int = Field(1, ge=1, le=64, description="outcome messages awaiting the broker's confirm at once")

    # The circuit breaker per business host (services/verifier/breaker.py), per replica. It opens when, in the
    # last `breaker_window_seconds`, at least `breaker_min_failures` identity calls to one host failed as
    # unavailable (timeout, connection error, HTTP 408/429/5xx) and they were at least `breaker_failure_ratio`
    # of that host's calls; while open, opens end `auth_unavailable` at once with no call; after
    # `breaker_open_seconds` one call probes the host (half-open): success closes it, failure opens it again.
    breaker_window_seconds: float = Field(30.0, ge=1, le=600, description="how far back the breaker counts calls")
    breaker_min_failures: int = Field(
        20, ge=1, le=100_000, description="failed calls to one host within the window before its circuit may open",
    )
    breaker_failure_ratio: float = Field(
        0.5, gt=0, le=1, description="share of a host's calls in the window that must have failed to open its circuit",
    )
    breaker_open_seconds: float = Field(
        15.0, ge=0.1, le=3600, description="how long an open circuit refuses calls before one probe (half-open)",
    )
