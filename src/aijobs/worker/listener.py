"""LISTEN on a dedicated connection, and keep it alive.

A notification wakes the producer within milliseconds of a commit. The connection is
checked with a ping whenever it has been quiet for `health_seconds`; a ping that does not
answer in time (a silently dropped or black-holed connection) replaces it. After every
(re)connect `on_connect` runs, so the producer polls once and catches up on anything
committed while nobody was listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql

log = logging.getLogger("aijobs.worker")


class Listener:
    def __init__(
        self,
        conninfo: str,
        channels: Sequence[str],
        on_notify: Callable[[str, str], None],
        on_connect: Callable[[], None],
        *,
        health_seconds: float = 10.0,
        ping_timeout: float = 5.0,
    ) -> None:
        self.conninfo = conninfo
        self.channels = list(channels)
        self.on_notify = on_notify
        self.on_connect = on_connect
        self.health_seconds = health_seconds
        self.ping_timeout = ping_timeout
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.1
        while not stop.is_set():
            conn: psycopg.AsyncConnection[object] | None = None
            try:
                conn = await asyncio.wait_for(
                    psycopg.AsyncConnection.connect(self.conninfo, autocommit=True),
                    timeout=self.ping_timeout * 2,
                )
                for channel in self.channels:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                self.connected.set()
                self.on_connect()
                backoff = 0.1
                await self._listen(conn, stop)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                self.connected.clear()
                self.reconnects += 1
                log.warning("👂 Listener connection lost (%s); reconnecting", type(exc).__name__)
                await _sleep_or_stop(stop, backoff + random.uniform(0, backoff))
                backoff = min(backoff * 2, 5.0)
            finally:
                if conn is not None:
                    _abandon(conn)
        self.connected.clear()

    async def _listen(self, conn: psycopg.AsyncConnection[object], stop: asyncio.Event) -> None:
        while not stop.is_set():
            quiet = True
            async for note in conn.notifies(timeout=self.health_seconds):
                quiet = False
                self.on_notify(note.channel, note.payload)
                if stop.is_set():
                    return
            if quiet:
                await asyncio.wait_for(conn.execute("select 1"), timeout=self.ping_timeout)


def _abandon(conn: psycopg.AsyncConnection[object]) -> None:
    """Close without a goodbye round trip: the peer may be unreachable."""
    with contextlib.suppress(Exception):  # closing a broken connection must not raise
        conn.pgconn.finish()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
