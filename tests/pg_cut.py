"""A TCP relay to the real PostgreSQL on 127.0.0.1 that loses a reply on purpose.

Armed with a marker, it drops the server's reply that carries it (through the ``ReadyForQuery`` that follows:
the transaction has committed by then) and closes both sides of that connection. The client sees its
connection lost mid-statement and cannot know that the statement committed: the ambiguous end a database
restart or a network cut gives, made on demand. ``down`` refuses every connection, as a database that is
away does.

Nothing in it parses PostgreSQL beyond those two byte strings; the database behind it is the real one
(its ``ssl`` is off on these machines, so the bytes are readable)."""

from __future__ import annotations

import asyncio
from contextlib import suppress

READY_FOR_QUERY = b"Z\x00\x00\x00\x05"  # sent after the Sync that commits an implicit transaction


class CuttingRelay:
    def __init__(self, host: str = "127.0.0.1", port: int = 5432) -> None:
        self._upstream = (host, port)
        self._server: asyncio.Server | None = None
        self._marker: bytes | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self.cut = asyncio.Event()  # set once an armed marker's connection has been cut
        self.down = False
        self.refused = 0  # connections refused while down
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def drop_all(self) -> None:
        """Close every connection relayed now (the database went away)."""
        for writer in list(self._connections):
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self.drop_all()
            await self._server.wait_closed()

    def arm(self, marker: bytes) -> None:
        """Cut the next connection whose reply carries ``marker``."""
        self.cut.clear()
        self._marker = marker

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.down:
            self.refused += 1
            client_writer.close()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_writer.close()
            return
        self._connections.update((client_writer, server_writer))
        try:
            await asyncio.gather(self._pump(client_reader, server_writer, watch=False),
                                 self._pump(server_reader, client_writer, watch=True))
        finally:
            for writer in (client_writer, server_writer):
                self._connections.discard(writer)
                writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, watch: bool) -> None:
        dropping = False
        with suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(65536):
                if watch and not dropping and self._marker is not None and self._marker in chunk:
                    self._marker, dropping = None, True
                if dropping:
                    if READY_FOR_QUERY in chunk:  # committed, and the client never hears it
                        self.cut.set()
                        break
                    continue
                writer.write(chunk)
                await writer.drain()
        writer.close()  # after a cut: the client's side, so the client sees its connection lost
