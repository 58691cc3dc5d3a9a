"""Each response shape is declared once: what the widget's hot path builds as plain dicts is what
the TypedDicts the document is made from say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from pydantic import TypeAdapter

from services.gateway.http_errors import Error, dumps, error
from shared.events import FallbackReason
from services.gateway.widget.views import busy_view
from shared.widget_view import VISITOR_MESSAGES, SessionView, fallback_view, widget_view


def _row(**overrides: Any) -> dict[str, Any]:
    row = {"session_id": "s" * 43, "status": "pending", "reason": None, "collected": False,
           "deadline_at": datetime.now(UTC) + timedelta(seconds=5), "contact_id": None, "name": None, "email": None,
           "phone_number": None, "avatar": None, "verified": None, "collect_information": None, "degraded": False,
           "identity_expires_at": None}
    return {**row, **overrides}


@pytest.mark.parametrize("view", [
    widget_view(_row()),
    widget_view(_row(status="verified", contact_id=uuid4(), name="Ann", email="ann@example.com", verified=True)),
    widget_view(_row(status="verified", contact_id=uuid4(), name="Ann", verified=True,
                     identity_expires_at=datetime.now(UTC) + timedelta(minutes=5))),
    widget_view(_row(status="fallback", reason="auth_rejected", collected=True)),
    fallback_view("s" * 43, FallbackReason.internal_error),
    busy_view("s" * 43),
    widget_view(_row(status="fallback", reason="ca_disabled", collect_information="off")),
    busy_view("s" * 43, "optional"),
    widget_view(_row(status="ended", contact_id=uuid4(), name="Ann", verified=True, degraded=True)),
], ids=["pending", "verified", "verified-expiring", "fallback", "expired", "busy", "fallback-off", "busy-optional", "ended"])
def test_session_views_are_what_the_document_says(view: SessionView) -> None:
    """As the widget receives it (the gateway's JSON): exactly the documented keys, each of its type."""
    parsed = TypeAdapter(SessionView).validate_json(dumps(view))
    assert set(parsed) == SessionView.__required_keys__ == set(view)


def test_every_fallback_reason_has_a_message_for_the_visitor() -> None:
    """The widget's ``fallback.detail`` is chosen by the reason: a reason without a message would fail the view."""
    assert set(VISITOR_MESSAGES) == set(FallbackReason)
    for reason in FallbackReason:
        view = widget_view(_row(status="fallback", reason=reason.value))
        assert view["fallback"] == {"reason": reason.value, "detail": VISITOR_MESSAGES[reason]}


def test_an_ended_session_shows_nothing_of_the_visitor() -> None:
    for before in ({"reason": "auth_rejected", "collect_information": "required"},
                   {"contact_id": uuid4(), "name": "Ann", "email": "ann@example.com", "verified": True, "degraded": True}):
        view = widget_view(_row(status="ended", **before))
        assert (view["status"], view["contact"], view["fallback"], view["collect_information"], view["degraded"]) == (
            "ended", None, None, None, False)


def test_collect_information_is_the_mode_only_when_fallen_back() -> None:
    assert widget_view(_row(status="verified", collect_information="off"))["collect_information"] is None
    fell_back = _row(status="fallback", reason="ca_disabled", collect_information="off")
    assert widget_view(fell_back)["collect_information"] == "off"
    # A session that fell back before the mode was captured was offered the form.
    assert widget_view(_row(status="fallback", reason="ca_disabled"))["collect_information"] == "required"
    assert busy_view("s" * 43, "optional")["collect_information"] == "optional"


def test_error_bodies_are_what_the_document_says() -> None:
    plain = TypeAdapter(Error).validate_json(error(404, "bot_not_found", "no bot has this bot_id").text or "")
    assert plain == {"error": {"code": "bot_not_found", "message": "no bot has this bot_id"}}
    bad = error(422, "invalid_body", "bad", fields=[{"field": "name", "message": "too long"}])
    assert TypeAdapter(Error).validate_json(bad.text or "")["error"]["fields"] == [{"field": "name", "message": "too long"}]
