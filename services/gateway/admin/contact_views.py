"""What the admin API answers about contacts: Contact Details, the contact list, the export, and the
authentication activity log (built by ``directory``, ``erasure`` and ``bots``). See :mod:`.views`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from shared.events import FallbackReason, IdentifyMethod
from shared.widget_view import SessionStatus

from .views import View


class ContactSummary(View):
    contact_id: UUID
    identify_method: IdentifyMethod | Literal["session"] = Field(
        description="`session`: a Collect Information contact with neither email nor phone, its own contact")
    identifier: str = Field(description="the normalised value of the identify method's field")
    external_workspace_id: str | None = Field(description=(
        "the business's own workspace the contact belongs to, from its answer's `data.external_workspace_id` "
        "(OpenCX's externalId; not a Doorman workspace): contacts are unique per (bot, external_workspace_id, "
        "identifier); null: none given"))
    external_id: str | None = Field(description="the business's `id` for the visitor")
    name: str | None
    email: str | None
    phone_number: str | None
    country_code: str | None
    avatar: str | None
    label: str | None
    verified: bool
    created_at: datetime
    updated_at: datetime
    last_verified_at: datetime | None


class ContactHistoryEntry(View):
    """A change of who the contact is, recorded by the verification that made it."""

    kind: Literal["identity_changed", "took_over_unverified"] = Field(description=(
        "`identity_changed`: a verification changed this verified contact's `external_id` (the business's `id`; "
        "the contact is keyed by email or phone, and the latest verification wins); `took_over_unverified`: a "
        "verified identity took over this contact, which a visitor had made through the Collect Information form"))
    at: datetime = Field(description="when the business verified the identity that made the change")
    session_id: str | None = Field(description="the widget session of that verification")
    event_id: UUID
    old_external_id: str | None = Field(description="`identity_changed`: the business's id before; else null")
    new_external_id: str | None = Field(description="`identity_changed`: the business's id after; else null")


class ContactDetail(ContactSummary):
    metadata: dict[str, Any]
    sources: dict[str, Literal["api", "visitor"]] = Field(
        description="where each field's current value came from: the business's API or the visitor's form")
    degraded: bool = Field(description=(
        "its last verification was degraded: made from the outage grace while the Authentication URL was "
        "unavailable (see `outage_grace_seconds`)"))
    typed: dict[str, str] = Field(description=(
        "what a visitor typed in the Collect Information form (`name`, `email`, `phone_number`, `country_code`) "
        "before a verified identity took this contact over: never verified. Empty unless `taken_over_at` is set"))
    taken_over_at: datetime | None = Field(description=(
        "when a verified identity took over this contact, which a visitor had made through the form: what was said "
        "before came from someone who was not verified (show agents an impersonation warning); null: never"))
    history: list[ContactHistoryEntry] = Field(description=(
        "identity changes, oldest first (the last 50): `identity_changed` and `took_over_unverified`"))


class ExportedSession(View):
    """A widget session of the contact, as the activity log keeps it."""

    session_id: str
    link: Literal["verified", "collected"] = Field(description=(
        "`verified`: the session was verified as this contact; `collected`: its visitor sent the Collect "
        "Information form that made or updated this contact"))
    origin: str | None
    status: SessionStatus
    reason: FallbackReason | None
    detail: str | None
    created_at: datetime
    resolved_at: datetime | None
    collected_at: datetime | None = Field(description="when the Collect Information form was sent, if it was")
    degraded: bool


class ExportedPushedIdentity(View):
    """A profile the business pushed for the contact (`POST /v1/bots/{bot_id}/identities`)."""

    identity: dict[str, Any]
    created_at: datetime
    expires_at: datetime
    used_by: str | None = Field(description="the session that used its widget token; null: unused")
    used_at: datetime | None


class ExportedCachedIdentity(View):
    """The contact's identity as the outage grace cache keeps it (by the access token's keyed hash)."""

    identify_method: IdentifyMethod | None
    identity: dict[str, Any]
    verified_at: datetime | None


class ContactExport(View):
    """Everything Doorman stores about one contact."""

    exported_at: datetime
    contact: ContactDetail = Field(description="the profile, `metadata`, field sources, verification flags, history")
    sessions: list[ExportedSession] = Field(description=(
        "its widget sessions still kept (see the sessions' retention), newest first, with their outcomes"))
    pushed_identities: list[ExportedPushedIdentity] = Field(description=(
        "profiles pushed for it (matched by the session that used them, or by identifier or business id)"))
    cached_identities: list[ExportedCachedIdentity] = Field(description=(
        "its identity in the outage grace cache (bots with `outage_grace_seconds`), by identifier or business id"))


class ContactPage(View):
    contacts: list[ContactSummary] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class AuthEvent(View):
    """One widget session and why it ended as it did."""

    session_id: str
    origin: str | None
    status: SessionStatus
    reason: FallbackReason | None
    detail: str | None = Field(description=(
        "why, precisely, for the bot's admins: what the business answered, the address a name resolved to, the "
        "setting at fault (the visitor's view carries only a message chosen by `reason`); null for a session verified "
        "or still pending, and once its contact was erased"))
    contact_id: UUID | None
    created_at: datetime
    resolved_at: datetime | None
    latency_ms: int | None = Field(description="open to outcome")
    auth_http_status: int | None = Field(description="the Authentication URL's HTTP status, if it answered")
    auth_latency_ms: float | None = Field(description="duration of the identity call")
    whitelist_note: str | None
    degraded: bool = Field(description="verified from the outage grace: the Authentication URL was unavailable")
    circuit_open: bool = Field(description=(
        "the Authentication URL was not called: the bot's circuit breaker for its host was open (its calls kept "
        "failing)"))
    ended_by: Literal["visitor", "revoked", "backchannel_logout"] | None = Field(None, description=(
        "status `ended`: the visitor logged out, the contact's sessions were revoked, or the visitor logged out at "
        "the bot's OpenID Provider, which told Doorman through back-channel logout; `reason` and `resolved_at` still "
        "say how it had gone before (a session ended while pending has no reason)"))
    ended_at: datetime | None = None
    identity_change: ContactHistoryEntry | None = Field(None, description=(
        "`identity_changed` or `took_over_unverified`, when this session's verification changed who its contact "
        "is (the same entry is in the contact's `history`)"))


class SessionsRevoked(View):
    ended: int = Field(description="the contact's sessions ended now (those already ended are not counted)")


class AuthEventPage(View):
    events: list[AuthEvent] = Field(description="newest first")
    next_cursor: str | None


