"""What the widget is told about a session: its view (:class:`SessionView`), as ``GET /v1/widget/sessions/{id}``,
the SSE ``outcome`` event and ``?wait`` answer it. Made by whoever records what happened to the session: the
contacts service when it resolves or expires one (the view travels in ``session.resolved``), the gateway when
it reads one or ends it. A fallback's ``detail`` for the visitor is chosen by the reason alone
(:data:`VISITOR_MESSAGES`); what the session stored (the business's words, addresses, URLs) is for the admin
activity log only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypedDict

from shared.auth_config import CollectInformation
from shared.events import FallbackReason

SessionStatus = Literal["pending", "verified", "fallback", "ended"]

# What the widget tells a visitor whose session fell back (the view's ``fallback.detail``), by reason.
VISITOR_MESSAGES: dict[str, str] = {
    FallbackReason.ca_disabled: "Automatic sign-in is not turned on for this chat.",
    FallbackReason.domain_not_allowed: "Automatic sign-in is not available on this website (domain not allowed).",
    FallbackReason.missing_token: "You are not signed in on this website, so we could not recognise you.",
    FallbackReason.auth_rejected: "Your sign-in could not be confirmed.",
    FallbackReason.auth_unavailable: (
        "Your sign-in could not be confirmed right now because the website did not answer in time."),
    FallbackReason.invalid_response: "Your sign-in could not be confirmed because the website's answer could not be used.",
    FallbackReason.destination_blocked: "Automatic sign-in is not set up correctly for this chat.",
    FallbackReason.internal_error: "Something went wrong on our side while confirming your sign-in.",
    FallbackReason.busy: "We are too busy to confirm your sign-in right now.",
    FallbackReason.misconfigured: "Automatic sign-in is not set up correctly for this chat.",
}


# The widget's view of a session, as the API documents it: TypedDicts, so the widget's hot path builds
# plain dict literals (no model per request), type-checked against them; their JSON schemas come from pydantic.


@with_config(ConfigDict(extra="forbid"))
class WidgetContact(TypedDict):
    """What the visitor's browser may learn about its own contact (no label, no metadata)."""

    contact_id: UUID
    name: str | None
    email: str | None
    phone_number: str | None
    avatar: str | None
    verified: bool


@with_config(ConfigDict(extra="forbid"))
class Fallback(TypedDict):
    reason: FallbackReason
    detail: Annotated[str, Field(description=(
        "a message for the visitor, chosen by `reason` alone (e.g. \"Your sign-in could not be confirmed.\"): never "
        "what the business answered, an address, a URL or a setting. The precise detail is in the admin activity "
        "log (`GET /v1/bots/{bot_id}/auth-events`)"))]


@with_config(ConfigDict(extra="forbid"))
class SessionView(TypedDict):
    session_id: str
    status: Annotated[SessionStatus, Field(description=(
        "`ended`: the visitor logged out (`DELETE /v1/widget/sessions/{session_id}`) or the contact's sessions "
        "were revoked; final, and nothing of the visitor is shown"))]
    contact: Annotated[WidgetContact | None, Field(description="set when verified (never once ended)")]
    fallback: Annotated[Fallback | None, Field(
        description="set when status is `fallback`: offer what `collect_information` says")]
    collected: Annotated[bool, Field(description="the Collect Information form was sent for this session")]
    collect_information: Annotated[CollectInformation | None, Field(description=(
        "set when status is `fallback`: the bot's mode when the session fell back. `required`: show the Collect "
        "Information form; `optional`: the form with a way to skip it (then chat anonymously); `off`: no form, "
        "chat anonymously (the form is refused with 409 `collect_information_off`). Null otherwise"))]
    degraded: Annotated[bool, Field(description=(
        "verified from the outage grace: the Authentication URL was unavailable and this access token was "
        "verified within the bot's `outage_grace_seconds`"))]
    identity_expires_at: Annotated[datetime | None, Field(description=(
        "set when verified and the identity's end is known: the signed token's `exp`, or the `exp` the OpenID "
        "Provider's introspection gave. The widget asks the host page for a fresh token (`getFreshToken`) about a "
        "minute before, and ends the session if none comes; the server does not end it at that time. Null otherwise "
        "(an Authentication URL, userinfo, a pushed identity)"))]


def widget_view(row: asyncpg.Record | dict[str, Any]) -> SessionView:
    """What the widget sees: GET /v1/widget/sessions/{id}, the SSE ``outcome`` event, ``?wait``. A fallback's
    ``detail`` is the reason's message for the visitor (:data:`VISITOR_MESSAGES`), never the stored detail."""
    if row["status"] == "ended":
        return ended_view(row["session_id"], row["collected"])
    contact: WidgetContact | None = {
        "contact_id": row["contact_id"], "name": row["name"], "email": row["email"],
        "phone_number": row["phone_number"], "avatar": row["avatar"], "verified": row["verified"],
    } if row["contact_id"] else None
    fallback: Fallback | None = (
        {"reason": row["reason"], "detail": VISITOR_MESSAGES[row["reason"]]} if row["status"] == "fallback" else None
    )
    return {"session_id": row["session_id"], "status": row["status"], "contact": contact, "fallback": fallback,
            "collected": row["collected"], "collect_information": _mode(row["status"], row["collect_information"]),
            "degraded": row["degraded"],
            "identity_expires_at": row["identity_expires_at"] if row["status"] == "verified" else None}


def _mode(status: str, captured: str | None) -> CollectInformation | None:
    """The view's ``collect_information``: the mode captured when the session fell back (a session that
    fell back before the column existed was offered the form: ``required``); null unless fallback."""
    if status != "fallback":
        return None
    return captured or "required"  # type: ignore[return-value]


def fallback_view(session_id: str, reason: FallbackReason, collect_information: str | None = None) -> SessionView:
    """The view of a session that fell back before any contact or form: a busy refusal, an expiry."""
    return {"session_id": session_id, "status": "fallback", "contact": None,
            "fallback": {"reason": reason, "detail": VISITOR_MESSAGES[reason]}, "collected": False,
            "collect_information": _mode("fallback", collect_information), "degraded": False,
            "identity_expires_at": None}


def ended_view(session_id: str, collected: bool = False) -> SessionView:
    """An ended session: nothing of the visitor (no contact, no fallback, no form to offer)."""
    return {"session_id": session_id, "status": "ended", "contact": None, "fallback": None, "collected": collected,
            "collect_information": None, "degraded": False, "identity_expires_at": None}
