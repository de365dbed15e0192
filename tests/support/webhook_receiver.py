"""A webhook receiver on loopback for tests: a real HTTP/1.1 server on 127.0.0.1.

Each request is answered by the next entry of `script` (the last one repeats):
  int            that status, with a short body
  "hang"         read the request, never answer
  "redirect"     302 to `redirect_to`
  "huge"         200 headers announcing `HUGE_BYTES`, then a body streamed until the client
                 hangs up (how much was written is in `huge_written`)
Every request is kept (headers lower-cased, raw body), and the ids it saw are counted, so a
test can tell deliveries from effective deliveries (a receiver drops repeated ids).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

HUGE_BYTES = 64 * 1024 * 1024


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    script: list[Any] = field(default_factory=lambda: [200])
    redirect_to: str = "http://127.0.0.1:9/elsewhere"
    requests: list[Received] = field(default_factory=list)
    effective: list[str] = field(default_factory=list)
    huge_written: int = 0
    url: str = ""
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> WebhookReceiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hooks/aijobs"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in set(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                request = await self._read(reader)
                if request is None:
                    return
                step = self.script[min(len(self.requests), len(self.script) - 1)]
                self.requests.append(request)
                if isinstance(step, int) and 200 <= step < 300:
                    msg_id = request.headers.get("webhook-id", "")
                    if msg_id not in self.effective:
                        self.effective.append(msg_id)
                self.arrived.set()
                if not await self._answer(step, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> Received | None:
        line = await reader.readline()
        if not line:
            return None
        method, path, _ = line.decode().split(" ", 2)
        headers: dict[str, str] = {}
        while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, value = header.decode().split(":", 1)
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return Received(method, path, headers, body)

    async def _answer(self, step: Any, writer: asyncio.StreamWriter) -> bool:
        if step == "hang":
            await asyncio.Event().wait()
        if step == "redirect":
            writer.write(
                f"HTTP/1.1 302 Found\r\nLocation: {self.redirect_to}\r\nContent-Length: 0\r\n\r\n".encode()
            )
            await writer.drain()
            return True
        if step == "huge":
            writer.write(f"HTTP/1.1 500 Oops\r\nContent-Length: {HUGE_BYTES}\r\n\r\n".encode())
            chunk = b"x" * 65536
            while self.huge_written < HUGE_BYTES:
                writer.write(chunk)
                await writer.drain()
                self.huge_written += len(chunk)
            return False
        body = b"ok" if 200 <= int(step) < 300 else b"receiver says no"
        writer.write(f"HTTP/1.1 {int(step)} Status\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        return True
