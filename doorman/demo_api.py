"""A demo customer backend: what a business runs behind its Authentication URL.

``POST /tokens {"user": "alice"}`` issues an access token the way a business's
login would; ``POST /auth`` is the Authentication URL Doorman calls. Tokens are
HMAC-signed, so the demo needs no storage. ``GET /demo?bot_id=...&user=alice`` is the
business's shop page, signed in, embedding the widget from the gateway (given as ``gateway_url``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
from importlib import resources
from typing import Any
from uuid import UUID

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


DEMO_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo shop: Doorman widget</title>
<link rel="icon" href="{gateway}/favicon.ico"><link rel="stylesheet" href="/demo.css"></head>
<body><header><h1>Demo shop</h1><p>Signed in as <b>{user}</b> (a token from the demo customer API).
Open the chat bubble in the corner.</p></header>
<script src="{gateway}/widget.js" data-bot-id="{bot_id}" data-token="{token}" data-lang="en"></script>
</body></html>
"""


def make_app(key: bytes = b"demo-signing-key", *, gateway_url: str = "http://127.0.0.1:8080") -> web.Application:
    app = web.Application()
    # The page loads nothing inline: its own stylesheet, and the widget's script, styles and API from the gateway.
    page_csp = (f"default-src 'none'; script-src {gateway_url}; style-src 'self' {gateway_url}; "
                f"connect-src {gateway_url}; img-src 'self' {gateway_url} data: https:; base-uri 'none'; frame-ancestors 'none'")

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

    async def demo_page(request: web.Request) -> web.Response:
        """The shop page as a business would have it: its visitor signed in, the widget embedded."""
        try:
            bot_id = UUID(request.query.get("bot_id", ""))
        except ValueError:
            return web.Response(status=422, text="pass ?bot_id=<bot id>")
        user = request.query.get("user", "alice")
        if user not in USERS:
            return web.Response(status=404, text=f"unknown demo user; try one of {sorted(USERS)}")
        page = DEMO_PAGE.format(user=html.escape(user), gateway=html.escape(gateway_url), bot_id=bot_id,
                                token=html.escape(_sign(user, key)))
        return web.Response(text=page, content_type="text/html",
                            headers={"Content-Security-Policy": page_csp, "Cache-Control": "no-store"})

    async def demo_css(_: web.Request) -> web.Response:
        return web.Response(body=(resources.files("doorman") / "demo.css").read_bytes(), content_type="text/css",
                            charset="utf-8")

    app.add_routes([web.post("/tokens", issue), web.post("/auth", authenticate), web.get("/demo", demo_page),
                    web.get("/demo.css", demo_css)])
    return app
