"""The contacts handler against the real database, no broker: ordering, replays, batching."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from services.contacts.handler import record
from services.gateway.admin import store
from shared import sessions
from shared.events import FallbackReason, Identity, IdentifyMethod, IdentityVerified, SessionFellBack, utcnow
from tests.conftest import store_pending, Published, Stack


async def new_session(pool: asyncpg.Pool, bot_id: UUID, n: int = 1) -> list[str]:
    ids = []
    for i in range(n):
        sid = f"s-{UUID(int=i)}-{utcnow().timestamp()}"
        assert await store_pending(pool, sid, bot_id, deadline_at=utcnow() + timedelta(seconds=30))
        ids.append(sid)
    return ids


def identity_event(bot_id: UUID, session_id: str, *, age: float = 0, **fields: Any) -> IdentityVerified:
    fields.setdefault("identifier", "42")
    return IdentityVerified(
        correlation_id="c", session_id=session_id, bot_id=bot_id, identify_method=IdentifyMethod.id,
        identity=Identity(**fields), observed_at=utcnow() - timedelta(seconds=age),
    )


@pytest.fixture
async def bot_id(stack: Stack) -> UUID:
    return (await store.create_bot(stack.pool, "contacts test", None)).bot_id


async def contact(pool: asyncpg.Pool, bot_id: UUID) -> dict[str, Any]:
    [row] = await pool.fetch("SELECT * FROM contacts WHERE bot_id = $1", bot_id)
    return dict(row)


async def test_older_event_never_overwrites_newer(stack: Stack, bot_id: UUID) -> None:
    s1, s2 = await new_session(stack.pool, bot_id, 2)
    newer = identity_event(bot_id, s1, age=0, name="Newer", metadata={"k": "new"})
    older = identity_event(bot_id, s2, age=60, name="Older", label="only-in-older", metadata={"k": "old", "x": 1})

    await record([newer], pool=stack.pool, publish=Published())
    await record([older], pool=stack.pool, publish=Published())

    row = await contact(stack.pool, bot_id)
    assert row["name"] == "Newer" and row["metadata"] == {"k": "new"} and row["label"] is None
    statuses = await stack.pool.fetch("SELECT status FROM widget_sessions WHERE session_id = ANY($1)", [s1, s2])
    assert {r["status"] for r in statuses} == {"verified"}  # both sessions still end


async def test_out_of_order_in_one_batch_applies_oldest_first(stack: Stack, bot_id: UUID) -> None:
    s1, s2 = await new_session(stack.pool, bot_id, 2)
    newer = identity_event(bot_id, s1, age=0, name="Newer", metadata={"a": 2})
    older = identity_event(bot_id, s2, age=5, name="Older", email="kept@example.com", metadata={"a": 1, "b": 1})

    await record([newer, older], pool=stack.pool, publish=Published())

    row = await contact(stack.pool, bot_id)
    assert (row["name"], row["email"], row["metadata"]) == ("Newer", "kept@example.com", {"a": 2, "b": 1})


async def test_replayed_event_changes_nothing(stack: Stack, bot_id: UUID) -> None:
    [s1] = await new_session(stack.pool, bot_id)
    event = identity_event(bot_id, s1, name="Once", metadata={"n": 1})
    await record([event], pool=stack.pool, publish=Published())
    before = await contact(stack.pool, bot_id)
    session_before = await stack.pool.fetchrow("SELECT * FROM widget_sessions WHERE session_id = $1", s1)

    await record([event], pool=stack.pool, publish=Published())
    await record([event, event], pool=stack.pool, publish=Published())

    assert await contact(stack.pool, bot_id) == before
    assert await stack.pool.fetchrow("SELECT * FROM widget_sessions WHERE session_id = $1", s1) == session_before


async def test_first_outcome_of_a_session_wins(stack: Stack, bot_id: UUID) -> None:
    [s1] = await new_session(stack.pool, bot_id)
    fell_back = SessionFellBack(correlation_id="c", session_id=s1, bot_id=bot_id, reason=FallbackReason.auth_rejected,
                                detail="no")
    await record([fell_back], pool=stack.pool, publish=Published())
    await record([identity_event(bot_id, s1)], pool=stack.pool, publish=Published())

    row = await stack.pool.fetchrow("SELECT status, reason, contact_id FROM widget_sessions WHERE session_id = $1", s1)
    assert (row["status"], row["reason"], row["contact_id"]) == ("fallback", "auth_rejected", None)


async def test_watcher_is_notified_only_after_commit_and_only_once(stack: Stack, bot_id: UUID) -> None:
    [s1] = await new_session(stack.pool, bot_id)
    assert await sessions.watch_session(stack.pool, s1, "gw-test") == "pending"
    published = Published()
    event = identity_event(bot_id, s1)

    await record([event], pool=stack.pool, publish=published)
    await record([event], pool=stack.pool, publish=published)

    assert [(e.event_type, e.session_id, e.status) for e in published.events] == [("session.resolved", s1, "verified")]


async def test_batch_with_many_sessions_and_contacts(stack: Stack, bot_id: UUID) -> None:
    sessions = await new_session(stack.pool, bot_id, 50)
    events = [identity_event(bot_id, sid, identifier=str(i % 10), name=f"n{i}") for i, sid in enumerate(sessions)]

    await record(events, pool=stack.pool, publish=Published())

    assert await stack.pool.fetchval("SELECT count(*) FROM contacts WHERE bot_id = $1", bot_id) == 10
    assert await stack.pool.fetchval(
        "SELECT count(*) FROM widget_sessions WHERE session_id = ANY($1) AND status = 'verified' AND contact_id IS NOT NULL",
        sessions) == 50
