"""SSRF guards of the outbound client: addresses, odd IP literals, ports, schemes, redirects,
proxies, DNS rebinding and decompression bombs.

Every byte these tests send goes to loopback (127.0.0.0/8, ::1). Forbidden destinations are
refused before any connection; where a test needs a "public" address that is really connected
to, an injected ``allow`` predicate treats a loopback address as public. An autouse guard fails
the test should any socket try to connect, or any name be looked up, outside loopback.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import ValidationError

from shared.destinations import DestinationBlocked, address_allowed
from shared.events import FallbackReason, IdentifyMethod
from services.verifier.outbound import (
    BadResponse,
    GuardedResolver,
    InvalidResponse,
    OutboundClient,
    ResponseTooLarge,
    outbound_client,
)
from services.verifier.identity import IdentityCall, call_identity
from shared.settings import OutboundSettings
from tests.fake_customer import FakeCustomerAPI, verified

MAX_BODY = 64 * 1024
VERIFIED = {"status": True, "data": {"id": "visitor-1", "name": "Ada"}}
WRITE_AS = "write IP addresses as a.b.c.d"


# -- safety net: loopback only -----------------------------------------------------------------


def _loopback(host: Any) -> bool:
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    violations: list[str] = []
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(host):
            violations.append(f"connect {host}")
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"test guard: {host} is not loopback")
        return real_connect(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in (None, "localhost") and not _loopback(name):
            violations.append(f"lookup {name}")
            raise socket.gaierror(socket.EAI_NONAME, f"test guard: no lookups of {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield violations
    assert not violations, violations


# -- helpers ---------------------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _verified(_: web.Request) -> web.StreamResponse:
    return web.json_response(VERIFIED)


@dataclass
class TinyServer:
    """A loopback HTTP server answering with ``handler``; records every request and closes every
    connection after its answer (so each call makes a new connection, and a new lookup)."""

    handler: Handler = _verified
    requests: list[Seen] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "/auth", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Seen(request.method, request.path, dict(request.headers)))
        await request.read()
        response = await self.handler(request)
        response.force_close()
        return response


@asynccontextmanager
async def serving(handler: Handler = _verified, hosts: Sequence[str] = ("127.0.0.1",)) -> AsyncIterator[TinyServer]:
    server = TinyServer(handler)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server._handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        for host in hosts:  # the same port on every host
            await web.TCPSite(runner, host, server.port).start()
            server.port = server.port or runner.addresses[0][1]
        yield server
    finally:
        await runner.cleanup()


def answering(body: bytes, status: int = 200, **headers: str) -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, headers={"Content-Type": "application/json", **headers})

    return handler


def client(**overrides: Any) -> AbstractAsyncContextManager[OutboundClient]:
    options: dict[str, Any] = {"allow_private": True, "timeout": 2.0, "max_body": MAX_BODY, "limit_per_host": 4}
    return outbound_client(**{**options, **overrides})


async def identify(http: OutboundClient, url: str) -> IdentityCall:
    return await call_identity(
        http, auth_url=url, identify_method=IdentifyMethod.id, header_token=None, access_token="token",
        request_fields=(), visitor={},
    )


def only(public: str) -> Callable[[str], bool]:
    """An allow predicate under which ``public`` (a loopback address) is the only public address."""
    return lambda address: address == public


class StubResolver(AbstractResolver):
    """Answers the n-th lookup with the n-th list of addresses (the last repeats)."""

    def __init__(self, *answers: Sequence[str]) -> None:
        self.answers = answers
        self.calls = 0

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        addresses = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return [
            ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                          proto=0, flags=socket.AI_NUMERICHOST)
            for a in addresses
        ]

    async def close(self) -> None:
        pass


def gzipped(data: bytes, wbits: int = 31) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return packer.compress(data) + packer.flush()


@cache
def zeros_bomb(wbits: int) -> bytes:
    """100 MB of zeros, compressed (about 100 KB), built without holding 100 MB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    chunk = bytes(1 << 20)
    return b"".join(packer.compress(chunk) for _ in range(100)) + packer.flush()


# -- 1. which addresses are public -----------------------------------------------------------------

