"""Call slots to one host, shared fairly between the tenants (bots) calling it.

At most ``cap`` calls are in flight. A call takes a free slot at once; with none free it waits. A call
that ends hands its slot to the next tenant in turn (round-robin over the tenants with a waiter, not
first come first served across the host), first to a tenant holding fewer than its fair share,
``max(1, cap // tenants holding or waiting for a slot)``. So a host called by one tenant lends it every
slot, and once others call it, a tenant whose calls hang is brought down to its share as its calls
end (each ends within the call timeout) and kept there, while the others' calls go on.

Pure bookkeeping, O(1) per call but for the turn (which looks past the tenants at or over their share),
holding only tenants with a call in flight or waiting: the waiters are whatever the caller wakes
(:class:`.outbound.OutboundClient` keeps one ``HostSlots`` per host, with futures).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

W = TypeVar("W")


@dataclass
class _Tenant(Generic[W]):
    held: int = 0  # its calls in flight
    waiters: deque[W] = field(default_factory=deque)  # oldest first


class HostSlots(Generic[W]):
    def __init__(self, cap: int) -> None:
        if cap < 1:
            raise ValueError("a host needs at least one call slot")
        self.cap = cap
        self.in_flight = 0
        self._tenants: dict[Hashable, _Tenant[W]] = {}  # those holding or waiting for a slot
        self._turns: OrderedDict[Hashable, None] = OrderedDict()  # those with a waiter, next in turn first

    @property
    def idle(self) -> bool:
        return self.in_flight == 0  # waiters exist only while every slot is taken

    def share(self) -> int:
        return max(1, self.cap // max(1, len(self._tenants)))

    def held(self, tenant: Hashable) -> int:
        entry = self._tenants.get(tenant)
        return entry.held if entry else 0

    def below_share(self, tenant: Hashable) -> bool:
        """Whether ``tenant`` holds fewer slots than its share: a slot that comes free goes to it before
        any tenant at or over its share."""
        return self.held(tenant) < self.share()

    def take(self, tenant: Hashable) -> bool:
        """A slot now (True), or none is free (False: :meth:`wait` for one). A free slot means nobody
        waits, so taking it jumps no queue."""
        if self.in_flight >= self.cap:
            return False
        self.in_flight += 1
        self._tenants.setdefault(tenant, _Tenant()).held += 1
        return True

    def wait(self, tenant: Hashable, waiter: W) -> None:
        """Queue ``waiter`` behind its tenant's earlier ones; :meth:`release` hands it a slot."""
        self._tenants.setdefault(tenant, _Tenant()).waiters.append(waiter)
        self._turns.setdefault(tenant)

    def leave(self, tenant: Hashable, waiter: W) -> None:
        """``waiter`` stopped waiting (it gave up, or was cancelled) without a slot; nothing if it is not queued."""
        entry = self._tenants.get(tenant)
        if entry is None or waiter not in entry.waiters:
            return
        entry.waiters.remove(waiter)
        self._settle(tenant, entry)

    def release(self, tenant: Hashable) -> tuple[Hashable, W] | None:
        """A call of ``tenant`` ended. Its slot goes to the next waiter in turn, returned (with its
        tenant) for the caller to wake, which holds the slot from now on; None: the slot is free."""
        entry = self._tenants[tenant]
        entry.held -= 1
        self._settle(tenant, entry)
        if not self._turns:
            self.in_flight -= 1
            return None
        share = self.share()
        turn = next((t for t in self._turns if self._tenants[t].held < share), next(iter(self._turns)))
        entry = self._tenants[turn]
        entry.held += 1
        waiter = entry.waiters.popleft()
        self._settle(turn, entry)
        if turn in self._turns:
            self._turns.move_to_end(turn)  # its next waiter waits for the others' turns
        return turn, waiter

    def _settle(self, tenant: Hashable, entry: _Tenant[W]) -> None:
        if not entry.waiters:
            self._turns.pop(tenant, None)
            if not entry.held:
                del self._tenants[tenant]
