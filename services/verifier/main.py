"""The verifier's composition root: what its stages share, then each stage.

* widget opens (:func:`opens`): :func:`.handler.verify` decides each open (Case 1/2/3), :func:`.handler.emit`
  publishes its outcome, and :mod:`.failures` says what each way of failing gets (a retry, the breaker's count,
  the outage grace);
* webhook deliveries (:func:`deliveries`): :func:`.webhooks.deliver`, on capacity of their own;
* the Testing panel and the Discover action (:func:`testing_panel`): :func:`.testing.answer` and
  :func:`.discover.answer`, for the gateways, which call no one;
* back-channel logout tokens (:func:`logout_tokens`): :func:`.logout.answer` checks them against the provider's keys,
  for the gateways.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial

import aio_pika
import asyncpg

from shared import db, discover as discover_contract, logout as logout_contract, messaging, panel, rpc
from shared.batching import Batcher
from shared.consumer import consuming
from shared.crypto import Secrets
from shared.events import Event, WebhookDue, WidgetOpened
from shared.service import health_server
from shared.stages import RetryPolicy, Stage

from . import discover, logout, testing, webhooks
from .breaker import BreakerPolicy
from .breaker_log import breaker_client
from .config import ConfigCache, cached_config
from .discovery import Discovery
from .grace import grace_cache
from .handler import already_done, emit, give_up, verify
from .jwks import JwksCache
from .outbound import OutboundClient, outbound_client
from .pushed import PushedIdentities
from .settings import VerifierSettings
from .whitelist import api_whitelist


@asynccontextmanager
async def running(settings: VerifierSettings, *, health_host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Consume widget opens and webhook deliveries until the context exits; yields the health port."""
    secrets = settings.secrets()
    topology = messaging.Topology(settings.amqp_prefix)
    dsn = settings.database_url.get_secret_value()
    async with (
        db.pool(dsn, min_size=settings.db_pool_min, max_size=settings.db_pool_max) as pool,
        cached_config(pool, secrets, dsn) as config,
        messaging.connection(settings.amqp_url.get_secret_value(), "doorman-verifier") as conn,
        messaging.publisher(conn, topology) as publish,
        opens(settings, pool, secrets, config, publish) as open_stage,
        deliveries(settings, pool, config) as delivery_stage,
        health_server(health_host, settings.verifier_port, ready=partial(_ready, pool, publish), pool=pool) as port,
        # The key ring opens the visitors' access tokens, sealed on the wire (shared/events.py).
        consuming(conn, topology, open_stage, prefetch=settings.verifier_prefetch, secrets=secrets),
        consuming(conn, topology, delivery_stage, prefetch=settings.webhook_prefetch),
        testing_panel(settings, conn, topology, pool, secrets),
        logout_tokens(settings, conn, topology, pool, secrets),
    ):
        yield port


def _business_client(settings: VerifierSettings, limit_per_host: int, max_wait: float) -> AbstractAsyncContextManager[OutboundClient]:
    """The guarded client for calls to businesses (identity calls, whitelist APIs, JWKS), with its own slots."""
    return outbound_client(
        allow_private=settings.allow_private_networks, timeout=settings.auth_timeout_seconds,
        max_body=settings.auth_max_body_bytes, limit_per_host=limit_per_host,
        ports=settings.allowed_outbound_ports(), max_wait=max_wait,
    )


@asynccontextmanager
async def opens(settings: VerifierSettings, pool: asyncpg.Pool, secrets: Secrets, config: ConfigCache,
                publish: messaging.Publisher) -> AsyncIterator[Stage]:
    """The widget-opened stage. The identity call goes through a circuit breaker per bot and business host
    (breaker.py); the grace cache verifies returning visitors through the business's outage (grace.py); the
    whitelist API, the JWKS and OpenID Providers' discovery documents are read with the plain client, and cached.
    Outcomes decided at about the same time travel to the contacts service in one confirmed message; an open the
    stage gives up on falls back to internal_error."""
    async with (
        _business_client(settings, settings.auth_max_connections_per_host, settings.auth_host_wait_seconds) as http,
        breaker_client(http, pool, _breaker_policy(settings)) as guarded,
        grace_cache(pool, secrets) as grace,
        api_whitelist(http, ttl=settings.whitelist_ttl_seconds) as whitelist,
    ):
        config.on_change.append(lambda bot_id: whitelist.forget(bot_id) if bot_id else None)
        jwks = JwksCache(http)  # signed identity tokens: each bot's JWKS, cached
        config.on_change.append(jwks.forget)
        discovery = Discovery(http)  # OpenID Providers' discovery documents, cached per issuer
        outcomes = Batcher(partial(_published, publish), name="verifier outcomes",
                           max_weight=settings.verifier_emit_batch, max_in_flight=settings.verifier_emit_flushes)
        yield Stage(
            queue=messaging.VERIFIER_QUEUE,
            handles={WidgetOpened: partial(verify, load_config=config.get, http=guarded, whitelist=whitelist,
                                           pushed=PushedIdentities(pool, secrets), jwks=jwks, grace=grace,
                                           discovery=discovery)},
            retry=RetryPolicy(
                settings.verifier_retry_delays, settings.verifier_max_attempts, deadline=lambda event: event.deadline_at,
                # An attempt may wait for a slot to the business's host, then for its answer (a bot below its share
                # of a host that other bots' calls fill may wait up to a call timeout longer: outbound.py).
                attempt_seconds=settings.auth_host_wait_seconds + settings.auth_timeout_seconds,
            ),
            give_up=give_up,
            emit=partial(emit, publish=outcomes),
            already_done=partial(already_done, pool=pool),
            max_events=settings.verifier_concurrency,
        )


