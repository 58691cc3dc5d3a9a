"""The gateway's listening socket: every waiting connection is accepted each time it is readable.

Each visitor's widget is a new connection, and so is each stream or poll a mobile app or a
server-side renderer opens beside its POST. uvloop's listener (libuv 1.45 and later, `libuv#3696
<https://github.com/libuv/libuv/pull/3696>`_) accepts *one* connection per turn of the event loop; a
turn of a busy gateway lasts milliseconds, so under load new connections waited in the kernel's
accept queue for seconds (measured: 4-6 s at twice the saturation, while requests on open
connections were answered in 0.2 s), where admission control cannot see them and the visitor gets
no answer, not even ``busy``. :class:`AcceptingSite` accepts as asyncio's own loop does: every
connection waiting (at most ``backlog``) each time the socket is readable, each handed to aiohttp's
request handler with ``loop.connect_accepted_socket``. :func:`serve` runs the gateway on it until
SIGTERM or SIGINT, then shuts down as ``web.run_app`` would.
"""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger("doorman.gateway.listening")

# accept() errors that say the process (or the machine) is out of something: stop accepting a moment,
# as asyncio's loop does, instead of spinning on a socket that stays readable.
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
RETRY_SECONDS = 1.0


class _Listener:
    """What aiohttp's runner asks of a site's server (``sockets``, ``close``), over sockets whose
    readiness this site handles itself."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sockets: list[socket.socket], backlog: int,
                 protocol_factory: Any) -> None:
        self.sockets = sockets
        self._loop = loop
        self._backlog = backlog
        self._factory = protocol_factory
        self._connecting: set[asyncio.Task[Any]] = set()
        self._closed = False
        for sock in sockets:
            self._listen(sock)

    def _listen(self, sock: socket.socket) -> None:
        self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(self._backlog):
            try:
                conn, _address = sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # none left waiting
            except ConnectionAbortedError:
                continue  # the client gave up while it waited: take the next
            except OSError as exc:
                if exc.errno not in _EXHAUSTED:
                    raise
                log.error("accepting connections paused", error=errno.errorcode.get(exc.errno, str(exc.errno)),
                          seconds=RETRY_SECONDS)
                self._loop.remove_reader(sock.fileno())
                self._loop.call_later(RETRY_SECONDS, self._resume, sock)
                return
            conn.setblocking(False)
            task = self._loop.create_task(self._connect(conn))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn)
        except OSError:  # reset before its transport was made: nothing to answer
            conn.close()

    def _resume(self, sock: socket.socket) -> None:
        if not self._closed:
            self._listen(sock)

    def close(self) -> None:
        self._closed = True
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()


class AcceptingSite(web.BaseSite):
    """A TCP site like aiohttp's ``TCPSite``, accepting every waiting connection per turn of the loop."""

    __slots__ = ("_host", "_port")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, backlog: int = 128) -> None:
        super().__init__(runner, backlog=backlog)
        self._host, self._port = host, port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        sockets: list[socket.socket] = []
        try:
            for family, type_, proto, _name, address in dict.fromkeys(infos):  # each address once
                sock = socket.socket(family, type_, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:  # as asyncio does: "::" is IPv6 only, "0.0.0.0" has its own socket
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(self._backlog)
                sock.setblocking(False)
        except OSError:
            for sock in sockets:
                sock.close()
            raise
        assert self._runner.server is not None
        self._server = _Listener(loop, sockets, self._backlog, self._runner.server)  # type: ignore[assignment]


async def serve(app: web.Application, *, host: str, port: int, backlog: int, shutdown_timeout: float = 10.0,
                **handler_options: Any) -> None:
    """Serve ``app`` on an :class:`AcceptingSite` until SIGTERM or SIGINT, then stop as ``web.run_app``
    does: stop accepting, let requests in hand finish within ``shutdown_timeout``, run the app's cleanup."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout, **handler_options)
    await runner.setup()
    try:
        await AcceptingSite(runner, host, port, backlog=backlog).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