# (address, allowed in production, allowed with allow_private=True)
ADDRESSES = [
    pytest.param("8.8.8.8", True, True, id="v4-public"),
    pytest.param("172.32.0.1", True, True, id="v4-public-next-to-172.16/12"),
    pytest.param("100.128.0.1", True, True, id="v4-public-next-to-100.64/10"),
    pytest.param("2606:4700:4700::1111", True, True, id="v6-public"),
    pytest.param("127.0.0.1", False, True, id="v4-loopback"),
    pytest.param("127.255.255.254", False, True, id="v4-loopback-high"),
    pytest.param("::1", False, True, id="v6-loopback"),
    pytest.param("10.0.0.1", False, True, id="v4-private-10"),
    pytest.param("172.16.0.1", False, True, id="v4-private-172.16"),
    pytest.param("172.31.255.255", False, True, id="v4-private-172.31"),
    pytest.param("192.168.1.1", False, True, id="v4-private-192.168"),
    pytest.param("169.254.169.254", False, True, id="v4-link-local-metadata"),
    pytest.param("fe80::1", False, True, id="v6-link-local"),
    pytest.param("fc00::1", False, True, id="v6-unique-local-fc"),
    pytest.param("fd12:3456::1", False, True, id="v6-unique-local-fd"),
    pytest.param("fe80::1%eth0", False, False, id="v6-scoped-name"),
    pytest.param("fe80::1%1", False, False, id="v6-scoped-index"),
    pytest.param("0.0.0.0", False, False, id="v4-unspecified"),
    pytest.param("0.1.2.3", False, False, id="v4-this-network"),
    pytest.param("::", False, False, id="v6-unspecified"),
    pytest.param("224.0.0.1", False, False, id="v4-multicast"),
    pytest.param("239.255.255.250", False, False, id="v4-multicast-ssdp"),
    pytest.param("ff02::1", False, False, id="v6-multicast-link"),
    pytest.param("ff05::1:3", False, False, id="v6-multicast-site"),
    pytest.param("240.0.0.1", False, False, id="v4-reserved"),
    pytest.param("255.255.255.255", False, False, id="v4-broadcast"),
    pytest.param("100.64.0.1", False, False, id="v4-shared-cgnat"),
    pytest.param("100.127.255.254", False, False, id="v4-shared-cgnat-high"),
    pytest.param("198.18.0.1", False, False, id="v4-benchmarking"),
    pytest.param("198.19.255.255", False, False, id="v4-benchmarking-high"),
    pytest.param("2001:2::1", False, False, id="v6-benchmarking"),
    pytest.param("192.0.2.1", False, False, id="v4-doc-test-net-1"),
    pytest.param("198.51.100.1", False, False, id="v4-doc-test-net-2"),
    pytest.param("203.0.113.1", False, False, id="v4-doc-test-net-3"),
    pytest.param("2001:db8::1", False, False, id="v6-doc"),
    pytest.param("3fff::1", False, False, id="v6-doc-3fff"),
    pytest.param("192.0.0.1", False, False, id="v4-ietf-protocol"),
    pytest.param("192.88.99.1", False, False, id="v4-6to4-relay-anycast"),
    pytest.param("fec0::1", False, False, id="v6-site-local"),
    pytest.param("100::1", False, False, id="v6-discard-only"),
    pytest.param("4000::1", False, False, id="v6-reserved"),
    pytest.param("::ffff:0:a00:1", False, False, id="v6-ipv4-translated"),
    pytest.param("::ffff:8.8.8.8", True, True, id="v4-mapped-public"),
    pytest.param("::ffff:127.0.0.1", False, True, id="v4-mapped-loopback"),
    pytest.param("::ffff:10.0.0.1", False, True, id="v4-mapped-private"),
    pytest.param("::ffff:169.254.169.254", False, True, id="v4-mapped-metadata"),
    pytest.param("::ffff:0.0.0.0", False, False, id="v4-mapped-unspecified"),
    pytest.param("::ffff:224.0.0.1", False, False, id="v4-mapped-multicast"),
    pytest.param("::ffff:100.64.0.1", False, False, id="v4-mapped-cgnat"),
    pytest.param("::8.8.8.8", True, True, id="v4-compatible-public"),
    pytest.param("::127.0.0.1", False, True, id="v4-compatible-loopback"),
    pytest.param("::169.254.169.254", False, True, id="v4-compatible-metadata"),
    pytest.param("::0.0.0.2", False, False, id="v4-compatible-this-network"),
    pytest.param("2002:808:808::1", True, True, id="6to4-public"),
    pytest.param("2002:7f00:1::", False, True, id="6to4-loopback"),
    pytest.param("2002:a9fe:a9fe::", False, True, id="6to4-metadata"),
    pytest.param("2002:c000:201::", False, False, id="6to4-doc"),
    pytest.param("2001:0:808:808::fefe:fefe", True, True, id="teredo-public"),  # server 8.8.8.8, client 1.1.1.1
    pytest.param("2001:0:808:808::80ff:fffe", False, True, id="teredo-client-loopback"),
    pytest.param("2001:0:a00:1::fefe:fefe", False, True, id="teredo-server-private"),
    pytest.param("2001:0:808:808::1fff:fffe", False, False, id="teredo-client-multicast"),
    pytest.param("64:ff9b::808:808", True, True, id="nat64-public"),
    pytest.param("64:ff9b::7f00:1", False, True, id="nat64-loopback"),
    pytest.param("64:ff9b::a9fe:a9fe", False, True, id="nat64-metadata"),
    pytest.param("64:ff9b::6440:1", False, False, id="nat64-cgnat"),
    pytest.param("64:ff9b:1::a9fe:a9fe", False, False, id="nat64-local-use-metadata"),
    pytest.param("64:ff9b:1::808:808", False, False, id="nat64-local-use-any"),
    pytest.param("example.com", False, False, id="not-an-address"),
]