@asynccontextmanager
async def deliveries(settings: VerifierSettings, pool: asyncpg.Pool, config: ConfigCache) -> AsyncIterator[Stage]:
    """The webhook stage, on a channel of its own (its own prefetch and concurrency) and an outbound client of its
    own: a hanging endpoint holds only its slots, never the identity calls' (nobody waits for a delivery, a visitor
    waits for an open), and its bot only its share of them where bots' endpoints share a host. Back-off for about a
    day, then dead (a copy in verifier.webhooks.dlq)."""
    async with outbound_client(
        allow_private=settings.allow_private_networks, timeout=settings.webhook_timeout_seconds,
        max_body=settings.auth_max_body_bytes, limit_per_host=settings.webhook_max_connections_per_host,
        ports=settings.allowed_outbound_ports(), max_wait=settings.webhook_timeout_seconds,
    ) as http:
        yield Stage(
            queue=messaging.WEBHOOK_QUEUE,
            handles={WebhookDue: partial(webhooks.deliver, pool=pool, http=http, load_config=config.get)},
            retry=RetryPolicy(settings.webhook_retry_delays, settings.webhook_max_attempts),
            give_up=partial(webhooks.give_up, pool=pool),
            already_done=partial(webhooks.already_done, pool=pool),
            max_events=settings.webhook_concurrency,
        )


@asynccontextmanager
async def testing_panel(settings: VerifierSettings, conn: aio_pika.abc.AbstractConnection, topology: messaging.Topology,
                        pool: asyncpg.Pool, secrets: Secrets) -> AsyncIterator[None]:
    """The Testing panel, asked by the gateways over the broker: requests on a queue, channel and prefetch of its
    own, answered through direct reply-to, never behind widget opens; with an outbound client of its own too, so
    a business whose widget opens fill its slots can still be tested. The admin page's Discover action (an OpenID
    Provider's discovery document read afresh) is asked the same way, on a queue of its own, with that client."""
    async with (
        _business_client(settings, settings.testing_concurrency, settings.auth_timeout_seconds) as http,
        rpc.answering(conn, partial(panel.declare_queue, topology=topology),
                      partial(testing.answer, pool=pool, http=http, secrets=secrets), prefetch=settings.testing_concurrency),
        rpc.answering(conn, partial(discover_contract.declare_queue, topology=topology),
                      partial(discover.answer, http=http), prefetch=settings.testing_concurrency),
    ):
        yield


@asynccontextmanager
async def logout_tokens(settings: VerifierSettings, conn: aio_pika.abc.AbstractConnection, topology: messaging.Topology,
                        pool: asyncpg.Pool, secrets: Secrets) -> AsyncIterator[None]:
    """Back-channel logout tokens, asked by the gateways over the broker as the Testing panel is: a queue, channel and
    outbound client of their own; the providers' discovery documents and JWKS cached across requests."""
    async with _business_client(settings, settings.testing_concurrency, settings.auth_timeout_seconds) as http:
        answer = partial(logout.answer, pool=pool, secrets=secrets, jwks=JwksCache(http), discovery=Discovery(http))
        async with rpc.answering(conn, partial(logout_contract.declare_queue, topology=topology), answer,
                                 prefetch=settings.testing_concurrency):
            yield


def _breaker_policy(settings: VerifierSettings) -> BreakerPolicy:
    return BreakerPolicy(
        window_seconds=settings.breaker_window_seconds, min_failures=settings.breaker_min_failures,
        failure_ratio=settings.breaker_failure_ratio, open_seconds=settings.breaker_open_seconds,
    )


async def _ready(pool: asyncpg.Pool, publish: messaging.Publisher) -> dict[str, bool]:
    return {"database": await db.answers(pool), "broker": publish.ready}


async def _published(publish: messaging.Publisher, outcomes: list[Event]) -> list[None]:
    await publish.many(outcomes)
    return [None] * len(outcomes)
