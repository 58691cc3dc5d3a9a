"""Domain whitelist rules: normalising hosts and matching an Origin to entries.

Hosts are compared lower-cased, IDNA (UTS 46) encoded to A-labels, with one
trailing dot stripped. An entry matches its host exactly; ``*.example.com``
matches subdomains at any depth but not ``example.com`` itself. Matching is
on whole labels, so ``evilexample.com`` and ``example.com.evil.io`` never
match ``example.com``. A missing or ``null`` Origin matches nothing.

A URL's origin (where a stored secret may be sent, :func:`url_origin`) uses the same host rules.
"""

from __future__ import annotations

import functools

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

import idna
from yarl import URL

WILDCARD_PREFIX = "*."


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def normalise_host(host: str) -> str:
    """Return the canonical ASCII form of ``host``; raise ValueError if invalid.

    IPv4 literals are returned as they are. Other hosts are lower-cased, lose
    one trailing dot, and are IDNA-encoded ("Bücher.DE." -> "xn--bcher-kva.de").
    """
    if any(char.isspace() for char in host):
        raise ValueError("a host cannot contain whitespace")
    name = host.lower().removesuffix(".")
    if not name:
        raise ValueError("the host is empty")
    if name.endswith(".") or name.startswith(".") or ".." in name:
        raise ValueError(f"{host!r} has an empty label")
    if _is_ipv4(name):
        return name
    try:
        encoded = idna.encode(name, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"{host!r} is not a valid host name ({exc})") from exc
    if encoded.rsplit(".", 1)[-1].isdecimal():
        # Browsers read "1.2.3" or "127.1" as IP addresses; refuse the ambiguity.
        raise ValueError(f"{host!r} is neither a host name nor a dotted IPv4 address")
    return encoded


# An origin is scheme://host[:port]: a host name is at most 253 characters. Anything much longer
# is not an origin, and is neither stored (sessions, the activity log) nor logged.
MAX_ORIGIN = 300


def origin_header(value: str | None) -> str | None:
    """The ``Origin`` header as a widget open keeps it: ``None`` when absent, too long to be one, or not
    printable ASCII as every serialised origin is (RFC 6454; an IDN host is sent in its xn-- form): decided as
    an open without an Origin. Header bytes that are not UTF-8 reach here as lone surrogates, which no
    database text column or JSON event can hold."""
    if value is None or len(value) > MAX_ORIGIN or not (value.isascii() and value.isprintable()):
        return None
    return value


def host_from_origin(origin: str | None) -> str | None:
    """The normalised host of an Origin header value, or None if there is none.

    "https://Shop.Example.com:8443" -> "shop.example.com". "null", empty,
    non-http(s) schemes and anything beyond scheme://host[:port] give None.
    """
    if not origin or origin == "null" or any(char.isspace() for char in origin):
        return None
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https"):
        return None
    # An Origin is exactly scheme://host[:port]: no path, query, fragment or userinfo.
    if origin[len(parts.scheme) + 3 :] != parts.netloc or "@" in parts.netloc:
        return None
    if not parts.hostname:
        return None
    try:
        return normalise_host(parts.hostname)
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)  # pure, and asked on every call a bot's secret goes with: its URLs repeat
def url_origin(url: str) -> str | None:
    """Where a request to an http(s) URL goes, as ``scheme://host:port`` in one spelling: the host as
    :func:`normalise_host` writes it (IP literals in their canonical form), the scheme's default port
    written out. "HTTPS://Bücher.example./x" and "https://xn--bcher-kva.example:443" are both
    "https://xn--bcher-kva.example:443". None when the URL has no such origin.

    Parsed with yarl, as the outbound client parses the URLs it calls.
    """
    try:
        parsed = URL(url)
        scheme, host, port = parsed.scheme, parsed.raw_host, parsed.port
    except (ValueError, TypeError):
        return None
    if scheme not in ("http", "https") or not host or not port:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            host = normalise_host(host)
        except ValueError:
            return None
    else:
        host = f"[{address.compressed}]" if address.version == 6 else address.compressed
    return f"{scheme}://{host}:{port}"


def normalise_domain_entry(entry: str) -> str:
    """Validate and normalise one whitelist entry typed by an admin.

    Accepts "example.com", "*.example.com", IDNs ("bücher.de" ->
    "xn--bcher-kva.de"), "localhost" and IPv4 literals. Raises ValueError with
    a short message saying what is wrong otherwise.
    """
    text = entry.strip()
    if not text:
        raise ValueError("the domain is empty")
    if "://" in text:
        raise ValueError("enter a domain such as example.com, without a scheme like https://")
    if any(char.isspace() for char in text):
        raise ValueError("a domain cannot contain whitespace")
    if "/" in text:
        raise ValueError("a domain cannot contain a path ('/')")
    if "@" in text:
        raise ValueError("a domain cannot contain user info ('@')")
    if ":" in text:
        raise ValueError("a domain cannot contain a port (':')")

    if "*" not in text:
        return normalise_host(text)
    if text == "*":
        raise ValueError("a lone '*' is not allowed; turn whitelisting off to allow every site")
    if not text.startswith(WILDCARD_PREFIX) or "*" in text[len(WILDCARD_PREFIX) :]:
        raise ValueError("'*' is only allowed as the whole first label, as in *.example.com")
    base = normalise_host(text[len(WILDCARD_PREFIX) :])
    if _is_ipv4(base):
        raise ValueError("a wildcard cannot be used with an IP address")
    if base.count(".") < 1:
        raise ValueError("a wildcard needs at least two labels after '*.', as in *.example.com")
    return WILDCARD_PREFIX + base


def _entry_matches(host: str, entry: str) -> bool:
    if entry.startswith(WILDCARD_PREFIX):
        suffix = entry[1:]  # ".example.com": a whole-label suffix, apex excluded
        return host.endswith(suffix) and len(host) > len(suffix) and not _is_ipv4(host)
    return host == entry


def origin_allowed(origin: str | None, entries: Iterable[str]) -> bool:
    """Whether the Origin's host is on the whitelist ``entries``.

    Entries are expected to be normalised already; they are normalised again
    defensively and an entry that fails validation is skipped (matches nothing).
    """
    host = host_from_origin(origin)
    if host is None:
        return False
    for entry in entries:
        try:
            normalised = normalise_domain_entry(entry)
        except ValueError:
            continue
        if _entry_matches(host, normalised):
            return True
    return False
