"""Property tests for the domain whitelist rules (``shared.domains``).

The example tests in ``test_domains.py`` pin single cases; these say what must hold for every
host: exact entries match their own origin however it is spelt, wildcards match subdomains and
never the apex, whole-label matching defeats suffix and prefix tricks, IDNs match in either form,
``host_from_origin`` never raises, and normalising an entry twice changes nothing; any ``Origin`` header value,
bytes that are not text included, is kept as storable text or not at all.
"""

from __future__ import annotations

import idna
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from shared.domains import (
    MAX_ORIGIN, host_from_origin, normalise_domain_entry, normalise_host, origin_allowed, origin_header,
)

# Modest and reproducible: the whole file runs in a few seconds.
PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

# --- strategies ---------------------------------------------------------------------------------

LDH = "abcdefghijklmnopqrstuvwxyz0123456789"


@st.composite
def ascii_labels(draw: st.DrawFn, *, letters_only: bool = False) -> str:
    """A valid LDH label: 1-20 chars, hyphens only inside and never at positions 3-4 ("xn--")."""
    alphabet = "abcdefghijklmnopqrstuvwxyz" if letters_only else LDH
    label = draw(st.text(alphabet, min_size=1, max_size=20))
    if len(label) > 2 and draw(st.booleans()):
        at = draw(st.integers(1, len(label) - 1))
        if at != 2 and at != 3:
            label = label[:at] + "-" + label[at:]
    return label


@st.composite
def domains(draw: st.DrawFn, min_labels: int = 1, max_labels: int = 4) -> str:
    """A normalised ASCII host name; its last label has a letter (so it is never read as IPv4)."""
    head = draw(st.lists(ascii_labels(), min_size=min_labels - 1, max_size=max_labels - 1))
    tld = draw(ascii_labels(letters_only=True))
    return ".".join([*head, tld])


def recase(draw: st.DrawFn, text: str) -> str:
    """``text`` with each character's case chosen at random."""
    flags = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if up else c for c, up in zip(text, flags))


@st.composite
def origins_for(draw: st.DrawFn, host: str) -> str:
    """An Origin for ``host``: any scheme case, letter case, optional trailing dot and port."""
    scheme = recase(draw, draw(st.sampled_from(["http", "https"])))
    spelt = recase(draw, host) + draw(st.sampled_from(["", "."]))
    port = draw(st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}")))
    return f"{scheme}://{spelt}{port}"


# Letters whose IDNA 2008 status is PVALID and whose case mapping is one-to-one.
UNICODE_LETTERS = "äöüéèêñçåøæłžščőűяжщдлфλπωδ" + "中文日本語한국"


@st.composite
def idn_labels(draw: st.DrawFn) -> str:
    """A U-label with at least one non-ASCII letter (the A-label is "xn--...")."""
    label = draw(st.text(UNICODE_LETTERS + "abcxyz019", min_size=1, max_size=10))
    return label + draw(st.sampled_from(UNICODE_LETTERS))


@st.composite
def idn_domains(draw: st.DrawFn) -> str:
    """A host name with at least one U-label."""
    head = [draw(idn_labels()), *draw(st.lists(st.one_of(idn_labels(), ascii_labels()), max_size=2))]
    head = draw(st.permutations(head))
    tld = draw(st.one_of(idn_labels(), ascii_labels(letters_only=True)))
    return ".".join([*head, tld])


def a_label_form(host: str) -> str:
    return idna.encode(host, uts46=True).decode("ascii")


# --- exact entries ------------------------------------------------------------------------------


@PROPERTY
@given(data=st.data(), host=domains())
def test_exact_entry_matches_its_origin_however_spelt(data: st.DataObject, host: str) -> None:
    origin = data.draw(origins_for(host))
    entry = data.draw(st.builds(lambda e, dot: e + dot, st.just(host).map(str.upper) | st.just(host), st.sampled_from(["", "."])))
    assert host_from_origin(origin) == host
    assert origin_allowed(origin, [entry])


@PROPERTY
@given(data=st.data(), octets=st.tuples(*[st.integers(0, 255)] * 4))
def test_ipv4_entry_matches_its_origin(data: st.DataObject, octets: tuple[int, ...]) -> None:
    address = ".".join(map(str, octets))
    assert normalise_domain_entry(address) == address
    assert origin_allowed(data.draw(origins_for(address)), [address])