@pytest.mark.parametrize(("address", "public", "relaxed"), ADDRESSES)
def test_address_allowed(address: str, public: bool, relaxed: bool) -> None:
    assert address_allowed(address, allow_private=False) is public
    assert address_allowed(address, allow_private=True) is relaxed


# -- 2-3. URLs refused before anything else ----------------------------------------------------------

REFUSED_URLS = [
    # odd IPv4 literal forms
    pytest.param("http://2130706433/", WRITE_AS, id="decimal"),
    pytest.param("http://0177.0.0.1/", WRITE_AS, id="octal-dotted"),
    pytest.param("http://017700000001/", WRITE_AS, id="octal-whole"),
    pytest.param("http://0x7f000001/", WRITE_AS, id="hex-whole"),
    pytest.param("http://0X7F000001/", WRITE_AS, id="hex-upper"),
    pytest.param("http://0x7f.0.0.1/", WRITE_AS, id="hex-dotted"),
    pytest.param("http://0x7f.0x0.0x0.0x1/", WRITE_AS, id="hex-every-part"),
    pytest.param("http://127.1/", WRITE_AS, id="short-127.1"),
    pytest.param("http://10.1/", WRITE_AS, id="short-10.1"),
    pytest.param("http://127.0.1/", WRITE_AS, id="short-three-parts"),
    pytest.param("http://0x7f.1/", WRITE_AS, id="mixed-hex-short"),
    pytest.param("http://0177.0x0.1/", WRITE_AS, id="mixed-octal-hex"),
    pytest.param("http://127.0.0.0x1/", WRITE_AS, id="mixed-hex-last"),
    pytest.param("http://169.254.169.0254/", WRITE_AS, id="leading-zero"),
    pytest.param("http://127.0.0.1./", WRITE_AS, id="trailing-dot"),
    pytest.param("http://1.2.3.4.5/", WRITE_AS, id="five-parts"),
    pytest.param("http://256.0.0.1/", WRITE_AS, id="octet-over-255"),
    pytest.param("http://0/", WRITE_AS, id="zero"),
    pytest.param("http://example.0x10/", WRITE_AS, id="name-ending-in-hex"),
    pytest.param("http://%31%32%37.0.0.1/", WRITE_AS, id="percent-encoded"),
    # IPv6 zone ids and scoped forms
    pytest.param("http://[fe80::1%25eth0]/", WRITE_AS, id="v6-zone-id"),
    pytest.param("http://[fe80::1%251]/", WRITE_AS, id="v6-zone-index"),
    pytest.param("http://[::1%25lo]:8080/", WRITE_AS, id="v6-loopback-zone"),
    # canonical literals that are not public
    pytest.param("http://127.0.0.1/", "loopback", id="v4-loopback"),
    pytest.param("http://①②⑦.0.0.1/", "loopback", id="unicode-digits-normalised"),
    pytest.param("http://10.0.0.1/", "private", id="v4-private"),
    pytest.param("http://169.254.169.254/latest/meta-data", "link-local", id="v4-metadata"),
    pytest.param("http://0.0.0.0/", "unspecified", id="v4-unspecified"),
    pytest.param("http://100.64.0.1/", "shared address space", id="v4-cgnat"),
    pytest.param("http://198.18.0.1/", "benchmarking", id="v4-benchmarking"),
    pytest.param("http://192.0.2.1/", "documentation", id="v4-doc"),
    pytest.param("http://224.0.0.1/", "multicast", id="v4-multicast"),
    pytest.param("http://255.255.255.255/", "reserved", id="v4-broadcast"),
    pytest.param("http://[::1]/", "loopback", id="v6-loopback"),
    pytest.param("http://[::]/", "unspecified", id="v6-unspecified"),
    pytest.param("http://[fe80::1]/", "link-local", id="v6-link-local"),
    pytest.param("http://[fd00::1]/", "unique-local", id="v6-ula"),
    pytest.param("http://[fec0::1]/", "site-local", id="v6-site-local"),
    pytest.param("http://[ff02::1]/", "multicast", id="v6-multicast"),
    pytest.param("http://[2001:db8::1]/", "documentation", id="v6-doc"),
    pytest.param("http://[::ffff:127.0.0.1]/", "embeds 127.0.0.1", id="v4-mapped-dotted"),
    pytest.param("http://[::ffff:a9fe:a9fe]/", "embeds 169.254.169.254", id="v4-mapped-hex"),
    pytest.param("http://[::127.0.0.1]/", "embeds 127.0.0.1", id="v4-compatible"),
    pytest.param("http://[2002:a9fe:a9fe::]/", "embeds 169.254.169.254", id="6to4"),
    pytest.param("http://[2001:0:808:808::80ff:fffe]/", "embeds 127.0.0.1", id="teredo"),
    pytest.param("http://[64:ff9b::a9fe:a9fe]/", "embeds 169.254.169.254", id="nat64"),
    pytest.param("http://[64:ff9b:1::a9fe:a9fe]/", "local-use NAT64", id="nat64-local-use"),
    # ports (client allows 80 and 443)
    pytest.param("http://example.com:8080/", "port 8080 is not allowed", id="port-8080"),
    pytest.param("https://example.com:22/", "port 22 is not allowed", id="port-22"),
    pytest.param("http://example.com:6379/", "port 6379 is not allowed", id="port-redis"),
    pytest.param("http://8.8.8.8:25/", "port 25 is not allowed", id="port-on-public-literal"),
    pytest.param("http://example.com:0/", "port 0 is not allowed", id="port-0"),
    pytest.param("http://example.com:99999/", "cannot be parsed", id="port-out-of-range"),
    # schemes and malformed URLs
    pytest.param("ftp://example.com/file", "only http and https", id="ftp"),
    pytest.param("file:///etc/passwd", "only http and https", id="file"),
    pytest.param("gopher://127.0.0.1:70/_GET", "only http and https", id="gopher"),
    pytest.param("ws://example.com/", "only http and https", id="ws"),
    pytest.param("dict://127.0.0.1:11211/stat", "only http and https", id="dict"),
    pytest.param("data:text/plain,hi", "only http and https", id="data"),
    pytest.param("javascript:alert(1)", "only http and https", id="javascript"),
    pytest.param("example.com/auth", "only http and https", id="no-scheme"),
    pytest.param("//example.com/auth", "only http and https", id="scheme-relative"),
    pytest.param("http:///auth", "only http and https", id="no-host"),
    pytest.param("http://exa mple.com/", "not a valid host name", id="space-in-host"),
    pytest.param("http://ex%41mple.com/", "not a valid host name", id="percent-in-name"),
    pytest.param("http://a..b/", "not a valid host name", id="empty-label"),
]


