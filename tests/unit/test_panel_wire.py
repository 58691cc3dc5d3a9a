"""The Testing panel's request on the broker: the same visitor shape as a widget open, its token sealed."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from shared.crypto import Secrets
from shared.events import VISITOR_FIELDS, Visitor, WidgetOpened
from shared.panel import PanelRequest

SECRETS = Secrets(Fernet.generate_key().decode())


def test_the_token_crosses_the_broker_sealed_and_comes_back() -> None:
    request = PanelRequest(bot_id=uuid4(), patience_seconds=10, access_token="visitor-token-9f2", email="a@b.example")
    wire = request.on_the_wire(SECRETS)
    assert b"visitor-token-9f2" not in wire and json.loads(wire)["access_token"].keys() == {"sealed"}
    back = PanelRequest.off_the_wire(wire, SECRETS)
    assert back.access_token.get_secret_value() == "visitor-token-9f2" and back.email == "a@b.example"
    with pytest.raises(ValidationError, match="no key of DOORMAN_SECRET_KEY"):
        PanelRequest.off_the_wire(wire, Secrets(Fernet.generate_key().decode()))


def test_a_request_from_a_gateway_of_the_previous_release_is_read() -> None:
    """Rolling upgrade, verifiers first: an older gateway sends ``sealed_access_token``."""
    bot = uuid4()
    older = json.dumps({"bot_id": str(bot), "sealed_access_token": SECRETS.encrypt("t0k").decode(),
                        "user_id": "u1", "patience_seconds": 10}).encode()
    request = PanelRequest.off_the_wire(older, SECRETS)
    assert (request.bot_id, request.access_token.get_secret_value(), request.user_id) == (bot, "t0k", "u1")


def test_a_widget_open_and_the_panel_declare_the_visitor_once() -> None:
    visitor = set(Visitor.model_fields)
    assert visitor <= set(WidgetOpened.model_fields) and visitor <= set(PanelRequest.model_fields)
    assert set(VISITOR_FIELDS) == visitor - {"origin", "access_token"}
