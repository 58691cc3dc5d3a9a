"""The bot's webhook to the business (``PUT|GET /v1/bots/{bot_id}/webhook``) and its delivery log
(``GET .../webhook/deliveries``), where a dead delivery can be sent again (``POST .../{delivery_id}/retry``). Enabling needs the bot's signing secret: one is made, and shown this
once, if the bot has none. Deliveries are recorded by the code that makes each change
(shared/webhook_outbox.py) and sent by the verifier (services/verifier/webhooks.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal
from uuid import UUID

import asyncpg
from aiohttp import web
from pydantic import ConfigDict, Field, field_validator

from shared import webhook_outbox
from shared.crypto import Secrets
from shared.destinations import DestinationBlocked
from shared.events import WebhookDue
from shared.routes import Response, Routes, links_to
from shared.signing import new_secret

from .. import pagination
from ..access import NOT_FOUND_BOT, visible_bot
from ..constraints import when
from ..http_errors import QUERY_ERRORS, URL_BODY_ERRORS, Error, FieldError, error, json_response, read_model, read_query
from ..keys import DESTINATIONS, POOL, PUBLISH, SECRETS
from ..schemas import HttpUrl, Strict
from . import store
from .bots import ADMIN_BODY_MAX_BYTES
from .views import WebhookDeliveryPage, WebhookRetried, WebhookSettings


WebhookType = Literal["contact.created", "contact.updated", "contact.erased", "session.fell_back"]


class WebhookIn(Strict):
    """``PUT /v1/bots/{bot_id}/webhook``: where Doorman POSTs the bot's events, and which."""

    model_config = ConfigDict(json_schema_extra=when({"enabled": True}, then={
        "required": ["url", "events"], "properties": {"url": {"type": "string"}, "events": {"minItems": 1}}}))

    url: HttpUrl | None = Field(None, description="the business's endpoint; required when `enabled`")
    events: Annotated[list[WebhookType], Field(max_length=4, json_schema_extra={"uniqueItems": True})] = Field(
        [], description="the event types to send; at least one when `enabled`")
    enabled: bool

    @field_validator("events")
    @classmethod
    def _no_repeats(cls, events: list[str]) -> list[str]:
        if len(set(events)) != len(events):
            raise ValueError("must not repeat an event type")
        return events

    def missing(self) -> list[tuple[str, str]]:
        """(field, message) for what enabling needs and the body lacks."""
        if not self.enabled:
            return []
        needs = [("url", "required when the webhook is enabled")] if not self.url else []
        if not self.events:
            needs.append(("events", "choose at least one event type when the webhook is enabled"))
        return needs


class DeliveryQuery(Strict):
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    cursor: pagination.UuidCursor = None

routes = Routes()

_READ = """SELECT w.url, coalesce(w.events, '{}') AS events, coalesce(w.enabled, false) AS enabled, w.updated_at,
                  a.signing_secret_cipher IS NOT NULL AS signing_secret_set
           FROM bots b LEFT JOIN webhooks w USING (bot_id) LEFT JOIN custom_auth_settings a USING (bot_id)
           WHERE b.bot_id = $1"""
_PUT = """INSERT INTO webhooks (bot_id, url, events, enabled) VALUES ($1, $2, $3, $4)
          ON CONFLICT (bot_id) DO UPDATE SET url = EXCLUDED.url, events = EXCLUDED.events,
                                             enabled = EXCLUDED.enabled, updated_at = now()"""


def _view(row: asyncpg.Record, made: str | None = None) -> WebhookSettings:
    return WebhookSettings(url=row["url"], events=list(row["events"]), enabled=row["enabled"],
                           signing_secret_set=row["signing_secret_set"], signing_secret=made,
                           updated_at=row["updated_at"])


@routes.get("/v1/bots/{bot_id}/webhook", "getWebhook", "Read the bot's webhook", auth="workspace", tag="webhooks",
            responses={200: ("The webhook (defaults when never saved).", WebhookSettings), **NOT_FOUND_BOT})
async def get_webhook(request: web.Request) -> web.Response:
    bot_id = await visible_bot(request)
    row = await request.app[POOL].fetchrow(_READ, bot_id)
    if row is None:
        raise error(404, "bot_not_found", "no bot has this bot_id")
    return json_response(_view(row))


