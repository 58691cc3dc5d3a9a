"""The admin page's Discover action between the gateway, which asks, and the verifier, which reads an OpenID
Provider's discovery document (:mod:`shared.rpc`), asked as the Testing panel is (:mod:`shared.panel`).

The gateway calls no one (it holds no outbound client): it sends the issuer to ``P.verifier.discover``; a verifier
reads ``{issuer}/.well-known/openid-configuration`` through its guarded outbound client
(services/verifier/discover.py) and answers what it found (:class:`DiscoverResult`), which ``POST
/v1/bots/{bot_id}/custom-auth/oidc/discover`` returns. Nothing here is secret: the document is public, and no
client secret is sent or read.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from aio_pika.abc import AbstractChannel, AbstractQueue
from pydantic import BaseModel, ConfigDict, Field

from shared.messaging import Topology
from shared.panel import MAX_PATIENCE_SECONDS, declare_request_queue

DISCOVER_QUEUE = "verifier.discover"
REQUEST_TYPE = "discover.requested"
DOCUMENT_SHOWN = 16384  # characters of the document echoed back


async def declare_queue(channel: AbstractChannel, topology: Topology) -> AbstractQueue:
    """The request queue, declared by each verifier as the Testing panel's is."""
    return await declare_request_queue(channel, topology, DISCOVER_QUEUE)


class DiscoverRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bot_id: UUID  # whose call it is: the bot's share of the provider host's call slots
    issuer: str
    patience_seconds: float = Field(gt=0, le=MAX_PATIENCE_SECONDS)


# --- the answer: what POST /v1/bots/{bot_id}/custom-auth/oidc/discover returns -----------------------

DiscoverFailure = Literal[
    "blocked", "unreachable", "timeout", "unreadable", "busy", "http_status", "not_json", "issuer_mismatch",
    "invalid_document", "no_endpoint",
]


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProviderSummary(_View):
    """What the document publishes that matters to Doorman (a value of the wrong type, or too long, shows as absent)."""

    issuer: str | None = Field(description="the issuer the document names, exactly as it spells it")
    userinfo_endpoint: str | None
    introspection_endpoint: str | None = Field(description="null: the provider publishes none (use userinfo)")
    jwks_uri: str | None
    introspection_auth_methods: list[str] = Field(description=(
        "how the introspection endpoint takes client credentials: its own list, else the token endpoint's, else "
        "`client_secret_basic` (the default when none is published)"))
    signing_algs: list[str] = Field(description="`id_token_signing_alg_values_supported`")
    end_session_endpoint: str | None
    backchannel_logout_supported: bool


class MethodCheck(_View):
    usable: bool = Field(description="whether `oidc.method` set to this would work with this document")
    why: str = Field(description="in plain words")


class DiscoverResult(_View):
    """The provider's discovery document as Doorman read it, and what it means for the bot's settings. A failure
    is a diagnosis (``ok: false``, ``failure`` and ``verdict``), not an error status."""

    ok: bool = Field(description=(
        "the document was read, names exactly this issuer, and userinfo or introspection can be used with it: the "
        "issuer can be saved"))
    verdict: str = Field(description="what was found, or why it cannot be used, in plain words")
    failure: DiscoverFailure | None = Field(description=(
        "null when `ok`; `blocked`: an address Doorman will not call; `unreachable`, `timeout`, `busy`: no answer; "
        "`unreadable`: too large or in an encoding Doorman does not read; `http_status`: not 2xx; `not_json`: not "
        "a JSON object; `issuer_mismatch`: the document names another issuer; `invalid_document`: a URL in it "
        "is not an http(s) URL; `no_endpoint`: neither `oidc.method` would work with it"))
    detail: str | None = Field(description="the precise reason, as the activity log would say it; null when `ok`")
    issuer: str = Field(description="the issuer asked about")
    issuer_matches: bool = Field(description="the document's `issuer` is exactly this one (trailing slash included)")
    document_url: str
    http_status: int | None = Field(description="null when no answer arrived")
    elapsed_ms: float
    provider: ProviderSummary | None = Field(description="null unless a 2xx JSON object was read")
    userinfo: MethodCheck
    introspection: MethodCheck
    document: str | None = Field(description=f"the answer's body, its first {DOCUMENT_SHOWN} characters")
    document_truncated: bool