@pytest.fixture
async def strict() -> AsyncIterator[OutboundClient]:
    async with client(allow_private=False, ports=frozenset({80, 443})) as http:
        yield http


@pytest.mark.parametrize(("url", "message"), REFUSED_URLS)
def test_check_url_refuses(strict: OutboundClient, url: str, message: str) -> None:
    with pytest.raises(DestinationBlocked, match=message):
        strict.check_url(url)


@pytest.mark.parametrize("url", [
    pytest.param("http://example.com/auth", id="name"),
    pytest.param("https://example.com:443/auth", id="https-explicit-443"),
    pytest.param("http://example.com:443/auth", id="http-on-443"),
    pytest.param("HTTPS://Example.COM/auth", id="upper-case"),
    pytest.param("http://example.com./auth", id="fqdn-trailing-dot"),
    pytest.param("http://8.8.8.8/auth", id="v4-public-literal"),
    pytest.param("http://[2606:4700:4700::1111]/auth", id="v6-public-literal"),
    pytest.param("http://[::ffff:8.8.8.8]/auth", id="v4-mapped-public"),
    pytest.param("http://bücher.example/auth", id="idn"),
    pytest.param("http://127.0.0.1.nip.io/auth", id="numeric-labels-then-name"),  # left to the resolver's check
    pytest.param("http://0x7f000001.example.com/auth", id="hex-label-then-name"),
])
def test_check_url_accepts(strict: OutboundClient, url: str) -> None:
    strict.check_url(url)  # checks only: nothing is resolved or connected