@routes.put("/v1/bots/{bot_id}/webhook", "putWebhook", "Replace the bot's webhook", auth="workspace", tag="webhooks",
            body=WebhookIn, responses={
    200: Response("The stored webhook. When enabling it made the bot's first signing secret, `signing_secret` shows "
                  "it this once.", WebhookSettings,
                  links=links_to("getWebhook", "listWebhookDeliveries", bot_id="$request.path.bot_id")),
    **NOT_FOUND_BOT, **URL_BODY_ERRORS,
})
async def put_webhook(request: web.Request) -> web.Response:
    bot_id = await visible_bot(request)
    body = await read_model(request, WebhookIn, max_bytes=ADMIN_BODY_MAX_BYTES)
    problems: list[FieldError] = [{"field": f, "message": m} for f, m in body.missing()]
    if body.url:
        try:  # what the verifier would refuse from the URL alone (scheme, port, an IP literal not public)
            request.app[DESTINATIONS].check_url(body.url)
        except DestinationBlocked as exc:
            problems.append({"field": "url", "message": f"Doorman will not call this URL: {exc}"})
    if problems:
        raise error(422, "invalid_body", "the request body is not valid", fields=problems)
    made = await _store(request.app[POOL], bot_id, body, request.app[SECRETS])
    row = await request.app[POOL].fetchrow(_READ, bot_id)
    return json_response(_view(row, made))


async def _store(pool: asyncpg.Pool, bot_id: UUID, body: WebhookIn, secrets: Secrets) -> str | None:
    """Save the webhook; returns the signing secret made for it, if the bot had none and it is enabled."""
    made = None
    async with pool.acquire() as conn, conn.transaction():
        try:
            await conn.execute(_PUT, bot_id, body.url, list(body.events), body.enabled)
        except asyncpg.ForeignKeyViolationError:  # the bot was deleted meanwhile
            raise error(404, "bot_not_found", "no bot has this bot_id") from None
        if body.enabled:
            secret = new_secret()
            if await store.first_signing_secret(conn, bot_id, secret, secrets):
                made = secret
        await conn.execute("SELECT pg_notify($1, $2)", webhook_outbox.WEBHOOKS_CHANNEL, str(bot_id))
    return made


@routes.get("/v1/bots/{bot_id}/webhook/deliveries", "listWebhookDeliveries", "The webhook's delivery log",
            auth="workspace", tag="webhooks", query=DeliveryQuery, responses={
    200: ("Deliveries, newest first: each attempt's outcome as last recorded.", WebhookDeliveryPage),
    **NOT_FOUND_BOT, **QUERY_ERRORS,
})
async def list_deliveries(request: web.Request) -> web.Response:
    bot_id = await visible_bot(request)
    query = read_query(request, DeliveryQuery)
    created_at, delivery_id = pagination.after(query.cursor, UUID)
    rows = await request.app[POOL].fetch(
        """SELECT delivery_id, type, status, attempts, last_error, created_at, delivered_at FROM webhook_deliveries
           WHERE bot_id = $1 AND ($2::timestamptz IS NULL OR (created_at, delivery_id) < ($2, $3::uuid))
           ORDER BY created_at DESC, delivery_id DESC LIMIT $4""",
        bot_id, created_at, delivery_id, query.limit + 1,
    )
    return json_response(WebhookDeliveryPage.model_validate(
        pagination.page(rows, query.limit, items="deliveries", key="delivery_id")))


@routes.post("/v1/bots/{bot_id}/webhook/deliveries/{delivery_id}/retry", "retryWebhookDelivery",
             "Send a dead delivery again", auth="workspace", tag="webhooks", responses={
    202: (("The delivery is `pending` again and on its way to the webhook stage: the same body and `Doorman-Delivery` "
           "id, a fresh round of attempts (its log's `attempts` keeps counting)."), WebhookRetried),
    404: (("No bot has this `bot_id` (`bot_not_found`), or the bot has no delivery with this id "
           "(`delivery_not_found`)."), Error),
    409: ("The delivery is not `dead` (`invalid_state`): a pending one is still being tried, a delivered one is done.",
          Error),
})
async def retry_delivery(request: web.Request) -> web.Response:
    """What the business asks once its endpoint is fixed, for one dead delivery (``doorman dlq replay
    verifier.webhooks`` sends every dead one again)."""
    bot_id = await visible_bot(request)
    try:
        delivery_id = UUID(request.match_info["delivery_id"])
    except ValueError:
        raise error(404, "delivery_not_found", "the bot has no delivery with this id") from None
    retried = await webhook_outbox.retry_dead(request.app[POOL], bot_id, delivery_id)
    if retried is None:
        raise error(404, "delivery_not_found", "the bot has no delivery with this id")
    if isinstance(retried, str):
        raise error(409, "invalid_state", f"only a dead delivery can be sent again; this one is {retried}")
    await publish_after_commit(request.app, [retried])
    return json_response(WebhookRetried(delivery_id=delivery_id, status="pending"), status=202)


async def publish_after_commit(app: web.Application, due: Sequence[WebhookDue | None]) -> None:
    """For gateway code that recorded deliveries (``webhook_outbox.enqueue_webhook`` in its transaction,
    e.g. erasure's ``contact.erased``): hand them to the broker once committed. Never raises; what is not
    published now is swept up by the contacts service within seconds."""
    await webhook_outbox.publish(app[POOL], app[PUBLISH], [d for d in due if d is not None])
