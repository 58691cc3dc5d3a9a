"""`doorman up`'s demo shop page is the demo customer API's (a business's own site), embedding the widget from
the gateway; the gateway's /demo only sends the browser there (it calls no one to serve it)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from uuid import uuid4

from aiohttp import web

from doorman.demo_api import make_app
from tests.conftest import Stack, start_gateway


async def test_the_demo_page_is_served_by_the_demo_business(stack: Stack) -> None:
    async with AsyncExitStack() as es:
        runner = web.AppRunner(make_app(gateway_url="http://gateway.test"), access_log=None)
        await runner.setup()
        es.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        demo_api = f"http://127.0.0.1:{runner.addresses[0][1]}"
        gateway = await start_gateway(es, {**stack.config, "demo_api_url": demo_api})
        bot_id = str(uuid4())

        async with stack.http.get(f"{gateway.url}/demo", params={"bot_id": bot_id, "user": "bob"},
                                  allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"] == f"{demo_api}/demo?bot_id={bot_id}&user=bob"
        async with stack.http.get(f"{gateway.url}/demo", params={"bot_id": bot_id, "user": "bob"}) as resp:
            page = await resp.text()
            csp = resp.headers["Content-Security-Policy"]
        assert f'<script src="http://gateway.test/widget.js" data-bot-id="{bot_id}" data-token="bob.' in page
        assert "script-src http://gateway.test;" in csp and "connect-src http://gateway.test;" in csp
        async with stack.http.get(f"{demo_api}/demo.css") as resp:
            assert resp.status == 200 and resp.content_type == "text/css"
        async with stack.http.get(f"{stack.gateway.url}/demo") as resp:  # not under `doorman up`
            assert resp.status == 404
