"""What the request models enforce, in the words of JSON Schema, for the API document.

The models (``schemas``) strip surrounding whitespace from every string and refuse NUL characters
(PostgreSQL text cannot hold them); a string with a minimum length must keep a character once
stripped. :func:`document_strings` writes that into each model's schema as a ``pattern``, and the
patterns here say the rest: URLs, emails, cursors. A check no pattern can state (a phone number valid
for its country, an internationalised domain name) is a named ``format`` the document describes.

Whitespace is spelt out, character by character, as pydantic strips it (Unicode's White_Space): a
pattern's ``\\s`` means ASCII whitespace to some regex engines and more to others, and Python's
``str.isspace`` counts four control characters pydantic keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

# What str_strip_whitespace strips (tests/unit/test_api_declarations.py checks it), usable in a character class
# and as str.strip's argument alike.
WHITESPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
              + "\u2028\u2029\u202f\u205f\u3000")
NUL = "\x00"

# Formats no pattern can state; the document's description of each field says what they mean.
PHONE_NUMBER = "phone-number"  # valid for its country (libphonenumber); a national number needs country_code
DOMAIN_ENTRY = "domain-entry"  # a whitelist entry: example.com, *.example.com, an IDN, localhost or an IPv4 address


# A phone number field's schema is its format alone: beside anything else (a length bound, a description)
# Schemathesis draws any string for it. Its field's description says its length bound.
PHONE_NUMBER_SCHEMA = {"type": "string", "format": PHONE_NUMBER}


def stripped(core: str) -> str:
    """A pattern for a string that, stripped of surrounding whitespace, is exactly ``core``."""
    return f"^[{WHITESPACE}]*(?:{core})[{WHITESPACE}]*$"


def text(excluded: str = NUL, *, blank: bool = True) -> str:
    """A string with none of ``excluded`` (a character-class body, checked before stripping); without ``blank``,
    a character that is not whitespace."""
    return f"^[^{excluded}]*$" if blank else f"^[^{excluded}]*[^{WHITESPACE}{excluded}][^{excluded}]*$"


NO_NUL = text()
NOT_BLANK = text(blank=False)
# What the verifier's outbound client refuses in a header (unsendable_header): control characters but the tab (a header token is checked as sent).
HEADER_VALUE = text("\x00-\x08\x0a-\x1f\x7f", blank=False)
# shared.identifiers.normalise_email strips and checks with str.strip/str.isspace, which also count four
# separators pydantic keeps: an email is what remains of the value without those, one @ between two non-empty parts.
_ISSPACE = WHITESPACE + "\x1c\x1d\x1e\x1f"
_EMAIL_ADDRESS = f"[{_ISSPACE}]*[^@{_ISSPACE}{NUL}]+@[^@{_ISSPACE}{NUL}]+[{_ISSPACE}]*"
EMAIL = f"^{_EMAIL_ADDRESS}$"
BLANK_OR_EMAIL = f"^(?:[{WHITESPACE}]*|{_EMAIL_ADDRESS})$"  # the form: blank is as absent
# An http(s) URL the verifier's outbound client will call (OutboundClient.check_url), in ASCII: an [IPv6] address,
# an IPv4 address as a.b.c.d, or a host name of letters, digits, "-" and "_" whose last label starts with a letter
# (a name, never a number) and which fits DNS's 253 characters by its shape: up to two labels of up to 63 characters,
# three more of up to 30, and the last of up to 30 (a bound a pattern can state without lookaheads, which
# Schemathesis could only draw by filtering); an IDN in its xn-- form. Then a port from 1 to 65535, no user name or
# password, and a path, query and fragment of the characters RFC 3986 allows. The addresses and ports a deployment
# calls are its policy (DOORMAN_ALLOW_PRIVATE_NETWORKS, DOORMAN_OUTBOUND_PORTS), stated in words.
_H16 = "[0-9A-Fa-f]{1,4}"
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = f"{_OCTET}(?:\\.{_OCTET}){{3}}"
_LS32 = f"(?:{_H16}:{_H16}|{_IPV4})"
_IPV6 = "|".join([
    f"(?:{_H16}:){{6}}{_LS32}", f"::(?:{_H16}:){{5}}{_LS32}", f"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
    *(f"(?:(?:{_H16}:){{0,{n}}}{_H16})?::(?:{_H16}:){{{3 - n}}}{_LS32}" for n in (1, 2)),
    f"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}", f"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
    f"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}", f"(?:(?:{_H16}:){{0,6}}{_H16})?::",
])


def _label(longest: int, first: str = "[A-Za-z0-9_]") -> str:
    return f"{first}(?:[A-Za-z0-9_-]{{0,{longest - 2}}}[A-Za-z0-9_])?"


_NAME = f"(?:{_label(63)}\\.){{0,2}}(?:{_label(30)}\\.){{0,3}}{_label(30, first='[A-Za-z]')}\\.?"
_HOST = f"(?:\\[(?:{_IPV6})\\]|{_IPV4}|{_NAME})"
_PORT = "0*(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_PCHAR = "(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})"
_REST = f"(?:/{_PCHAR}*)*(?:\\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?"  # path, query, fragment
HTTP_URL = f"^[hH][tT][tT][pP][sS]?://{_HOST}(?::{_PORT})?{_REST}$"  # as sent: a URI has no surrounding spaces
# An OpenID Provider's issuer: such a URL with a path but no query or fragment (OpenID Connect Discovery 1.0).
ISSUER_URL = f"^[hH][tT][tT][pP][sS]?://{_HOST}(?::{_PORT})?(?:/{_PCHAR}*)*$"


def one_filled(**fields: dict[str, Any]) -> dict[str, Any]:
    """A model's ``anyOf``: at least one of ``fields`` is present, its value as the given schema says."""
    return {"anyOf": [{"required": [name], "properties": {name: schema}} for name, schema in fields.items()]}


