"""Typed, fail-fast settings: one pydantic-settings class per service over this base."""

from __future__ import annotations

import base64
import hashlib
from typing import Annotated

from pydantic import BeforeValidator, Field, SecretStr, ValidationInfo, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.crypto import Secrets, validate_keys
from shared.destinations import Destinations
from shared.messaging import broker_urls

PLACEHOLDER = "change-me"


def _comma_separated(value: object, info: ValidationInfo) -> object:
    """``"0.25,1,2"`` (as an environment variable says it) -> ``(0.25, 1.0, 2.0)``; a sequence as it is."""
    if not isinstance(value, str):
        return value
    try:
        return tuple(float(d) for d in value.split(","))
    except ValueError:
        raise ValueError(f"DOORMAN_{(info.field_name or '').upper()}: seconds, comma-separated, e.g. 0.25,1,2") from None


# A stage's back-off (shared.stages.RetryPolicy.delays): seconds between attempts, the last repeating. Each delay
# names a delay queue (``<queue>.retry.<ms>``), so the services and `doorman queues` read the same setting.
Delays = Annotated[
    tuple[Annotated[float, Field(gt=0, le=86400, allow_inf_nan=False)], ...],
    NoDecode, BeforeValidator(_comma_separated), Field(min_length=1),
]


class DoormanSettings(BaseSettings):
    """Settings every service reads. Environment variables are prefixed ``DOORMAN_``."""

    # A refused setting's error never quotes the input: it holds the broker's and the database's passwords.
    model_config = SettingsConfigDict(env_prefix="DOORMAN_", extra="ignore", frozen=True, hide_input_in_errors=True)

    environment: str = Field("production", description=(
        "`development` allows missing secrets (a fixed development key, no admin token); never in production"))
    amqp_url: SecretStr = Field(
        SecretStr("amqp://guest:guest@127.0.0.1:5672/"),
        description=(
            "the broker; for a RabbitMQ cluster every node, comma-separated (amqp://u:p@h1:5672/v,amqp://u:p@h2:5672/v): "
            "each process connects to one and fails over to the next. A bad address stops the process naming its "
            "position, never the address"),
    )
    amqp_prefix: str = Field(
        "doorman", pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="prefix of every exchange and queue; lets environments share a broker",
    )
    rabbitmq_management_url: str | None = Field(
        None, description=(
            "the RabbitMQ management API, for `doorman queues` and `doorman dlq ttl`; unset: http://<host of the first "
            "AMQP address>:15672 with the AMQP credentials. With a cluster, a name that reaches any node"),
    )
    database_url: SecretStr = Field(SecretStr("postgresql://postgres@127.0.0.1:5432/doorman"), description=(
        "the PostgreSQL database (15 or newer); `doorman migrate` creates it if missing"))
    db_pool_min: int = Field(1, ge=0, description="database connections each process keeps open")
    db_pool_max: int = Field(10, ge=1, description=(
        "database connections per process, at most: size PostgreSQL's max_connections for every replica"))
    log_level: str = Field("info", description="debug, info, warning or error")
    log_json: bool | None = Field(None, description="one JSON object per log line; unset: JSON unless stderr is a terminal")
    health_host: str = Field("127.0.0.1", description="where workers serve /healthz, /readyz, /metrics (0.0.0.0 in pods)")
    tracing: bool = Field(False, description="OpenTelemetry spans (export with OTEL_EXPORTER_OTLP_ENDPOINT)")
    gc_young_threshold: int = Field(50_000, ge=0, le=10_000_000, description=(
        "allocations between two young collections of Python's cyclic garbage collector (Python's default: 700), "
        "what exists once the service has started being frozen out of every collection; 0 keeps Python's defaults"))
    dead_letter_ttl_days: float = Field(
        14.0, gt=0, le=49, description=(
            "dead letters (<queue>.dlq) expire after this many days: a broker policy (`doorman dlq ttl`, "
            "deploy/rabbitmq/definitions.json); at most 49, RabbitMQ's largest TTL being 2^32-1 ms"),
    )

    @model_validator(mode="after")
    def _check_amqp_urls(self) -> "DoormanSettings":
        self.amqp_urls()  # the error names the bad address's position, never the address
        return self

    def amqp_urls(self) -> list[str]:
        """Every broker address of ``DOORMAN_AMQP_URL`` (several: the nodes of a cluster)."""
        return broker_urls(self.amqp_url.get_secret_value())

    @property
    def development(self) -> bool:
        return self.environment == "development"


