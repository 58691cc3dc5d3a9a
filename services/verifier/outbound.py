"""The outbound HTTP client Doorman uses to call businesses' URLs (only the verifier calls out).

Guards are enforced where the connection is made: the connector's resolver
refuses any host that resolves to a non-public address, and the connector
then connects to exactly the addresses that were checked (no DNS cache, no
second lookup, so DNS rebinding cannot slip a private address in). IP-literal
hosts never reach a resolver, so they are checked before the request, and
every socket is checked once more just before it connects. Only http/https
on the allowed ports, IP literals only as a.b.c.d or [IPv6]; redirects are
not followed, proxies from the environment are ignored, bodies are read up
to a bound (compressed and decompressed) and the whole call has a deadline.
Which addresses, ports and URLs are allowed is :mod:`shared.destinations` (text only).
"""

from __future__ import annotations

import asyncio
import errno
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

from shared.destinations import Allow, DestinationBlocked, Destinations, policy

from .host_slots import HostSlots

ACCEPT_ENCODING = "gzip, deflate"


class InvalidResponse(Exception):
    """The answer cannot be read: too large, or in a form Doorman does not read."""


class ResponseTooLarge(InvalidResponse):
    """The answer (as sent, or once decompressed) was longer than the bound."""


class BadResponse(InvalidResponse):
    """The answer's encoding is unsupported or corrupt."""


# -- connect-time guards ---------------------------------------------------------------------------


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` and refuses the whole answer if any address is not allowed."""

    def __init__(
        self, *, allow_private: bool = False, allow: Allow | None = None, inner: AbstractResolver | None = None,
    ) -> None:
        self._inner = inner if inner is not None else aiohttp.ThreadedResolver()
        self._refusal = policy(allow, allow_private)

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
    the tenants calling the host (``tenant``: the bot whose call it is; :mod:`.host_slots`). A call
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
        self._destinations = Destinations(allow_private, ports, allow)
        self._call_seconds = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_body = max_body

    def check_url(self, url: str) -> URL:
        """``url`` parsed, or DestinationBlocked: what is refused from the URL alone (:mod:`shared.destinations`)."""
        return self._destinations.check_url(url)

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
        socket_factory=_guarded_socket_factory(policy(allow, allow_private)),
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
