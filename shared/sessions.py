"""A widget session's whole life, in one place: every transition of ``widget_sessions``.

=========================  ==========  ================================================
transition                 who         how
=========================  ==========  ================================================
open (pending)             gateway     :func:`open_sessions`, a batch per round trip
open refused as ``busy``   gateway     :func:`open_sessions` with ``busy``: stored
                                       already resolved, never published
hold an open's event       gateway     :func:`hold_unpublished`: its publish failed (the
                                       broker is away), so the row keeps the event
publish what is held       gateway     :func:`held_opens` then :func:`published`, in
                                       the sweeper's transaction (see below)
undo an open               gateway     :func:`forget_sessions`: answered 503 (neither
                                       published nor held, or not known to be stored):
                                       nothing half-accepted
watch from another         gateway     :func:`watch_session` (the stream is not on the
replica                                replica that opened it)
resolve                    contacts    :func:`resolve_sessions`, first outcome wins
expire (overdue)           contacts,   :func:`expire_overdue`: the sweeper, or a
                           gateway     gateway reading one
claim / release the form   gateway     :func:`claim_collection`, :func:`release_collection`
link the form's contact    contacts    :func:`link_collected`
end (logout)               gateway     :func:`end_session`: any status but ``ended``;
                                       final (a later outcome changes nothing)
end a contact's sessions   gateway     :func:`end_contact_sessions` (revocation)
end a provider login's     gateway     :func:`end_provider_sessions` (back-channel
sessions                               logout: by the provider's sub or sid)
erase a contact            gateway     :func:`erase_contact_details`: its sessions' free-text
                                       ``detail`` (their link goes with the contact's row)
prune                      contacts    :func:`prune`, after the retention period
=========================  ==========  ================================================

A session row is the outbox of its ``widget.opened`` event: ``unpublished`` holds the event's message body
(its access token sealed, as on the wire) only while a pending session waits for the broker. Every transition
that ends a session (resolve, expire, end) clears it in the same statement, so a session that ended before
its publish is never published, and nothing holds a token longer than the session waits.

The verifier only reads: :func:`not_pending` on redeliveries and retries. What the widget is told of a
session is :mod:`shared.widget_view`; the gateway reads it (services/gateway/widget/views.py).

A session id is 256 random bits behind the id of the gateway replica that opened it
(:func:`new_session_id`), so an outcome can be sent to that replica with no database
write; a stream held by another replica records itself as ``watcher`` instead.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

import asyncpg

from shared.events import CallFacts, FallbackReason
from shared.widget_view import SessionView, ended_view, fallback_view, widget_view

EXPIRE_GRACE_SECONDS = 2.0
EXPIRED_DETAIL = "the session was not resolved in time"
BUSY_DETAIL = "Doorman is too busy to verify visitors right now"
TERMINAL_STATUSES = ("verified", "fallback", "ended")  # every accepted open ends in exactly one of these
ENDED_DETAIL = {"visitor": "the visitor logged out", "revoked": "the contact's sessions were revoked",
                "backchannel_logout": "the visitor logged out at the OpenID Provider (back-channel logout)"}

# -- ids ------------------------------------------------------------------------------------------

REPLICA_HEX = 12
_REPLICA = re.compile(r"[0-9a-f]{%d}" % REPLICA_HEX)


def new_replica_id() -> str:
    return f"gw-{secrets.token_hex(REPLICA_HEX // 2)}"


def new_session_id(replica: str) -> str:
    """The opening replica's id, then 256 random bits (the id is the only key to the outcome)."""
    return replica.removeprefix("gw-") + secrets.token_urlsafe(32)


def opened_by(session_id: str) -> str | None:
    """The gateway replica that opened the session, as its id says (None for ids of another shape)."""
    head = session_id[:REPLICA_HEX]
    return f"gw-{head}" if len(session_id) > REPLICA_HEX + 16 and _REPLICA.fullmatch(head) else None


