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
                await self._ping(conn)

    async def _ping(self, conn: psycopg.AsyncConnection[object]) -> None:
        """`select 1`, or TimeoutError within `ping_timeout` when the connection is dead.

        Not `wait_for(conn.execute(...))`: psycopg answers the cancellation of a running
        query by sending the server a cancel request and waiting up to 5 + 5 s for the query
        to end — on a black-holed connection that only delays the replacement by about 10 s.
        So the ping runs as a task, and when it
        does not answer in time the connection is closed under it (no cancel request, no
        goodbye) before the task is cancelled.
        """
        ping = asyncio.ensure_future(conn.execute("select 1"))
        try:
            done, _ = await asyncio.wait({ping}, timeout=self.ping_timeout)
        finally:
            if not ping.done():
                _abandon(conn)
                ping.cancel()
                await asyncio.gather(ping, return_exceptions=True)
        if not done:
            raise TimeoutError(f"listener ping not answered within {self.ping_timeout:g}s")
        ping.result()


def _abandon(conn: psycopg.AsyncConnection[object]) -> None:
    """Close without a goodbye round trip: the peer may be unreachable."""
    with contextlib.suppress(Exception):  # closing a broken connection must not raise
        conn.pgconn.finish()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