async def test_any_port_when_ports_is_none() -> None:
    async with client(allow_private=False) as http:
        http.check_url("http://example.com:8080/auth")
        http.check_url("https://example.com:65535/auth")
        with pytest.raises(DestinationBlocked, match="port 0 is not allowed"):
            http.check_url("http://example.com:0/auth")


STRICT: dict[str, Any] = {"allow_private": False}
DEV: dict[str, Any] = {"allow_private": True}
BLOCKED_CALLS = [  # {port}{path}: the fake business API's endpoint on 127.0.0.1
    pytest.param("http://127.0.0.1:{port}{path}", STRICT, id="loopback-literal"),
    pytest.param("http://localhost:{port}{path}", STRICT, id="loopback-name-via-resolver"),
    pytest.param("http://[::ffff:127.0.0.1]:{port}{path}", STRICT, id="v4-mapped-loopback"),
    pytest.param("http://2130706433:{port}{path}", DEV, id="decimal"),
    pytest.param("http://0x7f000001:{port}{path}", DEV, id="hex"),
    pytest.param("http://0177.0.0.1:{port}{path}", DEV, id="octal"),
    pytest.param("http://127.1:{port}{path}", DEV, id="short"),
    pytest.param("http://[fe80::1%25lo]:{port}{path}", DEV, id="v6-zone-id"),
    pytest.param("http://0.0.0.0:{port}{path}", DEV, id="unspecified-even-when-private-allowed"),
    pytest.param("http://169.254.169.254/latest/meta-data", STRICT, id="metadata"),
    pytest.param("http://[64:ff9b::a9fe:a9fe]/latest/meta-data", STRICT, id="nat64-metadata"),
    pytest.param("ftp://127.0.0.1:{port}{path}", DEV, id="ftp"),
    pytest.param("file:///etc/passwd", DEV, id="file"),
    pytest.param("gopher://127.0.0.1:{port}/_x", DEV, id="gopher"),
    pytest.param("http://127.0.0.1:{port}{path}", {**DEV, "ports": frozenset({80, 443})}, id="port-not-allowed"),
]


@pytest.mark.parametrize(("template", "options"), BLOCKED_CALLS)
async def test_blocked_through_call_identity(customer_api: FakeCustomerAPI, template: str, options: dict[str, Any]) -> None:
    url = customer_api.endpoint(verified(id="1"))
    port = url.removeprefix("http://127.0.0.1:").split("/")[0]
    async with client(**options) as http:
        call = await identify(http, template.format(port=port, path=url.removeprefix(customer_api.url)))
    assert call.failure is not None and call.failure.reason is FallbackReason.destination_blocked, call.failure
    assert call.response is None
    assert customer_api.received(url) == []


# -- 4. proxies from the environment are not used ----------------------------------------------------