# -- open ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewSession:
    session_id: str
    bot_id: UUID
    origin: str | None
    deadline_at: datetime
    busy: bool = False  # refused by admission control: stored as fallback(busy), already resolved


# A busy session falls back here, so its collect_information is captured here (the subquery runs for busy rows only).
_OPEN = """
INSERT INTO widget_sessions (session_id, bot_id, origin, deadline_at, status, reason, detail, resolved_at,
                             collect_information)
SELECT u.session_id, u.bot_id, u.origin, u.deadline_at,
       CASE WHEN u.busy THEN 'fallback' ELSE 'pending' END,
       CASE WHEN u.busy THEN $6 END, CASE WHEN u.busy THEN $7 END, CASE WHEN u.busy THEN now() END,
       CASE WHEN u.busy THEN coalesce(
           (SELECT a.collect_information FROM custom_auth_settings a WHERE a.bot_id = u.bot_id), 'required') END
FROM unnest($1::text[], $2::uuid[], $3::text[], $4::timestamptz[], $5::bool[])
     AS u(session_id, bot_id, origin, deadline_at, busy)
JOIN bots b ON b.bot_id = u.bot_id
RETURNING session_id, collect_information
"""


async def open_sessions(conn: asyncpg.Connection | asyncpg.Pool, new: Sequence[NewSession]) -> dict[str, str | None]:
    """Record sessions in one statement; returns the ids stored (a session of an unknown bot is not),
    each with the collect_information mode a busy one fell back with (None for a pending one)."""
    rows = await conn.fetch(
        _OPEN, [s.session_id for s in new], [s.bot_id for s in new], [s.origin for s in new],
        [s.deadline_at for s in new], [s.busy for s in new], FallbackReason.busy.value, BUSY_DETAIL,
    )
    return {r["session_id"]: r["collect_information"] for r in rows}


async def forget_sessions(conn: asyncpg.Connection | asyncpg.Pool, session_ids: Sequence[str], *,
                          pending_only: bool = True) -> int:
    """Undo :func:`open_sessions` for opens answered 503: nothing half-accepted. ``pending_only`` when their
    events may have reached the broker (a session it resolved meanwhile stays); without it, whatever the rows
    became (nothing was published: a refusal stored as busy goes too). Returns how many rows went."""
    status = await conn.execute(
        "DELETE FROM widget_sessions WHERE session_id = ANY($1::text[]) AND (NOT $2 OR status = 'pending')",
        list(session_ids), pending_only,
    )
    return int(status.split()[-1])


# -- hold: the open's event waits in its row while the broker is away ---------------------------------


async def hold_unpublished(conn: asyncpg.Connection | asyncpg.Pool, bodies: Mapping[str, bytes]) -> set[str]:
    """Keep each pending session's event body (session id -> body, its access token sealed) in its row, in one
    statement; returns the sessions that hold one (a session resolved meanwhile, its event having reached the
    broker after all, holds nothing)."""
    rows = await conn.fetch(
        """UPDATE widget_sessions s SET unpublished = u.body
           FROM unnest($1::text[], $2::bytea[]) AS u(session_id, body)
           WHERE s.session_id = u.session_id AND s.status = 'pending'
           RETURNING s.session_id""",
        list(bodies), list(bodies.values()),
    )
    return {r["session_id"] for r in rows}


@dataclass(frozen=True, slots=True)
class Held:
    session_id: str
    body: bytes


async def held_opens(conn: asyncpg.Connection, limit: int) -> list[Held]:
    """Up to ``limit`` held events of sessions still pending and within their deadline (the soonest due first),
    locked for the caller's transaction; rows another sweeper holds are skipped. A session past its deadline is
    left to the overdue sweeper, which ends it and clears what it held."""
    rows = await conn.fetch(
        """SELECT session_id, unpublished FROM widget_sessions
           WHERE unpublished IS NOT NULL AND status = 'pending' AND deadline_at > now()
           ORDER BY deadline_at LIMIT $1 FOR UPDATE SKIP LOCKED""",
        limit,
    )
    return [Held(r["session_id"], r["unpublished"]) for r in rows]


