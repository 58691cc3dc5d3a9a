"""A burst of new visitors is accepted at once, on uvloop as in production (services/gateway/listening.py).

Every widget opens a new connection. uvloop's own listener accepts one connection per turn of the
event loop, so a burst waited in the kernel's accept queue for as many turns as it had
connections: under load, seconds without an answer, where admission control cannot see it. The
gateway here is a second one on the test stack's database and broker, run on a uvloop loop of its
own (a thread), so the stack's workers go on meanwhile. Turns are counted, not seconds: the
connections are made while that loop is held, then each turn of it is counted until every
connection reached the gateway's request handler.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable

import uvloop
from aiohttp import web

from services.gateway.app import SERVER_OPTIONS, init_app
from services.gateway.listening import AcceptingSite
from services.gateway.settings import GatewaySettings
from tests.conftest import Stack, create_bot

BURST = 200
Site = Callable[[web.AppRunner], web.BaseSite]


def _open_request(bot_id: str) -> bytes:
    body = json.dumps({"bot_id": bot_id, "email": "burst@example.com"}).encode()
    return (b"POST /v1/widget/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


async def _burst(config: dict, bot_id: str, site: Site) -> tuple[int, list[bytes]]:
    """(turns of the loop until all BURST connections reached the handler, each one's status line)."""
    loop = asyncio.get_running_loop()
    runner = web.AppRunner(init_app(GatewaySettings(**{**config, "gc_young_threshold": 0})), access_log=None,
                           **SERVER_OPTIONS)
    await runner.setup()
    clients: list[socket.socket] = []
    try:
        await site(runner).start()
        port = runner.addresses[0][1]
        assert runner.server is not None
        # While this coroutine holds the loop, the kernel completes every handshake into the accept queue.
        request = _open_request(bot_id)
        for _ in range(BURST):
            client = socket.create_connection(("127.0.0.1", port))
            client.sendall(request)
            client.setblocking(False)
            clients.append(client)
        turns = 0
        while len(runner.server.connections) < BURST and turns < 4 * BURST:
            await asyncio.sleep(0)  # one turn
            turns += 1

        async def answer(client: socket.socket) -> bytes:
            received = b""
            while chunk := await loop.sock_recv(client, 65536):
                received += chunk
            return received.split(b"\r\n", 1)[0]

        return turns, await asyncio.wait_for(asyncio.gather(*(answer(c) for c in clients)), 60)
    finally:
        for client in clients:
            client.close()
        await runner.cleanup()


def _on_uvloop(config: dict, bot_id: str, site: Site) -> tuple[int, list[bytes]]:
    return uvloop.run(_burst(config, bot_id, site))


async def test_a_burst_of_new_visitors_reaches_the_gateway_within_a_few_turns(stack: Stack) -> None:
    bot_id = await create_bot(stack.http, stack.gateway.url)
    turns, statuses = await asyncio.to_thread(
        _on_uvloop, stack.config, bot_id, lambda runner: AcceptingSite(runner, "127.0.0.1", 0, backlog=4096))
    assert turns <= 4, f"{BURST} new connections took {turns} turns of the loop to reach the gateway"
    assert statuses == [b"HTTP/1.1 202 Accepted"] * BURST


async def test_uvloops_own_listener_takes_a_turn_per_connection(stack: Stack) -> None:
    """Why the gateway has its own listener: the same burst through aiohttp's TCPSite on uvloop. If this
    fails, uvloop accepts in bulk again and :class:`AcceptingSite` may no longer be needed."""
    bot_id = await create_bot(stack.http, stack.gateway.url)
    turns, statuses = await asyncio.to_thread(
        _on_uvloop, stack.config, bot_id, lambda runner: web.TCPSite(runner, "127.0.0.1", 0, backlog=4096))
    assert turns >= BURST // 2, f"{BURST} new connections took only {turns} turns on uvloop's listener"
    assert statuses == [b"HTTP/1.1 202 Accepted"] * BURST


SERVE_WITH_FEW_DESCRIPTORS = """
import asyncio, os, resource, sys
import structlog, uvloop
from aiohttp import web
from services.gateway.listening import AcceptingSite
from shared.logging import configure

async def main():
    configure("info", True)
    app = web.Application()
    app.router.add_get("/", lambda request: web.Response(text="ok"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await AcceptingSite(runner, "127.0.0.1", 0, backlog=512).start()
    structlog.get_logger("test").info("serving")  # as a gateway has logged by now (and imported what that needs)
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1 + 8, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()  # until the test terminates it

uvloop.run(main())
"""


async def test_connections_wait_while_the_gateway_is_out_of_descriptors_and_are_answered() -> None:
    """Out of file descriptors, the listener stops accepting for a moment (logged) and the connections
    wait in the kernel's queue; as answered ones close, the rest are accepted and answered: none is dropped."""
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVE_WITH_FEW_DESCRIPTORS, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        port = int(await asyncio.wait_for(proc.stdout.readline(), 30))

        async def fetch() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = await reader.read()
            writer.close()
            return answer.split(b"\r\n", 1)[0]

        statuses = await asyncio.wait_for(asyncio.gather(*(fetch() for _ in range(40))), 60)
        assert statuses == [b"HTTP/1.1 200 OK"] * 40
    finally:
        proc.terminate()
        _, err = await proc.communicate()
    assert b"accepting connections paused" in err, err.decode()[-2000:]
