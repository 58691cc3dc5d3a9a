"""A visitor's profile as Doorman reads it, wherever it comes from: an Authentication URL's ``data``, a
signed identity token's claims (the verifier), or an identity the business pushed (read by the gateway
when pushed, by the verifier when its widget token is used). One set of rules for all: the identifier
normalised, email and phone tidied, strings and ``metadata`` bounded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from shared.events import Identity, IdentifyMethod
from shared.identifiers import (
    IDENTIFIER_FIELDS,
    InvalidIdentifier,
    normalise_email,
    normalise_identifier,
    normalise_phone,
)

MAX_STRING = 2048  # characters, for each profile field
MAX_METADATA_BYTES = 16384  # size of data.metadata re-serialised as compact UTF-8 JSON
MAX_JSON_DEPTH = 16  # nesting of objects/arrays; the top-level object is depth 1

PROFILE_FIELDS = ("id", "name", "email", "phone_number", "country_code", "avatar", "label", "external_workspace_id")
# The business's own workspace (OpenCX's externalId) is part of the contact's unique key: kept short.
MAX_WORKSPACE_ID = 256
NUMBERED_FIELDS = ("id", "external_workspace_id")  # a string or an integer

# A widget token (from an identity push) starts with this, so the verifier knows one without reading a
# business's token: the gateway makes them, the verifier redeems them.
WIDGET_TOKEN_PREFIX = "dmw_"


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether objects/arrays in ``value`` nest deeper than ``limit`` (iteratively)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class InvalidProfile(ValueError):
    """A profile field cannot be used; ``str(exc)`` names it as the caller labels it (``data.email``,
    ``claim "email"``). ``field`` is the profile field (``id``, ``email``, ..., ``metadata``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


Label = Callable[[str], str]


def _data_label(field: str) -> str:
    return f"data.{field}"


def _profile_field(data: Mapping[str, Any], field: str, label: Label) -> str | int | None:
    """The field as received (strings stripped; blank is None), or InvalidProfile."""
    value = data.get(field)
    if value is None:
        return None
    if field in NUMBERED_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        kind = "a string or an integer" if field in NUMBERED_FIELDS else "a string"
        raise InvalidProfile(field, f"{label(field)} must be {kind} or null")
    limit = MAX_WORKSPACE_ID if field == "external_workspace_id" else MAX_STRING
    if len(value) > limit:
        raise InvalidProfile(field, f"{label(field)} is longer than {limit} characters")
    return value.strip() or None


def _metadata(data: Mapping[str, Any], label: Label) -> dict[str, Any]:
    metadata = data.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidProfile("metadata", f"{label('metadata')} must be an object or null")
    if depth_exceeds(metadata, MAX_JSON_DEPTH):
        raise InvalidProfile("metadata", f"{label('metadata')} is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        size = len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8"))
    except ValueError:  # NaN or Infinity (a signed token's claims may hold them; JSON cannot)
        raise InvalidProfile("metadata", f"{label('metadata')} holds a number JSON cannot carry (NaN or Infinity)") from None
    if size > MAX_METADATA_BYTES:
        raise InvalidProfile("metadata", f"{label('metadata')} is larger than {MAX_METADATA_BYTES} bytes")
    return metadata


def build_identity(data: Mapping[str, Any], method: IdentifyMethod, *, label: Label = _data_label) -> Identity:
    """The visitor's Identity from a profile object: the Authentication URL's ``data``, or a signed
    token's claims mapped to the same field names. One set of rules for both: the identifier
    normalised, email and phone tidied, strings and ``metadata`` bounded. Raises InvalidProfile,
    naming each field with ``label``."""
    fields = {field: _profile_field(data, field, label) for field in PROFILE_FIELDS}
    metadata = _metadata(data, label)
    field = IDENTIFIER_FIELDS[method]
    try:
        identifier = normalise_identifier(method, fields)
    except InvalidIdentifier as exc:
        # normalise_identifier's messages start with the field's name ("email is missing").
        raise InvalidProfile(field, label(field) + str(exc).removeprefix(field)) from None

    profile: dict[str, str | None] = {
        name: None if value is None else str(value) for name, value in fields.items()
    }
    _tidy_contact_fields(profile)
    profile[field] = identifier
    return Identity(identifier=identifier, metadata=metadata, **profile)


def _tidy_contact_fields(profile: dict[str, str | None]) -> None:
    """Store email and phone in their normal form when they have one, so agents can search
    them; a value that does not normalise is kept as received (it is not the identifier)."""
    if profile["email"]:
        try:
            profile["email"] = normalise_email(profile["email"])
        except InvalidIdentifier:
            pass
    if profile["phone_number"]:
        try:
            profile["phone_number"] = normalise_phone(profile["phone_number"], profile["country_code"])
        except InvalidIdentifier:
            pass
