"""Parsing the business's answer to the identity call."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.verifier.answer import parse_identity_response
from services.verifier.failures import AuthFailure
from shared.profiles import MAX_JSON_DEPTH, MAX_METADATA_BYTES, MAX_STRING
from services.verifier.identity import describe
from shared.events import FallbackReason, Identity, IdentifyMethod

DESIGN_EXAMPLE: dict[str, Any] = {
    "status": True,
    "message": "ok",
    "data": {
        "id": "2",
        "name": "Lan Nguyen",
        "email": "Lan@Example.com",
        "phone_number": "0912345678",
        "country_code": "+84",
        "avatar": "https://example.com/lan.png",
        "label": "VIP",
        "metadata": {"order_id": "ORD-1"},
    },
}


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def with_data(**data: Any) -> bytes:
    return body({"status": True, "data": data})


def parse(raw: bytes, method: IdentifyMethod = IdentifyMethod.id, status: int = 200) -> Identity:
    return parse_identity_response(status, raw, method)


def failure(raw: bytes, method: IdentifyMethod = IdentifyMethod.id, status: int = 200) -> AuthFailure:
    with pytest.raises(AuthFailure) as caught:
        parse(raw, method, status)
    return caught.value


def test_design_example_by_id() -> None:
    identity = parse(body(DESIGN_EXAMPLE))
    assert identity == Identity(
        identifier="2",
        id="2",
        name="Lan Nguyen",
        email="lan@example.com",  # not the identifier, but stored in normal form for search
        phone_number="+84912345678",
        country_code="+84",
        avatar="https://example.com/lan.png",
        label="VIP",
        metadata={"order_id": "ORD-1"},
    )


def test_status_absent_is_success() -> None:
    assert parse(with_data(id="abc")).identifier == "abc"
    assert parse(body({"data": {"id": "abc"}})).identifier == "abc"


def test_missing_metadata_becomes_empty_dict() -> None:
    assert parse(with_data(id="1", metadata=None)).metadata == {}


def test_unknown_data_keys_are_ignored() -> None:
    assert parse(with_data(id="1", favourite_colour="blue")).identifier == "1"


def test_id_int_becomes_string() -> None:
    identity = parse(with_data(id=2))
    assert (identity.identifier, identity.id) == ("2", "2")


def test_email_identify_lower_cases() -> None:
    identity = parse(with_data(email="  Lan@Example.COM "), IdentifyMethod.email)
    assert identity.identifier == "lan@example.com"
    assert identity.email == "lan@example.com"


def test_phone_identify_normalises_to_e164() -> None:
    identity = parse(with_data(phone_number="0912345678", country_code="+84"), IdentifyMethod.phone_number)
    assert identity.identifier == "+84912345678"
    assert identity.phone_number == "+84912345678"
    assert identity.country_code == "+84"


def test_non_identifying_bad_phone_or_email_does_not_fail() -> None:
    identity = parse(with_data(id="1", phone_number=" 12 ", email="not-an-email"))
    assert (identity.phone_number, identity.email) == ("12", "not-an-email")


def test_status_false_is_rejected_with_the_business_message() -> None:
    exc = failure(body({"status": False, "message": "token expired" + "!" * 500}))
    assert exc.reason is FallbackReason.auth_rejected
    assert "token expired" in exc.detail
    assert len(exc.detail) < 300  # message truncated to 200 characters
    assert str(exc) == exc.detail


@pytest.mark.parametrize("status", [401, 403])
def test_http_refusal_is_auth_rejected(status: int) -> None:
    exc = failure(b"", status=status)
    assert exc.reason is FallbackReason.auth_rejected
    assert exc.detail == f"the Authentication URL refused the token (HTTP {status})"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_busy_or_broken_server_is_auth_unavailable(status: int) -> None:
    assert failure(body(DESIGN_EXAMPLE), status=status).reason is FallbackReason.auth_unavailable


def test_redirect_is_invalid_response() -> None:
    exc = failure(b"", status=302)
    assert exc.reason is FallbackReason.invalid_response
    assert "redirects are not followed" in exc.detail


def test_404_is_invalid_response() -> None:
    exc = failure(b"not found", status=404)
    assert exc.reason is FallbackReason.invalid_response
    assert exc.detail == "unexpected HTTP 404"


@pytest.mark.parametrize(
    ("raw", "method", "detail"),
    [
        (b"<html>ok</html>", IdentifyMethod.id, "response is not JSON"),
        (b"", IdentifyMethod.id, "response is not JSON"),
        (b'{"data": {"id": "\xff"}}', IdentifyMethod.id, "response is not JSON"),
        (b'{"data": {"id": NaN}}', IdentifyMethod.id, "response is not JSON"),
        (b"[]", IdentifyMethod.id, "not a JSON object"),
        (b'{"status": "yes", "data": {"id": "1"}}', IdentifyMethod.id, "status"),
        (b'{"status": 1, "data": {"id": "1"}}', IdentifyMethod.id, "status"),
        (b'{"status": true}', IdentifyMethod.id, "data is missing"),
        (b'{"status": true, "data": null}', IdentifyMethod.id, "data is missing"),
        (b'{"status": true, "data": ["1"]}', IdentifyMethod.id, "data must be an object"),
        (b'{"data": {"name": "x"}}', IdentifyMethod.id, "data.id is missing"),
        (b'{"data": {"id": "1"}}', IdentifyMethod.email, "data.email is missing"),
        (b'{"data": {"email": ""}}', IdentifyMethod.email, "data.email is missing"),
        (b'{"data": {"id": "   "}}', IdentifyMethod.id, "data.id is missing"),
        (b'{"data": {"id": true}}', IdentifyMethod.id, "data.id must be"),
        (b'{"data": {"id": 1.5}}', IdentifyMethod.id, "data.id must be"),
        (b'{"data": {"id": "1", "name": 5}}', IdentifyMethod.id, "data.name must be a string"),
        (b'{"data": {"id": "1", "label": ["a"]}}', IdentifyMethod.id, "data.label must be a string"),
        (b'{"data": {"id": "1", "metadata": []}}', IdentifyMethod.id, "data.metadata must be an object"),
        (b'{"data": {"email": "a@b@c"}}', IdentifyMethod.email, "data.email is invalid"),
        (
            b'{"data": {"phone_number": "12", "country_code": "+84"}}',
            IdentifyMethod.phone_number,
            "data.phone_number is invalid",
        ),
    ],
)
def test_malformed_answers_are_invalid_response(raw: bytes, method: IdentifyMethod, detail: str) -> None:
    exc = failure(raw, method)
    assert exc.reason is FallbackReason.invalid_response
    assert detail in exc.detail


def test_oversize_string_is_invalid_response() -> None:
    assert parse(with_data(id="1", name="x" * MAX_STRING)).name == "x" * MAX_STRING
    exc = failure(with_data(id="1", name="x" * (MAX_STRING + 1)))
    assert exc.reason is FallbackReason.invalid_response
    assert "data.name" in exc.detail


def test_oversize_metadata_is_invalid_response() -> None:
    assert parse(with_data(id="1", metadata={"k": "x" * 1000})).metadata == {"k": "x" * 1000}
    exc = failure(with_data(id="1", metadata={"k": "x" * MAX_METADATA_BYTES}))
    assert exc.reason is FallbackReason.invalid_response
    assert "data.metadata" in exc.detail


def nested(levels: int) -> dict[str, Any]:
    """An answer whose JSON nests exactly ``levels`` deep (the top level is 1)."""
    value: Any = {}
    for _ in range(levels - 3):
        value = {"n": value}
    return {"data": {"id": "1", "metadata": value}}


def test_json_depth_limit() -> None:
    assert parse(body(nested(MAX_JSON_DEPTH))).identifier == "1"
    exc = failure(body(nested(MAX_JSON_DEPTH + 1)))
    assert exc.reason is FallbackReason.invalid_response
    assert "nested" in exc.detail


def test_absurdly_deep_json_is_invalid_not_a_crash() -> None:
    exc = failure(b"[" * 100_000 + b"]" * 100_000)
    assert exc.reason is FallbackReason.invalid_response


def test_every_reason_is_described() -> None:
    for reason in FallbackReason:
        assert describe(reason).endswith(".")
    assert "check it is up and fast" in describe(FallbackReason.auth_unavailable)


def test_email_and_phone_are_tidied_when_not_the_identifier() -> None:
    body = json.dumps({"data": {"id": "7", "email": " Mixed@Example.COM ", "phone_number": "0912345678", "country_code": "+84"}})
    identity = parse_identity_response(200, body.encode(), IdentifyMethod.id)
    assert (identity.email, identity.phone_number) == ("mixed@example.com", "+84912345678")


def test_unnormalisable_phone_is_kept_as_received_when_not_the_identifier() -> None:
    body = json.dumps({"data": {"id": "7", "phone_number": "ext. 12", "email": "not-an-email"}})
    identity = parse_identity_response(200, body.encode(), IdentifyMethod.id)
    assert (identity.phone_number, identity.email) == ("ext. 12", "not-an-email")
