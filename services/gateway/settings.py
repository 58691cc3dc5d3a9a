from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr, model_validator

from services.gateway.widget.ratelimit import check_limit, storage_uri
from shared.panel import MAX_PATIENCE_SECONDS
from shared.settings import PLACEHOLDER, DestinationSettings, SecretKeySettings


def _storage(value: SecretStr) -> SecretStr:
    storage_uri(value.get_secret_value())
    return value


class GatewaySettings(SecretKeySettings, DestinationSettings):
    """The gateway: the widget API, the admin API and pages."""

    gateway_host: str = Field("127.0.0.1", description="the address the gateway listens on (0.0.0.0 in containers)")
    gateway_port: int = Field(8080, ge=0, le=65535, description="the gateway's port: the APIs, pages, /healthz, /readyz, /metrics")
    gateway_backlog: int = Field(
        4096, ge=16, le=65535,
        description="pending TCP connections the kernel queues (capped by net.core.somaxconn): a burst of widget "
                    "opens waits to be answered, or refused as busy, instead of retrying its SYN after seconds",
    )
    admin_token: SecretStr = Field(SecretStr(PLACEHOLDER), description=(
        "the operator's bearer token for the admin API and page (compared in constant time); at least 16 characters"))
    session_deadline_seconds: float = Field(15.0, gt=0, le=300, description="a visitor waits at most this long")
    sse_poll_seconds: float = Field(2.0, gt=0, description="safety re-read of a waited-on session")
    admission_target_seconds: float = Field(
        0.3, gt=0, le=60,
        description="refuse opens as busy while the quickest recent open waited in Doorman longer than this",
    )
    admission_max_in_flight: int = Field(20_000, ge=1, description="opens of this replica without an outcome, at most")
    open_batch_max: int = Field(256, ge=1, le=5000, description="most opens stored and published in one round trip")
    open_flushes: int = Field(2, ge=1, le=64, description="open batches in flight at once")
    gateway_sweepers: bool = Field(True, description=(
        "publish here the widget opens held in the database while the broker was away; every replica may (rows are "
        "locked with SKIP LOCKED), at least one of a deployment must"))
    widget_body_max_bytes: int = Field(16 * 1024, description="the largest widget API body (413 beyond)")
    # Many visitors can share one address (a carrier's NAT puts thousands of phones behind a few IPv4
    # addresses): the per-client limit stops one runaway script, the per-bot one protects a business,
    # and admission control the pipeline. 600 a minute is 10 opens a second from one address.
    rate_limit_opens_per_client: Annotated[str, AfterValidator(check_limit)] = Field("600/minute", description=(
        "widget opens per client address (a `limits` rate string); 429 with Retry-After beyond"))
    rate_limit_opens_per_bot: Annotated[str, AfterValidator(check_limit)] = Field("6000/minute", description=(
        "widget opens per bot, whatever the address"))
    rate_limit_reads_per_client: Annotated[str, AfterValidator(check_limit)] = Field("600/minute", description=(
        "widget session reads, streams, forms and logouts per client address"))
    rate_limit_storage: Annotated[SecretStr, AfterValidator(_storage)] = Field(SecretStr("memory://"), description=(
        "where rate-limit counters live: memory:// (each replica its own, so N replicas allow N times each limit) or "
        "redis://[:password@]host:port/db, rediss://... (one budget for every replica); secret, as a Redis URL may "
        "hold a password"))
    verifier_answer_seconds: float = Field(
        10.0, gt=0, le=MAX_PATIENCE_SECONDS,
        description=(
            "how long the Testing panel (and the Discover action) waits for a verifier to run it before answering 503 "
            "verifier_unavailable"),
    )
    trust_forwarded_for: bool = Field(False, description="behind a proxy: take the client address from X-Forwarded-For")
    demo_api_url: str | None = Field(None, description=(
        "set by `doorman up`: the gateway's /demo redirects to the demo customer API's shop page (which embeds the widget)"))

    @model_validator(mode="after")
    def _admin_token_set(self) -> "GatewaySettings":
        token = self.admin_token.get_secret_value()
        if token == PLACEHOLDER and not self.development:
            raise ValueError("DOORMAN_ADMIN_TOKEN is not set")
        if token != PLACEHOLDER and len(token) < 16:
            raise ValueError("DOORMAN_ADMIN_TOKEN must be at least 16 characters")
        return self
