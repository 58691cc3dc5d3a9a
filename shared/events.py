"""Every message Doorman sends between its services, in one file.

Events are named in the past tense for what happened. Each is a small frozen
pydantic model over a common envelope (id, type, version, occurred-at,
correlation id). The routing key of an event is its ``event_type``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID, uuid4

from pydantic import (
    BaseModel, ConfigDict, Field, SecretStr, SerializationInfo, TypeAdapter, ValidationInfo, field_serializer,
    field_validator, model_validator,
)

from shared.crypto import InvalidToken, Secrets


def utcnow() -> datetime:
    return datetime.now(UTC)


class IdentifyMethod(str, enum.Enum):
    id = "id"
    email = "email"
    phone_number = "phone_number"


class FallbackReason(str, enum.Enum):
    ca_disabled = "ca_disabled"
    domain_not_allowed = "domain_not_allowed"
    missing_token = "missing_token"
    auth_rejected = "auth_rejected"
    auth_unavailable = "auth_unavailable"
    invalid_response = "invalid_response"
    destination_blocked = "destination_blocked"
    internal_error = "internal_error"
    busy = "busy"  # refused at the gateway by admission control: the pipeline could not answer in time
    misconfigured = "misconfigured"  # the bot's saved settings cannot be used (the detail names the setting)


class Identity(BaseModel):
    """The visitor's profile as the business's Authentication URL answered it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    identifier: str  # normalised value of the identify method's field
    id: str | None = None
    name: str | None = None
    email: str | None = None
    phone_number: str | None = None
    country_code: str | None = None
    avatar: str | None = None
    label: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    # The business's own workspace the visitor belongs to (OpenCX's externalId; not Doorman's tenant
    # workspaces): contacts are unique per (bot, external_workspace_id, identifier).
    external_workspace_id: str | None = None


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]

    event_id: UUID = Field(default_factory=uuid4)
    occurred_at: datetime = Field(default_factory=utcnow)
    correlation_id: str
    session_id: str
    bot_id: UUID


class Visitor(BaseModel):
    """Who a widget open says the visitor is, as the embed sent it: the Testing panel's sample visitor has
    the same shape (:class:`shared.panel.PanelRequest`). Forwarded to the business, never trusted.

    The access token is a SecretStr in memory (repr() and logs see '**********'), and sealed with the key ring
    on the wire: {"sealed": "<Fernet token>"} (encode and decode with the key ring in the context, ``KEY_RING``),
    so the broker, its delay and dead-letter queues, and whoever reads them hold only ciphertext. Only the
    gateway (which seals) and the verifier (which opens) hold the key ring for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    origin: str | None = None
    access_token: SecretStr | None = None
    user_id: str | None = None
    email: str | None = None
    name: str | None = None
    phone_number: str | None = None
    external_workspace_id: str | None = None  # the embed's data-external-workspace-id: forwarded when selected, never trusted

    @field_serializer("access_token", when_used="json")
    def _sealed_on_the_wire(self, token: SecretStr | None, info: SerializationInfo) -> dict[str, str] | None:
        if token is None:
            return None
        return {"sealed": _key_ring(info).encrypt(token.get_secret_value()).decode()}

    @field_validator("access_token", mode="before")
    @classmethod
    def _opened_off_the_wire(cls, value: Any, info: ValidationInfo) -> Any:
        if info.mode != "json" or value is None:
            return value  # made in memory: the token itself
        if isinstance(value, str):
            # Rolling upgrade: a token published in plaintext by a gateway from before tokens were sealed (or a
            # dead letter from then: they expire after DOORMAN_DEAD_LETTER_TTL_DAYS). Read as it is. Remove this
            # clause in a release made that long after this one: a string off the wire is then refused.
            return value
        if not (isinstance(value, dict) and set(value) == {"sealed"} and isinstance(value["sealed"], str)):
            raise ValueError('an access token comes off the wire as {"sealed": "<Fernet token>"}')
        try:
            return _key_ring(info).decrypt(value["sealed"].encode())
        except InvalidToken:
            raise ValueError("no key of DOORMAN_SECRET_KEY opens this access token") from None

    def described(self) -> dict[str, str | None]:
        """What the embed said about the visitor, as the Authentication URL's request carries it (no token)."""
        return {field: getattr(self, field) for field in VISITOR_FIELDS}


VISITOR_FIELDS = ("user_id", "email", "name", "phone_number", "external_workspace_id")


class WidgetOpened(Event, Visitor):
    event_type: ClassVar[str] = "widget.opened"

    deadline_at: datetime


