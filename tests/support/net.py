"""Loopback ports for the servers tests start, and a proxy that cuts a database off."""

from __future__ import annotations

import asyncio
import contextlib
import socket


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick); the caller binds it soon after."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TcpProxy:
    """A loopback TCP proxy to a PostgreSQL that a test can cut and restore: `cut()` stops
    listening (new connections are refused) and closes every proxied connection, as a
    database restart or a network fault does; `restore()` listens on the same port again."""

    def __init__(self, target: str | tuple[str, int]) -> None:
        # A socket directory (unix socket, as libpq names it) or (host, port).
        self.target = target
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            if isinstance(self.target, str):
                server_r, server_w = await asyncio.open_unix_connection(self.target)
            else:
                server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._pipes |= {client_w, server_w}
        # Cancelled when the test's loop closes: asyncio's stream callback chokes on raising it.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(_pump(client_r, server_w), _pump(server_r, client_w), return_exceptions=True)
        for w in (client_w, server_w):
            self._pipes.discard(w)
            w.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.transport.abort()
