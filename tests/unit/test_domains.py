"""Domain whitelist rules: host normalisation, entry validation and Origin matching."""

from __future__ import annotations

import pytest

from shared.domains import (
    host_from_origin,
    normalise_domain_entry,
    normalise_host,
    origin_allowed,
)


@pytest.mark.parametrize(
    ("origin", "entries", "allowed"),
    [
        # exact
        ("https://example.com", ["example.com"], True),
        ("http://example.com", ["example.com"], True),
        ("https://other.com", ["example.com"], False),
        ("https://www.example.com", ["example.com"], False),
        # wildcard: any depth of subdomain, never the apex
        ("https://a.example.com", ["*.example.com"], True),
        ("https://a.b.example.com", ["*.example.com"], True),
        ("https://example.com", ["*.example.com"], False),
        # case
        ("https://Shop.EXAMPLE.com", ["example.com", "shop.example.com"], True),
        ("https://SHOP.example.com", ["*.example.com"], True),
        # trailing dot on origin and on entry
        ("https://example.com.", ["example.com"], True),
        ("https://example.com", ["example.com."], True),
        ("https://a.example.com.", ["*.example.com."], True),
        # IDN both ways
        ("https://xn--bcher-kva.de", ["bücher.de"], True),
        ("https://bücher.de", ["xn--bcher-kva.de"], True),
        ("https://shop.xn--bcher-kva.de", ["*.bücher.de"], True),
        # port is ignored
        ("https://example.com:8443", ["example.com"], True),
        ("http://localhost:3000", ["localhost"], True),
        ("http://127.0.0.1:8000", ["127.0.0.1"], True),
        # suffix tricks
        ("https://evilexample.com", ["example.com"], False),
        ("https://evilexample.com", ["*.example.com"], False),
        ("https://example.com.evil.io", ["example.com"], False),
        ("https://example.com.evil.io", ["*.example.com"], False),
        ("https://a.example.com.evil.io", ["*.example.com"], False),
        # no usable Origin
        (None, ["example.com"], False),
        ("", ["example.com"], False),
        ("null", ["example.com"], False),
        ("ftp://example.com", ["example.com"], False),
        ("chrome-extension://example.com", ["example.com"], False),
        # an empty whitelist allows nothing
        ("https://example.com", [], False),
    ],
)
def test_origin_allowed(origin: str | None, entries: list[str], allowed: bool) -> None:
    assert origin_allowed(origin, entries) is allowed


def test_invalid_entry_is_skipped_not_fatal() -> None:
    assert origin_allowed("https://example.com", ["*", "example.com"]) is True
    assert origin_allowed("https://example.com", ["*"]) is False


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("https://Shop.Example.com:8443", "shop.example.com"),
        ("HTTPS://Example.com", "example.com"),
        ("http://127.0.0.1:8080", "127.0.0.1"),
        ("https://bücher.de", "xn--bcher-kva.de"),
    ],
)
def test_host_from_origin(origin: str, host: str) -> None:
    assert host_from_origin(origin) == host


@pytest.mark.parametrize(
    "origin",
    [
        None,
        "",
        "null",
        "file://example.com",
        "example.com",
        "https://",
        "https://example.com/",
        "https://example.com/path",
        "https://example.com?q=1",
        "https://example.com#top",
        "https://user:pw@example.com",
        "https://example.com:notaport",
        "https://example.com:99999",
        "https://exa mple.com",
        "https://exa_mple.com",
        "https://[::1]:8080",
    ],
)
def test_host_from_origin_rejects(origin: str | None) -> None:
    assert host_from_origin(origin) is None


def test_normalise_host() -> None:
    assert normalise_host("Bücher.DE.") == "xn--bcher-kva.de"
    assert normalise_host("XN--BCHER-KVA.de") == "xn--bcher-kva.de"
    assert normalise_host("10.0.0.1") == "10.0.0.1"


@pytest.mark.parametrize("host", ["", ".", "a b.com", "a..b", "-a.com", "127.1"])
def test_normalise_host_rejects(host: str) -> None:
    with pytest.raises(ValueError):
        normalise_host(host)


@pytest.mark.parametrize(
    ("entry", "normalised"),
    [
        ("example.com", "example.com"),
        ("Example.COM.", "example.com"),
        ("*.example.com", "*.example.com"),
        ("*.Example.com.", "*.example.com"),
        ("*.a.example.com", "*.a.example.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("*.bücher.de", "*.xn--bcher-kva.de"),
        ("localhost", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("  example.com  ", "example.com"),
    ],
)
def test_normalise_domain_entry_accepts(entry: str, normalised: str) -> None:
    assert normalise_domain_entry(entry) == normalised


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("*", "lone"),
        ("*.com", "two labels"),
        ("foo.*.com", "first label"),
        ("*example.com", "first label"),
        ("*.*.example.com", "first label"),
        ("https://example.com", "scheme"),
        ("example.com/path", "path"),
        ("example.com:8080", "port"),
        ("user@example.com", "user info"),
        ("exa mple.com", "whitespace"),
        ("*.127.0.0.1", "IP address"),
        ("exa_mple.com", "not a valid host name"),
    ],
)
def test_normalise_domain_entry_rejects(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalise_domain_entry(entry)
