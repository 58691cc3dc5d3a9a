"""The API document's patterns say exactly what the request models accept (``services.gateway.constraints``).

For each constrained field: any string (and any string drawn from the pattern itself) is accepted by the model
if and only if the document's pattern matches it. A pattern looser than the model would have a client sending
what the document allows refused; a stricter one, a client refusing itself what the API takes.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

import jsonschema_rs

from services.gateway.constraints import EMAIL, HEADER_VALUE, HTTP_URL, ISSUER_URL, NO_NUL, NOT_BLANK, WHITESPACE
from shared.destinations import DestinationBlocked, Destinations
from services.gateway.admin.identities import PushIdentity
from services.gateway import schemas
from services.gateway.schemas import BotQuery, CollectedContact, CustomAuthSettingsIn, NewBot
from services.gateway.admin.webhooks import DeliveryQuery

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

SPACES = st.sampled_from(["", " ", "\t", "\n", "\u3000", "\x1c", "\xa0 "])
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


def from_pattern(pattern: str) -> st.SearchStrategy[str]:
    """Strings the pattern matches, read as JSON Schema does (``$``: the end of the string)."""
    return st.from_regex(re.compile(pattern.removesuffix("$") + r"\Z"))


def padded(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda before, core, after: before + core + after, SPACES, strategy, SPACES)


def accepts(model: type[BaseModel], body: dict[str, Any]) -> bool:
    try:
        model.model_validate(body)
    except ValidationError:
        return False
    return True


# The outbound client's URL checks (the text-only ones) with every address and port allowed: which of those a
# deployment calls is its policy, stated in words (the document's 422), not in the pattern.
CHECKER = Destinations(allow_private=True, allow=lambda _: True)


def called(url: str) -> bool:
    """Whether the outbound client's URL checks take ``url``."""
    try:
        CHECKER.check_url(url)
    except DestinationBlocked:
        return False
    return True


def documented(model: type[BaseModel], *path: str) -> str:
    """The pattern the document gives the property at ``path`` (nested models through their $defs)."""
    schema = model.model_json_schema()
    node = schema
    for name in path:
        node = node["properties"][name]
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node.get("pattern") or next(b["pattern"] for b in node["anyOf"] if "pattern" in b)


def agree(pattern: str, accepted: bool, value: str) -> None:
    assert accepted == bool(re.fullmatch(pattern, value)), (value, accepted)


URLS = st.one_of(
    from_pattern(HTTP_URL), ANY_TEXT, padded(st.builds(
        lambda scheme, host, rest: f"{scheme}://{host}{rest}", st.sampled_from(["http", "HTTPS", "ftp", "http:"]),
        st.sampled_from(["shop.example.com", "127.0.0.1:8080", "[::1]", "[zz]", "a b", "user:pw@x.io", "", ":80",
                         "bücher.de", "xn--bcher-kva.de", "x.io:99999", "x.io:0", "0x7f000001", "127.1", "1.2.3.4.5",
                         "a_b.example.", "a%41.io", "[fe80::1%25eth0]", "x" * 64 + ".io", ".".join(["a" * 63] * 4),
                         "example.123", "example.0xff", "256.1.1.1"]),
        st.sampled_from(["", "/auth", "/a b", "?q=1#f", "/ä", "/\x01"]))),
)


@PROPERTY
@given(url=URLS)
@example(url="http://[zz]/")
@example(url="http://[2606:4700:4700::1111]:8443/auth")
def test_the_url_pattern_is_what_the_settings_accept(url: str) -> None:
    pattern = documented(CustomAuthSettingsIn, "auth_url")
    assert pattern == HTTP_URL
    accepted = accepts(CustomAuthSettingsIn, {"enabled": False, "auth_url": url}) and called(url)
    if "xn--" in url.lower():  # an A-label must also be valid punycode, which no pattern says: refused, not documented
        assert not accepted or re.fullmatch(pattern, url)
        return
    agree(pattern, accepted, url)


AS_URI = jsonschema_rs.Draft202012Validator({"type": "string", "format": "uri"}, validate_formats=True)


