"""Identifier normalisation: emails, phone numbers, ids."""

from __future__ import annotations

import pytest

from shared.events import IdentifyMethod
from shared.identifiers import (
    InvalidIdentifier,
    normalise_email,
    normalise_id,
    normalise_identifier,
    normalise_phone,
)


def test_email_is_trimmed_and_lower_cased() -> None:
    assert normalise_email("  Alice.Smith@Example.COM \n") == "alice.smith@example.com"


@pytest.mark.parametrize(
    "value", ["", "   ", "alice", "alice@", "@example.com", "a@b@c.com", "al ice@example.com"]
)
def test_bad_email_raises(value: str) -> None:
    with pytest.raises(InvalidIdentifier):
        normalise_email(value)


@pytest.mark.parametrize(
    ("number", "country_code"),
    [
        ("0912345678", "+84"),
        ("0912345678", "84"),
        ("0912345678", "VN"),
        ("0912345678", "vn"),
        ("+84912345678", None),
        ("+84 91 234 5678", "+1"),  # international wins over country_code
        ("0084912345678", None),
    ],
)
def test_local_and_international_vietnamese_numbers_agree(number: str, country_code: str | None) -> None:
    assert normalise_phone(number, country_code) == "+84912345678"


@pytest.mark.parametrize(
    ("number", "country_code"),
    [
        ("(415) 555-2671", "+1"),
        ("415-555-2671", "US"),
        ("415.555.2671", "1"),
        ("+1 415 555 2671", None),
    ],
)
def test_us_formats(number: str, country_code: str | None) -> None:
    assert normalise_phone(number, country_code) == "+14155552671"


@pytest.mark.parametrize(
    ("number", "country_code"),
    [
        ("", "+84"),
        ("not a number", "+84"),
        ("12", "+84"),
        ("0912345678", None),  # national number without a country
        ("0912345678", "+999"),  # unassigned calling code
        ("0912345678", "XX"),  # unknown region
        ("+1 555 555 5555", None),  # possible but not a valid US number
        ("091234567890123456789", "+84"),
    ],
)
def test_invalid_phone_raises(number: str, country_code: str | None) -> None:
    with pytest.raises(InvalidIdentifier):
        normalise_phone(number, country_code)


def test_id_accepts_int_and_trims_str() -> None:
    assert normalise_id(2) == "2"
    assert normalise_id("  abc-2 ") == "abc-2"


@pytest.mark.parametrize("value", [True, False, 2.0, None, "", "   ", ["2"]])
def test_id_rejects_bool_float_and_empty(value: object) -> None:
    with pytest.raises(InvalidIdentifier):
        normalise_id(value)


def test_normalise_identifier_picks_the_method_field() -> None:
    data = {"id": 7, "email": " A@B.io ", "phone_number": "0912345678", "country_code": "+84"}
    assert normalise_identifier(IdentifyMethod.id, data) == "7"
    assert normalise_identifier(IdentifyMethod.email, data) == "a@b.io"
    assert normalise_identifier(IdentifyMethod.phone_number, data) == "+84912345678"


@pytest.mark.parametrize("data", [{}, {"email": None}, {"email": "  "}])
def test_normalise_identifier_missing(data: dict[str, object]) -> None:
    with pytest.raises(InvalidIdentifier, match="^email is missing$"):
        normalise_identifier(IdentifyMethod.email, data)


def test_normalise_identifier_names_the_field_when_invalid() -> None:
    with pytest.raises(InvalidIdentifier, match="^phone_number is invalid: "):
        normalise_identifier(IdentifyMethod.phone_number, {"phone_number": "12", "country_code": "+84"})
