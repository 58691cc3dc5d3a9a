"""The contacts service's composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial

from shared import db, messaging
from shared.consumer import consuming
from shared.service import health_server

from .housekeeping import housekeeping
from .handler import fall_back_on_failure, record, record_one
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
    ):
        async def ready() -> dict[str, bool]:
            return {"database": await db.answers(pool), "broker": notify.ready}

        async with (
            housekeeping(pool, notify, retention=timedelta(hours=settings.session_retention_hours)),
            health_server(health_host, settings.contacts_port, ready=ready, pool=pool) as port,
            consuming(
                conn, topology, messaging.CONTACTS_QUEUE, prefetch=settings.contacts_batch_size * 2,
                handler=partial(record_one, pool=pool, publish=notify),
                batch_handler=partial(record, pool=pool, publish=notify),
                batch_size=settings.contacts_batch_size, batch_flushes=settings.contacts_flushes,
                on_failure=partial(fall_back_on_failure, pool=pool, publish=notify),
            ),
        ):
            yield port
