"""The verifier's composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from shared import db, messaging
from shared.consumer import consuming
from shared.sessions import session_pending
from shared.http import outbound_client
from shared.service import health_server

from .config import cached_config
from .handler import can_retry, fall_back_on_failure, verify
from .settings import VerifierSettings
from .whitelist import ApiWhitelist


@asynccontextmanager
async def running(settings: VerifierSettings, *, health_host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Consume widget-opened events until the context exits; yields the health port."""
    secrets = settings.secrets()
    topology = messaging.Topology(settings.amqp_prefix)
    dsn = settings.database_url.get_secret_value()
    async with (
        db.pool(dsn, min_size=settings.db_pool_min, max_size=settings.db_pool_max) as pool,
        cached_config(pool, secrets, dsn) as config,
        messaging.connection(settings.amqp_url.get_secret_value(), "doorman-verifier") as conn,
        messaging.publisher(conn, topology) as publish,
        outbound_client(
            allow_private=settings.allow_private_networks, timeout=settings.auth_timeout_seconds,
            max_body=settings.auth_max_body_bytes, limit_per_host=settings.auth_max_connections_per_host,
            ports=settings.allowed_outbound_ports(),
        ) as http,
    ):
        whitelist = ApiWhitelist(http, ttl=settings.whitelist_ttl_seconds)
        config.on_change.append(lambda bot_id: whitelist.forget(bot_id) if bot_id else None)

        async def ready() -> dict[str, bool]:
            return {"database": await db.answers(pool), "broker": publish.ready}

        async with (
            health_server(health_host, settings.verifier_port, ready=ready, pool=pool) as port,
            consuming(
                conn, topology, messaging.VERIFIER_QUEUE, prefetch=settings.verifier_prefetch,
                handler=partial(verify, load_config=config.get, pending=partial(session_pending, pool), http=http,
                                whitelist=whitelist, publish=publish),
                can_retry=partial(can_retry, call_timeout=settings.auth_timeout_seconds),
                on_failure=partial(fall_back_on_failure, publish=publish),
            ),
        ):
            try:
                yield port
            finally:
                await whitelist.close()
