"""A bot's Custom Authentication settings, decrypted, as the identity call needs them.

Read by the verifier (through its cache) and by the gateway's Testing panel.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg
from pydantic import SecretStr

from shared.crypto import Secrets
from shared.events import IdentifyMethod, utcnow


@dataclass(frozen=True)
class AuthConfig:
    enabled: bool
    auth_url: str | None
    header_token: SecretStr | None
    identify_method: IdentifyMethod
    request_fields: tuple[str, ...]
    whitelist_enabled: bool
    whitelist_source: str
    whitelist_domains: tuple[str, ...]
    whitelist_api_url: str | None
    signing_secret: SecretStr | None = None
    signing_previous: SecretStr | None = None  # a rotated-out secret, still signing until:
    signing_previous_until: datetime | None = None

    def signing_secrets(self) -> list[str]:
        """The secrets to sign a call with now: the current one, and the previous one while it retires."""
        active = [self.signing_secret] if self.signing_secret else []
        if self.signing_previous and self.signing_previous_until and self.signing_previous_until > utcnow():
            active.append(self.signing_previous)
        return [s.get_secret_value() for s in active]


async def load(pool: asyncpg.Pool, secrets: Secrets, bot_id: UUID) -> AuthConfig | None:
    row = await pool.fetchrow(
        """SELECT enabled, auth_url, header_token_cipher, identify_method, request_fields,
                  whitelist_enabled, whitelist_source, whitelist_domains, whitelist_api_url,
                  signing_secret_cipher, signing_previous_cipher, signing_previous_until
           FROM custom_auth_settings WHERE bot_id = $1""",
        bot_id,
    )
    if row is None:
        return None
    def secret(column: str) -> SecretStr | None:
        cipher = row[column]
        return SecretStr(secrets.decrypt(cipher)) if cipher is not None else None

    return AuthConfig(
        enabled=row["enabled"],
        auth_url=row["auth_url"],
        header_token=secret("header_token_cipher"),
        identify_method=IdentifyMethod(row["identify_method"]),
        request_fields=tuple(row["request_fields"]),
        whitelist_enabled=row["whitelist_enabled"],
        whitelist_source=row["whitelist_source"],
        whitelist_domains=tuple(row["whitelist_domains"]),
        whitelist_api_url=row["whitelist_api_url"],
        signing_secret=secret("signing_secret_cipher"),
        signing_previous=secret("signing_previous_cipher"),
        signing_previous_until=row["signing_previous_until"],
    )