async def published(conn: asyncpg.Connection, session_ids: Sequence[str]) -> None:
    """The broker confirmed these held events: clear them (in the transaction that locked them)."""
    await conn.execute("UPDATE widget_sessions SET unpublished = NULL WHERE session_id = ANY($1::text[])",
                       list(session_ids))


# -- read -----------------------------------------------------------------------------------------------

async def not_pending(conn: asyncpg.Connection | asyncpg.Pool, session_ids: Sequence[str]) -> set[str]:
    """Which of these sessions are already resolved or gone (a redelivered open must not call twice)."""
    rows = await conn.fetch(
        """SELECT u.id FROM unnest($1::text[]) AS u(id)
           LEFT JOIN widget_sessions s ON s.session_id = u.id
           WHERE s.status IS DISTINCT FROM 'pending'""",
        list(session_ids),
    )
    return {r["id"] for r in rows}


# -- watch ----------------------------------------------------------------------------------------------


async def watch_session(conn: asyncpg.Connection | asyncpg.Pool, session_id: str, replica: str) -> str | None:
    """Say this replica holds the session's stream; returns the status (None: no such session).

    Only needed when the stream is not on the replica that opened the session. The row
    lock orders this against :func:`resolve_sessions`: either the contacts service sees
    our replica and tells us, or we see the resolved status here.
    """
    return await conn.fetchval(
        "UPDATE widget_sessions SET watcher = $2 WHERE session_id = $1 RETURNING status", session_id, replica,
    )


# -- resolve ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    session_id: str
    status: str  # verified | fallback
    reason: str | None = None
    detail: str | None = None
    contact_id: UUID | None = None
    facts: CallFacts = CallFacts()
    degraded: bool = False  # verified from the outage grace
    provider_sub: str | None = None  # verified through an OpenID Provider: its sub and session id (logout finds them)
    provider_sid: str | None = None
    identity_expires_at: datetime | None = None


@dataclass(frozen=True)
class Resolved:
    session_id: str
    bot_id: UUID
    status: str
    reason: str | None
    watcher: str | None
    seconds: float  # widget open to outcome
    view: SessionView  # what the widget is told
    facts: CallFacts = CallFacts()

    @property
    def told(self) -> set[str]:
        """The gateway replicas to tell: the one that opened it, and the one holding its stream."""
        return {r for r in (opened_by(self.session_id), self.watcher) if r}


# A fallback captures the bot's collect_information mode (a primary-key read, fallbacks only).
_CAPTURE_MODE = """CASE WHEN {status} = 'fallback' THEN coalesce(
    (SELECT a.collect_information FROM custom_auth_settings a WHERE a.bot_id = s.bot_id), 'required') END"""

_RESOLVE = f"""
UPDATE widget_sessions s SET
    status = u.status, reason = u.reason, detail = u.detail, contact_id = u.contact_id, resolved_at = now(),
    auth_http_status = u.auth_http_status, auth_latency_ms = u.auth_latency_ms, whitelist_note = u.whitelist_note,
    degraded = u.degraded, circuit_open = u.circuit_open, provider_sub = u.provider_sub, provider_sid = u.provider_sid,
    identity_expires_at = u.identity_expires_at, unpublished = NULL,
    collect_information = {_CAPTURE_MODE.format(status="u.status")}
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::int[], $7::real[], $8::text[],
            $9::bool[], $10::bool[], $11::text[], $12::text[], $13::timestamptz[])
    AS u(session_id, status, reason, detail, contact_id, auth_http_status, auth_latency_ms, whitelist_note,
         degraded, circuit_open, provider_sub, provider_sid, identity_expires_at)
LEFT JOIN contacts c ON c.contact_id = u.contact_id
WHERE s.session_id = u.session_id AND s.status = 'pending'
RETURNING s.session_id, s.bot_id, s.status, s.reason, s.watcher, s.created_at, s.resolved_at,
          s.collected_at IS NOT NULL AS collected, s.collect_information, s.degraded, s.identity_expires_at,
          c.contact_id, c.name, c.email, c.phone_number, c.avatar, c.verified
"""


