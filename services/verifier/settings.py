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
