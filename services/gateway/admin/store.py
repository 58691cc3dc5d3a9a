"""The gateway's reads and writes in PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime
from uuid import UUID, uuid4

import asyncpg

from shared.auth_config import AUTH_URL, ISSUER, WHITELIST_API_URL, NotBound, moved
from shared.crypto import Secrets
from shared.db import CONFIG_CHANNEL

from .. import pagination
from ..schemas import CustomAuthSettingsIn
from .views import Bot, BotPage, CustomAuthSettings, DomainWhitelistView, OidcView, SignedTokenView


BOT_COLUMNS = "bot_id, name, workspace_id, created_at, updated_at"


async def workspace_exists(pool: asyncpg.Pool, workspace_id: UUID) -> bool:
    return await pool.fetchval("SELECT true FROM workspaces WHERE workspace_id = $1", workspace_id) is not None


async def create_bot(pool: asyncpg.Pool, name: str, workspace_id: UUID | None) -> Bot:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"INSERT INTO bots (bot_id, name, workspace_id) VALUES ($1, $2, $3) RETURNING {BOT_COLUMNS}",
            uuid4(), name, workspace_id,
        )
        await conn.execute("INSERT INTO custom_auth_settings (bot_id) VALUES ($1)", row["bot_id"])
    return Bot(**row)


async def list_bots(
    pool: asyncpg.Pool, *, workspace_id: UUID | None, every_workspace: bool, limit: int, cursor: str | None,
) -> BotPage:
    """Newest first: every bot for the operator, else the workspace's."""
    created_at, bot_id = pagination.after(cursor, UUID)
    rows = await pool.fetch(
        f"""SELECT {BOT_COLUMNS} FROM bots
            WHERE ($1 OR workspace_id = $2)
              AND ($3::timestamptz IS NULL OR (created_at, bot_id) < ($3, $4::uuid))
            ORDER BY created_at DESC, bot_id DESC LIMIT $5""",
        every_workspace, workspace_id, created_at, bot_id, limit + 1,
    )
    return BotPage.model_validate(pagination.page(rows, limit, items="bots", key="bot_id"))


async def get_bot(pool: asyncpg.Pool, bot_id: UUID) -> Bot | None:
    row = await pool.fetchrow(f"SELECT {BOT_COLUMNS} FROM bots WHERE bot_id = $1", bot_id)
    return Bot(**row) if row else None


_SETTINGS_COLUMNS = """
    enabled, auth_url, header_token_cipher IS NOT NULL AS header_token_set,
    signing_secret_cipher IS NOT NULL AS signing_secret_set, identify_method,
    request_fields, whitelist_enabled, whitelist_source, whitelist_domains, whitelist_api_url, revision, updated_at,
    identity_source, token_algorithm, token_jwks_url, token_issuer, token_max_lifetime_seconds, token_claims::text,
    token_secret_kid, outage_grace_seconds, collect_information,
    oidc_issuer, oidc_method, oidc_client_id, oidc_client_secret_cipher IS NOT NULL AS oidc_client_secret_set,
    accepted_clients
"""


def _settings_view(row: asyncpg.Record) -> CustomAuthSettings:
    return CustomAuthSettings(
        enabled=row["enabled"],
        identity_source=row["identity_source"],
        auth_url=row["auth_url"],
        header_token_set=row["header_token_set"],
        signing_secret_set=row["signing_secret_set"],
        identify_method=row["identify_method"],
        request_fields=list(row["request_fields"]),
        domain_whitelist=DomainWhitelistView(
            enabled=row["whitelist_enabled"],
            source=row["whitelist_source"],
            domains=list(row["whitelist_domains"]),
            api_url=row["whitelist_api_url"],
        ),
        signed_token=SignedTokenView(
            algorithm=row["token_algorithm"], jwks_url=row["token_jwks_url"], issuer=row["token_issuer"],
            max_lifetime_seconds=row["token_max_lifetime_seconds"], claims=json.loads(row["token_claims"]),
            secret_kid=row["token_secret_kid"],
        ),
        oidc=OidcView(
            issuer=row["oidc_issuer"], method=row["oidc_method"], client_id=row["oidc_client_id"],
            client_secret_set=row["oidc_client_secret_set"],
        ) if row["oidc_issuer"] is not None and row["oidc_client_id"] is not None else None,
        accepted_clients=list(row["accepted_clients"]),
        outage_grace_seconds=row["outage_grace_seconds"],
        collect_information=row["collect_information"],
        revision=row["revision"],
        updated_at=row["updated_at"],
    )


async def get_custom_auth(pool: asyncpg.Pool, bot_id: UUID) -> CustomAuthSettings | None:
    row = await pool.fetchrow(f"SELECT {_SETTINGS_COLUMNS} FROM custom_auth_settings WHERE bot_id = $1", bot_id)
    return _settings_view(row) if row else None