async def resolve_sessions(conn: asyncpg.Connection, outcomes: Sequence[Outcome]) -> list[Resolved]:
    """Record each session's first outcome; later ones (replays, racers) change nothing."""
    first: dict[str, Outcome] = {}
    for outcome in outcomes:
        first.setdefault(outcome.session_id, outcome)
    if not first:
        return []
    chosen = list(first.values())
    rows = await conn.fetch(
        _RESOLVE,
        list(first), [o.status for o in chosen], [o.reason for o in chosen], [o.detail for o in chosen],
        [o.contact_id for o in chosen], [o.facts.auth_http_status for o in chosen],
        [o.facts.auth_latency_ms for o in chosen], [o.facts.whitelist_note for o in chosen],
        [o.degraded for o in chosen], [o.facts.circuit_open for o in chosen], [o.provider_sub for o in chosen],
        [o.provider_sid for o in chosen], [o.identity_expires_at for o in chosen],
    )
    return [
        Resolved(r["session_id"], r["bot_id"], r["status"], r["reason"], r["watcher"],
                 (r["resolved_at"] - r["created_at"]).total_seconds(), widget_view(r), first[r["session_id"]].facts)
        for r in rows
    ]


# -- expire ---------------------------------------------------------------------------------------------


_EXPIRE = f"""
    UPDATE widget_sessions s
    SET status = 'fallback', reason = $1, detail = $2, resolved_at = now(), unpublished = NULL,
        collect_information = {_CAPTURE_MODE.format(status="'fallback'")}
    WHERE s.session_id = ANY(ARRAY({{candidates}})) AND s.status = 'pending'
    RETURNING s.session_id, s.bot_id, s.watcher, s.collect_information
"""
# Range scan of the partial index on pending sessions' deadlines (the predicate is sargable).
_OVERDUE = """SELECT session_id FROM widget_sessions
              WHERE status = 'pending' AND deadline_at < now() - make_interval(secs => $3)
              ORDER BY deadline_at LIMIT $4 FOR UPDATE SKIP LOCKED"""
# Given sessions, by primary key: what a gateway does when it reads them.
_THESE_OVERDUE = """SELECT session_id FROM widget_sessions
                    WHERE session_id = ANY($4::text[]) AND status = 'pending'
                      AND deadline_at < now() - make_interval(secs => $3)
                    FOR UPDATE SKIP LOCKED"""


@dataclass(frozen=True)
class Expired:
    session_id: str
    bot_id: UUID
    watcher: str | None
    collect_information: str | None = None

    def resolved(self) -> Resolved:
        """As told to the waiting gateways."""
        return Resolved(self.session_id, self.bot_id, "fallback", FallbackReason.internal_error.value, self.watcher,
                        0.0, fallback_view(self.session_id, FallbackReason.internal_error, self.collect_information))


async def expire_overdue(
    conn: asyncpg.Connection | asyncpg.Pool, *, session_ids: Sequence[str] | None = None, limit: int = 1000,
) -> list[Expired]:
    """Resolve overdue pending sessions (those given, or up to ``limit``) as fallback(internal_error).

    A session still pending ``EXPIRE_GRACE_SECONDS`` after its deadline lost a message
    somewhere despite retries and redeliveries; resolving it with a conditional update keeps
    it to exactly one outcome whoever gets there first."""
    reason, detail = FallbackReason.internal_error.value, EXPIRED_DETAIL
    if session_ids is None:
        rows = await conn.fetch(_EXPIRE.format(candidates=_OVERDUE), reason, detail, EXPIRE_GRACE_SECONDS, limit)
    else:
        rows = await conn.fetch(_EXPIRE.format(candidates=_THESE_OVERDUE), reason, detail, EXPIRE_GRACE_SECONDS,
                                list(session_ids))
    return [Expired(r["session_id"], r["bot_id"], r["watcher"], r["collect_information"]) for r in rows]