@PROPERTY
@given(data=st.data(), host=domains(), sub=ascii_labels())
def test_exact_entry_never_matches_a_subdomain(data: st.DataObject, host: str, sub: str) -> None:
    assert not origin_allowed(data.draw(origins_for(f"{sub}.{host}")), [host])


# --- wildcards ----------------------------------------------------------------------------------


@PROPERTY
@given(data=st.data(), base=domains(min_labels=2), subs=st.lists(ascii_labels(), min_size=1, max_size=3))
def test_wildcard_matches_every_subdomain_never_the_apex(data: st.DataObject, base: str, subs: list[str]) -> None:
    entry = data.draw(st.sampled_from([f"*.{base}", f"*.{base.upper()}", f"*.{base}."]))
    subdomain = ".".join([*subs, base])
    assert origin_allowed(data.draw(origins_for(subdomain)), [entry])
    assert not origin_allowed(data.draw(origins_for(base)), [entry])


@PROPERTY
@given(base=domains(max_labels=1))
def test_wildcard_over_a_single_label_is_refused(base: str) -> None:
    with pytest.raises(ValueError):
        normalise_domain_entry(f"*.{base}")


# --- whole-label matching: suffix and prefix tricks ----------------------------------------------

EVIL_SUFFIXES = st.sampled_from([".evil.io", ".evil.example", ".attacker-site.net"])
EVIL_PREFIXES = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)


@PROPERTY
@given(data=st.data(), host=domains(min_labels=2), suffix=EVIL_SUFFIXES, wildcard=st.booleans())
def test_appending_a_suffix_never_matches(data: st.DataObject, host: str, suffix: str, wildcard: bool) -> None:
    # A wildcard legitimately matches host+suffix when host+suffix is one of its subdomains.
    assume(not (host + suffix).endswith("." + host))
    entry = f"*.{host}" if wildcard else host
    assert not origin_allowed(data.draw(origins_for(host + suffix)), [entry])


@PROPERTY
@given(data=st.data(), host=domains(min_labels=2), prefix=EVIL_PREFIXES, wildcard=st.booleans(),
       subs=st.lists(ascii_labels(), max_size=2))
def test_prepending_letters_without_a_dot_never_matches(
    data: st.DataObject, host: str, prefix: str, wildcard: bool, subs: list[str],
) -> None:
    entry = f"*.{host}" if wildcard else host
    evil = ".".join([*subs, prefix + host])
    assert not origin_allowed(data.draw(origins_for(evil)), [entry])


# --- IDNs ---------------------------------------------------------------------------------------


@PROPERTY
@given(host=idn_domains(), scheme=st.sampled_from(["http", "https"]), sub=ascii_labels())
def test_matching_is_the_same_for_u_labels_and_a_labels(host: str, scheme: str, sub: str) -> None:
    try:
        ascii_host = a_label_form(host)
    except idna.IDNAError:
        assume(False)  # not a registrable IDN (e.g. too long): nothing to compare
    assert ascii_host.isascii() and "xn--" in ascii_host
    assert normalise_host(host) == normalise_host(ascii_host) == ascii_host
    assert normalise_host(host.upper()) == ascii_host
    for origin_host in (host, ascii_host):
        assert host_from_origin(f"{scheme}://{origin_host}") == ascii_host
        for entry in (host, ascii_host):
            assert origin_allowed(f"{scheme}://{origin_host}", [entry])
            assert not origin_allowed(f"{scheme}://{origin_host}", [f"*.{entry}"])
            assert origin_allowed(f"{scheme}://{sub}.{origin_host}", [f"*.{entry}"])
            assert not origin_allowed(f"{scheme}://{sub}.{origin_host}", [entry])


# --- robustness ---------------------------------------------------------------------------------

ORIGIN_LIKE = st.builds(
    lambda scheme, rest: scheme + rest,
    st.sampled_from(["", "http://", "https://", "HTTPS://", "ftp://", "http:", "//", "null"]),
    st.text(st.characters(codec="utf-8"), max_size=40)
    | st.text("abc.-:@[]/?#%*0123456789 \t\x00ä中。．", max_size=30),
)


