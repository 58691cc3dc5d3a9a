"""Deliver webhooks to the business: the verifier's second stage (``verifier.webhooks``), with its own
capacity and its own outbound client, so a slow endpoint never takes anything from widget opens.

A delivery's row (``webhook_deliveries``, recorded by whoever made the change: shared/webhook_outbox.py)
holds the exact body. Each attempt POSTs it to the bot's webhook URL, signed like an identity call with
``Doorman-Delivery`` = the body's ``id`` (the same on every attempt: the business dedupes on it), and
records the attempt (:func:`shared.webhook_outbox.attempted`). 2xx: delivered. 4xx other than 408 and
429, or an address Doorman will not call: failed for good (dead now). Anything else (408, 429, 5xx, a
timeout, no connection): another attempt after the stage's back-off, dead once none is left (about a
day). Which is which: the ``redeliver`` column of :data:`.failures.VERDICTS`. A dead delivery's copy
waits in ``verifier.webhooks.dlq``: ``doorman dlq replay verifier.webhooks`` tries it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from uuid import UUID

import asyncpg
import structlog

from shared import webhook_outbox
from shared.auth_config import AuthConfig
from shared.events import WebhookDue
from shared.failures import FailedForGood, TryLater
from shared.signing import sign

from .failures import VERDICTS, Kind, kind_of, status_kind
from .outbound import OutboundClient

log = structlog.get_logger("doorman.webhooks")

LoadConfig = Callable[[UUID], Awaitable[AuthConfig | None]]
EVENT_HEADER = "Doorman-Event"  # the body's `type`, for routing without parsing

_LOAD = """SELECT d.body, d.status, d.type, w.url, coalesce(w.enabled, false) AS enabled
           FROM webhook_deliveries d LEFT JOIN webhooks w USING (bot_id) WHERE d.delivery_id = $1"""


def _detail(kind: Kind, exc: BaseException) -> str:
    """What the delivery's ``last_error`` says of an attempt that raised ``exc``."""
    if kind is Kind.BLOCKED:
        return f"Doorman will not call this URL: {exc}"
    if kind is Kind.NO_SLOT:
        return f"too many deliveries to this host at once ({exc})"
    if kind is Kind.UNREADABLE:
        return f"the answer could not be read ({exc})"
    if kind is Kind.TIMEOUT:
        return "the endpoint did not answer in time"
    return f"could not reach the endpoint ({type(exc).__name__})"


async def deliver(event: WebhookDue, *, pool: asyncpg.Pool, http: OutboundClient, load_config: LoadConfig) -> None:
    """One attempt at one delivery (see the module's docstring). Raises :class:`TryLater` or
    :class:`FailedForGood` when it did not succeed; returns when it did, or when there is nothing to do."""
    row = await pool.fetchrow(_LOAD, event.event_id)
    if row is None or row["status"] == "delivered":
        return  # erased with its contact, or delivered already (a redelivered message)
    if not row["enabled"] or not row["url"]:
        await _attempted(pool, event, "the webhook is turned off", ok=False)
        raise FailedForGood("the webhook is turned off")
    config = await load_config(event.bot_id)
    signing = config.signing_secrets() if config is not None else []
    if not signing:  # enabling a webhook makes one; it can only be missing if the bot lost its settings
        await _attempted(pool, event, "the bot has no signing secret", ok=False)
        raise FailedForGood("the bot has no signing secret")
    body = row["body"].encode()
    headers = {"Content-Type": "application/json", EVENT_HEADER: row["type"],
               **sign(body, signing, delivery=str(event.event_id))}
    try:
        response = await http.request("POST", row["url"], headers=headers, data=body, tenant=event.bot_id)
    except Exception as exc:
        if (kind := kind_of(exc)) is None:  # a crash: shared/failures.py says whether the stage retries it
            raise
        error = _detail(kind, exc)
    else:
        if (kind := status_kind(response.status)) is None:
            await _attempted(pool, event, None, ok=True)
            log.info("webhook delivered", webhook_type=row["type"], http_status=response.status,
                     latency_ms=round(response.elapsed_ms, 1))
            return
        error = f"HTTP {response.status}"
    await _attempted(pool, event, error, ok=False)
    raise (TryLater if VERDICTS[kind].redeliver else FailedForGood)(error)


async def _attempted(pool: asyncpg.Pool, event: WebhookDue, error: str | None, *, ok: bool) -> None:
    await webhook_outbox.attempted(pool, event.event_id, error, delivered=ok)


async def give_up(event: WebhookDue, *, pool: asyncpg.Pool) -> None:
    """Failed for good, or no attempt left (about a day of them): dead. Its copy goes to the DLQ."""
    await webhook_outbox.dead(pool, event.event_id)
    log.warning("webhook delivery dead", webhook_type=event.webhook_type)


async def already_done(events: Sequence[WebhookDue], *, pool: asyncpg.Pool) -> set[UUID]:
    """Redelivered or retried deliveries that were delivered (or erased) meanwhile: not sent again."""
    ids = [e.event_id for e in events]
    pending = {r["delivery_id"] for r in await pool.fetch(
        "SELECT delivery_id FROM webhook_deliveries WHERE delivery_id = ANY($1::uuid[]) AND status <> 'delivered'", ids,
    )}
    return {i for i in ids if i not in pending}
