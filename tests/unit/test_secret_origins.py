"""Where a stored secret may be sent (``shared.auth_config.BoundSecret``): the origin of a URL
(``shared.domains.url_origin``), compared normalised, and the move rule a PUT and the verifier share."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from shared.auth_config import AUTH_URL, WHITELIST_API_URL, BoundSecret, NotBound, moved
from shared.domains import url_origin

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None)


@pytest.mark.parametrize(("url", "origin"), [
    ("https://shop.example.com/auth?x=1#f", "https://shop.example.com:443"),
    ("HTTPS://Shop.Example.COM:443", "https://shop.example.com:443"),
    ("https://shop.example.com./auth", "https://shop.example.com:443"),
    ("http://shop.example.com", "http://shop.example.com:80"),
    ("http://shop.example.com:8080/", "http://shop.example.com:8080"),
    ("https://Bücher.example/x", "https://xn--bcher-kva.example:443"),
    ("https://xn--bcher-kva.example:443/y", "https://xn--bcher-kva.example:443"),
    ("http://user:pw@shop.example.com/", "http://shop.example.com:80"),
    ("http://127.0.0.1:9000/auth", "http://127.0.0.1:9000"),
    ("http://[0:0::1]/", "http://[::1]:80"),
    ("ftp://shop.example.com/", None),
    ("http:///auth", None),
    ("http://1.2.3/", None),  # neither a host name nor an IPv4 address
    ("http://shop.example.com:99999/", None),
    ("not a url", None),
    ("", None),
])
def test_url_origin(url: str, origin: str | None) -> None:
    assert url_origin(url) == origin


@PROPERTY
@given(st.text(max_size=200))
def test_url_origin_never_raises(text: str) -> None:
    origin = url_origin(text)
    assert origin is None or origin.startswith(("http://", "https://"))


@PROPERTY
@given(st.text(max_size=100), st.one_of(st.none(), st.text(max_size=100)))
def test_a_url_without_an_origin_is_always_a_move(url: str, saved: str | None) -> None:
    if url_origin(url) is None:
        assert moved({AUTH_URL: saved}, {AUTH_URL: url}) == [AUTH_URL]


def test_moves() -> None:
    saved = {AUTH_URL: "https://shop.example.com/auth", WHITELIST_API_URL: None}
    assert moved(saved, {AUTH_URL: "https://SHOP.example.com:443/other", WHITELIST_API_URL: None}) == []
    assert moved(saved, {AUTH_URL: None, WHITELIST_API_URL: None}) == []  # removing a URL sends nothing anywhere
    assert moved(saved, {AUTH_URL: "https://shop.example.com:8443/auth", WHITELIST_API_URL: None}) == [AUTH_URL]
    # Adding a whitelist API is a move, even on the Authentication URL's origin: the binding is per setting.
    assert moved(saved, {AUTH_URL: None, WHITELIST_API_URL: "https://shop.example.com/list"}) == [WHITELIST_API_URL]


def test_a_bound_secret_is_handed_out_only_for_its_origin() -> None:
    secret = BoundSecret("header_token", SecretStr("Bearer s3cret"), {AUTH_URL: "https://shop.example.com/auth"})
    assert secret.for_url(AUTH_URL, "https://shop.example.com/v2").get_secret_value() == "Bearer s3cret"
    with pytest.raises(NotBound) as refused:
        secret.for_url(AUTH_URL, "https://evil.example.com/auth")
    assert str(refused.value) == (
        "header_token: it was saved for the auth_url on https://shop.example.com:443, not for "
        "https://evil.example.com:443, so it was not sent; enter the header token again for the new URL")
    with pytest.raises(NotBound, match="saved when the domain_whitelist.api_url was not set"):
        secret.for_url(WHITELIST_API_URL, "https://shop.example.com/list")
    assert "s3cret" not in repr(secret)
