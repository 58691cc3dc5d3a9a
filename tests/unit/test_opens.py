"""Where an open is handed (services/gateway/widget/opening.py: Opens): a refusal never waits for a publish.
What is retracted (Retractions) stays bounded; the retraction itself is tests/integration/test_retractions.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any
from uuid import uuid4

from services.gateway.widget.opening import Busy, Open, Opened, Opens, Retractions
from shared.sessions import NewSession

ADMITTED = object()  # stands for the open's WidgetOpened event: this flush only asks whether there is one


def an_open(*, refused: bool) -> Open:
    session = NewSession(session_id=uuid4().hex, bot_id=uuid4(), origin=None,
                         deadline_at=datetime.now(timezone.utc), busy=refused)
    return Open(session, None if refused else ADMITTED)  # type: ignore[arg-type]


class Pipeline:
    """A flush whose publish (any batch with an admitted open) waits until ``publishing`` is set."""

    def __init__(self) -> None:
        self.publishing = asyncio.Event()
        self.flushing = asyncio.Event()  # a flush has started
        self.batches: list[list[str]] = []

    async def flush(self, opens: Sequence[Open]) -> list[Opened | Busy]:
        self.batches.append(["refused" if o.event is None else "admitted" for o in opens])
        self.flushing.set()
        if any(o.event is not None for o in opens):
            await self.publishing.wait()
        return [Busy("required") if o.event is None else Opened.pending for o in opens]


async def test_a_refusal_is_answered_while_an_admitted_opens_publish_waits() -> None:
    pipeline = Pipeline()
    opens = Opens(pipeline.flush, max_weight=256, max_in_flight=1)
    admitted = asyncio.ensure_future(opens(an_open(refused=False)))
    await asyncio.wait_for(pipeline.flushing.wait(), 5)  # the admitted open's flush is under way
    refused: Any = await asyncio.wait_for(opens(an_open(refused=True)), 5)  # the publish still waits
    assert refused == Busy("required")
    assert not admitted.done()
    pipeline.publishing.set()
    assert await admitted is Opened.pending
    assert sorted(map(tuple, pipeline.batches)) == [("admitted",), ("refused",)]  # never in one batch


async def test_opens_of_each_kind_still_go_together() -> None:
    pipeline = Pipeline()
    pipeline.publishing.set()
    opens = Opens(pipeline.flush, max_weight=256, max_in_flight=1)
    results = await asyncio.gather(*(opens(an_open(refused=i % 2 == 0)) for i in range(10)))
    assert results.count(Opened.pending) == 5 and results.count(Busy("required")) == 5
    assert all(len(set(batch)) == 1 for batch in pipeline.batches)
    assert len(pipeline.batches) <= 4  # the first of each kind alone, then the rest of it in one batch
    await opens.drain()


def test_retractions_are_bounded() -> None:
    """Past its limit (a long database outage under load) the rest are left to the overdue sweeper."""
    retractions = Retractions(limit=3)
    retractions.add(["a", "b"], pending_only=False)
    retractions.add(["c", "d", "e"], pending_only=True)
    assert len(retractions) == 3
    retractions.add(["f"], pending_only=False)
    assert len(retractions) == 3