def _key_ring(info: SerializationInfo | ValidationInfo) -> Secrets:
    secrets = info.context.get(KEY_RING) if isinstance(info.context, dict) else None
    if secrets is None:
        raise ValueError("an access token goes on or off the wire only sealed: pass the key ring (secrets=)")
    return secrets


class CallFacts(BaseModel):
    """What the activity log shows about how a session was decided."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    auth_http_status: int | None = None  # the Authentication URL's HTTP status, if it answered
    auth_latency_ms: float | None = None  # duration of the identity call
    whitelist_note: str | None = None  # e.g. "stale: the whitelist API answered HTTP 500"
    circuit_open: bool = False  # not called: the bot's circuit breaker for its Authentication URL's host was open


class IdentityVerified(Event):
    event_type: ClassVar[str] = "identity.verified"

    identify_method: IdentifyMethod
    identity: Identity
    observed_at: datetime  # when the business answered: orders updates of one contact
    facts: CallFacts = CallFacts()
    # Verified from the outage grace cache: the Authentication URL was unavailable and this token was
    # verified within the bot's outage_grace_seconds (then observed_at is when it was).
    degraded: bool = False
    # Verified through the bot's OpenID Provider: who it says signed in (its sub) and, when it told, its session
    # id (sid). A back-channel logout token naming either ends the session.
    provider_sub: str | None = None
    provider_sid: str | None = None
    # When the identity stops being good: the signed token's exp, or the introspected token's; None when unknown.
    identity_expires_at: datetime | None = None


class SessionFellBack(Event):
    event_type: ClassVar[str] = "session.fell_back"

    reason: FallbackReason
    detail: str
    facts: CallFacts = CallFacts()

    @model_validator(mode="before")
    @classmethod
    def _drop_stage(cls, data: Any) -> Any:
        """Earlier versions sent a ``stage`` no one read; a dead-letter queue may still hold some."""
        if isinstance(data, dict) and "stage" in data:
            data = {k: v for k, v in data.items() if k != "stage"}
        return data


class ContactCollected(Event):
    """The visitor filled in the Collect Information form (non-verified; normalised by the gateway)."""

    event_type: ClassVar[str] = "contact.collected"

    name: str | None = None
    email: str | None = None
    phone_number: str | None = None  # E.164
    country_code: str | None = None


class SessionResolved(Event):
    """Told to the gateway replica that opened the session (and to the one holding its stream,
    if another): the widget's view travels with it, so no one re-reads the database."""

    event_type: ClassVar[str] = "session.resolved"

    status: str
    view: Mapping[str, Any] | None = None  # the outcome view as GET /v1/widget/sessions/{id} shows it
    facts: CallFacts = CallFacts()


class WebhookDue(Event):
    """A webhook delivery was recorded (its row in ``webhook_deliveries``, written with the change it
    announces): POST it to the bot's endpoint. The event id is the delivery id; ``session_id`` is the
    session it came from, or ``-``."""

    event_type: ClassVar[str] = "webhook.due"

    webhook_type: str  # contact.created | contact.updated | contact.erased | session.fell_back


EVENT_TYPES: dict[str, type[Event]] = {
    cls.event_type: cls
    for cls in (WidgetOpened, IdentityVerified, SessionFellBack, ContactCollected, SessionResolved, WebhookDue)
}


_BATCHES = {event_type: TypeAdapter(list[cls]) for event_type, cls in EVENT_TYPES.items()}


KEY_RING = "secrets"  # the validation and serialization context's key for the key ring


def decode(event_type: str, body: bytes, *, secrets: Secrets | None = None) -> list[Event]:
    """A message's events: its body is one event (a retry, a replay) or a JSON array of them (a batch).
    ``secrets`` opens sealed access tokens (``widget.opened``); without it such an event does not decode."""
    context = {KEY_RING: secrets}
    if body[:1] == b"[":
        return _BATCHES[event_type].validate_json(body, context=context)
    return [EVENT_TYPES[event_type].model_validate_json(body, context=context)]


def encode(events: Sequence[Event], *, secrets: Secrets | None = None) -> bytes:
    """The body of one message carrying ``events`` (all of one type). ``secrets`` seals access tokens
    (``widget.opened``); without it an event carrying one does not encode."""
    context = {KEY_RING: secrets}
    if len(events) == 1:
        return events[0].model_dump_json(context=context).encode()
    return _BATCHES[events[0].event_type].dump_json(list(events), context=context)
