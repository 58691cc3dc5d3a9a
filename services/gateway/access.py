"""Who is calling the admin API, and what they may reach.

* The operator: ``Authorization: Bearer $DOORMAN_ADMIN_TOKEN`` (the bootstrap key), compared in
  constant time. Sees and changes everything, and creates workspaces and their keys.
* A workspace: ``Authorization: Bearer dk_<prefix>_<secret>``, a key made by
  ``POST /v1/workspaces/{id}/api-keys``. Only its SHA-256 is stored. It sees and changes only
  its workspace's bots, their settings and contacts; anything else is 404, as if it did not exist.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from uuid import UUID

import asyncpg
from aiohttp import web

from shared.routes import Response

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


ADMIN_PATHS = ("/v1/bots", "/v1/workspaces")  # the admin API: every route under these needs a bearer
# What every operation under ADMIN_PATHS may answer (openapi.py adds it to each), and the 403 and 404s below.
UNAUTHORIZED = {401: Response("Missing or wrong admin token.", Error,
                              {"WWW-Authenticate": '`Bearer realm="doorman-admin"`'})}
OPERATOR_ONLY = {403: ("Only the operator's admin token may do this.", Error)}
NOT_FOUND_BOT = {404: ("No bot has this `bot_id` (or it belongs to another workspace).", Error)}
NOT_FOUND_WORKSPACE = {404: ("No workspace has this id (or it is not yours).", Error)}


async def authenticate(request: web.Request) -> None:
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


def require_operator(request: web.Request) -> None:
    if not principal(request).operator:
        raise error(403, "forbidden", "only the operator's admin token may do this")


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