async def test_environment_proxies_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    async with serving(answering(b'{"via": "proxy"}')) as proxy, serving() as business:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url("/"))
            monkeypatch.setenv(name.lower(), proxy.url("/"))
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)

        async with client() as http:
            call = await identify(http, business.url())
        assert call.identity is not None and call.identity.identifier == "visitor-1", call.failure
        assert proxy.requests == []
        assert [r.path for r in business.requests] == ["/auth"]

        # Control: a client that trusts the environment would have gone through the "proxy".
        async with aiohttp.ClientSession(trust_env=True) as session, session.get(business.url("/control")) as resp:
            assert await resp.json() == {"via": "proxy"}
        assert len(proxy.requests) == 1 and [r.path for r in business.requests] == ["/auth"]


# -- 5. DNS rebinding --------------------------------------------------------------------------------


async def test_dns_rebinding_is_checked_on_every_connection() -> None:
    resolver = StubResolver(["127.0.0.1"], ["127.0.0.2"])
    # Listening on both addresses: were the second answer not refused, the request would arrive.
    async with serving(hosts=("127.0.0.1", "127.0.0.2")) as server, \
            client(allow=only("127.0.0.1"), inner_resolver=resolver) as http:
        url = server.url(host="rebind.example")
        first = await identify(http, url)
        assert first.identity is not None and first.identity.identifier == "visitor-1", first.failure
        second = await identify(http, url)
        assert second.failure is not None and second.failure.reason is FallbackReason.destination_blocked
        assert "127.0.0.2" in second.failure.detail
        with pytest.raises(DestinationBlocked):
            await http.request("POST", url, headers={}, json={})
    assert resolver.calls == 3  # no DNS cache: one lookup per connection
    assert len(server.requests) == 1


@pytest.mark.parametrize("addresses", [
    pytest.param(["127.0.0.1", "127.0.0.2"], id="forbidden-last"),
    pytest.param(["127.0.0.2", "127.0.0.1"], id="forbidden-first"),
    pytest.param(["127.0.0.1", "::1"], id="forbidden-v6"),
])
async def test_name_with_one_forbidden_address_is_refused_whole(addresses: list[str]) -> None:
    async with serving(hosts=("127.0.0.1", "127.0.0.2")) as server, \
            client(allow=only("127.0.0.1"), inner_resolver=StubResolver(addresses)) as http:
        with pytest.raises(DestinationBlocked, match="is not a public address"):
            await http.request("POST", server.url(host="mixed.example"), headers={}, json={})
        call = await identify(http, server.url(host="mixed.example"))
    assert call.failure is not None and call.failure.reason is FallbackReason.destination_blocked
    assert server.requests == []


@pytest.mark.parametrize(("addresses", "allow_private", "refused"), [
    pytest.param(["8.8.8.8"], False, None, id="public"),
    pytest.param(["8.8.8.8", "2606:4700:4700::1111"], False, None, id="public-both-families"),
    pytest.param(["8.8.8.8", "10.0.0.1"], False, "10.0.0.1", id="one-private"),
    pytest.param(["169.254.169.254"], False, "169.254.169.254", id="metadata"),
    pytest.param(["::ffff:169.254.169.254"], False, "::ffff:169.254.169.254", id="v4-mapped-metadata"),
    pytest.param(["2002:a9fe:a9fe::"], False, "2002:a9fe:a9fe::", id="6to4-metadata"),
    pytest.param(["64:ff9b::7f00:1"], False, "64:ff9b::7f00:1", id="nat64-loopback"),
    pytest.param(["fd00::1"], False, "fd00::1", id="ula"),
    pytest.param(["127.0.0.1"], True, None, id="loopback-when-private-allowed"),
    pytest.param(["fe80::1%lo"], True, "fe80::1%lo", id="scoped-even-when-private-allowed"),
    pytest.param(["0.0.0.0"], True, "0.0.0.0", id="unspecified-even-when-private-allowed"),
    pytest.param(["ff02::1"], True, "ff02::1", id="multicast-even-when-private-allowed"),
])
async def test_guarded_resolver(addresses: list[str], allow_private: bool, refused: str | None) -> None:
    resolver = GuardedResolver(allow_private=allow_private, inner=StubResolver(addresses))
    if refused is None:
        assert [r["host"] for r in await resolver.resolve("name.example", 443)] == addresses
    else:
        with pytest.raises(DestinationBlocked, match=f"resolves to {refused}, which is not a public address"):
            await resolver.resolve("name.example", 443)


