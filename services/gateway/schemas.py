"""Request bodies the gateway accepts. Unknown fields are refused (422), so typos are seen."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from shared.identifiers import InvalidIdentifier, normalise_email, normalise_phone
from yarl import URL

from shared.domains import normalise_domain_entry
from shared.destinations import unsendable_header
from shared.events import FallbackReason, IdentifyMethod
from shared.widget_view import SessionStatus

from . import pagination
from .constraints import (
    BLANK_OR_EMAIL, DOMAIN_ENTRY, HEADER_VALUE, HTTP_URL, ISSUER_URL, NOT_BLANK, PHONE_NUMBER_SCHEMA, WHITESPACE, document_strings,
    all_of, one_filled, present, when,
)

def integral(value: object) -> object:
    """JSON Schema's integer: 300.0 is one. Bodies are read strictly (no 0 for false), which alone would refuse it."""
    return int(value) if isinstance(value, float) and value.is_integer() else value

RequestField = Literal["user_id", "email", "name", "phone_number", "external_workspace_id"]
Short = Annotated[str, Field(max_length=256)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """The schema says what this class enforces on every string: stripped, no NUL (constraints.py)."""
        schema = handler.resolve_ref_schema(handler(core_schema))
        document_strings(schema)
        return schema

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                no_nul(item)
        return value


def no_nul(value: str) -> str:
    """PostgreSQL text cannot hold NUL; say so as a field error, not a 500."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _http_url(value: str) -> str:
    url = URL(value)
    if url.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not url.host:
        raise ValueError("must include a host name")
    if url.user or url.password:
        raise ValueError("must not carry a user name or password; use the header token")
    if not re.fullmatch(HTTP_URL, value):
        raise ValueError("Doorman will not call this URL: write it as http(s)://host[:port][/path], the host a name "
                         "(an international one in its xn-- form), a.b.c.d or [IPv6], with no spaces around or in it")
    return value


def _sendable(value: object) -> object:
    """Before stripping: a token pasted with a line break is refused, not quietly trimmed."""
    if isinstance(value, str) and unsendable_header(value):
        raise ValueError("must not contain line breaks or other control characters (it is sent as an HTTP header)")
    return value


HttpUrl = Annotated[str, StringConstraints(strip_whitespace=False),
                    Field(min_length=1, max_length=2048, json_schema_extra={"format": "uri", "pattern": HTTP_URL}),
                    AfterValidator(_http_url)]
DomainEntry = Annotated[str, Field(
    min_length=1, max_length=253, json_schema_extra={"format": DOMAIN_ENTRY}, description=(
        "a host name (`example.com`, an internationalised name, `localhost`), `*.example.com` for its subdomains, "
        "or an IPv4 address; no scheme, port or path")), AfterValidator(normalise_domain_entry)]


class OpenSession(Strict):
    bot_id: UUID
    access_token: Annotated[str, Field(max_length=8192)] | None = None
    user_id: Short | None = None
    email: Short | None = None
    name: Short | None = None
    phone_number: Short | None = None
    external_workspace_id: Short | None = Field(None, description=(
        "the business's own workspace the visitor is in (embed `data-external-workspace-id`; OpenCX's externalId): "
        "forwarded to the Authentication URL when selected in `request_fields`, never trusted"))
    lang: Annotated[str, Field(max_length=16)] | None = None


class NewBot(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    workspace_id: UUID | None = None  # the operator's choice; a workspace key always creates in its own


class NewWorkspace(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]


class NewApiKey(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]


class DomainWhitelist(Strict):
    model_config = ConfigDict(json_schema_extra=when(
        {"enabled": True, "source": "api"}, then=present("api_url")))

    enabled: bool = False
    source: Literal["manual", "api"] = "manual"
    domains: Annotated[list[DomainEntry], Field(max_length=1000)] = []
    api_url: HttpUrl | None = None

    @model_validator(mode="after")
    def _api_needs_url(self) -> "DomainWhitelist":
        if self.enabled and self.source == "api" and not self.api_url:
            raise ValueError("api_url is required when the whitelist source is 'api'")
        return self


ClaimName = Annotated[str, Field(min_length=1, max_length=100)]


class TokenClaims(Strict):
    """Which claim of a signed identity token holds each profile field."""

    id: ClaimName = "sub"
    email: ClaimName = "email"
    name: ClaimName = "name"
    phone_number: ClaimName = "phone_number"
    metadata: ClaimName = "metadata"


def _issuer_url(value: str) -> str:
    """An OpenID Provider's issuer: an http(s) URL with no query or fragment (OpenID Connect Discovery)."""
    _http_url(value)
    url = URL(value)
    if url.raw_query_string or url.raw_fragment or "?" in value or "#" in value:
        raise ValueError("an issuer has no query or fragment")
    return value


IssuerUrl = Annotated[str, StringConstraints(strip_whitespace=False),
                      Field(min_length=1, max_length=2048, json_schema_extra={"format": "uri", "pattern": ISSUER_URL}),
                      AfterValidator(_issuer_url)]


class SignedTokenSettings(Strict):
    """``identity_source: signed_token``: the widget's access token is a JWT the business signed."""

    model_config = ConfigDict(json_schema_extra=when(
        {"algorithm": ["RS256", "ES256"]}, then={"anyOf": [
            present("jwks_url"), {"required": ["issuer"], "properties": {"issuer": {"type": "string", "pattern": ISSUER_URL}}},
        ]}))

    algorithm: Literal["HS256", "RS256", "ES256"] = Field("HS256", description=(
        "the only algorithm accepted (pinned per bot); HS256 uses the bot's token secret "
        "(`POST .../custom-auth/token-secret`), RS256/ES256 the keys at `jwks_url`"))
    jwks_url: HttpUrl | None = Field(None, description=(
        "RS256 and ES256: where the keys are; without it, the `jwks_uri` of the issuer's discovery document "
        "(`{issuer}/.well-known/openid-configuration`, `issuer` then an http(s) URL)"))
    issuer: Annotated[str, Field(min_length=1, max_length=2048)] | None = Field(
        None, description="when set, a token's `iss` must be exactly this")
    max_lifetime_seconds: Annotated[int, Field(ge=1, le=86400), BeforeValidator(integral)] = Field(
        3600, description="a token whose `exp - iat` is longer is refused (`lifetime_too_long`)")
    claims: TokenClaims = TokenClaims()

    @property
    def discovers_keys(self) -> bool:
        """RS256/ES256 with no jwks_url: the keys are found through the issuer's discovery document."""
        return self.algorithm != "HS256" and not self.jwks_url

    @field_validator("issuer")
    @classmethod
    def _discoverable(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("algorithm", "HS256") != "HS256" and not info.data.get("jwks_url"):
            try:
                _issuer_url(value)
            except ValueError as exc:
                raise ValueError(f"without jwks_url the keys are found by discovery at the issuer: {exc}") from None
        return value

    @model_validator(mode="after")
    def _keys_need_jwks(self) -> "SignedTokenSettings":
        if self.discovers_keys and not self.issuer:
            raise ValueError(f"jwks_url or issuer is required for {self.algorithm}")
        return self


ClientId = Annotated[str, Field(min_length=1, max_length=255)]


class OidcSettings(Strict):
    """``identity_source: oidc``: the widget's access token is one the business's OpenID Provider issued, checked
    at its userinfo or introspection endpoint (found in ``{issuer}/.well-known/openid-configuration``).
    ``client_secret`` is write-only: absent keeps the stored one, null clears it; a stored one is sent only to the
    origin (scheme, host, port) of the issuer it was saved with."""

    issuer: IssuerUrl = Field(description=(
        "the provider's issuer identifier, exactly as its discovery document spells it; `https://` (`http://` only "
        "where Doorman may call private networks)"))
    method: Literal["userinfo", "introspection"] = Field("userinfo", description=(
        "`userinfo`: the token is valid when the userinfo endpoint answers it (any client's token: userinfo cannot "
        "tell); `introspection` (RFC 7662): the provider says whether it is active and which client it was issued "
        "to (`accepted_clients`); needs `client_secret`"))
    client_id: ClientId = Field(description="the bot's client at the provider (introspection authenticates as it)")
    client_secret: Annotated[str, Field(min_length=1, max_length=1024, json_schema_extra={"pattern": HEADER_VALUE}),
                             BeforeValidator(_sendable)] | None = None


class CustomAuthSettingsIn(Strict):
    """PUT body. ``header_token`` is write-only: absent keeps the stored one, null clears it. A stored one
    is sent only to the origins (scheme, host, port) of the ``auth_url`` and ``domain_whitelist.api_url``
    it was saved with: a PUT moving either elsewhere (or adding an ``api_url``) must give it again."""

    model_config = ConfigDict(json_schema_extra=all_of(
        when({"enabled": True, "identity_source": "auth_url"}, then=present("auth_url")),
        when({"identity_source": "oidc"}, then={"required": ["oidc"], "properties": {"oidc": {"type": "object"}}}),
    ))

    enabled: bool
    identity_source: Literal["auth_url", "signed_token", "oidc"] = Field("auth_url", description=(
        "`auth_url`: call the business's Authentication URL; `signed_token`: verify the JWT the widget "
        "carries, with no call (then `auth_url` is optional); `oidc`: check the widget's access token at the "
        "business's OpenID Provider (`oidc`)"))
    auth_url: HttpUrl | None = None
    header_token: Annotated[str, Field(min_length=1, max_length=4096, json_schema_extra={"pattern": HEADER_VALUE}),
                            BeforeValidator(_sendable)] | None = None
    identify_method: IdentifyMethod = IdentifyMethod.id
    request_fields: Annotated[list[RequestField], Field(max_length=5, json_schema_extra={"uniqueItems": True})] = []
    domain_whitelist: DomainWhitelist = DomainWhitelist()
    signed_token: SignedTokenSettings = SignedTokenSettings()
    oidc: OidcSettings | None = Field(None, validate_default=True, description="required with `identity_source: oidc`")
    accepted_clients: Annotated[list[ClientId], Field(max_length=50, json_schema_extra={"uniqueItems": True})] | None = \
        Field(None, description=(
            "`oidc`: the client ids whose tokens this bot accepts (introspection's `client_id`, or one of its `aud`); "
            "absent: `[oidc.client_id]`"))
    outage_grace_seconds: Annotated[int, Field(ge=0, le=86400), BeforeValidator(integral)] = Field(0, description=(
        "with `auth_url` or `oidc`: while the Authentication URL (or the OpenID Provider) is unavailable, a visitor whose same token was verified "
        "within this many seconds (and not rejected since) is verified from that identity, flagged `degraded`; "
        "0 is off"))
    collect_information: Literal["required", "optional", "off"] = Field("required", description=(
        "what a visitor who falls back is offered: the Collect Information form (`required`), the form with "
        "a way to skip it (`optional`), or an anonymous chat with no form (`off`)"))

    @field_validator("accepted_clients")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("must not repeat a client id")
        return value

    @field_validator("oidc")
    @classmethod
    def _oidc_for_oidc(cls, value: OidcSettings | None, info: ValidationInfo) -> OidcSettings | None:
        if value is None and info.data.get("identity_source") == "oidc":
            raise ValueError("required when the identity source is 'oidc'")
        return value

    @model_validator(mode="after")
    def _enabled_needs_url(self) -> "CustomAuthSettingsIn":
        if self.enabled and self.identity_source == "auth_url" and not self.auth_url:
            raise ValueError("auth_url is required when Custom Authentication is enabled")
        if len(set(self.request_fields)) != len(self.request_fields):
            raise ValueError("request_fields must not repeat a field")
        return self

    def clients_accepted(self) -> list[str]:
        """``accepted_clients`` as given, else the bot's own client (none without ``oidc``)."""
        if self.accepted_clients is not None:
            return list(self.accepted_clients)
        return [self.oidc.client_id] if self.oidc else []


class OpenQuery(Strict):
    wait: Annotated[float, Field(gt=0, le=30, description=(
        "seconds to wait for the outcome: answered 200 with the session when it comes in time, else 202 as usual"
    ))] | None = None


class BotQuery(Strict):
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    cursor: pagination.UuidCursor = None


class ContactQuery(Strict):
    q: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 25
    cursor: pagination.UuidCursor = None


class AuthEventQuery(Strict):
    reason: FallbackReason | None = None
    status: SessionStatus | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    cursor: pagination.SessionCursor = None


class TestRequest(Strict):
    """The Testing panel: a sample visitor, sent with the bot's current settings."""

    access_token: Annotated[str, Field(min_length=1, max_length=8192)]
    user_id: Short | None = None
    email: Short | None = None
    name: Short | None = None
    phone_number: Short | None = None
    external_workspace_id: Short | None = None
    origin: Annotated[str, Field(max_length=2048, description=(
        "the page origin a real widget open would come from, e.g. `https://shop.example.com`; the whitelist "
        "decision uses it; omitted: decided as an open without an Origin header"))] | None = None


class DiscoverIssuer(Strict):
    """The Discover action: the OpenID Provider whose discovery document to read."""

    issuer: IssuerUrl | None = Field(None, description=(
        "the issuer to try, as it would be saved in `oidc.issuer` (same rules); absent: the bot's saved one"))


def _blank_is_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip(WHITESPACE) else value


# Form fields: blank is as absent.
Typed200 = Annotated[Annotated[str, Field(max_length=200)] | None, BeforeValidator(_blank_is_none)]
Typed40 = Annotated[Annotated[str, Field(max_length=40)] | None, BeforeValidator(_blank_is_none)]
TypedEmail = Annotated[Annotated[str, Field(max_length=200, json_schema_extra={"pattern": BLANK_OR_EMAIL})] | None,
                       BeforeValidator(_blank_is_none)]
TypedPhone = Annotated[Annotated[str, Field(max_length=40), WithJsonSchema(PHONE_NUMBER_SCHEMA)] | None,
                       BeforeValidator(_blank_is_none)]


class CollectedContact(Strict):
    """The Collect Information form. What the visitor types makes a non-verified contact. A blank field is
    as absent; at least one of name, email and phone_number must be filled."""

    model_config = ConfigDict(json_schema_extra=one_filled(
        name={"type": "string", "pattern": NOT_BLANK}, email={"type": "string", "pattern": NOT_BLANK},
        phone_number=PHONE_NUMBER_SCHEMA))

    name: Typed200 = None
    email: TypedEmail = None
    country_code: Typed40 = Field(None, description="the country of a national `phone_number`: `+84`, `84` or `VN`")
    phone_number: TypedPhone = Field(
        None, description="valid for its country, at most 40 characters; a national number needs `country_code`")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return normalise_email(value)
        except InvalidIdentifier:
            raise ValueError("enter an email address like name@example.com") from None

    @field_validator("phone_number")
    @classmethod
    def _phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        try:
            return normalise_phone(value, info.data.get("country_code"))
        except InvalidIdentifier:
            raise ValueError("enter a phone number with its country code, like +84 912 345 678") from None

    @model_validator(mode="after")
    def _something(self) -> "CollectedContact":
        if not (self.name or self.email or self.phone_number):
            raise ValueError("fill in at least one of name, email or phone_number")
        return self
