"""Operator commands: queue depths; dead letters listed, shown, replayed, purged and made to expire."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aio_pika
import aiohttp
import asyncpg
from yarl import URL

from services.contacts.settings import ContactsRetrySettings
from services.verifier.settings import VerifierRetrySettings
from shared import messaging
from shared.crypto import InvalidToken
from shared.logging import session_ref
from shared.settings import DoormanSettings, SecretKeySettings

RetryDelays = Mapping[str, Sequence[float]]  # work queue -> its stage's delays, which name its delay queues


class QueueSettings(DoormanSettings, VerifierRetrySettings, ContactsRetrySettings):
    """What `doorman queues` reads: the broker, and each stage's delays (DOORMAN_*_RETRY_DELAYS) as its service does."""


def retry_delays(settings: QueueSettings) -> dict[str, tuple[float, ...]]:
    return {
        messaging.VERIFIER_QUEUE: settings.verifier_retry_delays,
        messaging.CONTACTS_QUEUE: settings.contacts_retry_delays,
        messaging.WEBHOOK_QUEUE: settings.webhook_retry_delays,
    }


# Each stage's delays by default: what deploy/rabbitmq/definitions.json declares (other settings name other queues).
RETRY_DELAYS = retry_delays(QueueSettings.model_construct())


def all_queues(topology: messaging.Topology, delays: RetryDelays = RETRY_DELAYS) -> list[str]:
    """Every queue Doorman's stages use: work, dead-letter and delay queues."""
    return topology.all_queues(delays)


async def declare_all(channel: aio_pika.abc.AbstractChannel, topology: messaging.Topology,
                      delays: RetryDelays = RETRY_DELAYS) -> None:
    await messaging.declare(channel, topology)
    for name, stage_delays in delays.items():
        await messaging.declare_retry_queues(channel, topology, name, stage_delays)


# -- broker policies: settings that cannot be queue arguments (those never change on an existing queue) --------


@dataclass(frozen=True)
class Policy:
    name: str
    pattern: str  # of queue names
    apply_to: str
    priority: int  # of the policies matching a queue, only the highest-priority one applies
    definition: dict[str, Any]


LEADERS = {"queue-leader-locator": "balanced"}  # spread queue leaders over the cluster's nodes


def policies(prefix: str, dead_letter_ttl_days: float) -> list[Policy]:
    """Doorman's policies for ``prefix`` (deploy/rabbitmq/definitions.json carries them)."""
    return [
        # Every queue of this prefix; only quorum queues (the gateways' exclusive queues are classic).
        Policy(f"{prefix}-quorum", "^" + prefix.replace(".", "\\.") + "\\.", "quorum_queues", 0, dict(LEADERS)),
        dead_letter_policy(prefix, dead_letter_ttl_days),
    ]


def dead_letter_policy(prefix: str, ttl_days: float) -> Policy:
    """Dead letters expire (``DOORMAN_DEAD_LETTER_TTL_DAYS``): they hold what a stage gave up on, personal data
    and sealed access tokens included, and nothing waits on the broker forever. Only one policy applies to a
    queue, so this one, of a higher priority, repeats the leader locator. ``queues`` rather than
    ``quorum_queues`` (RabbitMQ 3.12+): every dead-letter queue is a quorum queue anyway."""
    return Policy(f"{prefix}-dead-letters", "^" + prefix.replace(".", "\\.") + "\\..*\\.dlq$", "queues", 1,
                  {**LEADERS, "message-ttl": max(1, round(ttl_days * 86_400_000))})  # milliseconds


@dataclass(frozen=True)
class Expiry:
    policy: Policy
    set_with: str  # "the management API" or "rabbitmqctl"
    requeued: int  # dead letters that waited already, re-queued to expire from now