async def test_connect_time_guard_catches_what_skips_the_checks() -> None:
    """Even a request that bypasses check_url (here: the session itself, following a redirect
    to an IP literal, which never meets the resolver) cannot connect to a refused address."""

    async def redirect(_: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": server.url("/x", host="127.0.0.2")})

    async with serving(redirect, hosts=("127.0.0.1", "127.0.0.2")) as server, client(allow=only("127.0.0.1")) as http:
        session: aiohttp.ClientSession = http._session  # noqa: SLF001 - testing the last line of defence
        with pytest.raises(aiohttp.ClientConnectorError, match="127.0.0.2 is not a public address"):
            await session.get(server.url("/start"), allow_redirects=True)
    assert [r.path for r in server.requests] == ["/start"]


# -- redirects ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("location", [
    pytest.param("http://169.254.169.254/latest/meta-data", id="metadata"),
    pytest.param("loopback", id="loopback"),
])
async def test_redirects_are_not_followed(status: int, location: str) -> None:
    async def redirect(_: web.Request) -> web.StreamResponse:
        target = server.url("/x") if location == "loopback" else location
        return web.Response(status=status, headers={"Location": target})

    async with serving(redirect) as server, client() as http:
        call = await identify(http, server.url())
    assert call.failure is not None and call.failure.reason is FallbackReason.invalid_response
    assert "redirects are not followed" in call.failure.detail
    assert call.response is not None and call.response.status == status
    assert [r.path for r in server.requests] == ["/auth"]


# -- 6. responses: decompression -----------------------------------------------------------------------


@pytest.mark.parametrize(("body", "encoding"), [
    pytest.param(gzipped(b'{"status": true, "data": {"id": "visitor-1"}}'), "gzip", id="gzip"),
    pytest.param(gzipped(b'{"status": true, "data": {"id": "visitor-1"}}'), "x-gzip", id="x-gzip"),
    pytest.param(gzipped(b'{"status": true, "data": {"id": "visitor-1"}}'), "GZIP", id="gzip-upper"),
    pytest.param(gzipped(b'{"status": true, ') + gzipped(b'"data": {"id": "visitor-1"}}'), "gzip", id="gzip-two-members"),
    pytest.param(gzipped(b'{"status": true, "data": {"id": "visitor-1"}}', 15), "deflate", id="deflate-zlib"),
    pytest.param(gzipped(b'{"status": true, "data": {"id": "visitor-1"}}', -15), "deflate", id="deflate-raw"),
    pytest.param(b'{"status": true, "data": {"id": "visitor-1"}}', "identity", id="identity"),
])
async def test_compressed_answers_are_read(body: bytes, encoding: str) -> None:
    async with serving(answering(body, **{"Content-Encoding": encoding})) as server, client() as http:
        call = await identify(http, server.url())
    assert call.identity is not None and call.identity.identifier == "visitor-1", call.failure
    assert call.response is not None and call.response.body.startswith(b'{"status": true')
    assert server.requests[0].headers["Accept-Encoding"] == "gzip, deflate"


async def test_accept_encoding_cannot_be_widened_by_the_caller() -> None:
    async with serving() as server, client() as http:
        await http.request("GET", server.url(), headers={"accept-encoding": "br, zstd"})
    assert server.requests[0].headers["Accept-Encoding"] == "gzip, deflate"


@pytest.mark.parametrize("wbits", [pytest.param(31, id="gzip"), pytest.param(15, id="deflate")])
async def test_decompression_bomb_is_refused_fast_in_little_memory(wbits: int) -> None:
    bomb = zeros_bomb(wbits)
    max_body = 1024 * 1024  # the compressed ~100 KB fit; the 100 MB inflated do not
    assert len(bomb) < max_body
    encoding = "gzip" if wbits == 31 else "deflate"
    async with serving(answering(bomb, **{"Content-Encoding": encoding})) as server, client(max_body=max_body) as http:
        tracemalloc.start()
        started = time.perf_counter()
        try:
            with pytest.raises(ResponseTooLarge, match="once decompressed"):
                await http.request("POST", server.url(), headers={}, json={})
            elapsed = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        call = await identify(http, server.url())
    assert elapsed < 2.0
    assert peak < 12 * 1024 * 1024, f"peak {peak} bytes"
    assert call.failure is not None and call.failure.reason is FallbackReason.invalid_response
    assert "longer than" in call.failure.detail


