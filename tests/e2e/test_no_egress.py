"""The gateway makes no outbound calls (docs/rules.md, "The internet-facing gateway makes no outbound calls"; docs/conventions.md 16), proven on the network, not by reading code.

The gateway runs as a real process (``doorman gateway``) in a network namespace of its own: a loopback and a
veth link to the host, on which the host forwards only the broker's and the database's ports. The verifier
runs outside, in the host's namespace, as do the business (on the host's 127.0.0.1) and this test. The
Testing panel still shows the business's answer (the verifier called it), and Discover the business's OpenID
Provider's discovery document (the verifier read it), while from inside the gateway's namespace the business cannot
be reached at all: had the gateway called it, the panel would show a connection failure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from services.verifier.main import running as verifier_running
from services.verifier.settings import VerifierSettings
from tests.conftest import admin_headers, create_bot, service_config, service_env, wait_ready
from tests.fake_customer import FakeCustomerAPI, verified
from tests.integration.test_oidc import fake_issuer

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 (ip netns) to isolate the gateway")

BROKER_PORT, DATABASE_PORT = 5672, 5432  # the machine's RabbitMQ and PostgreSQL, on 127.0.0.1
GATEWAY_PORT = 8080  # inside the namespace: no one else's


async def _ip(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec("ip", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, f"ip {' '.join(args)}: {out.decode()}"


@dataclass(frozen=True)
class Namespace:
    name: str
    host_address: str  # the host's end of the link
    address: str  # the namespace's end

    def command(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]


@asynccontextmanager
async def isolated_namespace() -> AsyncIterator[Namespace]:
    """A network namespace whose only link is a veth pair to the host (a /30 of its own): no default
    route, no other interface but its loopback."""
    tag = secrets.token_hex(3)
    subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(256)}"
    ns = Namespace(f"doorman-gw-{tag}", f"{subnet}.1", f"{subnet}.2")
    host_link, ns_link = f"dmh{tag}", f"dmn{tag}"
    await _ip("netns", "add", ns.name)
    try:
        await _ip("link", "add", host_link, "type", "veth", "peer", "name", ns_link)
        await _ip("link", "set", ns_link, "netns", ns.name)
        await _ip("addr", "add", f"{ns.host_address}/30", "dev", host_link)
        await _ip("link", "set", host_link, "up")
        await _ip("-n", ns.name, "addr", "add", f"{ns.address}/30", "dev", ns_link)
        await _ip("-n", ns.name, "link", "set", ns_link, "up")
        await _ip("-n", ns.name, "link", "set", "lo", "up")
        yield ns
    finally:
        await _ip("netns", "del", ns.name)  # takes the veth pair with it


@asynccontextmanager
async def forwarding(host: str, port: int) -> AsyncIterator[None]:
    """Listen on ``host:port`` and pass each connection to the same port on the host's 127.0.0.1."""
    pipes: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        for task in (asyncio.create_task(pipe(reader, up_writer)), asyncio.create_task(pipe(up_reader, writer))):
            pipes.add(task)
            task.add_done_callback(pipes.discard)

    server = await asyncio.start_server(connected, host, port)
    try:
        yield
    finally:
        server.close()
        for task in list(pipes):
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)


async def reaches(ns: Namespace, host: str, port: int) -> bool:
    """Whether a process in ``ns`` can open a TCP connection to ``host:port``."""
    probe = f"import socket; socket.create_connection(({host!r}, {port}), timeout=3).close()"
    proc = await asyncio.create_subprocess_exec(*ns.command(sys.executable, "-c", probe),
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait() == 0


@asynccontextmanager
async def gateway_process(ns: Namespace, config: dict[str, Any], log: Path) -> AsyncIterator[str]:
    """``doorman gateway`` inside ``ns``, reaching the broker and the database through the host's forwarders."""
    env = service_env({
        **config, "gateway_host": ns.address, "gateway_port": GATEWAY_PORT,
        "amqp_url": str(URL(config["amqp_url"]).with_host(ns.host_address)),
        "database_url": str(URL(config["database_url"]).with_host(ns.host_address)),
    })
    proc = await asyncio.create_subprocess_exec(*ns.command(sys.executable, "-m", "doorman.cli", "gateway"), env=env,
                                                stdout=log.open("wb"), stderr=asyncio.subprocess.STDOUT)
    try:
        url = f"http://{ns.address}:{GATEWAY_PORT}"
        await wait_ready(url)
        yield url
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await proc.wait()


async def test_the_gateway_reaches_no_business_and_the_panel_still_answers(
        database_url: str, fresh_prefix: Callable[[], str], secret_key: str, customer_api: FakeCustomerAPI,
        tmp_path: Path) -> None:
    config = service_config(database_url, fresh_prefix(), secret_key)
    url = customer_api.endpoint(verified(id="answered-through-the-verifier"))
    business = URL(url)
    async with AsyncExitStack() as es:
        ns = await es.enter_async_context(isolated_namespace())
        await es.enter_async_context(forwarding(ns.host_address, BROKER_PORT))
        await es.enter_async_context(forwarding(ns.host_address, DATABASE_PORT))
        await es.enter_async_context(verifier_running(VerifierSettings(**config)))
        gateway = await es.enter_async_context(gateway_process(ns, config, tmp_path / "gateway.log"))
        http = await es.enter_async_context(aiohttp.ClientSession())

        bot_id = await create_bot(http, gateway, enabled=True, auth_url=url)
        async with http.post(f"{gateway}/v1/bots/{bot_id}/custom-auth/test", json={"access_token": "t"},
                             headers=admin_headers()) as resp:
            assert resp.status == 200, await resp.text()
            result = await resp.json()

        assert result["ok"] is True, result["failure"]
        assert result["identity"]["identifier"] == "answered-through-the-verifier"
        assert len(customer_api.received(url)) == 1

        issuer = fake_issuer(customer_api, userinfo_endpoint=f"{customer_api.url}/userinfo")
        async with http.post(f"{gateway}/v1/bots/{bot_id}/custom-auth/oidc/discover", json={"issuer": issuer},
                             headers=admin_headers()) as resp:
            assert resp.status == 200, await resp.text()
            discovered = await resp.json()
        assert discovered["ok"] is True and discovered["provider"]["issuer"] == issuer, discovered
        # From where the gateway runs, the business is nowhere: not on the loopback, not through the host's
        # end of the link. The broker is (the probe itself works).
        assert await reaches(ns, ns.host_address, BROKER_PORT)
        assert not await reaches(ns, business.host or "", business.port or 0)
        assert not await reaches(ns, ns.host_address, business.port or 0)