def when(values: dict[str, Any], *, then: dict[str, Any]) -> Callable[[dict[str, Any], type[BaseModel]], None]:
    """A model's ``if``/``then`` (its ``json_schema_extra``): when each property named in ``values`` has that value
    (a list: one of those), the object must also satisfy ``then``. A property that may be absent holds the value
    when its default is one of them; any other must be present for the condition to hold."""
    def extra(schema: dict[str, Any], model: type[BaseModel]) -> None:
        accepted = {name: value if isinstance(value, list) else [value] for name, value in values.items()}

        def by_default(name: str) -> bool:
            field = model.model_fields[name]
            return not field.is_required() and field.default in accepted[name]

        schema["if"] = {"properties": {name: {"enum": value} for name, value in accepted.items()},
                        "required": [name for name in values if not by_default(name)]}
        schema["then"] = then

    return extra


def all_of(*extras: Callable[[dict[str, Any], type[BaseModel]], None]) -> Callable[[dict[str, Any], type[BaseModel]], None]:
    """Several :func:`when` conditions on one model (its ``allOf``), each holding on its own."""
    def extra(schema: dict[str, Any], model: type[BaseModel]) -> None:
        parts: list[dict[str, Any]] = []
        for each in extras:
            parts.append({})
            each(parts[-1], model)
        schema["allOf"] = parts

    return extra


def present(name: str) -> dict[str, Any]:
    """``then`` of :func:`when`: the string property ``name`` is there (not null)."""
    return {"required": [name], "properties": {name: {"type": "string"}}}


def document_strings(schema: dict[str, Any]) -> None:
    """Give each string property of a model's JSON schema that states no pattern or format of its own the
    pattern of what the model enforces: no NUL, and not blank once stripped when it has a minimum length."""
    for prop in schema.get("properties", {}).values():
        _document_string(prop)


def _document_string(node: dict[str, Any]) -> None:
    if any(key in node for key in ("pattern", "format", "enum", "const", "$ref")):
        return
    if node.get("type") == "string":
        node["pattern"] = NOT_BLANK if node.get("minLength", 0) >= 1 else NO_NUL
    for branch in node.get("anyOf", []):
        _document_string(branch)
    if isinstance(node.get("items"), dict):
        _document_string(node["items"])
