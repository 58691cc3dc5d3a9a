"""The Testing panel between the gateway, which asks, and the verifier, which runs it (:mod:`shared.rpc`).

The gateway calls no business (it holds no outbound client): it sends the sample visitor to
``P.verifier.testing`` and shows the verifier's :class:`TestResult` as ``POST
/v1/bots/{bot_id}/custom-auth/test`` answers it. The verifier loads the bot's settings itself and does
a dry run of a widget open (services/verifier/testing.py). The sample visitor has a widget open's
shape, its access token sealed with the key ring as a widget open's is: the broker never holds it readable.
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from aio_pika.abc import AbstractChannel, AbstractQueue
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from shared.crypto import Secrets
from shared.events import KEY_RING, FallbackReason, IdentifyMethod, Identity, Visitor
from shared.messaging import Topology

TESTING_QUEUE = "verifier.testing"
REQUEST_TYPE = "testing.requested"
MAX_PATIENCE_SECONDS = 60  # the longest a gateway may wait for an answer (DOORMAN_VERIFIER_ANSWER_SECONDS)


async def declare_request_queue(channel: AbstractChannel, topology: Topology, name: str) -> AbstractQueue:
    """A request queue a verifier answers (the panel's, Discover's, the logout tokens'), declared by each verifier:
    a classic queue of its own (never behind widget opens), gone with the last verifier (a gateway's request then
    has nowhere to go: answered 503 at once), and whatever no verifier took within the longest patience is dropped
    (each request also expires with its own asker's patience). Durable only because RabbitMQ 4 deprecates
    transient shared queues: the requests themselves are transient."""
    return await channel.declare_queue(topology.queue(name), durable=True, auto_delete=True, arguments={
        "x-message-ttl": MAX_PATIENCE_SECONDS * 1000,
    })


async def declare_queue(channel: AbstractChannel, topology: Topology) -> AbstractQueue:
    """The panel's request queue."""
    return await declare_request_queue(channel, topology, TESTING_QUEUE)


class PanelRequest(Visitor):
    """A sample visitor to try with the bot's current settings, as the gateway validated it: a widget open's
    visitor (:class:`shared.events.Visitor`: its access token sealed on the wire) and the bot."""

    access_token: SecretStr  # type: ignore[assignment]  # the panel always tries a token
    bot_id: UUID
    # How long the asker waits. The broker drops a request nobody took within it (its expiration), and the run is
    # bounded by it: no replica's clock is compared with another's.
    patience_seconds: float = Field(gt=0, le=MAX_PATIENCE_SECONDS)

    @model_validator(mode="before")
    @classmethod
    def _from_an_older_gateway(cls, data: Any) -> Any:
        """Rolling upgrade (verifiers first): a gateway from before this release sends the sealed token as
        ``sealed_access_token``. Remove in the release after this one."""
        if isinstance(data, dict) and "sealed_access_token" in data and "access_token" not in data:
            data = {**data, "access_token": {"sealed": data["sealed_access_token"]}}
            del data["sealed_access_token"]
        return data

    def on_the_wire(self, secrets: Secrets) -> bytes:
        return self.model_dump_json(context={KEY_RING: secrets}).encode()

    @classmethod
    def off_the_wire(cls, body: bytes, secrets: Secrets) -> PanelRequest:
        return cls.model_validate_json(body, context={KEY_RING: secrets})


# --- the answer: what POST /v1/bots/{bot_id}/custom-auth/test returns ------------------------------


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TestRequestSent(_View):
    method: Literal["GET", "POST"] = Field(description="`GET`: an OpenID Provider's userinfo endpoint")
    url: str
    headers: dict[str, str] = Field(description="as sent; `Authorization` masked")
    body: dict[str, Any] = Field(description="as sent; `access_token`, `token` and `client_secret` masked")


class TestResponseReceived(_View):
    status: int
    headers: dict[str, str] = Field(description="without `Set-Cookie` and authorization headers")
    body: str = Field(description="the first 4096 characters")
    body_truncated: bool
    body_bytes: int


class TestMatch(_View):
    action: Literal["create", "update"]
    contact_id: UUID | None = Field(description="the contact a real session would update")


class TestFailure(_View):
    reason: FallbackReason
    detail: str
    hint: str = Field(description="what to fix")


class VisitorOutcome(_View):
    status: Literal["verified", "fallback"]
    reason: FallbackReason | None = Field(description="null when verified")
    detail: str | None


class TestToken(_View):
    """``identity_source: signed_token``: the pasted JWT as Doorman read it."""

    algorithm: Literal["HS256", "RS256", "ES256"] = Field(description="the bot's algorithm, the only one accepted")
    header: dict[str, Any] | None = Field(description="the token's JOSE header; null when it cannot be read")
    claims: dict[str, Any] | None = Field(description=(
        "the token's claims, decoded WITHOUT trusting them (shown even when a check fails); null when unreadable"))
    failed_check: str | None = Field(description=(
        "the first check that failed (`algorithm_not_allowed`, `unknown_kid`, `bad_signature`, `expired`, "
        "`not_yet_valid`, `issued_in_future`, `lifetime_too_long`, `wrong_audience`, `wrong_issuer`, "
        "`missing_claim`, `invalid_claim`, `malformed_token`, `jwks_unavailable`, `misconfigured`: the issuer's "
        "discovery document cannot be used); null when every check passed"))


class TestResult(_View):
    """The identity call made with the bot's current settings (or, with ``identity_source: signed_token``,
    the pasted token verified as the verifier would); nothing is written."""

    ok: bool
    enabled: bool = Field(description="whether Custom Authentication is on (the test runs either way)")
    identify_method: IdentifyMethod
    identity_source: Literal["auth_url", "signed_token", "oidc"]
    request: TestRequestSent | None = Field(description=(
        "the identity call as sent (with `oidc`: the last request to the OpenID Provider); null with "
        "`identity_source: signed_token` (no call is made), or when none was made"))
    response: TestResponseReceived | None = Field(description="null when no answer arrived (or no call was made)")
    token: TestToken | None = Field(description="with `identity_source: signed_token`: the token; else null")
    identity: Identity | None = Field(description="the profile parsed from the answer (or the token's claims)")
    match: TestMatch | None
    elapsed_ms: float
    failure: TestFailure | None
    visitor_outcome: VisitorOutcome = Field(description=(
        "what a real widget open from `origin` would get today with these settings (Custom Authentication off, "
        "domain not allowed, missing token and the call's own result), decided by the verifier's own code in a "
        "dry run"))


class PanelAnswer(BaseModel):
    """The verifier's answer: the result, or why the bot cannot be tested as it is now."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    result: TestResult | None = None
    refused: Literal["bot_not_found", "no_auth_url"] | None = None