@PROPERTY
@given(origin=st.none() | st.text() | ORIGIN_LIKE)
def test_host_from_origin_never_raises(origin: str | None) -> None:
    host = host_from_origin(origin)
    if host is not None:
        assert host == normalise_host(host)  # whatever it returns is already canonical
        assert origin_allowed(origin, [host])


@PROPERTY
@given(origin=st.none() | st.text() | ORIGIN_LIKE,
       entries=st.lists(st.text(max_size=20) | st.sampled_from(["*", "*.", "*.com", "example.com"]), max_size=4))
def test_origin_allowed_never_raises(origin: str | None, entries: list[str]) -> None:
    assert isinstance(origin_allowed(origin, entries), bool)


ENTRY_LIKE = st.builds(
    lambda star, body, dot: star + body + dot,
    st.sampled_from(["", "*.", "*", " ", "**."]),
    st.text("abcXYZ019-._*ä中ß。．Ⅻﬀ ", max_size=25) | domains() | idn_domains(),
    st.sampled_from(["", ".", " "]),
)


@PROPERTY
@given(entry=st.text(max_size=30) | ENTRY_LIKE)
def test_normalise_domain_entry_is_idempotent(entry: str) -> None:
    try:
        once = normalise_domain_entry(entry)
    except ValueError:
        return
    assert normalise_domain_entry(once) == once
    assert once.isascii() and once == once.lower() and not once.endswith(".")


@PROPERTY
@given(host=st.text(max_size=30) | ENTRY_LIKE)
def test_normalise_host_is_idempotent(host: str) -> None:
    try:
        once = normalise_host(host)
    except ValueError:
        return
    assert normalise_host(once) == once


# Regression: one trailing dot used to be stripped before IDNA encoding, which kept a second one
# ("example.com.." -> "example.com.", not a fixed point). Hypothesis found it; pinned here.
@pytest.mark.parametrize("entry", ["example.com..", "*.example.com.."])
def test_double_trailing_dot_entry_is_refused_or_fully_normalised(entry: str) -> None:
    try:
        once = normalise_domain_entry(entry)
    except ValueError:
        return
    assert normalise_domain_entry(once) == once


def test_double_trailing_dot_origin_has_no_host() -> None:
    assert host_from_origin("https://example.com..") is None


@PROPERTY
@given(host=domains())
@example(host="example.com")
def test_normalised_entries_are_fixed_points(host: str) -> None:
    assert normalise_domain_entry(host) == host
    if "." in host:
        assert normalise_domain_entry(f"*.{host}") == f"*.{host}"


# --- the Origin header as the gateway receives it -------------------------------------------------

# What aiohttp hands over as a header value: any text, and bytes that are not UTF-8 as lone surrogates.
HEADER_VALUES = (st.text() | ORIGIN_LIKE | st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape"))
                 | st.text(min_size=MAX_ORIGIN - 5, max_size=MAX_ORIGIN + 5))


@PROPERTY
@given(value=st.none() | HEADER_VALUES)
@example(value="https://\udcff\udcfe.example.com")
@example(value="https://bücher.de")
def test_any_origin_header_is_kept_as_text_a_database_and_an_event_can_hold_or_not_at_all(value: str | None) -> None:
    """``origin_header`` decides what a widget open stores (sessions, the activity log) and puts in its event:
    the header as sent, or nothing; never text PostgreSQL or JSON cannot carry, never longer than an origin."""
    kept = origin_header(value)
    if kept is None:
        return
    assert kept == value and len(kept) <= MAX_ORIGIN
    kept.encode("utf-8")  # strict: no lone surrogates
    assert "\x00" not in kept and kept.isprintable()
    host = host_from_origin(kept)
    assert host is None or (host == normalise_host(host) and origin_allowed(kept, [host]))


@PROPERTY
@given(value=HEADER_VALUES)
def test_an_origin_with_a_host_is_exactly_scheme_host_and_port(value: str) -> None:
    """Whatever the header holds, a host is only read from ``http(s)://host[:port]``."""
    host = host_from_origin(origin_header(value))
    if host is None:
        return
    scheme, _, authority = value.partition("://")
    assert scheme.lower() in ("http", "https") and not set("/?#@ ") & set(authority)
