"""``services.verifier.host_slots.HostSlots``: one host's call slots shared fairly between bots (pure, no I/O).

Waiters are plain strings here; the outbound client uses futures.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from services.verifier.host_slots import HostSlots


def full(cap: int, tenant: str) -> HostSlots[str]:
    slots: HostSlots[str] = HostSlots(cap)
    for _ in range(cap):
        assert slots.take(tenant)
    return slots


def test_a_lone_bot_may_use_every_slot_and_one_more_call_waits() -> None:
    slots = full(4, "a")
    assert slots.in_flight == 4 and slots.held("a") == 4 and slots.share() == 4
    assert not slots.take("a") and not slots.take("b")


def test_a_bot_whose_calls_hang_is_brought_down_to_its_share_and_kept_there() -> None:
    slots = full(8, "a")  # a's eight calls hang
    for i in range(6):
        slots.wait("b", f"b{i}")
    slots.wait("a", "a-more")
    assert slots.share() == 4 and slots.below_share("b") and not slots.below_share("a")
    # Each of a's calls that ends (its timeout) goes to b, below its share, until b holds its share...
    assert [slots.release("a") for _ in range(4)] == [("b", f"b{i}") for i in range(4)]
    assert (slots.held("a"), slots.held("b")) == (4, 4)
    # ...then a's own waiter, below its share again, is served, not b's fifth.
    assert slots.release("a") == ("a", "a-more")
    assert (slots.held("a"), slots.held("b"), slots.in_flight) == (4, 4, 8)


def test_waiters_are_served_round_robin_across_bots_not_first_come_first_served() -> None:
    slots = full(8, "hog")
    for waiter in ("a1", "a2", "a3"):
        slots.wait("a", waiter)
    slots.wait("b", "b1")
    slots.wait("c", "c1")
    served = [slots.release("hog") for _ in range(5)]
    assert served == [("a", "a1"), ("b", "b1"), ("c", "c1"), ("a", "a2"), ("a", "a3")]


def test_a_bot_below_its_share_goes_before_one_at_it_whatever_the_turn() -> None:
    slots: HostSlots[str] = HostSlots(2)
    assert slots.take("a") and slots.take("a")
    slots.wait("a", "a1")  # first in turn, but a holds both slots
    slots.wait("b", "b1")
    assert slots.release("a") == ("b", "b1")
    assert slots.release("a") == ("a", "a1")  # a holds 0 of its share of 1 now


def test_with_nobody_below_share_waiting_the_slot_still_goes_to_a_waiter() -> None:
    slots = full(2, "a")
    slots.wait("a", "a1")
    assert slots.release("a") == ("a", "a1")  # nobody else calls: a may have every slot
    assert slots.in_flight == 2


def test_a_waiter_that_leaves_gets_nothing_and_an_idle_host_keeps_no_bot() -> None:
    slots = full(1, "a")
    slots.wait("b", "b1")
    slots.leave("b", "b1")
    slots.leave("b", "b1")  # already gone: nothing
    assert slots.release("a") is None
    assert slots.idle and slots.held("a") == slots.held("b") == 0 and slots.share() == 1


def test_more_bots_than_slots_each_get_one_in_turn() -> None:
    slots = full(2, "a")
    for tenant in "bcd":
        slots.wait(tenant, f"{tenant}1")
    assert slots.share() == 1
    assert [slots.release("a")[0], slots.release("a")[0]] == ["b", "c"]  # type: ignore[index]
    assert slots.release("b") == ("d", "d1")


class FairSlots(RuleBasedStateMachine):
    """Any sequence of calls starting, waiting, giving up and ending keeps the bookkeeping true: never
    more than the cap in flight, waiters only while every slot is taken, a slot that comes free always
    goes to a bot below its share when one waits, and nothing is kept once every call has ended."""

    TENANTS = ("a", "b", "c", "d")

    def __init__(self) -> None:
        super().__init__()
        self.cap = 3
        self.slots: HostSlots[int] = HostSlots(self.cap)
        self.held: dict[str, int] = dict.fromkeys(self.TENANTS, 0)
        self.waiting: dict[str, list[int]] = {t: [] for t in self.TENANTS}
        self.next_waiter = 0

    @rule(tenant=st.sampled_from(TENANTS))
    def call(self, tenant: str) -> None:
        if self.slots.take(tenant):
            self.held[tenant] += 1
        else:
            self.slots.wait(tenant, self.next_waiter)
            self.waiting[tenant].append(self.next_waiter)
            self.next_waiter += 1

    @precondition(lambda self: any(self.waiting.values()))
    @rule(data=st.data())
    def give_up(self, data: st.DataObject) -> None:
        tenant = data.draw(st.sampled_from([t for t in self.TENANTS if self.waiting[t]]))
        waiter = data.draw(st.sampled_from(self.waiting[tenant]))
        self.slots.leave(tenant, waiter)
        self.waiting[tenant].remove(waiter)

    @precondition(lambda self: any(self.held.values()))
    @rule(data=st.data())
    def end(self, data: st.DataObject) -> None:
        tenant = data.draw(st.sampled_from([t for t in self.TENANTS if self.held[t]]))
        self.held[tenant] -= 1
        active = [t for t in self.TENANTS if self.held[t] or self.waiting[t]]
        share = max(1, self.cap // max(1, len(active)))
        below = {t for t in active if self.waiting[t] and self.held[t] < share}
        handed = self.slots.release(tenant)
        if not any(self.waiting.values()):
            assert handed is None
            return
        assert handed is not None
        turn, waiter = handed
        assert turn in below or not below
        assert waiter == self.waiting[turn].pop(0)  # a bot's own waiters in the order they came
        self.held[turn] += 1

    @invariant()
    def bookkeeping_is_true(self) -> None:
        assert self.slots.in_flight == sum(self.held.values()) <= self.cap
        assert all(self.slots.held(t) == self.held[t] for t in self.TENANTS)
        if any(self.waiting.values()):
            assert self.slots.in_flight == self.cap
        if self.slots.idle:
            assert self.slots.share() == self.cap  # no bot is remembered


FairSlots.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
test_fair_slots = FairSlots.TestCase
