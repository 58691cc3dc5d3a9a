"""``services.gateway.widget.outcomes.OutcomeHub``: outcomes told to the waiting widgets, the one tick."""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import pytest

from services.gateway.widget import outcomes
from services.gateway.widget.admission import Admission
from services.gateway.widget.outcomes import PING, OutcomeHub
from shared.events import CallFacts, SessionResolved


class RecordingAdmission(Admission):
    def __init__(self) -> None:
        super().__init__(target=1.0)
        self.delays: list[float] = []

    def observe(self, delay: float, now: float | None = None) -> None:
        self.delays.append(delay)


class FakeStream:
    def __init__(self, fails: bool = False) -> None:
        self.written: list[bytes] = []
        self.fails = fails

    async def write(self, data: bytes) -> None:
        if self.fails:
            raise ConnectionResetError()
        self.written.append(data)


def told(session_id: str, status: str = "verified", auth_latency_ms: float | None = None) -> SessionResolved:
    return SessionResolved(correlation_id="c", session_id=session_id, bot_id=uuid4(), status=status,
                           view={"session_id": session_id, "status": status}, facts=CallFacts(auth_latency_ms=auth_latency_ms))


async def test_a_waiting_stream_gets_the_view_and_an_early_outcome_is_kept_for_the_late_one() -> None:
    hub = OutcomeHub("gw-test", RecordingAdmission())
    waiting = hub.watch("s1")
    assert not waiting.done()
    hub.resolved(told("s1"))
    assert (await waiting)["status"] == "verified"

    hub.resolved(told("s2", "fallback"))  # before anyone asked
    late = hub.watch("s2")
    assert late.done() and late.result()["status"] == "fallback"


async def test_only_sessions_opened_here_feed_admission_less_the_business_time() -> None:
    admission = RecordingAdmission()
    hub = OutcomeHub("gw-test", admission)
    hub.opened(["mine"])
    assert hub.in_flight == 1 and hub.pending_here("mine")
    hub.resolved(told("mine", auth_latency_ms=60_000))  # the business took a minute: not Doorman's delay
    hub.resolved(told("elsewhere"))
    assert hub.in_flight == 0 and len(admission.delays) == 1 and admission.delays[0] < 0


async def test_an_open_held_for_the_broker_counts_in_flight_but_its_delay_is_no_queue() -> None:
    admission = RecordingAdmission()
    hub = OutcomeHub("gw-test", admission)
    hub.opened(["held", "published"])
    hub.held(["held", "never-opened-here"])
    assert hub.in_flight == 2  # admission control bounds the backlog with it
    hub.resolved(told("held"))  # its delay is the broker's absence
    hub.resolved(told("published"))
    assert hub.in_flight == 0 and len(admission.delays) == 1
    hub.opened(["held"])  # a session id is never reused; were it, it would count as any other
    hub.resolved(told("held"))
    assert len(admission.delays) == 2


async def test_the_tick_rereads_long_waiters_in_one_query_and_pings_streams() -> None:
    hub = OutcomeHub("gw-test", RecordingAdmission(), ping_seconds=0.0)
    resolved_meanwhile, still_pending = hub.watch("lost"), hub.watch("slow")
    asked: list[Sequence[str]] = []

    async def read_views(ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        asked.append(list(ids))
        return {"lost": {"session_id": "lost", "status": "fallback"}, "slow": {"session_id": "slow", "status": "pending"}}

    alive, gone = FakeStream(), FakeStream(fails=True)
    hub.streaming(alive)  # type: ignore[arg-type]
    hub.streaming(gone)  # type: ignore[arg-type]
    await hub.tick(read_views, poll_seconds=0.0, forget_after=60)
    hub.done_streaming(alive)  # type: ignore[arg-type]
    hub.done_streaming(gone)  # type: ignore[arg-type]
    assert alive.written == [PING]
    assert [sorted(a) for a in asked] == [["lost", "slow"]]
    assert resolved_meanwhile.done() and resolved_meanwhile.result()["status"] == "fallback"
    assert not still_pending.done()
    hub.unwatch("slow", still_pending)
    assert still_pending.cancelled()


async def test_the_tick_forgets_what_it_opened_long_ago(monkeypatch: pytest.MonkeyPatch) -> None:
    hub = OutcomeHub("gw-test", RecordingAdmission(), ping_seconds=3600)
    hub.opened(["old"])

    async def nothing(_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        raise AssertionError("no one waits: nothing to read")

    await hub.tick(nothing, poll_seconds=60, forget_after=60)
    assert hub.in_flight == 1  # opened just now: still counted
    two_minutes_on = time.monotonic() + 120
    monkeypatch.setattr(outcomes, "time", SimpleNamespace(monotonic=lambda: two_minutes_on))
    await hub.tick(nothing, poll_seconds=60, forget_after=60)
    assert hub.in_flight == 0


async def test_an_end_reaches_the_waiting_stream_replaces_a_remembered_outcome_and_is_no_pipeline_delay() -> None:
    admission = RecordingAdmission()
    hub = OutcomeHub("gw-test", admission)
    hub.opened(["s1"])
    waiting = hub.watch("s1")
    hub.resolved(told("s1", "ended"))  # the visitor logged out before the outcome
    assert (await waiting)["status"] == "ended"
    assert hub.in_flight == 0 and admission.delays == []

    hub.resolved(told("s2", "verified"))  # remembered, unasked; then the contact is revoked
    hub.resolved(told("s2", "ended"))
    late = hub.watch("s2")
    assert late.done() and late.result()["status"] == "ended"
