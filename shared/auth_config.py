"""A bot's Custom Authentication settings, decrypted, as the verifier's decision needs them.

Read by the verifier (through its cache) and by the gateway's Testing panel.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from uuid import UUID

import asyncpg
from pydantic import SecretStr

from shared.crypto import Secrets
from shared.domains import url_origin
from shared.events import IdentifyMethod, utcnow


IdentitySource = Literal["auth_url", "signed_token", "oidc"]
OidcMethod = Literal["userinfo", "introspection"]
CollectInformation = Literal["required", "optional", "off"]
DEFAULT_CLAIMS = {"id": "sub", "email": "email", "name": "name", "phone_number": "phone_number", "metadata": "metadata"}


# The settings a header token is sent to (their names in the PUT body): it is bound to the origin of each.
AUTH_URL = "auth_url"
WHITELIST_API_URL = "domain_whitelist.api_url"
# The setting whose origin an OpenID Provider's client secret is bound to.
ISSUER = "oidc.issuer"


class NotBound(Exception):
    """A stored secret was asked for a URL on another origin than the one it was saved for; nothing is sent.
    ``field``: the secret's name in the PUT body."""

    def __init__(self, message: str, field: str = "header_token") -> None:
        super().__init__(message)
        self.field = field


def moved(saved_for: Mapping[str, str | None], urls: Mapping[str, str | None]) -> list[str]:
    """The settings of ``urls`` (name -> URL) set to a URL on another origin than the URL the secret was
    saved with in that setting (``saved_for``). A setting saved unset counts: adding a URL is a move; a
    URL with no origin is never on the saved one."""
    moves = []
    for name, url in urls.items():
        saved = saved_for.get(name)
        if url is not None and (url_origin(url) is None or saved is None or url_origin(url) != url_origin(saved)):
            moves.append(name)
    return moves


@dataclass(frozen=True)
class BoundSecret:
    """A write-only secret (``name``) and the URL of each setting it was saved with: it is handed out
    only to be sent to a URL on the origin (scheme, host, port) that setting had then."""

    name: str
    value: SecretStr
    saved_for: Mapping[str, str | None]  # AUTH_URL / WHITELIST_API_URL / ISSUER -> the URL then (None: not set)

    def for_url(self, setting: str, url: str) -> SecretStr:
        """The secret, to send to ``url`` (the value of ``setting``); NotBound when it was not saved for its origin."""
        if moved(self.saved_for, {setting: url}):
            saved = self.saved_for.get(setting)
            then = f"for the {setting} on {url_origin(saved)}" if saved else f"when the {setting} was not set"
            what = self.name.rpartition(".")[2].replace("_", " ")
            raise NotBound(f"{self.name}: it was saved {then}, not for {url_origin(url) or 'a URL without an origin'}, "
                           f"so it was not sent; enter the {what} again for the new URL", self.name)
        return self.value


@dataclass(frozen=True)
class TokenSecret:
    """An HS256 secret, named by the ``kid`` header of the tokens signed with it."""

    kid: str
    secret: SecretStr


@dataclass(frozen=True)
class SignedToken:
    """How a widget's signed identity token (a JWT) is verified (``identity_source: signed_token``)."""

    algorithm: Literal["HS256", "RS256", "ES256"] = "HS256"
    jwks_url: str | None = None
    issuer: str | None = None
    max_lifetime_seconds: int = 3600
    claims: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CLAIMS))
    secret: TokenSecret | None = None  # HS256: the current secret...
    previous: TokenSecret | None = None  # ...and the previous one, still verifying until:
    previous_until: datetime | None = None

    def secrets(self) -> dict[str, SecretStr]:
        """kid -> secret of every HS256 secret that verifies now."""
        active = {self.secret.kid: self.secret.secret} if self.secret else {}
        if self.previous and self.previous_until and self.previous_until > utcnow():
            active[self.previous.kid] = self.previous.secret
        return active


@dataclass(frozen=True)
class Oidc:
    """The business's OpenID Provider (``identity_source: oidc``): the widget's access token is checked at its
    userinfo or introspection endpoint, found in ``{issuer}/.well-known/openid-configuration``."""

    issuer: str
    method: OidcMethod
    client_id: str
    client_secret: BoundSecret | None  # bound to the issuer's origin (ISSUER); introspection needs it
    accepted_clients: tuple[str, ...]  # a token's client_id (or one of its aud) must be one of these


