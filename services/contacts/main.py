"""The contacts service's composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from datetime import timedelta
from functools import partial

from shared import db, messaging, webhook_outbox
from shared.consumer import consuming
from shared.events import ContactCollected, IdentityVerified, SessionFellBack
from shared.service import health_server
from shared.stages import RetryPolicy, Stage

from .housekeeping import housekeeping
from .handler import give_up, record, record_one
from .settings import ContactsSettings


@asynccontextmanager
async def running(settings: ContactsSettings, *, health_host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Consume verified identities and fallbacks until the context exits; yields the health port."""
    topology = messaging.Topology(settings.amqp_prefix)
    async with (
        db.pool(settings.database_url.get_secret_value(), min_size=settings.db_pool_min, max_size=settings.db_pool_max) as pool,
        messaging.connection(settings.amqp_url.get_secret_value(), "doorman-contacts") as conn,
        # It publishes only outcome notifications, best effort (a waiting gateway re-reads the
        # database): written, not waited on.
        messaging.publisher(conn, topology, confirmed=False) as notify,
        # Webhook deliveries (recorded in the batch's transaction) are published confirmed after the commit;
        # what was not is swept up and published again (shared/webhook_outbox.py).
        messaging.publisher(conn, topology) as deliveries,
        webhook_outbox.subscriptions(pool, settings.database_url.get_secret_value()) as webhook_bots,
    ):
        outbox = webhook_outbox.Outbox(pool, webhook_bots, deliveries)
        # The stage: outcomes and collected forms, recorded a batch per transaction (one event at a time
        # when a batch fails); an event it gives up on ends its session in internal_error.
        # The secret key hashes contact keys to match erased contacts' tombstones (shared/tombstones.py).
        secrets = settings.secrets()
        one = partial(record_one, pool=pool, publish=notify, secrets=secrets, outbox=outbox)
        stage = Stage(
            queue=messaging.CONTACTS_QUEUE,
            handles={IdentityVerified: one, SessionFellBack: one, ContactCollected: one},
            retry=RetryPolicy(settings.contacts_retry_delays, settings.contacts_max_attempts),
            give_up=partial(give_up, pool=pool, publish=notify, outbox=outbox),
            # What they return: the webhook deliveries recorded with the batch, published after its commit.
            emit=outbox.publish,
            batch=partial(record, pool=pool, publish=notify, secrets=secrets, outbox=outbox),
            batch_size=settings.contacts_batch_size, batch_flushes=settings.contacts_flushes,
        )

        async def ready() -> dict[str, bool]:
            return {"database": await db.answers(pool), "broker": notify.ready}

        retention = timedelta(hours=settings.session_retention_hours)
        async with (
            housekeeping(pool, notify, retention=retention, outbox=outbox) if settings.contacts_sweepers else nullcontext(),
            webhook_outbox.sweeping(pool, deliveries, retention=retention) if settings.contacts_sweepers else nullcontext(),
            health_server(health_host, settings.contacts_port, ready=ready, pool=pool) as port,
            consuming(conn, topology, stage, prefetch=settings.contacts_batch_size * 2),
        ):
            yield port
