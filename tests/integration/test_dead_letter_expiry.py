"""Dead letters expire after ``DOORMAN_DEAD_LETTER_TTL_DAYS``: a broker policy on the dead-letter queues (a queue's
arguments never change once it exists), set by ``doorman dlq ttl``, which also re-queues the dead letters waiting
already (a quorum queue stamps a message's expiry when it is enqueued); work and delay queues keep their messages.

The shared broker has no management plugin: the policy is set with ``rabbitmqctl`` (the management API path is
tested on the fault suite's own node, tests/faults/test_operator_commands.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import aio_pika

from doorman.ops import dead_letter_policy, declare_all, set_dead_letter_ttl
from shared import messaging
from shared.settings import DoormanSettings
from tests.conftest import AMQP_URL
from tests.waits import wait_until


async def message_count(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    return (await channel.declare_queue(queue, passive=True)).declaration_result.message_count or 0


async def until(channel: aio_pika.abc.AbstractChannel, queue: str, count: int, timeout: float) -> None:
    async def counted() -> bool:
        return await message_count(channel, queue) == count

    await wait_until(counted, timeout, f"{queue} to hold {count} message(s)")


async def test_a_dead_letter_expires_and_nothing_else_does(fresh_prefix: Callable[[], str]) -> None:
    prefix = fresh_prefix()
    topology = messaging.Topology(prefix)
    ttl_seconds = 5.0
    settings = DoormanSettings(amqp_url=AMQP_URL, amqp_prefix=prefix, dead_letter_ttl_days=ttl_seconds / 86_400)
    work, dlq = topology.queue(messaging.VERIFIER_QUEUE), topology.dead_letter_queue(messaging.VERIFIER_QUEUE)
    retry = topology.retry_queue(messaging.CONTACTS_QUEUE, 15.0)  # a delay queue: its own TTL, the policy's not
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel(publisher_confirms=True)
        await declare_all(channel, topology)  # the queues exist first: a policy applies to existing queues
        await channel.default_exchange.publish(aio_pika.Message(b"old"), routing_key=dlq)  # dead before the policy
        try:
            assert (await set_dead_letter_ttl(settings)).requeued == 1
            for body, queue in ((b"dead", work), (b"kept", work), (b"parked", retry)):
                await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue)
            rejected = await (await channel.declare_queue(work, passive=True)).get()
            assert rejected.body == b"dead"
            await rejected.reject(requeue=False)  # the broker dead-letters it (through P.dead) into the DLQ

            await until(channel, dlq, 2, timeout=ttl_seconds)  # the old one re-queued, the new one dead-lettered
            await until(channel, dlq, 0, timeout=ttl_seconds + 20)

            # Older than the TTL by now, and still there.
            assert (await message_count(channel, work), await message_count(channel, retry)) == (1, 1)
        finally:
            policy = dead_letter_policy(prefix, settings.dead_letter_ttl_days)
            subprocess.run(["rabbitmqctl", "clear_policy", "-p", "/", policy.name], check=True, capture_output=True)