@dataclass(frozen=True)
class AuthConfig:
    enabled: bool
    auth_url: str | None
    header_token: BoundSecret | None
    identify_method: IdentifyMethod
    request_fields: tuple[str, ...]
    whitelist_enabled: bool
    whitelist_source: str
    whitelist_domains: tuple[str, ...]
    whitelist_api_url: str | None
    signing_secret: SecretStr | None = None
    signing_previous: SecretStr | None = None  # a rotated-out secret, still signing until:
    signing_previous_until: datetime | None = None
    identity_source: IdentitySource = "auth_url"
    signed_token: SignedToken = field(default_factory=SignedToken)
    oidc: Oidc | None = None
    outage_grace_seconds: int = 0
    collect_information: CollectInformation = "required"

    def signing_secrets(self) -> list[str]:
        """The secrets to sign a call with now: the current one, and the previous one while it retires."""
        active = [self.signing_secret] if self.signing_secret else []
        if self.signing_previous and self.signing_previous_until and self.signing_previous_until > utcnow():
            active.append(self.signing_previous)
        return [s.get_secret_value() for s in active]


async def load(pool: asyncpg.Pool, secrets: Secrets, bot_id: UUID) -> AuthConfig | None:
    row = await pool.fetchrow(
        """SELECT enabled, auth_url, header_token_cipher, header_token_for_auth_url, header_token_for_api_url,
                  identify_method, request_fields,
                  whitelist_enabled, whitelist_source, whitelist_domains, whitelist_api_url,
                  signing_secret_cipher, signing_previous_cipher, signing_previous_until,
                  identity_source, token_algorithm, token_jwks_url, token_issuer, token_max_lifetime_seconds,
                  token_claims, token_secret_cipher, token_secret_kid, token_previous_cipher, token_previous_kid,
                  token_previous_until, outage_grace_seconds, collect_information,
                  oidc_issuer, oidc_method, oidc_client_id, oidc_client_secret_cipher, oidc_client_secret_for_issuer,
                  accepted_clients
           FROM custom_auth_settings WHERE bot_id = $1""",
        bot_id,
    )
    if row is None:
        return None

    def secret(column: str) -> SecretStr | None:
        cipher = row[column]
        return SecretStr(secrets.decrypt(cipher)) if cipher is not None else None

    def token_secret(cipher: str, kid: str) -> TokenSecret | None:
        value = secret(cipher)
        return TokenSecret(row[kid], value) if value is not None and row[kid] else None

    header_token = secret("header_token_cipher")
    return AuthConfig(
        enabled=row["enabled"],
        auth_url=row["auth_url"],
        header_token=BoundSecret("header_token", header_token, {
            AUTH_URL: row["header_token_for_auth_url"], WHITELIST_API_URL: row["header_token_for_api_url"],
        }) if header_token is not None else None,
        identify_method=IdentifyMethod(row["identify_method"]),
        request_fields=tuple(row["request_fields"]),
        whitelist_enabled=row["whitelist_enabled"],
        whitelist_source=row["whitelist_source"],
        whitelist_domains=tuple(row["whitelist_domains"]),
        whitelist_api_url=row["whitelist_api_url"],
        signing_secret=secret("signing_secret_cipher"),
        signing_previous=secret("signing_previous_cipher"),
        signing_previous_until=row["signing_previous_until"],
        identity_source=row["identity_source"],
        signed_token=SignedToken(
            algorithm=row["token_algorithm"], jwks_url=row["token_jwks_url"], issuer=row["token_issuer"],
            max_lifetime_seconds=row["token_max_lifetime_seconds"], claims=_claims(row["token_claims"]),
            secret=token_secret("token_secret_cipher", "token_secret_kid"),
            previous=token_secret("token_previous_cipher", "token_previous_kid"),
            previous_until=row["token_previous_until"],
        ),
        oidc=_oidc(row, secret("oidc_client_secret_cipher")),
        outage_grace_seconds=row["outage_grace_seconds"],
        collect_information=row["collect_information"],
    )


def _oidc(row: asyncpg.Record, client_secret: SecretStr | None) -> Oidc | None:
    if row["oidc_issuer"] is None or row["oidc_client_id"] is None:
        return None
    bound = BoundSecret("oidc.client_secret", client_secret, {ISSUER: row["oidc_client_secret_for_issuer"]}) \
        if client_secret is not None else None
    return Oidc(issuer=row["oidc_issuer"], method=row["oidc_method"], client_id=row["oidc_client_id"],
                client_secret=bound, accepted_clients=tuple(row["accepted_clients"]))


def _claims(value: str | dict[str, str]) -> dict[str, str]:
    """jsonb arrives as text unless the pool has a codec for it."""
    return json.loads(value) if isinstance(value, str) else dict(value)