_PUT_SETTINGS = f"""
    UPDATE custom_auth_settings SET
        enabled = $2, auth_url = $3,
        header_token_cipher = CASE WHEN $4 THEN header_token_cipher ELSE $5 END,
        header_token_for_auth_url = CASE WHEN $4 THEN header_token_for_auth_url WHEN $5 IS NULL THEN NULL ELSE $3 END,
        header_token_for_api_url = CASE WHEN $4 THEN header_token_for_api_url WHEN $5 IS NULL THEN NULL ELSE $11 END,
        identify_method = $6, request_fields = $7,
        whitelist_enabled = $8, whitelist_source = $9, whitelist_domains = $10, whitelist_api_url = $11,
        identity_source = $12, token_algorithm = $13, token_jwks_url = $14, token_issuer = $15,
        token_max_lifetime_seconds = $16, token_claims = $17::text::jsonb, outage_grace_seconds = $18,
        collect_information = $19,
        oidc_issuer = $20, oidc_method = $21, oidc_client_id = $22,
        oidc_client_secret_cipher = CASE WHEN $23 THEN oidc_client_secret_cipher ELSE $24 END,
        oidc_client_secret_for_issuer = CASE WHEN $23 THEN oidc_client_secret_for_issuer
                                             WHEN $24 IS NULL THEN NULL ELSE $20 END,
        accepted_clients = $25,
        revision = revision + 1, updated_at = now()
    WHERE bot_id = $1
    RETURNING {_SETTINGS_COLUMNS}
"""


_SAVED_FOR = """SELECT header_token_cipher IS NOT NULL AS token_set, header_token_for_auth_url, header_token_for_api_url,
                       oidc_client_secret_cipher IS NOT NULL AS client_secret_set, oidc_client_secret_for_issuer
                FROM custom_auth_settings WHERE bot_id = $1 FOR UPDATE"""