class SecretKeySettings(DoormanSettings):
    """Services that read or write header tokens need the encryption key(s)."""

    secret_key: SecretStr = Field(SecretStr(PLACEHOLDER), description=(
        "Fernet key(s), comma-separated: the first encrypts, every one decrypts and matches keyed hashes. The same list "
        "on the gateway, the verifier and the contacts service (it matches erased contacts' tombstones); "
        "`doorman secrets rotate` re-encrypts with the first. Each of the three refuses to start without it outside "
        "development"))

    @model_validator(mode="after")
    def _refuse_placeholder(self) -> "SecretKeySettings":
        if self.secret_key.get_secret_value() == PLACEHOLDER:
            if not self.development:
                raise ValueError(
                    "DOORMAN_SECRET_KEY is not set: generate one with "
                    "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
                )
        else:
            validate_keys(self.secret_key.get_secret_value())
        return self

    def secrets(self) -> Secrets:
        keys = self.secret_key.get_secret_value()
        if keys == PLACEHOLDER:  # development only, enforced above
            keys = base64.urlsafe_b64encode(hashlib.sha256(b"doorman-development").digest()).decode()
        return Secrets(keys)


class DestinationSettings(BaseSettings):
    """Which URLs Doorman calls (the verifier, when calling; the gateway, when settings are saved)."""

    model_config = SettingsConfigDict(env_prefix="DOORMAN_", extra="ignore", frozen=True)

    allow_private_networks: bool = Field(False, description=(
        "allow outbound calls to loopback and private addresses (local runs and tests; never in production)"))
    outbound_ports: str = Field(
        "80,443", description="ports outbound calls may use: comma-separated (e.g. 80,443,8443), or * for any",
    )

    @model_validator(mode="after")
    def _check_outbound_ports(self) -> "DestinationSettings":
        self.parse_ports(self.outbound_ports)
        return self

    def allowed_outbound_ports(self) -> frozenset[int] | None:
        """The ports outbound calls may use; None for any (pass as ``outbound_client(ports=...)``)."""
        return self.parse_ports(self.outbound_ports)

    def destinations(self) -> Destinations:
        return Destinations(self.allow_private_networks, self.allowed_outbound_ports())

    @staticmethod
    def parse_ports(value: str) -> frozenset[int] | None:
        """``"80,443"`` -> frozenset({80, 443}); ``"*"`` -> None (any); anything else is a ValueError."""
        if value.strip() == "*":
            return None
        ports: set[int] = set()
        for item in value.split(","):
            item = item.strip()
            if not (item.isascii() and item.isdigit() and 1 <= int(item) <= 65535):
                raise ValueError(f"DOORMAN_OUTBOUND_PORTS: {item!r} is not a port (1-65535); use e.g. 80,443 or *")
            ports.add(int(item))
        return frozenset(ports)


class OutboundSettings(DestinationSettings):
    """How Doorman calls a business's Authentication URL (the verifier)."""

    auth_timeout_seconds: float = Field(5.0, gt=0, le=30, description=(
        "the whole identity call (and a whitelist API or JWKS fetch), connecting included"))
    auth_max_body_bytes: int = Field(64 * 1024, ge=1024, le=1024 * 1024, description=(
        "the longest answer read from a business (larger: invalid_response)"))
    auth_max_connections_per_host: int = Field(
        32, ge=1, description=(
            "identity, whitelist and JWKS calls in flight to one host at once, per verifier replica, shared fairly "
            "between the bots calling it (a bot alone may use them all; once others call, each gets at least "
            "max(1, cap // bots calling))"),
    )
    auth_host_wait_seconds: float = Field(0.5, ge=0, le=10, description=(
        "how long a call waits for a free slot to its host before failing as auth_unavailable (not retried, never "
        "covered by the outage grace, not counted by the breaker); a bot holding fewer than its share of the host's "
        "slots waits up to auth_timeout_seconds longer, for another bot's call to end"))
