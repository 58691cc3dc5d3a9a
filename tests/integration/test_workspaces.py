"""Workspaces: a key reaches only its own workspace's bots and contacts; keys are hashed at rest."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.conftest import Stack, admin_headers, verify_once
from tests.fake_customer import FakeCustomerAPI, verified


async def call(stack: Stack, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else admin_headers()
    async with stack.http.request(method, f"{stack.gateway.url}{path}", json=body, headers=headers) as resp:
        return resp.status, (await resp.json() if resp.content_type == "application/json" else None)


async def workspace_with_key(stack: Stack, name: str) -> tuple[str, str]:
    status, ws = await call(stack, "POST", "/v1/workspaces", None, {"name": name})
    assert status == 201
    status, key = await call(stack, "POST", f"/v1/workspaces/{ws['workspace_id']}/api-keys", None, {"name": "ci"})
    assert status == 201 and key["api_key"].startswith("dk_")
    return ws["workspace_id"], key["api_key"]


@pytest.fixture
async def two_workspaces(stack: Stack, customer_api: FakeCustomerAPI) -> dict[str, Any]:
    (ws_a, key_a), (ws_b, key_b) = [await workspace_with_key(stack, n) for n in ("Shop A", "Shop B")]
    bots = {}
    for ws, key in ((ws_a, key_a), (ws_b, key_b)):
        status, bot = await call(stack, "POST", "/v1/bots", key, {"name": f"bot of {ws}"})
        assert status == 201 and bot["workspace_id"] == ws
        url = customer_api.endpoint(verified(id=f"visitor-of-{ws}"))
        assert (await call(stack, "PUT", f"/v1/bots/{bot['bot_id']}/custom-auth", key, {"enabled": True, "auth_url": url}))[0] == 200
        outcome = await verify_once(stack, bot["bot_id"], access_token="t")
        bots[ws] = (bot["bot_id"], outcome["contact"]["contact_id"])
    return {"a": (ws_a, key_a, *bots[ws_a]), "b": (ws_b, key_b, *bots[ws_b])}


async def test_a_key_reaches_its_own_workspace(stack: Stack, two_workspaces: dict[str, Any]) -> None:
    ws_a, key_a, bot_a, contact_a = two_workspaces["a"]
    for path in (f"/v1/bots/{bot_a}", f"/v1/bots/{bot_a}/custom-auth", f"/v1/bots/{bot_a}/contacts",
                 f"/v1/bots/{bot_a}/contacts/{contact_a}", f"/v1/bots/{bot_a}/auth-events",
                 f"/v1/workspaces/{ws_a}/api-keys"):
        assert (await call(stack, "GET", path, key_a))[0] == 200, path
    status, page = await call(stack, "GET", "/v1/bots", key_a)
    assert status == 200 and {b["bot_id"] for b in page["bots"]} == {bot_a}


async def test_cross_workspace_access_is_refused_everywhere(stack: Stack, two_workspaces: dict[str, Any]) -> None:
    _, key_a, _, _ = two_workspaces["a"]
    ws_b, _, bot_b, contact_b = two_workspaces["b"]
    attempts = [
        ("GET", f"/v1/bots/{bot_b}", None), ("GET", f"/v1/bots/{bot_b}/custom-auth", None),
        ("PUT", f"/v1/bots/{bot_b}/custom-auth", {"enabled": False}),
        ("POST", f"/v1/bots/{bot_b}/custom-auth/test", {"access_token": "t"}),
        ("GET", f"/v1/bots/{bot_b}/contacts", None), ("GET", f"/v1/bots/{bot_b}/contacts/{contact_b}", None),
        ("GET", f"/v1/bots/{bot_b}/auth-events", None),
        ("POST", "/v1/bots", {"name": "sneaky", "workspace_id": ws_b}),
        ("POST", f"/v1/workspaces/{ws_b}/api-keys", {"name": "sneaky"}),
        ("GET", f"/v1/workspaces/{ws_b}/api-keys", None),
    ]
    for method, path, body in attempts:
        status, error = await call(stack, method, path, key_a, body)
        assert status == 404, (method, path, status, error)  # as if it did not exist
    for method, path in (("POST", "/v1/workspaces"), ("GET", "/v1/workspaces")):
        assert (await call(stack, method, path, key_a, {"name": "x"} if method == "POST" else None))[0] == 403
    # Nothing of B's changed or leaked.
    status, settings = await call(stack, "GET", f"/v1/bots/{bot_b}/custom-auth", None)
    assert status == 200 and settings["enabled"] is True
    assert await stack.pool.fetchval("SELECT count(*) FROM bots WHERE name = 'sneaky'") == 0


async def test_another_workspaces_token_secret_cannot_be_deleted(stack: Stack, two_workspaces: dict[str, Any]) -> None:
    _, key_a, _, _ = two_workspaces["a"]
    _, key_b, bot_b, _ = two_workspaces["b"]
    status, made = await call(stack, "POST", f"/v1/bots/{bot_b}/custom-auth/token-secret", key_b)
    assert status == 201
    path = f"/v1/bots/{bot_b}/custom-auth/token-secret/{made['kid']}"

    status, error = await call(stack, "DELETE", path, key_a)

    assert status == 404 and error["error"]["code"] == "bot_not_found"  # as if it did not exist
    status, settings = await call(stack, "GET", f"/v1/bots/{bot_b}/custom-auth", key_b)
    assert settings["signed_token"]["secret_kid"] == made["kid"]
    assert (await call(stack, "DELETE", path, key_b))[0] == 204


async def test_keys_are_hashed_at_rest_and_revocable(stack: Stack) -> None:
    ws, key = await workspace_with_key(stack, "Shop C")
    rows = await stack.pool.fetch("SELECT * FROM api_keys WHERE workspace_id = $1", ws)
    assert len(rows) == 1 and key not in str(dict(rows[0]))
    assert bytes(rows[0]["secret_hash"]) == hashlib.sha256(key.encode()).digest()

    assert (await call(stack, "GET", "/v1/bots", key))[0] == 200
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")  # right prefix, wrong secret
    assert (await call(stack, "GET", "/v1/bots", forged))[0] == 401
    status, keys = await call(stack, "GET", f"/v1/workspaces/{ws}/api-keys", key)
    assert "api_key" not in keys["api_keys"][0] and keys["api_keys"][0]["last_used_at"] is not None
    key_id = keys["api_keys"][0]["key_id"]
    assert (await call(stack, "DELETE", f"/v1/workspaces/{ws}/api-keys/{key_id}", key))[0] == 204
    assert (await call(stack, "GET", "/v1/bots", key))[0] == 401


async def test_operator_sees_every_workspace(stack: Stack, two_workspaces: dict[str, Any]) -> None:
    status, page = await call(stack, "GET", "/v1/bots?limit=100", None)
    ids = {b["bot_id"] for b in page["bots"]}
    assert {two_workspaces["a"][2], two_workspaces["b"][2]} <= ids
