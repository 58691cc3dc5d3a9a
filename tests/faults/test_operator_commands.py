"""`doorman queues` and `doorman dlq ttl` against a broker with the management API (the suite's own node)."""

from __future__ import annotations

import secrets

import aio_pika

from doorman.ops import QueueSettings, declare_all, queue_stats, set_dead_letter_ttl
from shared import messaging
from shared.settings import DoormanSettings
from tests.faults.infra import RabbitNode
from tests.waits import wait_until


async def test_queue_stats_show_ready_unacked_consumers_retries_and_dead_letters(rabbit: RabbitNode) -> None:
    prefix = f"ops-{secrets.token_hex(3)}"
    topology = messaging.Topology(prefix)
    settings = QueueSettings(amqp_url=rabbit.url, amqp_prefix=prefix, rabbitmq_management_url=rabbit.management_url)
    async with await aio_pika.connect(rabbit.url) as conn:
        channel = await conn.channel(publisher_confirms=True)
        await declare_all(channel, topology)
        work = topology.queue(messaging.VERIFIER_QUEUE)
        for target in (work, work, work, topology.dead_letter_queue(messaging.VERIFIER_QUEUE),
                       topology.retry_queue(messaging.CONTACTS_QUEUE, 15.0)):
            await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=target)
        held = await channel.declare_queue(work, passive=True)
        taken = await held.get(no_ack=False)  # one in flight, unacknowledged

        expected = [work, 2, 1, 0, 1]  # queue, ready, unacked, retrying, dead letters

        async def counted() -> bool:
            stats = {s.queue: s for s in await queue_stats(settings)}
            verifier, contacts = stats[work], stats[topology.queue(messaging.CONTACTS_QUEUE)]
            got = [verifier.queue, verifier.ready, verifier.unacked, verifier.retrying, verifier.dead_letters]
            return got == expected and contacts.retrying == 1 and contacts.consumers == 0

        await wait_until(counted, 15, f"the management API to count {expected}")
        await taken.ack()


async def test_dlq_ttl_sets_the_expiry_policy_through_the_management_api(rabbit: RabbitNode) -> None:
    prefix = f"ttl-{secrets.token_hex(3)}"
    topology = messaging.Topology(prefix)
    settings = DoormanSettings(amqp_url=rabbit.url, amqp_prefix=prefix, rabbitmq_management_url=rabbit.management_url,
                               dead_letter_ttl_days=1 / 86_400)  # one second
    async with await aio_pika.connect(rabbit.url) as conn:
        channel = await conn.channel(publisher_confirms=True)
        await declare_all(channel, topology)
        dlq = topology.dead_letter_queue(messaging.CONTACTS_QUEUE)
        await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=dlq)  # waiting before the policy

        done = await set_dead_letter_ttl(settings)

        assert (done.set_with, done.requeued) == ("the management API", 1)

        async def expired() -> bool:
            return not (await channel.declare_queue(dlq, passive=True)).declaration_result.message_count

        await wait_until(expired, 20, "the dead letter to expire")
    assert done.policy.name in await rabbit.ctl("list_policies")
