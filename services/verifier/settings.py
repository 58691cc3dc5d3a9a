from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import Delays, OutboundSettings, SecretKeySettings


class VerifierRetrySettings(BaseSettings):
    """The verifier's two stages' retry policies (`doorman queues` reads them too: the delays name delay queues)."""

    model_config = SettingsConfigDict(env_prefix="DOORMAN_", extra="ignore", frozen=True)

    # A visitor is waiting: short delays, and another attempt only if it can end before the open's deadline.
    verifier_retry_delays: Delays = Field((0.25, 1.0, 2.0), description=(
        "seconds between attempts at a widget open whose business blinked, comma-separated (the last repeats); another "
        "attempt only while it can end before the visitor's deadline"))
    verifier_max_attempts: int = Field(5, ge=1, le=100, description="attempts at a widget open, the first included")
    # Nobody waits for a webhook, and the business's endpoint may be down for hours: 5 s, 30 s, 2 min, ... then
    # every 4 h; the 13th attempt comes about 23.7 h after the first, then the delivery is dead (a day).
    webhook_retry_delays: Delays = Field((5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0), description=(
        "seconds between attempts at a webhook delivery, comma-separated (each at most 86400, the last repeats); about "
        "a day of back-off"))
    webhook_max_attempts: int = Field(13, ge=1, le=1000, description="attempts before a delivery is dead")


class VerifierSettings(SecretKeySettings, OutboundSettings, VerifierRetrySettings):
    """The verifier: widget opens, webhook deliveries, the Testing panel."""

    verifier_port: int = Field(8081, ge=0, le=65535, description="/healthz, /readyz; 0 picks a free port")
    whitelist_ttl_seconds: float = Field(300.0, ge=5, description="API-sourced whitelists are refreshed before this")
    verifier_prefetch: int = Field(
        128, ge=1, le=10_000, description="messages (each one open or a batch of them) handled at once per replica",
    )
    verifier_concurrency: int = Field(
        256, ge=1, le=100_000, description=(
            "widget opens decided at once per replica (the rest wait their turn, in order); an open picked up after "
            "its deadline ends at once without a call"),
    )
    verifier_emit_batch: int = Field(256, ge=1, le=5000, description="most outcomes published in one message")
    verifier_emit_flushes: int = Field(1, ge=1, le=64, description="outcome messages awaiting the broker's confirm at once")

    # The circuit breaker per bot and business host (services/verifier/breaker.py), per replica. It opens when, in
    # the last `breaker_window_seconds`, at least `breaker_min_failures` of one bot's identity calls to one host
    # failed as unavailable (timeout, connection error, HTTP 408/429/5xx) and they were at least
    # `breaker_failure_ratio` of that bot's calls to the host; while open, that bot's opens end `auth_unavailable`
    # at once with no call (other bots on the host keep calling); after `breaker_open_seconds` one of its calls
    # probes the host (half-open): success closes it, failure opens it again.
    breaker_window_seconds: float = Field(30.0, ge=1, le=600, description="how far back the breaker counts calls")
    breaker_min_failures: int = Field(
        20, ge=1, le=100_000,
        description="a bot's failed calls to one host within the window before its circuit may open",
    )
    breaker_failure_ratio: float = Field(
        0.5, gt=0, le=1,
        description="share of a bot's calls to a host in the window that must have failed to open its circuit",
    )
    breaker_open_seconds: float = Field(
        15.0, ge=0.1, le=3600, description="how long an open circuit refuses calls before one probe (half-open)",
    )

    # Webhook deliveries (services/verifier/webhooks.py): their own stage, channel and outbound client, so a slow
    # endpoint never takes capacity from widget opens.
    webhook_prefetch: int = Field(32, ge=1, le=10_000, description=(
        "webhook deliveries taken from the broker at once per replica (their own channel: never the widget opens' capacity)"))
    webhook_concurrency: int = Field(32, ge=1, le=10_000, description="webhook deliveries in flight at once per replica")
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=60, description="how long a webhook endpoint may take to answer")
    webhook_max_connections_per_host: int = Field(
        8, ge=1, le=10_000, description=(
            "deliveries in flight to one host (their own outbound client); more wait their turn, up to the timeout, "
            "then are retried later"),
    )

    # The Testing panel (services/verifier/testing.py), run for the gateways: its own queue, channel and client.
    testing_concurrency: int = Field(8, ge=1, le=1000, description=(
        "Testing panel runs at once per replica (their own channel and prefetch), also their calls in flight per host"))
