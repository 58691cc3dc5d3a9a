"""The outbound HTTP client Doorman uses to call businesses' URLs.

Guards are enforced where the connection is made: the connector's resolver
refuses any host that resolves to a non-public address, and the connector
then connects to exactly the addresses that were checked (no second lookup,
so DNS rebinding cannot slip a private address in). IP-literal hosts never
reach a resolver, so they are checked before the request. Redirects are not
followed, proxies from the environment are ignored, bodies are read up to a
bound and the whole call has a deadline.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDictProxy
from yarl import URL


class DestinationBlocked(Exception):
    """The URL's host is, or resolves to, an address Doorman must not call."""


class ResponseTooLarge(Exception):
    """The answer was longer than the bound."""


def address_allowed(address: str, *, allow_private: bool) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_multicast:
        return False
    if allow_private:
        return True
    return ip.is_global


class GuardedResolver(AbstractResolver):
    def __init__(self, *, allow_private: bool) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        refused = [r["host"] for r in results if not address_allowed(r["host"], allow_private=self._allow_private)]
        if refused:
            raise DestinationBlocked(f"{host} resolves to a non-public address")
        return results

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    elapsed_ms: float


class OutboundClient:
    """POSTs JSON to a business's URL under Doorman's rules."""

    def __init__(self, session: aiohttp.ClientSession, *, allow_private: bool, timeout: float, max_body: int) -> None:
        self._session = session
        self._allow_private = allow_private
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_body = max_body

    def check_url(self, url: str) -> URL:
        parsed = URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise DestinationBlocked("only http and https URLs are called")
        try:
            literal = ipaddress.ip_address(parsed.host)
        except ValueError:
            return parsed
        if not address_allowed(str(literal), allow_private=self._allow_private):
            raise DestinationBlocked(f"{parsed.host} is not a public address")
        return parsed

    async def request(self, method: str, url: str, *, headers: dict[str, str], json: Any = None) -> OutboundResponse:
        target = self.check_url(url)
        started = time.perf_counter()
        async with self._session.request(
            method, target, json=json, headers=headers, allow_redirects=False, timeout=self._timeout,
        ) as resp:
            body = await _read_bounded(resp, self._max_body)
            return OutboundResponse(resp.status, resp.headers, body, (time.perf_counter() - started) * 1000)


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


@asynccontextmanager
async def outbound_client(
    *, allow_private: bool, timeout: float, max_body: int, limit_per_host: int,
) -> AsyncIterator[OutboundClient]:
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(allow_private=allow_private),
        limit=0,
        limit_per_host=limit_per_host,
        ttl_dns_cache=None,
        use_dns_cache=False,
    )
    async with aiohttp.ClientSession(
        connector=connector, trust_env=False, headers={"User-Agent": "Doorman/0.1"},
    ) as session:
        yield OutboundClient(session, allow_private=allow_private, timeout=timeout, max_body=max_body)