async def set_dead_letter_ttl(settings: DoormanSettings) -> Expiry:
    """Make dead letters expire after ``DOORMAN_DEAD_LETTER_TTL_DAYS``: set :func:`dead_letter_policy`, then
    re-queue the dead letters waiting already. A quorum queue stamps a message's expiry when it is enqueued, so
    those would never expire and, at the head of their queue, would hold up the ones behind them; re-queued (each
    re-publish confirmed before the original is acked), they expire that long from now."""
    topology = messaging.Topology(settings.amqp_prefix)
    policy = dead_letter_policy(settings.amqp_prefix, settings.dead_letter_ttl_days)
    set_with = await _set_policy(settings, policy)
    requeued = 0
    async with messaging.connection(settings.amqp_url.get_secret_value(), "doorman-dlq-ttl") as conn:
        channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
        await declare_all(channel, topology)
        for name in messaging.WORK_QUEUES:
            dlq = topology.dead_letter_queue(name)
            requeued += await _move_waiting(channel, dlq, dlq, headers=dict)
    return Expiry(policy, set_with, requeued)


async def _set_policy(settings: DoormanSettings, policy: Policy) -> str:
    """Through the management API when it answers (as ``doorman queues`` reads it), else with ``rabbitmqctl`` when
    this host has it (a broker node). Returns which did it; SystemExit when neither could."""
    vhost = _vhost(settings)
    if await _put_policy(settings, vhost, policy):
        return "the management API"
    command = ["rabbitmqctl", "set_policy", "-p", vhost, "--apply-to", policy.apply_to,
               "--priority", str(policy.priority), policy.name, policy.pattern, json.dumps(policy.definition)]
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise SystemExit("doorman: the RabbitMQ management API did not answer (DOORMAN_RABBITMQ_MANAGEMENT_URL) and "
                         f"this host has no rabbitmqctl; on a broker node run:\n  {shlex.join(command)}")
    proc = await asyncio.create_subprocess_exec(ctl, *command[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"doorman: rabbitmqctl set_policy failed ({proc.returncode}): {out.decode().strip()}")
    return "rabbitmqctl"


async def _put_policy(settings: DoormanSettings, vhost: str, policy: Policy) -> bool:
    """Set ``policy`` through the management API: False when it does not answer, SystemExit when it refuses."""
    base, auth = _management_base(settings)
    body = {"pattern": policy.pattern, "definition": policy.definition, "priority": policy.priority,
            "apply-to": policy.apply_to}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            async with http.put(f"{base}/api/policies/{quote(vhost, safe='')}/{quote(policy.name, safe='')}",
                                json=body, headers={"Authorization": auth}) as resp:
                if resp.status >= 300:
                    raise SystemExit(f"doorman: the RabbitMQ management API refused the policy: HTTP {resp.status}")
                return True
    except (aiohttp.ClientError, TimeoutError):
        return False


@dataclass(frozen=True)
class QueueStats:
    queue: str
    ready: int
    unacked: int | None  # None: only the management API knows
    consumers: int
    retrying: int  # parked in the queue's delay queues
    dead_letters: int


def _management_base(settings: DoormanSettings) -> tuple[str, str]:
    """The management API's base URL and Authorization header (credentials from the AMQP URL by default;
    with several broker addresses, the first node's: point DOORMAN_RABBITMQ_MANAGEMENT_URL at the cluster)."""
    amqp = URL(settings.amqp_urls()[0])
    base = URL(settings.rabbitmq_management_url) if settings.rabbitmq_management_url else URL.build(
        scheme="http", host=amqp.host or "127.0.0.1", port=15672)
    user, password = base.user or amqp.user or "guest", base.password or amqp.password or "guest"
    auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return str(base.with_user(None).with_path("")), auth


def _vhost(settings: DoormanSettings) -> str:
    """The virtual host of DOORMAN_AMQP_URL (its first node's)."""
    return URL(settings.amqp_urls()[0]).path.lstrip("/") or "/"


async def _from_management(settings: DoormanSettings, names: list[str]) -> dict[str, dict] | None:
    base, auth = _management_base(settings)
    vhost = quote(_vhost(settings), safe="")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            found = {}
            for name in names:
                async with http.get(f"{base}/api/queues/{vhost}/{quote(name, safe='')}", headers={"Authorization": auth}) as resp:
                    if resp.status != 200:
                        return None
                    found[name] = await resp.json()
            return found
    except (aiohttp.ClientError, TimeoutError):
        return None


async def queue_stats(settings: QueueSettings) -> list[QueueStats]:
    """Per work queue: ready and unacknowledged messages, consumers, retries in flight, dead letters.

    Reads the RabbitMQ management API when it answers (exact ready/unacked); otherwise
    falls back to AMQP passive declares, which know ready messages and consumers only.
    """
    topology = messaging.Topology(settings.amqp_prefix)
    delays = retry_delays(settings)
    async with messaging.connection(settings.amqp_url.get_secret_value(), "doorman-queues") as conn:
        channel = await conn.channel()
        await declare_all(channel, topology, delays)
        names = all_queues(topology, delays)
        management = await _from_management(settings, names)
        counts: dict[str, tuple[int, int | None, int]] = {}
        for name in names:
            if management is not None:
                q = management[name]
                counts[name] = (q.get("messages_ready", 0), q.get("messages_unacknowledged", 0), q.get("consumers", 0))
            else:
                result = (await channel.declare_queue(name, passive=True)).declaration_result
                counts[name] = (result.message_count, None, result.consumer_count)
    stats = []
    for name in messaging.WORK_QUEUES:
        ready, unacked, consumers = counts[topology.queue(name)]
        retry = [counts[q] for q in topology.retry_queues(name, delays[name])]
        retrying = sum(r[0] + (r[1] or 0) for r in retry)
        dlq = counts[topology.dead_letter_queue(name)]
        stats.append(QueueStats(topology.queue(name), ready, unacked, consumers, retrying, dlq[0] + (dlq[1] or 0)))
    return stats


async def queues(settings: QueueSettings) -> None:
    stats = await queue_stats(settings)
    print(f"{'queue':<40} {'ready':>7} {'unacked':>8} {'consumers':>10} {'retrying':>9} {'dead letters':>13}")
    for s in stats:
        unacked = "n/a" if s.unacked is None else str(s.unacked)
        print(f"{s.queue:<40} {s.ready:>7} {unacked:>8} {s.consumers:>10} {s.retrying:>9} {s.dead_letters:>13}")
    if any(s.unacked is None for s in stats):
        print("(unacked: the RabbitMQ management API did not answer; set DOORMAN_RABBITMQ_MANAGEMENT_URL)")


def work_queue(settings: DoormanSettings, queue: str) -> str:
    """A work queue as the operator names it (``verifier.widget-opened``, with or without the prefix); SystemExit
    naming the valid ones otherwise."""
    name = queue.removeprefix(f"{settings.amqp_prefix}.")
    if name not in messaging.WORK_QUEUES:
        raise SystemExit(f"doorman: unknown queue {queue!r}; one of {', '.join(messaging.WORK_QUEUES)}")
    return name


@dataclass(frozen=True)
class DeadLetters:
    queue: str  # the work queue, as `doorman dlq replay` names it
    dead_letter_queue: str
    count: int
    oldest: datetime | None  # when the oldest waiting one was dead-lettered (or, failing that, its event occurred)


async def dead_letters(settings: DoormanSettings) -> list[DeadLetters]:
    """Each dead-letter queue: how many wait, and since when the one at its head (the oldest) has. The head is
    read and put back (no dead-letter queue has a delivery limit, so reading one costs it nothing)."""
    topology = messaging.Topology(settings.amqp_prefix)
    found = []
    async with messaging.connection(settings.amqp_url.get_secret_value(), "doorman-dlq-list") as conn:
        await declare_all(await conn.channel(), topology)
        for name in messaging.WORK_QUEUES:
            dlq = topology.dead_letter_queue(name)
            async with conn.channel() as channel:
                queue = await channel.declare_queue(dlq, passive=True)
                count = queue.declaration_result.message_count or 0
                head = await queue.get(no_ack=False, fail=False) if count else None
                oldest = _dead_lettered_at(head) if head is not None else None
                if head is not None:
                    await head.nack(requeue=True)
            found.append(DeadLetters(name, dlq, count, oldest))
    return found


def _dead_lettered_at(message: aio_pika.abc.AbstractIncomingMessage) -> datetime | None:
    """The broker's x-death time when the broker dead-lettered it (an undecodable message), else the
    ``doorman-dead-lettered-at`` header a stage sets when it gives up, else the event's own time."""
    headers = message.headers or {}
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) and isinstance(deaths[0].get("time"), datetime):
        return deaths[0]["time"].replace(tzinfo=deaths[0]["time"].tzinfo or UTC)
    stamped = headers.get(messaging.DEAD_LETTERED_AT_HEADER)
    if isinstance(stamped, int | float):
        return datetime.fromtimestamp(stamped, UTC)
    if message.timestamp is not None:
        return message.timestamp.replace(tzinfo=message.timestamp.tzinfo or UTC)
    return None


