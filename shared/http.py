"""The outbound HTTP client Doorman uses to call businesses' URLs.

Guards are enforced where the connection is made: the connector's resolver
refuses any host that resolves to a non-public address, and the connector
then connects to exactly the addresses that were checked (no DNS cache, no
second lookup, so DNS rebinding cannot slip a private address in). IP-literal
hosts never reach a resolver, so they are checked before the request, and
every socket is checked once more just before it connects. Only http/https
on the allowed ports, IP literals only as a.b.c.d or [IPv6]; redirects are
not followed, proxies from the environment are ignored, bodies are read up
to a bound (compressed and decompressed) and the whole call has a deadline.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import re
import socket
import time
import zlib
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from shared.host_slots import HostSlots

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Allow = Callable[[str], bool]
"""Whether Doorman may connect to an address ("203.0.113.7", "2001:db8::1", "fe80::1%eth0")."""

ACCEPT_ENCODING = "gzip, deflate"


def unsendable_header(value: str) -> bool:
    """Whether ``value`` cannot be an HTTP field value: a line break or another control character
    (RFC 9110 allows only visible characters, spaces and tabs). aiohttp refuses to send it; a line
    break would otherwise inject a header of the sender's choosing."""
    return any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value)


class DestinationBlocked(Exception):
    """The URL's host is, or resolves to, an address Doorman must not call."""


class InvalidResponse(Exception):
    """The answer cannot be read: too large, or in a form Doorman does not read."""


class ResponseTooLarge(InvalidResponse):
    """The answer (as sent, or once decompressed) was longer than the bound."""


class BadResponse(InvalidResponse):
    """The answer's encoding is unsupported or corrupt."""


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


def _policy(allow: Allow | None, allow_private: bool) -> Callable[[str], str | None]:
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


