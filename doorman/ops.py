"""Operator commands: queue depths, dead-letter replay."""

from __future__ import annotations

import aio_pika
import asyncpg

from shared import messaging
from shared.settings import DoormanSettings, SecretKeySettings


async def queues(settings: DoormanSettings) -> None:
    topology = messaging.Topology(settings.amqp_prefix)
    async with messaging.connection(settings.amqp_url.get_secret_value(), "doorman-queues") as conn:
        channel = await conn.channel()
        await messaging.declare(channel, topology)
        print(f"{'queue':<45} {'ready':>8} {'consumers':>10} {'dead letters':>13}")
        for name in messaging.WORK_QUEUES:
            q = await channel.declare_queue(topology.queue(name), passive=True)
            d = await channel.declare_queue(topology.dead_letter_queue(name), passive=True)
            ready = q.declaration_result.message_count
            consumers = q.declaration_result.consumer_count
            dead = d.declaration_result.message_count
            print(f"{topology.queue(name):<45} {ready:>8} {consumers:>10} {dead:>13}")


async def replay(settings: DoormanSettings, queue: str) -> None:
    """Move every message of ``queue``'s dead-letter queue back onto ``queue``, confirmed one by one."""
    topology = messaging.Topology(settings.amqp_prefix)
    name = queue.removeprefix(f"{settings.amqp_prefix}.")
    if name not in messaging.WORK_QUEUES:
        raise SystemExit(f"doorman: unknown queue {queue!r}; one of {', '.join(messaging.WORK_QUEUES)}")
    moved = 0
    async with messaging.connection(settings.amqp_url.get_secret_value(), "doorman-dlq-replay") as conn:
        channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
        dlq = await channel.declare_queue(topology.dead_letter_queue(name), passive=True)
        while (message := await dlq.get(fail=False)) is not None:
            headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-")}
            await channel.default_exchange.publish(
                aio_pika.Message(
                    body=message.body, headers=headers, content_type=message.content_type, type=message.type,
                    message_id=message.message_id, correlation_id=message.correlation_id,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT, timestamp=message.timestamp,
                ),
                routing_key=topology.queue(name),
            )
            await message.ack()
            moved += 1
    print(f"replayed {moved} message(s) onto {topology.queue(name)}")


async def rotate_secrets(settings: SecretKeySettings) -> int:
    """Re-encrypt every stored header token with the first key of DOORMAN_SECRET_KEY.

    Row by row, each under its own lock, so services keep running; safe to run again.
    """
    secrets = settings.secrets()
    rotated = 0
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        bot_ids = await conn.fetch("SELECT bot_id FROM custom_auth_settings WHERE header_token_cipher IS NOT NULL")
        for row in bot_ids:
            async with conn.transaction():
                cipher = await conn.fetchval(
                    "SELECT header_token_cipher FROM custom_auth_settings WHERE bot_id = $1 FOR UPDATE", row["bot_id"],
                )
                if cipher is None:
                    continue
                await conn.execute(
                    "UPDATE custom_auth_settings SET header_token_cipher = $2 WHERE bot_id = $1",
                    row["bot_id"], secrets.rotate(cipher),
                )
                rotated += 1
    finally:
        await conn.close()
    return rotated