# Keys whose values a terminal never shows: credentials, sealed or not, and session ids (bearer values).
_MASKED_KEYS = re.compile(r"(?i)token|secret|password|authori[sz]ation|cookie|signature|api[_-]?key|credential")


def masked(value: Any) -> Any:
    """``value`` (a decoded event body) with every credential replaced by ``[masked]`` and every session id by
    its ``session_ref``, as the logs carry it."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "session_id" and isinstance(item, str):
                out["session_ref"] = session_ref(item)
            elif _MASKED_KEYS.search(str(key)) and item is not None:
                out[key] = "[masked]"
            else:
                out[key] = masked(item)
        return out
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


@dataclass(frozen=True)
class DeadLetter:
    message_id: str | None
    type: str | None
    dead_lettered_at: datetime | None
    failure: str | None  # what the stage said when it gave up (doorman-failure), if it did
    attempts: int | None
    body: Any  # decoded JSON, masked; or a note on what could not be decoded


async def show_dead_letters(settings: DoormanSettings, queue: str, limit: int) -> tuple[int, list[DeadLetter]]:
    """The first ``limit`` dead letters of ``queue``'s dead-letter queue, masked; all of them stay where they were
    (read without an ack, then handed back when the channel closes). Returns (how many wait, those shown)."""
    topology = messaging.Topology(settings.amqp_prefix)
    name = work_queue(settings, queue)
    shown = []
    async with messaging.connection(settings.amqp_url.get_secret_value(), "doorman-dlq-show") as conn:
        await declare_all(await conn.channel(), topology)
        async with conn.channel() as channel:
            dlq = await channel.declare_queue(topology.dead_letter_queue(name), passive=True)
            count = dlq.declaration_result.message_count or 0
            while len(shown) < min(limit, count) and (message := await dlq.get(no_ack=False, fail=False)) is not None:
                headers = message.headers or {}
                try:
                    body = masked(json.loads(message.body))
                except ValueError:
                    body = f"(not JSON: {len(message.body)} bytes)"
                attempts = headers.get(messaging.ATTEMPT_HEADER)
                failure = headers.get(messaging.FAILURE_HEADER)
                shown.append(DeadLetter(
                    message.message_id, message.type, _dead_lettered_at(message),
                    failure.decode() if isinstance(failure, bytes) else failure,
                    attempts if isinstance(attempts, int) else None, body,
                ))
    return count, shown


async def purge_dead_letters(settings: DoormanSettings, queue: str) -> int:
    """Delete every dead letter of ``queue`` for good. Returns how many were deleted."""
    topology = messaging.Topology(settings.amqp_prefix)
    name = work_queue(settings, queue)
    async with messaging.connection(settings.amqp_url.get_secret_value(), "doorman-dlq-purge") as conn:
        channel = await conn.channel()
        await declare_all(channel, topology)
        result = await (await channel.declare_queue(topology.dead_letter_queue(name), passive=True)).purge()
    return result.message_count or 0


async def replay(settings: DoormanSettings, queue: str) -> None:
    """Move the messages waiting in ``queue``'s dead-letter queue back onto ``queue``, confirmed one by one."""
    topology = messaging.Topology(settings.amqp_prefix)
    name = work_queue(settings, queue)
    async with messaging.connection(settings.amqp_url.get_secret_value(), "doorman-dlq-replay") as conn:
        channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
        moved = await _move_waiting(channel, topology.dead_letter_queue(name), topology.queue(name), headers=_replayed)
    print(f"replayed {moved} message(s) onto {topology.queue(name)}")