# -- end: the visitor logged out, or the contact's sessions were revoked --------------------------------

EndedBy = Literal["visitor", "revoked", "backchannel_logout"]


@dataclass(frozen=True)
class Ended:
    session_id: str
    bot_id: UUID
    was: str  # the status it had: pending | verified | fallback
    watcher: str | None
    collected: bool = False

    def resolved(self) -> Resolved:
        """As told to the gateways that may hold its stream (or remember its earlier outcome)."""
        return Resolved(self.session_id, self.bot_id, "ended", None, self.watcher, 0.0,
                        ended_view(self.session_id, self.collected))


# The row lock (FOR UPDATE in the subquery) orders an end against resolve_sessions and watch_session:
# a racing outcome finds the session no longer pending and changes nothing; a racing watcher is returned.
_END = """
UPDATE widget_sessions s SET status = 'ended', ended_at = now(), ended_by = $2, resolved_at = coalesce(s.resolved_at, now()),
       unpublished = NULL,
       detail = CASE WHEN old.status = 'pending' THEN $3 ELSE s.detail END
FROM (SELECT session_id, status FROM widget_sessions WHERE {which} AND status <> 'ended'
      ORDER BY session_id FOR UPDATE) old
WHERE s.session_id = old.session_id
RETURNING s.session_id, s.bot_id, old.status AS was, s.watcher, s.collected_at IS NOT NULL AS collected
"""


def _ended(rows: Sequence[asyncpg.Record]) -> list[Ended]:
    return [Ended(r["session_id"], r["bot_id"], r["was"], r["watcher"], r["collected"]) for r in rows]


async def end_session(conn: asyncpg.Connection | asyncpg.Pool, session_id: str) -> Ended | Literal["ended"] | None:
    """The visitor logged out: the session ends, whatever it was. Returns what ended, ``"ended"`` if it
    already had (ending is idempotent), None if there is no such session. Ending a pending session is
    final: its outcome, when it comes, still updates the contact but not the session."""
    rows = await conn.fetch(_END.format(which="session_id = $1"), session_id, "visitor", ENDED_DETAIL["visitor"])
    if rows:
        return _ended(rows)[0]
    exists = await conn.fetchval("SELECT true FROM widget_sessions WHERE session_id = $1", session_id)
    return "ended" if exists else None


async def end_contact_sessions(conn: asyncpg.Connection | asyncpg.Pool, bot_id: UUID, contact_id: UUID) -> list[Ended]:
    """Revocation: end every session of the contact not already ended (verified with it, or whose
    Collect Information form made or updated it)."""
    rows = await conn.fetch(
        _END.format(which="bot_id = $4 AND (contact_id = $1 OR collected_contact_id = $1)"),
        contact_id, "revoked", ENDED_DETAIL["revoked"], bot_id,
    )
    return _ended(rows)


async def end_provider_sessions(conn: asyncpg.Connection | asyncpg.Pool, bot_id: UUID, *, sub: str | None,
                                sid: str | None) -> list[Ended]:
    """A back-channel logout: end the bot's sessions not already ended that were verified for the OpenID Provider's
    ``sub`` (whatever their sid), or, given only ``sid``, those carrying that provider session id."""
    which = "bot_id = $1 AND provider_sub = $4" if sub is not None else "bot_id = $1 AND provider_sid = $4"
    rows = await conn.fetch(_END.format(which=which), bot_id, "backchannel_logout", ENDED_DETAIL["backchannel_logout"],
                            sub if sub is not None else sid)
    return _ended(rows)


# -- erase: the contact's personal data goes, its sessions stay in the activity log pointing at no one ----

# Its sessions: verified as the contact, or the form that made or updated it ($1 bot, $2 contact).
OF_CONTACT = "s.bot_id = $1 AND (s.contact_id = $2 OR s.collected_contact_id = $2)"


