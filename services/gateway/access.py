"""Who is calling, and what they may reach. Each route declares who may call it (``auth=`` on its
declaration, :data:`shared.routes.Auth`); the gateway's one middleware enforces that declaration here
(:func:`admit`), and init_app refuses to start with a route declared without it.

* ``public``: anyone (the widget API, the pages, health and the API document).
* ``workspace``: the operator or a workspace.
* ``operator``: the operator only (a workspace's key is 403).

Who they are:

* The operator: ``Authorization: Bearer $DOORMAN_ADMIN_TOKEN`` (the bootstrap key), compared in
  constant time. Sees and changes everything, and creates workspaces and their keys.
* A workspace: ``Authorization: Bearer dk_<prefix>_<secret>``, a key made by
  ``POST /v1/workspaces/{id}/api-keys``. Only its SHA-256 is stored (``api_keys``, written here only). It
  sees and changes only its workspace's bots, their settings and contacts; anything else is 404, as if it
  did not exist.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from uuid import UUID, uuid4

import asyncpg
from aiohttp import web

from shared.routes import Auth, Response, audience_of

from .http_errors import Error, error
from .keys import POOL, SETTINGS

KEY_PREFIX = "dk_"


@dataclass(frozen=True)
class Principal:
    workspace_id: UUID | None  # None: the operator

    @property
    def operator(self) -> bool:
        return self.workspace_id is None


PRINCIPAL = web.RequestKey("principal", Principal)
OPERATOR = Principal(None)


def new_key() -> tuple[str, str, bytes]:
    """(the key to show once, its lookup prefix, the hash to store)."""
    prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    key = f"{KEY_PREFIX}{prefix}_{secret}"
    return key, prefix, hashlib.sha256(key.encode()).digest()


# -- api_keys: this module is its one writer ---------------------------------------------------------------


async def store_key(pool: asyncpg.Pool, workspace_id: UUID, name: str) -> tuple[asyncpg.Record, str]:
    """A new key of the workspace: its stored row and the key itself (to show once; only its hash is kept)."""
    key, prefix, digest = new_key()
    row = await pool.fetchrow(
        """INSERT INTO api_keys (key_id, workspace_id, name, prefix, secret_hash) VALUES ($1, $2, $3, $4, $5)
           RETURNING key_id, workspace_id, name, created_at""",
        uuid4(), workspace_id, name, prefix, digest,
    )
    return row, key


async def revoke_key(pool: asyncpg.Pool, workspace_id: UUID, key_id: UUID) -> bool:
    """Refuse the key from now on (revoking twice keeps the first time); False: the workspace has no such key."""
    return bool(await pool.fetchval(
        """UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = $1 AND workspace_id = $2
           RETURNING true""", key_id, workspace_id,
    ))


async def _workspace_of_key(pool: asyncpg.Pool, key: str) -> UUID | None:
    prefix = key.removeprefix(KEY_PREFIX).partition("_")[0]
    row = await pool.fetchrow(
        """UPDATE api_keys SET last_used_at = now() WHERE prefix = $1 AND revoked_at IS NULL
           RETURNING workspace_id, secret_hash""",
        prefix,
    )
    if row is None or not hmac.compare_digest(hashlib.sha256(key.encode()).digest(), bytes(row["secret_hash"])):
        return None
    return row["workspace_id"]


def _unauthorized() -> web.HTTPException:
    return error(401, "unauthorized", "send Authorization: Bearer <admin token or workspace API key>",
                 headers={"WWW-Authenticate": 'Bearer realm="doorman-admin"'})


# What an operation declared ``workspace`` or ``operator`` may answer, and one declared ``operator`` too
# (openapi.py adds them to each, from the declaration), and the 404s below.
UNAUTHORIZED = {401: Response("Missing or wrong admin token.", Error,
                              {"WWW-Authenticate": '`Bearer realm="doorman-admin"`'})}
OPERATOR_ONLY = {403: Response("Only the operator's admin token may do this.", Error)}
NOT_FOUND_BOT = {404: ("No bot has this `bot_id` (or it belongs to another workspace).", Error)}
NOT_FOUND_WORKSPACE = {404: ("No workspace has this id (or it is not yours).", Error)}


def audience(request: web.Request) -> Auth:
    """Who may call the route the request matched, as declared. A request no route matched is answered 404 or
    405 whoever asks; a matched route declared with nothing (init_app refuses to start with one) is the
    operator's."""
    match = request.match_info
    if match.http_exception is not None:
        return "public"
    return audience_of(match.handler) or "operator"


async def admit(request: web.Request, auth: Auth) -> None:
    """Let the request through to a route declared ``auth``: 401 without a valid bearer, 403 for a workspace's
    key on an operator's route."""
    if auth == "public":
        return
    await _authenticate(request)
    if auth == "operator" and not principal(request).operator:
        raise error(403, "forbidden", "only the operator's admin token may do this")


def undeclared(app: web.Application) -> list[str]:
    """The app's routes declared without who may call them (none may be)."""
    return [f"{r.method} {r.resource.canonical if r.resource else '?'}" for r in app.router.routes()
            if audience_of(r.handler) is None]


async def _authenticate(request: web.Request) -> None:
    """Who calls the admin API (see :func:`principal`); 401 for anyone else."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise _unauthorized()
    operator_token = request.app[SETTINGS].admin_token.get_secret_value()
    # Header bytes that are not UTF-8 reach here as lone surrogates: compared as the bytes they were.
    if hmac.compare_digest(given.encode(errors="surrogateescape"), operator_token.encode()):
        request[PRINCIPAL] = OPERATOR
    elif (given.startswith(KEY_PREFIX) and given.isascii()  # keys are ASCII: anything else is no key
          and (workspace := await _workspace_of_key(request.app[POOL], given))):
        request[PRINCIPAL] = Principal(workspace)
    else:
        raise _unauthorized()


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


async def visible_bot(request: web.Request) -> UUID:
    """The path's bot id, if it exists and the caller may see it; else 404."""
    try:
        bot_id = UUID(request.match_info["bot_id"])
    except ValueError:
        raise error(404, "bot_not_found", "no bot has this bot_id") from None
    row = await request.app[POOL].fetchrow("SELECT workspace_id FROM bots WHERE bot_id = $1", bot_id)
    who = principal(request)
    if row is None or not (who.operator or row["workspace_id"] == who.workspace_id):
        raise error(404, "bot_not_found", "no bot has this bot_id")
    return bot_id


def visible_workspace(request: web.Request) -> UUID:
    """The path's workspace id, if the caller is the operator or that workspace; else 404."""
    try:
        workspace_id = UUID(request.match_info["workspace_id"])
    except ValueError:
        raise error(404, "workspace_not_found", "no workspace has this id") from None
    who = principal(request)
    if not (who.operator or who.workspace_id == workspace_id):
        raise error(404, "workspace_not_found", "no workspace has this id")
    return workspace_id
