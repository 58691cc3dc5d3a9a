"""The domain whitelist a bot reads from its business's own API ("source": "api").

The list is fetched with ``GET api_url`` through the guarded OutboundClient and
cached per bot. A fresh list is served from memory; from ``ttl * refresh_ahead``
on it is still served at once while one background refresh runs; once ``ttl``
has passed a refresh is awaited. Concurrent lookups share one in-flight fetch.
When a refresh fails the last good list is kept (served with a ``stale:`` note
once expired) and the API is not asked again before ``retry_after_failure``
seconds; with no good list ever read the lookup says ``missing:``.

The cache is per process: a second replica keeps its own, which only costs it
one fetch per bot per ttl.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from uuid import UUID

import structlog
from pydantic import SecretStr
from yarl import URL

from shared.auth_config import WHITELIST_API_URL, BoundSecret
from shared.domains import normalise_domain_entry

from .fetch import FetchFailed, fetch_json
from .outbound import OutboundClient

log = structlog.get_logger("doorman.verifier.whitelist")


@dataclass(frozen=True)
class WhitelistLookup:
    domains: tuple[str, ...] | None  # normalised entries; None when no list was ever read
    note: str | None  # None when fresh; "stale: <why>" or "missing: <why>"


class _FetchFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Entry:
    api_url: str
    domains: tuple[str, ...] | None = None
    fetched_at: float | None = None  # when the last good list was read
    failure: str | None = None  # why the latest fetch failed (cleared by a success)
    failed_at: float | None = None
    inflight: asyncio.Task[None] | None = None


def _safe_url(url: str) -> str:
    """The URL without user info, query string or fragment, for logs."""
    try:
        parsed = URL(url)
        return str(parsed.with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "<unparsable url>"


class ApiWhitelist:
    def __init__(
        self, http: OutboundClient, *, ttl: float = 300.0, refresh_ahead: float = 0.8,
        retry_after_failure: float = 10.0, max_entries: int = 10_000, max_domains: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or not 0 < refresh_ahead <= 1 or retry_after_failure < 0 or max_entries < 1 or max_domains < 0:
            raise ValueError("invalid whitelist cache settings")
        self._http = http
        self._ttl = ttl
        self._refresh_at = ttl * refresh_ahead
        self._retry_after_failure = retry_after_failure
        self._max_entries = max_entries
        self._max_domains = max_domains
        self._clock = clock
        self._entries: OrderedDict[UUID, _Entry] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def lookup(self, bot_id: UUID, api_url: str, header_token: BoundSecret | None) -> WhitelistLookup:
        """The list at ``api_url``; raises NotBound, asking nothing, when the header token was saved for
        another whitelist API origin."""
        token = header_token.for_url(WHITELIST_API_URL, api_url) if header_token is not None else None
        entry = self._entry(bot_id, api_url)
        now = self._clock()
        retry_blocked = entry.failed_at is not None and now - entry.failed_at < self._retry_after_failure

        if entry.domains is None or entry.fetched_at is None:
            if not retry_blocked:
                await self._wait(self._start(entry, bot_id, token))
            if entry.domains is None:
                return WhitelistLookup(None, f"missing: {entry.failure or 'the whitelist API was not read'}")
            return WhitelistLookup(entry.domains, None)

        age = now - entry.fetched_at
        if age < self._refresh_at:
            return WhitelistLookup(entry.domains, None)
        if age < self._ttl:
            if not retry_blocked and not self._closed:
                self._start(entry, bot_id, token)
            return WhitelistLookup(entry.domains, None)

        if not retry_blocked:
            await self._wait(self._start(entry, bot_id, token))
        if entry.fetched_at is not None and self._clock() - entry.fetched_at < self._ttl:
            return WhitelistLookup(entry.domains, None)
        return WhitelistLookup(entry.domains, f"stale: {entry.failure or 'the whitelist could not be refreshed'}")

    def forget(self, bot_id: UUID) -> None:
        self._entries.pop(bot_id, None)

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals -------------------------------------------------------------------------------

    def _entry(self, bot_id: UUID, api_url: str) -> _Entry:
        entry = self._entries.get(bot_id)
        if entry is not None and entry.api_url == api_url:
            self._entries.move_to_end(bot_id)
            return entry
        entry = _Entry(api_url)
        self._entries[bot_id] = entry
        self._entries.move_to_end(bot_id)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return entry

    def _start(self, entry: _Entry, bot_id: UUID, header_token: SecretStr | None) -> asyncio.Task[None]:
        if entry.inflight is None:
            task = asyncio.create_task(self._refresh(entry, bot_id, header_token), name=f"whitelist-refresh-{bot_id}")
            entry.inflight = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return entry.inflight

    @staticmethod
    async def _wait(task: asyncio.Task[None]) -> None:
        # asyncio.wait neither cancels the shared fetch when this caller is cancelled
        # nor raises when the fetch itself was cancelled (by close()).
        await asyncio.wait([task])

    async def _refresh(self, entry: _Entry, bot_id: UUID, header_token: SecretStr | None) -> None:
        try:
            try:
                domains = await self._fetch(bot_id, entry.api_url, header_token)
            except _FetchFailed as failed:
                reason = failed.reason
            except Exception as exc:  # noqa: BLE001 - a refresh must never escape
                reason = "the whitelist could not be read (internal error)"
                log.error("whitelist_fetch_crashed", bot_id=str(bot_id), error_type=type(exc).__name__)
            else:
                entry.domains = domains
                entry.fetched_at = self._clock()
                entry.failure = entry.failed_at = None
                log.info("whitelist_fetched", bot_id=str(bot_id), domains=len(domains))
                return
            entry.failure = reason
            entry.failed_at = self._clock()
            log.warning(
                "whitelist_fetch_failed", bot_id=str(bot_id), reason=reason, api_url=_safe_url(entry.api_url),
                serving="stale" if entry.domains is not None else "missing",
            )
        finally:
            if entry.inflight is asyncio.current_task():
                entry.inflight = None

    async def _fetch(self, bot_id: UUID, api_url: str, header_token: SecretStr | None) -> tuple[str, ...]:
        headers = {"Accept": "application/json"}
        if header_token is not None:
            headers["Authorization"] = header_token.get_secret_value()
        try:
            document = await fetch_json(self._http, api_url, what="the whitelist API", headers=headers, tenant=bot_id)
        except FetchFailed as exc:
            raise _FetchFailed(str(exc)) from None
        if isinstance(document, dict) and isinstance(document.get("domains"), list):
            raw = document["domains"]
        elif isinstance(document, list):
            raw = document
        else:
            raise _FetchFailed('the whitelist API\'s answer is neither {"domains": [...]} nor a list of domains')
        if len(raw) > self._max_domains:
            raise _FetchFailed(f"the whitelist API's answer lists more than {self._max_domains} domains")
        domains: dict[str, None] = {}
        skipped = 0
        for item in raw:
            if not isinstance(item, str):
                skipped += 1
                continue
            try:
                domains[normalise_domain_entry(item)] = None
            except ValueError:
                skipped += 1
        if skipped:
            log.info("whitelist_entries_skipped", bot_id=str(bot_id), skipped=skipped, kept=len(domains))
        return tuple(domains)


@asynccontextmanager
async def api_whitelist(http: OutboundClient, *, ttl: float) -> AsyncIterator[ApiWhitelist]:
    """The cache for the life of the context; its background refreshes are cancelled at the end."""
    whitelist = ApiWhitelist(http, ttl=ttl)
    try:
        yield whitelist
    finally:
        await whitelist.close()