async def test_compressed_body_over_the_bound_is_refused_before_inflating() -> None:
    async with serving(answering(zeros_bomb(31), **{"Content-Encoding": "gzip"})) as server, client() as http:
        with pytest.raises(ResponseTooLarge, match=f"longer than {MAX_BODY} bytes"):
            await http.request("POST", server.url(), headers={}, json={})


@pytest.mark.parametrize(("body", "encoding", "message"), [
    pytest.param(b"\x1b\x00\xf8\xff", "br", "compressed with br, which is not supported", id="br"),
    pytest.param(b"(\xb5/\xfd\x00", "zstd", "compressed with zstd", id="zstd"),
    pytest.param(b"\x1f\x9d\x90", "compress", "compressed with compress", id="compress"),
    pytest.param(gzipped(gzipped(b"{}")), "gzip, gzip", "compressed with gzip, gzip", id="stacked"),
    pytest.param(gzipped(b"{}"), "gzip, br", "compressed with gzip, br", id="gzip-then-br"),
    pytest.param(b"\x1f\x8b\x08\x00garbage-not-deflate", "gzip", "gzip response is corrupt", id="corrupt-gzip"),
    pytest.param(b'{"status": true}', "gzip", "gzip response is corrupt", id="plain-json-labelled-gzip"),
    pytest.param(gzipped(b'{"status": true, "data": {"id": "1"}}')[:-6], "gzip", "truncated", id="truncated-gzip"),
    pytest.param(gzipped(b"{}") + b"trailing", "gzip", "corrupt", id="gzip-trailing-garbage"),
    pytest.param(b"\x78\x9c\xff\xff\xff", "deflate", "deflate response is corrupt", id="corrupt-deflate"),
    pytest.param(gzipped(b"{}", 15) + b"x", "deflate", "data after its end", id="deflate-trailing-data"),
])
async def test_unreadable_encodings_are_bad_responses(body: bytes, encoding: str, message: str) -> None:
    async with serving(answering(body, **{"Content-Encoding": encoding})) as server, client() as http:
        with pytest.raises(BadResponse, match=message):
            await http.request("POST", server.url(), headers={}, json={})


def test_invalid_response_is_the_base_of_both() -> None:
    assert issubclass(ResponseTooLarge, InvalidResponse) and issubclass(BadResponse, InvalidResponse)
    assert not issubclass(BadResponse, ResponseTooLarge)


async def test_brotli_through_call_identity_is_invalid_response() -> None:
    async with serving(answering(b"\x1b\x00\xf8\xff", **{"Content-Encoding": "br"})) as server, client() as http:
        call = await identify(http, server.url())
    assert call.failure is not None and call.failure.reason is FallbackReason.invalid_response
    assert "br" in call.failure.detail


# -- 3. the ports setting ------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "ports"), [
    pytest.param("80,443", frozenset({80, 443}), id="default"),
    pytest.param(" 8443 , 443 ,443", frozenset({443, 8443}), id="spaces-duplicates"),
    pytest.param("1,65535", frozenset({1, 65535}), id="bounds"),
    pytest.param("*", None, id="any"),
    pytest.param(" * ", None, id="any-spaced"),
])
def test_outbound_ports_setting(value: str, ports: frozenset[int] | None) -> None:
    assert OutboundSettings(outbound_ports=value).allowed_outbound_ports() == ports


@pytest.mark.parametrize("value", ["", " ", "0", "65536", "-1", "+80", "80,,443", "80;443", "http", "*,80", "٨٠", "8e1"])
def test_outbound_ports_setting_refuses_bad_values(value: str) -> None:
    with pytest.raises(ValidationError, match="is not a port"):
        OutboundSettings(outbound_ports=value)


def test_outbound_ports_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOORMAN_OUTBOUND_PORTS", raising=False)
    assert OutboundSettings().allowed_outbound_ports() == frozenset({80, 443})
    monkeypatch.setenv("DOORMAN_OUTBOUND_PORTS", "8080")
    assert OutboundSettings().allowed_outbound_ports() == frozenset({8080})
    monkeypatch.setenv("DOORMAN_OUTBOUND_PORTS", "80,nope")
    with pytest.raises(ValidationError):
        OutboundSettings()