class SecretNeeded(Exception):
    """The settings need a secret that is neither given nor stored (``field``: its name in the PUT body)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _check_secrets(body: CustomAuthSettingsIn, saved: asyncpg.Record) -> None:
    """A stored secret kept must stay on the origins it was saved for (NotBound), and an OpenID Provider checked
    by introspection needs a client secret (SecretNeeded)."""
    whitelist, oidc = body.domain_whitelist, body.oidc
    if "header_token" not in body.model_fields_set and saved["token_set"]:
        urls = {AUTH_URL: body.auth_url, WHITELIST_API_URL: whitelist.api_url}
        saved_for = {AUTH_URL: saved["header_token_for_auth_url"], WHITELIST_API_URL: saved["header_token_for_api_url"]}
        if moves := moved(saved_for, urls):
            raise NotBound(f"the header token was not saved for the new {' and '.join(moves)}")
    keep_secret = oidc is None or "client_secret" not in oidc.model_fields_set
    if keep_secret and oidc is not None and saved["client_secret_set"] \
            and moved({ISSUER: saved["oidc_client_secret_for_issuer"]}, {ISSUER: oidc.issuer}):
        raise NotBound("the client secret was not saved for the new oidc.issuer", "oidc.client_secret")
    has_secret = saved["client_secret_set"] if keep_secret else oidc is not None and oidc.client_secret is not None
    if body.identity_source == "oidc" and oidc is not None and oidc.method == "introspection" and not has_secret:
        raise SecretNeeded("oidc.client_secret", "introspection authenticates with the client secret: enter it")


async def put_custom_auth(
    pool: asyncpg.Pool, bot_id: UUID, body: CustomAuthSettingsIn, secrets: Secrets,
) -> CustomAuthSettings | None:
    """Replace the bot's settings (None: no such bot). A header token given is bound to the URLs given with
    it, a client secret to the issuer given with it; one kept must stay on the origins it was saved for:
    NotBound when ``body`` moves a URL it is sent to elsewhere (nothing is changed, so nothing is ever sent
    there). SecretNeeded: introspection with no client secret given or stored."""
    keep_token = "header_token" not in body.model_fields_set
    cipher = secrets.encrypt(body.header_token) if body.header_token else None
    whitelist, token, oidc = body.domain_whitelist, body.signed_token, body.oidc
    keep_secret = oidc is None or "client_secret" not in oidc.model_fields_set
    secret_cipher = secrets.encrypt(oidc.client_secret) if oidc is not None and oidc.client_secret else None
    async with pool.acquire() as conn, conn.transaction():
        saved = await conn.fetchrow(_SAVED_FOR, bot_id)
        if saved is None:
            return None
        _check_secrets(body, saved)
        row = await conn.fetchrow(
            _PUT_SETTINGS, bot_id, body.enabled, body.auth_url, keep_token, cipher, body.identify_method.value,
            list(body.request_fields), whitelist.enabled, whitelist.source, list(whitelist.domains), whitelist.api_url,
            body.identity_source, token.algorithm, token.jwks_url, token.issuer, token.max_lifetime_seconds,
            token.claims.model_dump_json(), body.outage_grace_seconds, body.collect_information,
            oidc.issuer if oidc else None, oidc.method if oidc else "userinfo", oidc.client_id if oidc else None,
            keep_secret, secret_cipher, body.clients_accepted(),
        )
        if row is None:
            return None
        # Delivered to every verifier replica when this transaction commits.
        await conn.execute("SELECT pg_notify($1, $2)", CONFIG_CHANNEL, str(bot_id))
    return _settings_view(row)


SIGNING_OVERLAP_HOURS = 24  # a rotated-out signing secret keeps signing (second signature) this long


async def rotate_signing_secret(pool: asyncpg.Pool, bot_id: UUID, secret: str, secrets: Secrets) -> datetime | None:
    """Make ``secret`` the bot's signing secret; the old one keeps signing for a while. Returns until when."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """UPDATE custom_auth_settings SET
                   signing_previous_cipher = signing_secret_cipher,
                   signing_previous_until = CASE WHEN signing_secret_cipher IS NULL THEN NULL
                                                 ELSE now() + make_interval(hours => $3) END,
                   signing_secret_cipher = $2, revision = revision + 1, updated_at = now()
               WHERE bot_id = $1 RETURNING signing_previous_until""",
            bot_id, secrets.encrypt(secret), SIGNING_OVERLAP_HOURS,
        )
        await conn.execute("SELECT pg_notify($1, $2)", CONFIG_CHANNEL, str(bot_id))
    return row["signing_previous_until"] if row else None


# Only when the bot has none: a secret already set (and shared with the business) is never replaced here.
_FIRST_SECRET = """UPDATE custom_auth_settings SET signing_secret_cipher = $2, revision = revision + 1, updated_at = now()
                   WHERE bot_id = $1 AND signing_secret_cipher IS NULL RETURNING true"""


async def first_signing_secret(conn: asyncpg.Connection, bot_id: UUID, secret: str, secrets: Secrets) -> bool:
    """In the caller's transaction: make ``secret`` the bot's signing secret if it has none (its settings row is
    made if missing), and tell the verifiers. False: it had one, kept."""
    await conn.execute("INSERT INTO custom_auth_settings (bot_id) VALUES ($1) ON CONFLICT DO NOTHING", bot_id)
    if not await conn.fetchval(_FIRST_SECRET, bot_id, secrets.encrypt(secret)):
        return False
    await conn.execute("SELECT pg_notify($1, $2)", CONFIG_CHANNEL, str(bot_id))  # verifiers re-read it
    return True


async def rotate_token_secret(pool: asyncpg.Pool, bot_id: UUID, kid: str, secret: str, secrets: Secrets) -> bool:
    """Make ``secret`` (named ``kid``) the bot's HS256 token secret; the current one becomes the previous,
    still verifying for SIGNING_OVERLAP_HOURS (a secret already previous is dropped; with no current one,
    after a delete, the previous one stays as it is). False: no such bot."""
    async with pool.acquire() as conn, conn.transaction():
        updated = await conn.fetchval(
            """UPDATE custom_auth_settings SET
                   token_previous_cipher = CASE WHEN token_secret_cipher IS NULL THEN token_previous_cipher
                                                ELSE token_secret_cipher END,
                   token_previous_kid = CASE WHEN token_secret_cipher IS NULL THEN token_previous_kid
                                             ELSE token_secret_kid END,
                   token_previous_until = CASE WHEN token_secret_cipher IS NULL THEN token_previous_until
                                               ELSE now() + make_interval(hours => $4) END,
                   token_secret_cipher = $2, token_secret_kid = $3, revision = revision + 1, updated_at = now()
               WHERE bot_id = $1 RETURNING true""",
            bot_id, secrets.encrypt(secret), kid, SIGNING_OVERLAP_HOURS,
        )
        await conn.execute("SELECT pg_notify($1, $2)", CONFIG_CHANNEL, str(bot_id))
    return bool(updated)


async def delete_token_secret(pool: asyncpg.Pool, bot_id: UUID, kid: str) -> bool:
    """Forget the bot's HS256 secret named ``kid`` (the current one, or the previous one while it still
    verifies): tokens naming it fail ``unknown_kid`` from the verifiers' next read (NOTIFY on commit).
    False: the bot has no such secret."""
    async with pool.acquire() as conn, conn.transaction():
        deleted = await conn.fetchval(
            """UPDATE custom_auth_settings SET
                   token_secret_cipher = CASE WHEN token_secret_kid = $2 THEN NULL ELSE token_secret_cipher END,
                   token_secret_kid = CASE WHEN token_secret_kid = $2 THEN NULL ELSE token_secret_kid END,
                   token_previous_cipher = CASE WHEN token_previous_kid = $2 THEN NULL ELSE token_previous_cipher END,
                   token_previous_until = CASE WHEN token_previous_kid = $2 THEN NULL ELSE token_previous_until END,
                   token_previous_kid = CASE WHEN token_previous_kid = $2 THEN NULL ELSE token_previous_kid END,
                   revision = revision + 1, updated_at = now()
               WHERE bot_id = $1 AND (token_secret_kid = $2 OR (token_previous_kid = $2 AND token_previous_until > now()))
               RETURNING true""",
            bot_id, kid,
        )
        if deleted:
            await conn.execute("SELECT pg_notify($1, $2)", CONFIG_CHANNEL, str(bot_id))
    return bool(deleted)