@PROPERTY
@given(url=st.one_of(from_pattern(HTTP_URL), from_pattern(ISSUER_URL)))
@example(url="http://[::1]:8080/a%20b?q=/?#f")
def test_every_string_the_url_patterns_match_is_a_uri(url: str) -> None:
    """Why the API fuzz test tells Schemathesis that no string of these patterns breaks the ``uri`` format."""
    assert AS_URI.is_valid(url), url


def test_an_idn_host_is_written_in_its_a_label_form() -> None:
    assert accepts(CustomAuthSettingsIn, {"enabled": False, "auth_url": "https://xn--bcher-kva.example/auth"})
    assert not accepts(CustomAuthSettingsIn, {"enabled": False, "auth_url": "https://bücher.example/auth"})
    assert not accepts(CustomAuthSettingsIn, {"enabled": False, "auth_url": "https://xn--zz.example/auth"})


@PROPERTY
@given(token=padded(from_pattern(HEADER_VALUE)) | ANY_TEXT | st.sampled_from(["Bearer x\r\ny", "Bearer \x7f", "\t"]))
def test_the_header_token_pattern_is_what_the_settings_accept(token: str) -> None:
    pattern = documented(CustomAuthSettingsIn, "header_token")
    agree(pattern, accepts(CustomAuthSettingsIn, {"enabled": False, "header_token": token}), token)


EMAILS = from_pattern(EMAIL) | ANY_TEXT | padded(st.emails()) | st.sampled_from(["a@b@c", "@b", "a@", "a b@c", " "])


@PROPERTY
@given(email=EMAILS)
@example(email="a@b.example\x1e")  # str.strip strips it (normalise_email), pydantic does not: accepted
@example(email="a\x1e@b.example")  # str.isspace: refused
@example(email="\x1c")  # not blank to the form, no email either: refused
@example(email=" \u3000")  # blank: the form takes it as absent, the push refuses it
def test_the_email_patterns_are_what_the_form_and_the_push_accept(email: str) -> None:
    agree(documented(PushIdentity, "email"), accepts(PushIdentity, {"email": email}), email)
    agree(documented(CollectedContact, "email"), accepts(CollectedContact, {"name": "x", "email": email}), email)


@PROPERTY
@given(name=padded(from_pattern(NOT_BLANK)) | ANY_TEXT | SPACES | st.just("a\x00b"))
def test_text_that_must_not_be_blank_is_as_documented(name: str) -> None:
    assert documented(NewBot, "name") == NOT_BLANK
    agree(NOT_BLANK, accepts(NewBot, {"name": name[:200]}), name[:200])
    agree(documented(schemas.TestRequest, "access_token"), accepts(schemas.TestRequest, {"access_token": name}), name)


@PROPERTY
@given(text=ANY_TEXT | st.just("a\x00b"))
def test_free_text_is_anything_but_nul(text: str) -> None:
    assert documented(schemas.TestRequest, "origin") == NO_NUL
    agree(NO_NUL, accepts(schemas.TestRequest, {"access_token": "t", "origin": text}), text)


@PROPERTY
@given(data=st.data(), model=st.sampled_from([BotQuery, DeliveryQuery]))
@example(data=None, model=BotQuery)
def test_a_cursor_is_anything_of_its_pattern(data: st.DataObject | None, model: type[BaseModel]) -> None:
    pattern = documented(model, "cursor")
    cursors = padded(from_pattern(pattern)) | ANY_TEXT | st.sampled_from(["1.x", "12345678901234567.00000000-0000-0000-0000-000000000000"])
    cursor = data.draw(cursors) if data else "0.00000000-0000-0000-0000-000000000000"
    agree(pattern, accepts(model, {"cursor": cursor}), cursor)


def test_whitespace_in_patterns_is_spelt_out() -> None:
    """No ``\\s``: regex engines read it differently, and none as ``str.strip`` does."""
    for pattern in (EMAIL, HEADER_VALUE, HTTP_URL, NO_NUL, NOT_BLANK):
        assert "\\s" not in pattern
    assert "\u3000" in WHITESPACE and "\x1c" not in WHITESPACE  # pydantic strips White_Space, not str.isspace
