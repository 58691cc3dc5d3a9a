"""What the admin API answers: each model is built by the code that answers (``store``, ``directory``,
``workspaces``, ``bots``) and is the response's schema in ``/openapi.json``. Exactly these fields,
no others: a query that drifts from its model fails where the answer is built, before any client sees it.

The widget's answers are TypedDicts beside the code that builds them (:mod:`shared.widget_view`,
``widget/api.py``): its hot path makes no model per request. The Testing panel's answer is built by the
verifier that runs it (:class:`shared.panel.TestResult`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.events import IdentifyMethod

from ..schemas import RequestField, SignedTokenSettings


class View(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- bots and Custom Authentication settings ----------------------------------------------------


class Bot(View):
    bot_id: UUID
    name: str
    workspace_id: UUID | None = Field(description="null: reached only with the operator's admin token")
    created_at: datetime
    updated_at: datetime


class BotPage(View):
    bots: list[Bot]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class SigningSecret(View):
    signing_secret: str = Field(description="`whsec_...`: verify `Doorman-Signature` with it")
    previous_valid_until: datetime | None


class TokenSecret(View):
    kid: str = Field(description="put it in the `kid` header of every token signed with this secret")
    secret: str = Field(description=(
        "`dmts_...`: the HS256 key (its UTF-8 bytes), shown this once; the previous secret keeps verifying for 24 h"))


class DomainWhitelistView(View):
    enabled: bool
    source: Literal["manual", "api"]
    domains: list[str]
    api_url: str | None


class SignedTokenView(SignedTokenSettings):
    secret_kid: str | None = Field(description=(
        "HS256: the `kid` of the bot's current token secret (the secret itself is shown once, when made); "
        "null: none yet"))


class OidcView(View):
    issuer: str
    method: Literal["userinfo", "introspection"]
    client_id: str
    client_secret_set: bool = Field(description="the client secret is write-only: only whether one is stored is shown")


class CustomAuthSettings(View):
    """The stored settings. The header token is write-only: only whether one is set is shown."""

    enabled: bool
    identity_source: Literal["auth_url", "signed_token", "oidc"]
    auth_url: str | None
    header_token_set: bool
    signing_secret_set: bool = Field(description="identity calls carry `Doorman-Signature`")
    identify_method: IdentifyMethod
    request_fields: list[RequestField]
    domain_whitelist: DomainWhitelistView
    signed_token: SignedTokenView
    oidc: OidcView | None = Field(description="the OpenID Provider (`identity_source: oidc`); null when none is set")
    accepted_clients: list[str] = Field(description="`oidc`: the client ids whose tokens this bot accepts")
    outage_grace_seconds: int
    collect_information: Literal["required", "optional", "off"]
    revision: int = Field(description="incremented by every PUT")
    updated_at: datetime


class WidgetToken(View):
    widget_token: str = Field(description=(
        "`dmw_...`: embed it as the widget's `data-token`; single use (the first session that opens with it "
        "owns it); only its keyed hash is stored"))
    expires_at: datetime = Field(description="a widget opened after this falls back (`auth_rejected`)")


# --- workspaces and their API keys --------------------------------------------------------------


class Workspace(View):
    workspace_id: UUID
    name: str
    created_at: datetime


class WorkspaceList(View):
    workspaces: list[Workspace]


class ApiKeyCreated(View):
    key_id: UUID
    workspace_id: UUID
    name: str
    created_at: datetime
    api_key: str = Field(description="`dk_...`: shown this once; only its SHA-256 is stored")


class ApiKey(View):
    key_id: UUID
    workspace_id: UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyList(View):
    api_keys: list[ApiKey]


# --- the bot's circuit breaker for its Authentication URL's host (built by directory.py) ---------


class BreakerReplica(View):
    replica: str = Field(description=(
        "the verifier replica holding this breaker (each replica keeps its own, per bot and host)"))
    state: Literal["closed", "open", "half_open"]
    since: datetime = Field(description="when it entered this state")
    opened: int = Field(description=(
        "times this replica opened the circuit since it started (or since it forgot the breaker, idle for a window "
        "and a pause)"))
    detail: str | None = Field(description="why it entered this state, e.g. `25 of 30 calls failed in the last 30 s`")
    updated_at: datetime


class AuthBreaker(View):
    """The bot's own circuit breaker for the host of its Authentication URL, as the verifiers last recorded it: it
    counts only this bot's calls, so another bot's failing endpoint on the same host never opens it."""

    host: str | None = Field(description="host:port of the Authentication URL; null when none is set")
    state: Literal["closed", "open", "half_open"] = Field(description=(
        "`open` when any replica's circuit is open, else `half_open` when one is probing, else `closed`"))
    replicas: list[BreakerReplica] = Field(description="each verifier replica that recorded a transition, newest first")


# --- webhooks to the business (built by webhooks.py) ---------------------------------------------


class WebhookSettings(View):
    url: str | None
    events: list[Literal["contact.created", "contact.updated", "contact.erased", "session.fell_back"]]
    enabled: bool
    signing_secret_set: bool = Field(description="deliveries (and identity calls) carry `Doorman-Signature`")
    signing_secret: str | None = Field(description=(
        "`whsec_...`: made by this PUT because the bot had none (enabling needs one), shown this once; "
        "verify `Doorman-Signature` with it. Null otherwise"))
    updated_at: datetime | None = Field(description="null: never saved")


class WebhookDelivery(View):
    delivery_id: UUID = Field(description="the body's `id` and the `Doorman-Delivery` header, on every attempt")
    type: Literal["contact.created", "contact.updated", "contact.erased", "session.fell_back"]
    status: Literal["pending", "delivered", "dead"] = Field(description=(
        "`dead`: the endpoint answered 4xx (not 408/429), or kept failing for about a day"))
    attempts: int
    last_error: str | None = Field(description="what the last failed attempt met, e.g. `HTTP 503`")
    created_at: datetime
    delivered_at: datetime | None


class WebhookDeliveryPage(View):
    deliveries: list[WebhookDelivery] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class WebhookRetried(View):
    delivery_id: UUID
    status: Literal["pending"] = Field(description="sent again: the delivery log shows how it goes")