async def erase_contact_details(conn: asyncpg.Connection, bot_id: UUID, contact_id: UUID) -> list[str]:
    """Clear the free-text ``detail`` (it may quote the business's answer) and the OpenID Provider's sub and sid of
    the contact's sessions, in the erasure's transaction; returns their ids. Their status, reason and timings stay; deleting the contact's row
    then unlinks them (ON DELETE SET NULL)."""
    rows = await conn.fetch(
        f"""UPDATE widget_sessions s SET detail = NULL, provider_sub = NULL, provider_sid = NULL
            WHERE {OF_CONTACT} RETURNING s.session_id""", bot_id, contact_id)
    return [r["session_id"] for r in rows]


# -- the Collect Information form ---------------------------------------------------------------------


async def claim_collection(conn: asyncpg.Connection | asyncpg.Pool, session_id: str) -> tuple[UUID | None, str | None]:
    """Take the session's one Collect Information submission: (bot_id, None), or (None, why not).
    A session that fell back with ``collect_information: off`` was offered no form: ``collect_information_off``."""
    bot_id = await conn.fetchval(
        """UPDATE widget_sessions SET collected_at = now()
           WHERE session_id = $1 AND status = 'fallback' AND collected_at IS NULL
             AND collect_information IS DISTINCT FROM 'off' RETURNING bot_id""",
        session_id,
    )
    if bot_id is not None:
        return bot_id, None
    row = await conn.fetchrow(
        "SELECT status, collected_at, collect_information FROM widget_sessions WHERE session_id = $1", session_id,
    )
    if row is None:
        return None, "not_found"
    if row["status"] != "fallback":
        return None, "not_fallback"
    if row["collect_information"] == "off":
        return None, "collect_information_off"
    return None, "already_collected"


async def release_collection(conn: asyncpg.Connection | asyncpg.Pool, session_id: str) -> None:
    await conn.execute("UPDATE widget_sessions SET collected_at = NULL WHERE session_id = $1", session_id)


async def link_collected(
    conn: asyncpg.Connection, session_id: str, bot_id: UUID, identify_method: str, identifier: str,
) -> None:
    """Point the session at the contact its form made or updated (a form's contact has no business workspace)."""
    await conn.execute(
        """UPDATE widget_sessions s SET collected_contact_id = c.contact_id
           FROM contacts c
           WHERE s.session_id = $1 AND (c.bot_id, c.identify_method, c.identifier) = ($2, $3, $4)
             AND c.external_workspace_id IS NULL""",
        session_id, bot_id, identify_method, identifier,
    )


# -- prune -------------------------------------------------------------------------------------------------

PRUNE_CHUNK = 5000


async def prune(pool: asyncpg.Pool, older_than: timedelta) -> int:
    """Delete resolved sessions (and inbox entries, pushed identities expired) older than ``older_than``;
    returns sessions deleted."""
    deleted = 0
    while True:
        n = await pool.fetchval(
            """WITH doomed AS (
                   SELECT session_id FROM widget_sessions
                   WHERE created_at < now() - $1::interval AND status <> 'pending'
                   LIMIT $2 FOR UPDATE SKIP LOCKED)
               , gone AS (DELETE FROM widget_sessions s USING doomed WHERE s.session_id = doomed.session_id RETURNING 1)
               SELECT count(*) FROM gone""",
            older_than, PRUNE_CHUNK,
        )
        deleted += n
        if n < PRUNE_CHUNK:
            break
    await pool.execute(
        """DELETE FROM processed_events WHERE event_id IN (
               SELECT event_id FROM processed_events WHERE processed_at < now() - $1::interval LIMIT 100000)""",
        older_than,
    )
    await pool.execute(  # identities pushed for the widget (used or not), once expired that long ago
        """DELETE FROM pushed_identities WHERE token_hash IN (
               SELECT token_hash FROM pushed_identities WHERE expires_at < now() - $1::interval LIMIT 100000)""",
        older_than,
    )
    return deleted
