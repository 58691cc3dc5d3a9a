"""A demo customer backend: what a business runs behind its Authentication URL.

``POST /tokens {"user": "alice"}`` issues an access token the way a business's
login would; ``POST /auth`` is the Authentication URL Doorman calls. Tokens are
HMAC-signed, so the demo needs no storage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from aiohttp import web

HEADER_TOKEN = "Bearer demo-header-token"
USERS: dict[str, dict[str, Any]] = {
    "alice": {"id": "1001", "name": "Alice Nguyen", "email": "Alice@Example.com", "phone_number": "0912345678",
              "country_code": "+84", "label": "VIP", "metadata": {"plan": "pro", "order_id": "ORD-1001"}},
    "bob": {"id": "1002", "name": "Bob Tran", "email": "bob@example.com", "phone_number": "0987654321",
            "country_code": "+84", "metadata": {"plan": "free"}},
}


def _sign(user: str, key: bytes) -> str:
    mac = hmac.new(key, user.encode(), hashlib.sha256).digest()
    return f"{user}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def make_app(key: bytes = b"demo-signing-key") -> web.Application:
    app = web.Application()

    async def issue(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        user = str(body.get("user", "alice"))
        if user not in USERS:
            return web.json_response({"error": f"unknown demo user; try one of {sorted(USERS)}"}, status=404)
        return web.json_response({"access_token": _sign(user, key), "user": user})

    async def authenticate(request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.headers.get("Authorization", ""), HEADER_TOKEN):
            return web.json_response({"status": False, "message": "bad header token"}, status=401)
        body = await request.json()
        token = str(body.get("access_token", ""))
        user = token.partition(".")[0]
        if user not in USERS or not hmac.compare_digest(token, _sign(user, key)):
            return web.json_response({"status": False, "message": "unknown or expired token"})
        return web.json_response({"status": True, "message": "ok", "data": USERS[user]})

    app.add_routes([web.post("/tokens", issue), web.post("/auth", authenticate)])
    return app
