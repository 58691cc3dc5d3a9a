"""Where Doorman may send a call and what it may send, decided from text alone: no connection is made.

The verifier's outbound client (:mod:`services.verifier.outbound`) applies these rules before a call, and again to
every address a name resolves to and every socket it opens; the gateway applies the URL rules when
settings are saved, so a URL the verifier would refuse is a field error at once (the gateway itself
calls no one). A name that resolves to a forbidden address is known only when called.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Allow = Callable[[str], bool]
"""Whether Doorman may connect to an address ("203.0.113.7", "2001:db8::1", "fe80::1%eth0")."""


def unsendable_header(value: str) -> bool:
    """Whether ``value`` cannot be an HTTP field value: a line break or another control character
    (RFC 9110 allows only visible characters, spaces and tabs). aiohttp refuses to send it; a line
    break would otherwise inject a header of the sender's choosing."""
    return any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value)


class DestinationBlocked(Exception):
    """The URL's host is, or resolves to, an address Doorman must not call."""


# -- which addresses are public ------------------------------------------------------------------

_net = ipaddress.ip_network

# (network, why it is refused, whether allow_private relaxes it); first match wins.
_REFUSED: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str, bool], ...] = (
    (_net("127.0.0.0/8"), "loopback", True),
    (_net("::1/128"), "loopback", True),
    (_net("10.0.0.0/8"), "private network", True),
    (_net("172.16.0.0/12"), "private network", True),
    (_net("192.168.0.0/16"), "private network", True),
    (_net("169.254.0.0/16"), "link-local (cloud metadata lives here)", True),
    (_net("fe80::/10"), "link-local", True),
    (_net("fc00::/7"), "unique-local (private) network", True),
    (_net("0.0.0.0/8"), "unspecified / 'this network'", False),
    (_net("::/128"), "unspecified", False),
    (_net("224.0.0.0/4"), "multicast", False),
    (_net("ff00::/8"), "multicast", False),
    (_net("100.64.0.0/10"), "shared address space (carrier-grade NAT)", False),
    (_net("192.0.0.0/24"), "IETF protocol assignments", False),
    (_net("192.0.2.0/24"), "documentation", False),
    (_net("198.51.100.0/24"), "documentation", False),
    (_net("203.0.113.0/24"), "documentation", False),
    (_net("2001:db8::/32"), "documentation", False),
    (_net("3fff::/20"), "documentation", False),
    (_net("198.18.0.0/15"), "benchmarking", False),
    (_net("2001:2::/48"), "benchmarking", False),
    (_net("192.88.99.0/24"), "6to4 relay anycast (deprecated)", False),
    (_net("240.0.0.0/4"), "reserved (and broadcast)", False),
    (_net("fec0::/10"), "site-local (deprecated)", False),
    (_net("100::/64"), "discard-only", False),
    (_net("2001::/23"), "IETF protocol assignments", False),  # Teredo (2001::/32) is read below
    (_net("64:ff9b:1::/48"), "local-use NAT64 (where the IPv4 address sits depends on the network)", False),
)
_IPV6_GLOBAL_UNICAST = _net("2000::/3")
_IPV4_COMPATIBLE = _net("::/96")
_NAT64 = _net("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 address(es) an IPv6 address stands for: mapped, compatible, 6to4, Teredo, NAT64."""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:  # :: and ::1 are themselves
        return (low32,)
    if ip in _NAT64:
        return (low32,)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return ip.teredo  # (server, client)
    return ()


def refusal(address: str | IPAddress, *, allow_private: bool) -> str | None:
    """Why Doorman must not connect to ``address``, or None when it may.

    ``allow_private`` (local runs and tests) relaxes loopback, private, link-local and
    unique-local addresses only; never unspecified, multicast or the other special ranges.
    """
    try:
        ip = address if isinstance(address, IPAddress) else ipaddress.ip_address(address)
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            return "scoped IPv6 address (zone id)"
        embedded = _embedded_ipv4(ip)
        if embedded:
            whys = [f"{v4}: {why}" for v4 in embedded if (why := refusal(v4, allow_private=allow_private))]
            return f"embeds {whys[0]}" if whys else None
    for network, why, relaxed_by_allow_private in _REFUSED:
        if ip.version == network.version and ip in network:
            return None if relaxed_by_allow_private and allow_private else why
    if ip.version == 6 and ip not in _IPV6_GLOBAL_UNICAST:
        return "reserved (not IPv6 global unicast)"
    return None


def address_allowed(address: str | IPAddress, *, allow_private: bool) -> bool:
    return refusal(address, allow_private=allow_private) is None


def policy(allow: Allow | None, allow_private: bool) -> Callable[[str], str | None]:
    """``refusal`` for the default rule, or an injected ``allow`` predicate (tests)."""
    if allow is None:
        return functools.partial(refusal, allow_private=allow_private)
    return lambda address: None if allow(address) else "not allowed"


# -- URL checks before the request -----------------------------------------------------------------

_NUMERIC_LABEL = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)", re.IGNORECASE)  # a URL parser reads it as a number
_HOST_NAME = re.compile(r"(?=.{1,253}\.?$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*"
                        r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.?", re.IGNORECASE)
_ODD_LITERAL = "; write IP addresses as a.b.c.d (or [IPv6] without a zone id)"


def _literal(host: str) -> IPAddress | None:
    """The IP address when ``host`` is a canonical literal, None for a host name; odd forms refused."""
    if ":" in host:  # yarl took the brackets off
        if "%" in host:
            raise DestinationBlocked(f"{host} has an IPv6 zone id{_ODD_LITERAL}")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise DestinationBlocked(f"{host} is not a valid IPv6 address{_ODD_LITERAL}") from None
    last_label = host.removesuffix(".").rsplit(".", 1)[-1]
    if not _NUMERIC_LABEL.fullmatch(last_label):
        if not _HOST_NAME.fullmatch(host):
            raise DestinationBlocked(f"{host!r} is not a valid host name")
        return None
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        ip = None
    if ip is None or str(ip) != host:
        raise DestinationBlocked(f"{host} is an IP address in an unusual form{_ODD_LITERAL}")
    return ip


@dataclass(frozen=True)
class Destinations:
    """Which URLs Doorman may call: public addresses only (``allow_private`` relaxes loopback and
    private networks: local runs, tests), on ``ports`` (None: any); ``allow`` replaces the
    public-address rule (tests)."""

    allow_private: bool
    ports: frozenset[int] | None = None
    allow: Allow | None = None

    def refusal(self, address: str) -> str | None:
        """Why Doorman must not connect to ``address``, or None when it may."""
        return policy(self.allow, self.allow_private)(address)

    def check_url(self, url: str) -> URL:
        """``url`` parsed, or DestinationBlocked saying why it is never called: not http(s), a port
        not allowed, an IP literal in an odd form or not public. A host name passes (its addresses
        are checked when it is called)."""
        try:
            parsed = URL(url)
            host, port = parsed.raw_host, parsed.port
        except (ValueError, TypeError):
            raise DestinationBlocked("the URL cannot be parsed") from None
        if parsed.scheme not in ("http", "https") or not host:
            raise DestinationBlocked("only http and https URLs are called")
        literal = _literal(host)
        if port is None or port == 0 or (self.ports is not None and port not in self.ports):
            raise DestinationBlocked(f"port {port} is not allowed")
        if literal is not None and (why := self.refusal(str(literal))):
            raise DestinationBlocked(f"{host} is not a public address ({why})")
        return parsed


def host_of(url: str) -> str | None:
    """``host:port`` of a URL, as the outbound client counts its calls per host (and the circuit breaker
    keys its state); None when the URL has no host."""
    try:
        parsed = URL(url)
        return f"{parsed.host}:{parsed.port}" if parsed.host and parsed.port else None
    except (ValueError, TypeError):
        return None
