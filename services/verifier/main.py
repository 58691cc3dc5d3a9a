"""The verifier's composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from shared import db, messaging, panel, rpc
from shared.batching import Batcher
from shared.consumer import consuming
from shared.events import Event, WebhookDue, WidgetOpened
from shared.http import outbound_client
from shared.service import health_server
from shared.stages import RetryPolicy, Stage

from .breaker import BreakerPolicy
from .breaker_log import breaker_client
from .config import cached_config
from .grace import grace_cache
from .handler import already_done, emit, give_up, verify
from .pushed import PushedIdentities
from .settings import VerifierSettings
from . import testing, webhooks
from .jwks import JwksCache
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
            ports=settings.allowed_outbound_ports(), max_wait=settings.auth_host_wait_seconds,
        ) as http,
        # The identity call goes through a circuit breaker per bot and business host (breaker.py); the grace cache
        # verifies returning visitors through the business's outage (grace.py).
        breaker_client(http, pool, BreakerPolicy(
            window_seconds=settings.breaker_window_seconds, min_failures=settings.breaker_min_failures,
            failure_ratio=settings.breaker_failure_ratio, open_seconds=settings.breaker_open_seconds,
        )) as guarded,
        grace_cache(pool, secrets) as grace,
        # Webhook deliveries have an outbound client of their own: a hanging endpoint holds only its slots, never
        # the identity calls' (nobody waits for a delivery, a visitor waits for an open), and its bot only its share
        # of them where bots' endpoints share a host.
        outbound_client(
            allow_private=settings.allow_private_networks, timeout=settings.webhook_timeout_seconds,
            max_body=settings.auth_max_body_bytes, limit_per_host=settings.webhook_max_connections_per_host,
            ports=settings.allowed_outbound_ports(), max_wait=settings.webhook_timeout_seconds,
        ) as webhook_http,
        # The Testing panel (asked by the gateways, which call no one) has an outbound client of its own too: a
        # business whose widget opens fill its slots can still be tested.
        outbound_client(
            allow_private=settings.allow_private_networks, timeout=settings.auth_timeout_seconds,
            max_body=settings.auth_max_body_bytes, limit_per_host=settings.testing_concurrency,
            ports=settings.allowed_outbound_ports(), max_wait=settings.auth_timeout_seconds,
        ) as testing_http,
    ):
        whitelist = ApiWhitelist(http, ttl=settings.whitelist_ttl_seconds)
        config.on_change.append(lambda bot_id: whitelist.forget(bot_id) if bot_id else None)
        jwks = JwksCache(http)  # signed identity tokens: each bot's JWKS, cached
        config.on_change.append(jwks.forget)
        # Outcomes decided at about the same time travel to the contacts service in one confirmed message.
        batched = Batcher(partial(_published, publish), name="verifier outcomes",
                          max_weight=settings.verifier_emit_batch, max_in_flight=settings.verifier_emit_flushes)
        emit_outcome = partial(emit, publish=batched)

        # The stage: widget-opened events, decided by `verify`; an open it gives up on falls back to internal_error.
        stage = Stage(
            queue=messaging.VERIFIER_QUEUE,
            handles={WidgetOpened: partial(verify, load_config=config.get, http=guarded, whitelist=whitelist,
                                           pushed=PushedIdentities(pool, secrets), jwks=jwks, grace=grace)},
            retry=RetryPolicy(
                settings.verifier_retry_delays, settings.verifier_max_attempts, deadline=lambda event: event.deadline_at,
                # An attempt may wait for a slot to the business's host, then for its answer (a bot below its share
                # of a host that other bots' calls fill may wait up to a call timeout longer: shared/http.py).
                attempt_seconds=settings.auth_host_wait_seconds + settings.auth_timeout_seconds,
            ),
            give_up=partial(give_up, emit=emit_outcome),
            already_done=partial(already_done, pool=pool),
            max_events=settings.verifier_concurrency,
        )

        # The second stage: webhook deliveries, on a channel of their own (its own prefetch and concurrency);
        # back-off for about a day, then dead (a copy in verifier.webhooks.dlq).
        webhook_stage = Stage(
            queue=messaging.WEBHOOK_QUEUE,
            handles={WebhookDue: partial(webhooks.deliver, pool=pool, http=webhook_http, load_config=config.get)},
            retry=RetryPolicy(settings.webhook_retry_delays, settings.webhook_max_attempts),
            give_up=partial(webhooks.give_up, pool=pool),
            already_done=partial(webhooks.already_done, pool=pool),
            max_events=settings.webhook_concurrency,
        )

        async def ready() -> dict[str, bool]:
            return {"database": await db.answers(pool), "broker": publish.ready}

        async with (
            health_server(health_host, settings.verifier_port, ready=ready, pool=pool) as port,
            # The key ring opens the visitors' access tokens, sealed on the wire (shared/events.py).
            consuming(conn, topology, stage, prefetch=settings.verifier_prefetch, emit=emit_outcome, secrets=secrets),
            consuming(conn, topology, webhook_stage, prefetch=settings.webhook_prefetch),
            # The Testing panel: requests from the gateways on a queue, channel and prefetch of its own, answered
            # through direct reply-to; never behind widget opens.
            rpc.answering(conn, partial(panel.declare_queue, topology=topology),
                          partial(testing.answer, pool=pool, http=testing_http, secrets=secrets),
                          prefetch=settings.testing_concurrency),
        ):
            try:
                yield port
            finally:
                await whitelist.close()


async def _published(publish: messaging.Publisher, outcomes: list[Event]) -> list[None]:
    await publish.many(outcomes)
    return [None] * len(outcomes)
