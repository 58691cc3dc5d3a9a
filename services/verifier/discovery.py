"""OpenID Provider discovery: ``{issuer}/.well-known/openid-configuration``, read through the guarded outbound
client and cached per issuer (the document is public: every bot naming the issuer shares it).

Fresh for ``ttl`` seconds, then read again; while the provider cannot be reached the last good document is used
for up to ``max_stale`` seconds (the calls it names fail the same way, and the outage grace decides). After a
failed read the issuer is not asked again for ``retry_after_failure`` seconds (that failure is answered). Opens
arriving together share one read. Per process: each verifier replica keeps its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import structlog

from shared.destinations import host_of
from .outbound import OutboundClient

from .failures import AuthFailure, Kind, kind_of
from .identity import failed_call
from .oidc_answers import ProviderMetadata, read_discovery

log = structlog.get_logger("doorman.verifier.discovery")
WELL_KNOWN = "/.well-known/openid-configuration"


def discovery_url(issuer: str) -> str:
    """Where the issuer's document is: a terminating ``/`` of the issuer is dropped first (Discovery 1.0, 4)."""
    return issuer.rstrip("/") + WELL_KNOWN


@dataclass
class _Entry:
    metadata: ProviderMetadata | None = None
    fetched_at: float | None = None  # the last good read
    failure: AuthFailure | None = None  # the last read's, when it failed
    attempted_at: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Discovery:
    def __init__(self, http: OutboundClient, *, ttl: float = 300.0, retry_after_failure: float = 5.0,
                 max_stale: float = 3600.0, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._http = http
        self._ttl = ttl
        self._retry_after_failure = retry_after_failure
        self._max_stale = max_stale
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    async def metadata(self, issuer: str, *, tenant: Hashable) -> ProviderMetadata:
        """The issuer's document; AuthFailure when there is none to use (its kind: the provider down, or a
        setting to fix). ``tenant``: the bot asking, for its share of the host's call slots."""
        entry = self._entry(issuer)
        if not self._fresh(entry):
            async with entry.lock:  # one read at a time; those who waited find it done
                if not self._fresh(entry) and not self._resting(entry):
                    await self._read(entry, issuer, tenant)
        usable = entry.metadata is not None and entry.fetched_at is not None \
            and self._clock() - entry.fetched_at < self._max_stale
        if usable and (entry.failure is None or entry.failure.kind is not Kind.MISCONFIGURED):
            assert entry.metadata is not None
            return entry.metadata  # fresh, or stale while the provider cannot be reached
        assert entry.failure is not None
        raise entry.failure

    def _fresh(self, entry: _Entry) -> bool:
        return entry.fetched_at is not None and entry.failure is None and self._clock() - entry.fetched_at < self._ttl

    def _resting(self, entry: _Entry) -> bool:
        return entry.failure is not None and entry.attempted_at is not None \
            and self._clock() - entry.attempted_at < self._retry_after_failure

    def _entry(self, issuer: str) -> _Entry:
        entry = self._entries.get(issuer)
        if entry is None:
            entry = self._entries[issuer] = _Entry()
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        self._entries.move_to_end(issuer)
        return entry

    async def _read(self, entry: _Entry, issuer: str, tenant: Hashable) -> None:
        entry.attempted_at = self._clock()
        url = discovery_url(issuer)
        try:
            response = await self._http.request("GET", url, headers={"Accept": "application/json"}, tenant=tenant)
            entry.metadata = read_discovery(response.status, response.body, issuer)
        except Exception as exc:
            if (kind := kind_of(exc)) is None:
                raise
            if isinstance(exc, AuthFailure):
                entry.failure = exc
            elif kind is Kind.UNREADABLE:
                entry.failure = AuthFailure(Kind.MISCONFIGURED, f"oidc.issuer: the discovery document cannot be read ({exc})")
            else:
                entry.failure = AuthFailure(kind, failed_call(kind, exc, "the OpenID Provider's discovery document"))
            log.warning("oidc discovery failed", host=host_of(issuer), detail=entry.failure.detail)
            return
        entry.fetched_at, entry.failure = self._clock(), None

