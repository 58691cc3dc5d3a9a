"""``doorman up``: migrations, the three services and a demo customer API, for local use."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography.fernet import Fernet

from doorman.demo_api import HEADER_TOKEN, make_app
from doorman.migrate import migrate

DEV_ENV = Path(".doorman-dev.env")


def _dev_secrets() -> dict[str, str]:
    """Generated once and kept in .doorman-dev.env, so stored header tokens stay readable."""
    values: dict[str, str] = {}
    if DEV_ENV.exists():
        for line in DEV_ENV.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip()
    values.setdefault("DOORMAN_ADMIN_TOKEN", secrets.token_urlsafe(24))
    values.setdefault("DOORMAN_SECRET_KEY", Fernet.generate_key().decode())
    _save(values)
    return values


def _save(values: dict[str, str]) -> None:
    DEV_ENV.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    DEV_ENV.chmod(0o600)


async def wait_ready(url: str, alive: Callable[[], None], timeout: float = 30) -> None:
    """Until ``url`` answers 200 (``TimeoutError`` after ``timeout``); ``alive`` raises when a process
    behind it died. The benchmark waits for its processes with it too."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as http:
        while asyncio.get_running_loop().time() < deadline:
            alive()
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} did not become ready in {timeout:.0f} s")


async def _wait_ready(url: str, procs: list[asyncio.subprocess.Process]) -> None:
    def alive() -> None:
        if any(p.returncode is not None for p in procs):
            raise SystemExit("doorman up: a service exited during start-up (see its log above)")

    try:
        await wait_ready(url, alive)
    except TimeoutError as exc:
        raise SystemExit(f"doorman up: {exc}") from None


async def _demo_bot(base: str, admin_token: str, demo_url: str, known: str | None) -> str:
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with aiohttp.ClientSession(base, headers=headers) as http:
        if known:
            async with http.get(f"/v1/bots/{known}") as resp:
                if resp.status == 200:
                    return known
        async with http.post("/v1/bots", json={"name": "Demo bot"}) as resp:
            bot_id = (await resp.json())["bot_id"]
        settings = {
            "enabled": True, "auth_url": f"{demo_url}/auth", "header_token": HEADER_TOKEN,
            "identify_method": "email", "request_fields": ["user_id"],
            "domain_whitelist": {"enabled": False, "source": "manual", "domains": []},
        }
        async with http.put(f"/v1/bots/{bot_id}/custom-auth", json=settings) as resp:
            resp.raise_for_status()
    return bot_id


async def up(*, demo_port: int = 8090) -> None:
    dev = _dev_secrets()
    env = {
        **os.environ, **{k: v for k, v in dev.items() if k.startswith("DOORMAN_")},
        "DOORMAN_ENVIRONMENT": "development", "DOORMAN_ALLOW_PRIVATE_NETWORKS": "true", "DOORMAN_OUTBOUND_PORTS": "*",
        "DOORMAN_DEMO_API_URL": f"http://127.0.0.1:{demo_port}",
    }
    database_url = env.get("DOORMAN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/doorman")
    applied = await migrate(database_url)
    print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")

    port = env.get("DOORMAN_GATEWAY_PORT", "8080")
    base = f"http://127.0.0.1:{port}"
    demo = web.AppRunner(make_app(gateway_url=base), access_log=None)
    await demo.setup()
    await web.TCPSite(demo, "127.0.0.1", demo_port).start()
    demo_url = f"http://127.0.0.1:{demo_port}"

    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-m", "doorman.cli", service, env=env)
        for service in ("gateway", "verifier", "contacts")
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await _wait_ready(f"{base}/readyz", procs)
        bot_id = await _demo_bot(base, dev["DOORMAN_ADMIN_TOKEN"], demo_url, dev.get("DEMO_BOT_ID"))
        _save({**dev, "DEMO_BOT_ID": bot_id})
        print(_banner(base, demo_url, bot_id, dev["DOORMAN_ADMIN_TOKEN"]), flush=True)
        waiters = [asyncio.ensure_future(p.wait()) for p in procs]
        await asyncio.wait([asyncio.ensure_future(stop.wait()), *waiters], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        await asyncio.gather(*(p.wait() for p in procs))
        await demo.cleanup()


def _banner(base: str, demo_url: str, bot_id: str, admin_token: str) -> str:
    return f"""
Doorman is up.
  gateway            {base}
  demo customer API  {demo_url}  (Authentication URL {demo_url}/auth)
  admin token        {admin_token}   (also in {DEV_ENV})
  demo bot           {bot_id}   (identify by email, Custom Authentication on)

In a browser:
  {base}/demo?bot_id={bot_id}            a shop page with the widget (signed in as alice; &user=bob;
                                         served by the demo customer API, as a business's site would be)
  {base}/admin                           the admin page (paste the admin token)

With curl:
  TOKEN=$(curl -s -X POST {demo_url}/tokens -d '{{"user": "alice"}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  SID=$(curl -s -X POST {base}/v1/widget/sessions -H 'Content-Type: application/json' \\
        -d '{{"bot_id": "{bot_id}", "access_token": "'$TOKEN'"}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["session_id"])')
  curl -N {base}/v1/widget/sessions/$SID/events      # the outcome, as the widget sees it
  curl -s {base}/v1/widget/sessions/$SID              # or read it any time

Ctrl-C stops everything.
"""
