"""Normalising the identifiers that match a visitor to a contact.

Pure functions, no I/O. Emails are trimmed and lower-cased, phone numbers
become E.164 (via the ``phonenumbers`` library, never a regex) and ids become
trimmed strings. Every failure is an :class:`InvalidIdentifier` whose message
is a short reason a person can act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

from shared.events import IdentifyMethod


class InvalidIdentifier(ValueError):
    """The value cannot serve as an identifier; ``str(exc)`` says why."""


# The field of the business's answer that holds each identify method's value.
IDENTIFIER_FIELDS: dict[IdentifyMethod, str] = {
    IdentifyMethod.id: "id",
    IdentifyMethod.email: "email",
    IdentifyMethod.phone_number: "phone_number",
}

_PARSE_ERRORS: dict[int, str] = {
    NumberParseException.INVALID_COUNTRY_CODE: "the country code is missing or unknown",
    NumberParseException.NOT_A_NUMBER: "it is not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "the number is too short",
    NumberParseException.TOO_SHORT_NSN: "the number is too short",
    NumberParseException.TOO_LONG: "the number is too long",
}

_POSSIBILITY_ERRORS: dict[int, str] = {
    ValidationResult.INVALID_COUNTRY_CODE: "the country code is unknown",
    ValidationResult.TOO_SHORT: "the number is too short",
    ValidationResult.TOO_LONG: "the number is too long",
    ValidationResult.INVALID_LENGTH: "the number has the wrong length",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "the number lacks an area code",
}


def normalise_email(value: str) -> str:
    """Trim and lower-case an email address after a minimal shape check."""
    email = value.strip().lower()
    if not email:
        raise InvalidIdentifier("the email address is empty")
    if any(char.isspace() for char in email):
        raise InvalidIdentifier("the email address contains whitespace")
    local, at, domain = email.partition("@")
    if not at or "@" in domain:
        raise InvalidIdentifier("the email address must contain exactly one '@'")
    if not local or not domain:
        raise InvalidIdentifier("the email address needs a part before and after '@'")
    return email


def _region_for(country_code: str) -> tuple[str, int | None]:
    """Turn "+84", "84" or "VN" into a region to parse national numbers with.

    Returns the region and, for non-geographic calling codes (e.g. +800), the
    calling code itself, since those have no region to parse against.
    """
    code = country_code.strip()
    digits = code.removeprefix("+")
    if digits.isdecimal():
        calling_code = int(digits)
        region = phonenumbers.region_code_for_country_code(calling_code)
        if region == phonenumbers.UNKNOWN_REGION:
            raise InvalidIdentifier(f"unknown country code {country_code!r}")
        if region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY:
            return region, calling_code
        return region, None
    region = code.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidIdentifier(f"unknown country code {country_code!r}")
    return region, None


def normalise_phone(number: str, country_code: str | None) -> str:
    """Return ``number`` in E.164 form ("+84912345678").

    A number starting with "+" or "00" is read as international whatever
    ``country_code`` says; otherwise ``country_code`` ("+84", "84" or "VN")
    says which country the national number belongs to.
    """
    text = number.strip()
    if not text:
        raise InvalidIdentifier("the phone number is empty")
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        if text.startswith("+"):
            parsed = phonenumbers.parse(text, None)
        elif country_code is None or not country_code.strip():
            raise InvalidIdentifier("the phone number has no country code")
        else:
            region, calling_code = _region_for(country_code)
            if calling_code is not None:
                parsed = phonenumbers.parse(f"+{calling_code}{text}", None)
            else:
                parsed = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        raise InvalidIdentifier(_PARSE_ERRORS.get(exc.error_type, "it is not a phone number")) from exc

    possibility = phonenumbers.is_possible_number_with_reason(parsed)
    if possibility != ValidationResult.IS_POSSIBLE:
        raise InvalidIdentifier(_POSSIBILITY_ERRORS.get(possibility, "it is not a possible phone number"))
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidIdentifier("it is not a valid phone number for its country")
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)


def normalise_id(value: object) -> str:
    """Accept a string or an integer (not a bool or float) as a trimmed string."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidIdentifier("the id must be a string or an integer")
    text = str(value).strip()
    if not text:
        raise InvalidIdentifier("the id is empty")
    return text


def normalise_identifier(method: IdentifyMethod, data: Mapping[str, Any]) -> str:
    """Normalise the identify method's field of ``data``.

    Messages start with the field name ("email is missing", "phone_number is
    invalid: the number is too short") so callers can prefix a path.
    """
    field = IDENTIFIER_FIELDS[method]
    value = data.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidIdentifier(f"{field} is missing")
    try:
        if method is IdentifyMethod.id:
            return normalise_id(value)
        if not isinstance(value, str):
            raise InvalidIdentifier("it must be a string")
        if method is IdentifyMethod.email:
            return normalise_email(value)
        country_code = data.get("country_code")
        if country_code is not None and not isinstance(country_code, str):
            raise InvalidIdentifier("country_code must be a string")
        return normalise_phone(value, country_code)
    except InvalidIdentifier as exc:
        raise InvalidIdentifier(f"{field} is invalid: {exc}") from exc