# -- connect-time guards ---------------------------------------------------------------------------


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` and refuses the whole answer if any address is not allowed."""

    def __init__(
        self, *, allow_private: bool = False, allow: Allow | None = None, inner: AbstractResolver | None = None,
    ) -> None:
        self._inner = inner if inner is not None else aiohttp.ThreadedResolver()
        self._refusal = _policy(allow, allow_private)

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if why := self._refusal(result["host"]):
                raise DestinationBlocked(f"{host} resolves to {result['host']}, which is not a public address ({why})")
        return results

    async def close(self) -> None:
        await self._inner.close()


class _ConnectRefused(OSError):
    """Raised by the socket factory: the last line, should a path ever skip the checks above."""


def _guarded_socket_factory(refused: Callable[[str], str | None]) -> Callable[..., socket.socket]:
    def factory(addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        address = str(sockaddr[0])
        if family == socket.AF_INET6 and len(sockaddr) > 3 and sockaddr[3] and "%" not in address:
            address = f"{address}%{sockaddr[3]}"
        if why := refused(address):
            raise _ConnectRefused(errno.EACCES, f"{address} is not a public address ({why})")
        return socket.socket(family, type_, proto)

    return factory


# -- the client ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    headers: CIMultiDictProxy[str]  # as received (Content-Encoding included)
    body: bytes  # decoded (decompressed)
    elapsed_ms: float


class HostBusy(Exception):
    """No call slot to the host came free in time: Doorman's own lack of capacity, not the business's
    answer (the business was not called)."""


NO_SLOT = "Doorman's calls to this host are all in use"


class OutboundClient:
    """Calls a business's URL under Doorman's rules.

    Calls per destination host are capped (``limit_per_host``) and the slots are shared fairly between
    the tenants calling the host (``tenant``: the bot whose call it is; :mod:`shared.host_slots`). A call
    with no free slot waits at most ``max_wait`` seconds, then fails with :class:`HostBusy`; one whose
    tenant holds fewer slots than its share waits up to the call timeout longer, since by then every
    call in flight has ended and handed its slot on, to such tenants first. A fast business's burst (a
    batch of opens) queues briefly; a business whose API hangs holds at most that many of a verifier's
    in-flight slots (its share of them once other bots call the same host), briefly more waiters, and
    every other business's visitors go on being served.
    """

    def __init__(
        self, session: aiohttp.ClientSession, *, allow_private: bool, timeout: float, max_body: int,
        limit_per_host: int, ports: frozenset[int] | None = None, allow: Allow | None = None, max_wait: float = 0.0,
    ) -> None:
        self._session = session
        self._limit_per_host = limit_per_host
        self._max_wait = max_wait
        self._hosts: dict[str, HostSlots[asyncio.Future[None]]] = {}  # hosts with a call in flight
        self._refusal = _policy(allow, allow_private)
        self._call_seconds = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_body = max_body
        self._ports = ports  # None: any port

    def check_url(self, url: str) -> URL:
        try:
            parsed = URL(url)
            host, port = parsed.raw_host, parsed.port
        except (ValueError, TypeError):
            raise DestinationBlocked("the URL cannot be parsed") from None
        if parsed.scheme not in ("http", "https") or not host:
            raise DestinationBlocked("only http and https URLs are called")
        literal = _literal(host)
        if port is None or port == 0 or (self._ports is not None and port not in self._ports):
            raise DestinationBlocked(f"port {port} is not allowed")
        if literal is not None and (why := self._refusal(str(literal))):
            raise DestinationBlocked(f"{host} is not a public address ({why})")
        return parsed

    async def request(
        self, method: str, url: str, *, headers: dict[str, str], json: Any = None, data: bytes | None = None,
        tenant: Hashable = None,
    ) -> OutboundResponse:
        """``tenant``: whose call this is (a bot id), for the fair share of the host's call slots."""
        target = self.check_url(url)
        host = f"{target.host}:{target.port}"
        await self._take_slot(host, target.host, tenant)
        try:
            return await self._request(method, target, headers=headers, json=json, data=data)
        finally:
            self._give_slot(host, tenant)

    async def _take_slot(self, host: str, name: str | None, tenant: Hashable) -> None:
        slots = self._hosts.get(host)
        if slots is None:
            slots = self._hosts[host] = HostSlots(self._limit_per_host)
        if slots.take(tenant):
            return
        patience = self._max_wait + (self._call_seconds if slots.below_share(tenant) else 0.0)
        if patience > 0:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            slots.wait(tenant, waiter)
            try:
                async with asyncio.timeout(patience):
                    await waiter  # a call that ends hands its slot over
                return
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():  # handed over just as we gave up: pass it on
                    self._give_slot(host, tenant)
                else:
                    slots.leave(tenant, waiter)
                if not isinstance(exc, TimeoutError):
                    raise
        raise HostBusy(f"{NO_SLOT} ({self._limit_per_host} calls to {name} in flight, none came free in time)")

    def _give_slot(self, host: str, tenant: Hashable) -> None:
        slots = self._hosts[host]
        handed = slots.release(tenant)
        while handed is not None:
            turn, waiter = handed
            if not waiter.done():
                waiter.set_result(None)  # it holds the slot now
                return
            handed = slots.release(turn)  # it gave up just now (its leave() finds it gone): the next one
        if slots.idle:
            del self._hosts[host]

    async def _request(
        self, method: str, target: URL, *, headers: dict[str, str], json: Any, data: bytes | None,
    ) -> OutboundResponse:
        sent = CIMultiDict(headers)
        sent["Accept-Encoding"] = ACCEPT_ENCODING
        started = time.perf_counter()
        try:
            async with self._session.request(
                method, target, json=json, data=data, headers=sent, allow_redirects=False, timeout=self._timeout,
            ) as resp:
                raw = await _read_bounded(resp, self._max_body)
                body = _decode_content(raw, resp.headers.getall("Content-Encoding", []), self._max_body)
                return OutboundResponse(resp.status, resp.headers, body, (time.perf_counter() - started) * 1000)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, _ConnectRefused):
                raise DestinationBlocked(exc.os_error.strerror) from None
            raise


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    declared = resp.content_length
    if declared is not None and declared > limit:
        raise ResponseTooLarge(f"response is longer than {limit} bytes (it declares {declared})")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > limit:
            raise ResponseTooLarge(f"response is longer than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode_content(raw: bytes, content_encodings: list[str], limit: int) -> bytes:
    """The body without its Content-Encoding (none, gzip or deflate), at most ``limit`` bytes."""
    codings = [c.strip().lower() for value in content_encodings for c in value.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings or not raw:
        return raw
    if len(codings) > 1 or codings[0] not in ("gzip", "x-gzip", "deflate"):
        raise BadResponse(
            f"the response is compressed with {', '.join(codings)}, which is not supported; "
            "answer uncompressed, gzip or deflate"
        )
    coding = codings[0]
    if coding == "deflate":  # zlib-wrapped as the RFC says, or raw deflate as some servers send
        zlib_header = len(raw) >= 2 and raw[0] & 0x0F == 8 and (raw[0] << 8 | raw[1]) % 31 == 0
        wbits = zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS
    else:
        wbits = 16 + zlib.MAX_WBITS
    out = bytearray()
    data = raw
    while data:  # gzip may hold several members
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(data, max_length=limit + 1 - len(out))
        except zlib.error as exc:
            raise BadResponse(f"the {coding} response is corrupt ({exc})") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise ResponseTooLarge(f"response is longer than {limit} bytes once decompressed ({coding})")
        if not inflater.eof:
            raise BadResponse(f"the {coding} response is truncated")
        data = inflater.unused_data
        if data and coding == "deflate":
            raise BadResponse("the deflate response has data after its end")
    return bytes(out)


@asynccontextmanager
async def outbound_client(
    *, allow_private: bool, timeout: float, max_body: int, limit_per_host: int,
    ports: frozenset[int] | None = None, allow: Allow | None = None, inner_resolver: AbstractResolver | None = None,
    max_wait: float = 0.0,
) -> AsyncIterator[OutboundClient]:
    """``ports``: None for any; ``allow`` replaces the public-address rule and ``inner_resolver``
    the system resolver (tests)."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(allow_private=allow_private, allow=allow, inner=inner_resolver),
        socket_factory=_guarded_socket_factory(_policy(allow, allow_private)),
        # No queue in the connector: the client's own slots bound the calls per host (fairly between bots),
        # and a hidden one would count its wait in the call's timeout, Doorman's queueing as the business's slowness.
        limit=0,
        limit_per_host=0,
        ttl_dns_cache=None,
        use_dns_cache=False,
    )
    async with aiohttp.ClientSession(
        connector=connector, trust_env=False, auto_decompress=False,
        headers={"User-Agent": "Doorman/0.1", "Accept-Encoding": ACCEPT_ENCODING},
    ) as session:
        yield OutboundClient(
            session, allow_private=allow_private, timeout=timeout, max_body=max_body, ports=ports, allow=allow,
            limit_per_host=limit_per_host, max_wait=max_wait,
        )
