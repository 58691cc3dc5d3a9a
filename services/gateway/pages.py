"""What the gateway serves to browsers: the widget script, the admin page, the demo host page."""

from __future__ import annotations

import html
import json
from importlib import resources
from uuid import UUID

from aiohttp import web

from .http_errors import error
from .keys import HTTP, SETTINGS

routes = web.RouteTableDef()
STATIC = resources.files("services.gateway") / "static"

# The admin and demo pages load nothing but this origin's files: no inline script or style.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


def _static(name: str, *, cache: str = "no-cache", headers: dict[str, str] | None = None) -> web.Response:
    body = (STATIC / name).read_bytes()
    content_type = CONTENT_TYPES[name[name.rindex("."):]]
    return web.Response(body=body, content_type=content_type, charset="utf-8",
                        headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff", **(headers or {})})


@routes.get("/widget.js")
async def widget_js(_: web.Request) -> web.Response:
    return _static("widget.js", cache="public, max-age=300", headers={"Access-Control-Allow-Origin": "*"})


@routes.get("/widget.css")
async def widget_css(_: web.Request) -> web.Response:
    return _static("widget.css", cache="public, max-age=300", headers={"Access-Control-Allow-Origin": "*"})


@routes.get("/admin")
async def admin_page(_: web.Request) -> web.Response:
    return _static("admin.html", headers={"Content-Security-Policy": PAGE_CSP, "Referrer-Policy": "no-referrer"})


@routes.get("/admin/admin.js")
async def admin_js(_: web.Request) -> web.Response:
    return _static("admin.js")


@routes.get("/admin/admin.css")
async def admin_css(_: web.Request) -> web.Response:
    return _static("admin.css")


DEMO_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo shop: Doorman widget</title>
<link rel="stylesheet" href="/demo.css"></head>
<body><header><h1>Demo shop</h1><p>Signed in as <b>{user}</b> (a token from the demo customer API).
Open the chat bubble in the corner.</p></header>
<script src="/widget.js" data-bot-id="{bot_id}" data-token="{token}" data-lang="en"></script>
</body></html>
"""


@routes.get("/demo")
async def demo_page(request: web.Request) -> web.Response:
    """A host page as a business would have it, signed in through the demo customer API."""
    demo_api = request.app[SETTINGS].demo_api_url
    if not demo_api:
        raise error(404, "demo_off", "the demo page runs under `doorman up` only")
    try:
        bot_id = UUID(request.query.get("bot_id", ""))
    except ValueError:
        raise error(422, "invalid_query", "pass ?bot_id=<bot id>", fields=[{"field": "bot_id", "message": "not a bot id"}]) from None
    user = request.query.get("user", "alice")
    answer = await request.app[HTTP].request("POST", f"{demo_api}/tokens", headers={}, json={"user": user})
    if answer.status != 200:
        raise error(404, "unknown_user", f"the demo customer API has no user {user!r}")
    token = json.loads(answer.body)["access_token"]
    page = DEMO_PAGE.format(user=html.escape(user), bot_id=html.escape(str(bot_id)), token=html.escape(token))
    return web.Response(text=page, content_type="text/html",
                        headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store"})


@routes.get("/demo.css")
async def demo_css(_: web.Request) -> web.Response:
    return _static("demo.css")