def _replayed(headers: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in headers.items() if not k.startswith("x-")}, messaging.REPLAYED_HEADER: 1}


async def _move_waiting(channel: aio_pika.abc.AbstractChannel, source: str, target: str, *,
                        headers: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """Move the messages waiting in queue ``source`` onto queue ``target`` (with ``headers`` of theirs), each
    re-publish confirmed before the original is acked. Only those there now: a replayed message that fails for
    good again at once (a webhook endpoint still answering 404) lands back in its dead-letter queue, and must not
    be replayed in a loop. Returns how many moved."""
    queue = await channel.declare_queue(source, passive=True)
    waiting = queue.declaration_result.message_count or 0
    moved = 0
    while moved < waiting and (message := await queue.get(fail=False)) is not None:
        await channel.default_exchange.publish(
            aio_pika.Message(
                body=message.body, headers=headers(dict(message.headers or {})), content_type=message.content_type,
                type=message.type, message_id=message.message_id, correlation_id=message.correlation_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT, timestamp=message.timestamp,
            ),
            routing_key=target,
        )
        await message.ack()
        moved += 1
    return moved


SECRET_COLUMNS = ("header_token_cipher", "signing_secret_cipher", "signing_previous_cipher",
                  "token_secret_cipher", "token_previous_cipher", "oidc_client_secret_cipher")


@dataclass(frozen=True)
class Rotation:
    rotated: int  # bots whose secrets were re-encrypted
    unreadable: list[str]  # "<bot_id> <column>": no key decrypts it (already unusable: its key was dropped)


async def rotate_secrets(settings: SecretKeySettings) -> Rotation:
    """Re-encrypt every stored secret (header tokens, signing and token secrets) with the first key of
    DOORMAN_SECRET_KEY. Row by row, each under its own lock, so services keep running; safe to
    run again. A secret no key can decrypt is left as it is and reported: it stops nothing else."""
    secrets = settings.secrets()
    rotated, unreadable = 0, []
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        for row in await conn.fetch("SELECT bot_id FROM custom_auth_settings"):
            async with conn.transaction():
                ciphers = await conn.fetchrow(
                    f"SELECT {', '.join(SECRET_COLUMNS)} FROM custom_auth_settings WHERE bot_id = $1 FOR UPDATE",
                    row["bot_id"],
                )
                new = {}
                for column in (c for c in SECRET_COLUMNS if ciphers[c] is not None):
                    try:
                        new[column] = secrets.rotate(ciphers[column])
                    except InvalidToken:
                        unreadable.append(f"{row['bot_id']} {column}")
                if not new:
                    continue
                assignments = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(new))
                await conn.execute(f"UPDATE custom_auth_settings SET {assignments} WHERE bot_id = $1",
                                   row["bot_id"], *new.values())
                rotated += 1
    finally:
        await conn.close()
    return Rotation(rotated, unreadable)
