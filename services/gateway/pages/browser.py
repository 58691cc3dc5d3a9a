"""What the gateway serves to browsers: the widget script, the admin page (and, under `doorman up`, the way
to the demo shop page)."""

from __future__ import annotations

from importlib import resources

from aiohttp import web
from yarl import URL

from shared.routes import Routes

from ..http_errors import error
from ..keys import SETTINGS

routes = Routes()
STATIC = resources.files("services.gateway.pages") / "static"

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


@routes.unlisted("GET", "/widget.js", auth="public")
async def widget_js(_: web.Request) -> web.Response:
    return _static("widget.js", cache="public, max-age=300", headers={"Access-Control-Allow-Origin": "*"})


@routes.unlisted("GET", "/widget.css", auth="public")
async def widget_css(_: web.Request) -> web.Response:
    return _static("widget.css", cache="public, max-age=300", headers={"Access-Control-Allow-Origin": "*"})


@routes.unlisted("GET", "/admin", auth="public")
async def admin_page(_: web.Request) -> web.Response:
    return _static("admin.html", headers={"Content-Security-Policy": PAGE_CSP, "Referrer-Policy": "no-referrer"})


@routes.unlisted("GET", "/admin/admin.js", auth="public")
async def admin_js(_: web.Request) -> web.Response:
    return _static("admin.js")


@routes.unlisted("GET", "/admin/admin.css", auth="public")
async def admin_css(_: web.Request) -> web.Response:
    return _static("admin.css")


@routes.unlisted("GET", "/favicon.ico", auth="public")
async def favicon(_: web.Request) -> web.Response:
    """The brand mark, for the admin page's tab (it links it) and any page a browser opens here."""
    return web.Response(body=(STATIC / "favicon.ico").read_bytes(), content_type="image/x-icon",
                        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"})


@routes.unlisted("GET", "/demo", auth="public")
async def demo_page(request: web.Request) -> web.Response:
    """The demo shop page is the demo customer API's (a business's own site, embedding the widget from here):
    sent there, with the query (``bot_id``, ``user``). The gateway calls no one to serve it."""
    demo_api = request.app[SETTINGS].demo_api_url
    if not demo_api:
        raise error(404, "demo_off", "the demo page runs under `doorman up` only")
    raise web.HTTPFound(URL(demo_api).with_path("/demo").with_query(request.query))
