"""Workspaces and their API keys (the operator makes workspaces; keys are shown once)."""

from __future__ import annotations

from uuid import UUID, uuid4

from aiohttp import web

from shared.routes import Link, Response, Routes, links_to

from ..access import NOT_FOUND_WORKSPACE, revoke_key, store_key, visible_workspace
from ..http_errors import BODY_ERRORS, Error, error, json_response, read_model
from ..keys import POOL
from ..schemas import NewApiKey, NewWorkspace
from .bots import ADMIN_BODY_MAX_BYTES
from .views import ApiKey, ApiKeyCreated, ApiKeyList, Workspace, WorkspaceList

routes = Routes()


@routes.post("/v1/workspaces", "createWorkspace", "Create a workspace (operator only)",
             auth="operator", tag="workspaces", body=NewWorkspace, responses={
    201: Response("The new workspace.", Workspace, links={
        **links_to("createApiKey", "listApiKeys", workspace_id="$response.body#/workspace_id"),
        "createBot": Link("createBot", body={"workspace_id": "$response.body#/workspace_id"})}),
    **BODY_ERRORS,
})
async def create_workspace(request: web.Request) -> web.Response:
    body = await read_model(request, NewWorkspace, max_bytes=ADMIN_BODY_MAX_BYTES)
    row = await request.app[POOL].fetchrow(
        "INSERT INTO workspaces (workspace_id, name) VALUES ($1, $2) RETURNING workspace_id, name, created_at",
        uuid4(), body.name,
    )
    return json_response(Workspace(**row), status=201)


@routes.get("/v1/workspaces", "listWorkspaces", "List workspaces (operator only)", auth="operator", tag="workspaces",
            responses={200: ("Every workspace.", WorkspaceList)})
async def list_workspaces(request: web.Request) -> web.Response:
    rows = await request.app[POOL].fetch("SELECT workspace_id, name, created_at FROM workspaces ORDER BY created_at")
    return json_response(WorkspaceList(workspaces=[Workspace(**r) for r in rows]))


@routes.post("/v1/workspaces/{workspace_id}/api-keys", "createApiKey", "Create a workspace API key",
             auth="workspace", tag="workspaces", body=NewApiKey,
             responses={201: Response("The key, shown once.", ApiKeyCreated, links=links_to(
                 "revokeApiKey", workspace_id="$request.path.workspace_id", key_id="$response.body#/key_id")),
                 **NOT_FOUND_WORKSPACE, **BODY_ERRORS})
async def create_api_key(request: web.Request) -> web.Response:
    workspace_id = visible_workspace(request)
    body = await read_model(request, NewApiKey, max_bytes=ADMIN_BODY_MAX_BYTES)
    pool = request.app[POOL]
    if await pool.fetchval("SELECT true FROM workspaces WHERE workspace_id = $1", workspace_id) is None:
        raise error(404, "workspace_not_found", "no workspace has this id")
    row, key = await store_key(pool, workspace_id, body.name)
    return json_response(ApiKeyCreated(**row, api_key=key), status=201)  # the only time it is shown


@routes.get("/v1/workspaces/{workspace_id}/api-keys", "listApiKeys", "List a workspace's API keys",
            auth="workspace", tag="workspaces",
            responses={200: ("The keys (never their secrets).", ApiKeyList), **NOT_FOUND_WORKSPACE})
async def list_api_keys(request: web.Request) -> web.Response:
    workspace_id = visible_workspace(request)
    rows = await request.app[POOL].fetch(
        """SELECT key_id, workspace_id, name, created_at, last_used_at, revoked_at FROM api_keys
           WHERE workspace_id = $1 ORDER BY created_at""", workspace_id,
    )
    return json_response(ApiKeyList(api_keys=[ApiKey(**r) for r in rows]))


@routes.delete("/v1/workspaces/{workspace_id}/api-keys/{key_id}", "revokeApiKey", "Revoke an API key",
               auth="workspace", tag="workspaces", responses={204: ("Revoked: the key is refused from now on.", None),
                                            404: ("No such workspace or key (or not yours).", Error)})
async def revoke_api_key(request: web.Request) -> web.Response:
    workspace_id = visible_workspace(request)
    try:
        key_id = UUID(request.match_info["key_id"])
    except ValueError:
        raise error(404, "key_not_found", "no API key has this id") from None
    if not await revoke_key(request.app[POOL], workspace_id, key_id):
        raise error(404, "key_not_found", "no API key has this id")
    return web.Response(status=204)
