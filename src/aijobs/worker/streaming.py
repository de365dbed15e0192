"""Publishing what a running attempt streams: coalesced pieces in `aijobs.job_stream_chunks`.

The provider hands each piece of text to `AttemptStream.write`, which only buffers it, so
the model's stream is never held up by the database or by any subscriber (subscribers read
the table through the API, never the worker). A writer task per attempt writes the first
piece at once (the first words reach subscribers as soon as the model sends them), then
whatever gathered, at most once every `interval` seconds: a long answer costs a handful of
small writes, not one per token. Each write is fenced by the attempt's lease token and
announced with NOTIFY (ids only). When the handler returns, what is left is written (in its
turn: the window holds for the last write too) before the attempt's end is, so the pieces of
the attempt that completed join to its stored text.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg

from aijobs.db.rows import ClaimedJob
from aijobs.db.store import Store
from aijobs.providers.base import storable_text

log = logging.getLogger("aijobs.worker")

#: At most one write per job this often while it streams.
INTERVAL_SECONDS = 0.05
#: How long the end of an attempt waits for its last pieces to be written.
CLOSE_SECONDS = 5.0


class StreamPublisher:
    def __init__(self, store: Store, *, interval: float = INTERVAL_SECONDS) -> None:
        self.store = store
        self.interval = interval

    def open(self, job: ClaimedJob) -> AttemptStream:
        return AttemptStream(self.store, job, self.interval)


class AttemptStream:
    """The pieces of one attempt's answer, on their way to the database."""

    def __init__(self, store: Store, job: ClaimedJob, interval: float) -> None:
        self.store = store
        self.job = job
        self.interval = interval
        self.seq = 0
        self.writes = 0
        self._buffer: list[str] = []
        self._more = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._fenced = False

    def write(self, delta: str) -> None:
        """Take one piece (never waits)."""
        if self._fenced or not delta:
            return
        self._buffer.append(delta)
        self._more.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"stream-{self.job.id}")

    async def close(self) -> None:
        """Write what is left (bounded wait): call before the attempt's end is submitted."""
        self._closing.set()
        self._more.set()
        if self._task is None:
            return
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await asyncio.shield(self._task)
        except TimeoutError:
            log.warning("🌊 The last streamed pieces of job %s were not written in time", self.job.id)
            self.abort()

    def abort(self) -> None:
        """Stop writing (the attempt was cancelled or failed)."""
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            await self._more.wait()
            self._more.clear()
            await self._flush()
            if self._fenced or (self._closing.is_set() and not self._buffer):
                return
            # The coalescing window: pieces that arrive meanwhile go in the next write, the
            # last one too (it delays the attempt's end by at most one window).
            await asyncio.sleep(self.interval)

    async def _flush(self) -> None:
        if not self._buffer:
            return
        text = storable_text("".join(self._buffer))
        self._buffer.clear()
        try:
            async with self.store.session() as session:
                written = await session.streams.append(self.job.id, self.job.lease_token, self.seq + 1, text)
        except (psycopg.Error, OSError) as exc:
            # Kept for the next write: subscribers get it late rather than never.
            self._buffer.insert(0, text)
            self._more.set()
            log.warning("🌊 Could not write streamed text of job %s (%s)", self.job.id, type(exc).__name__)
            return
        self.writes += 1
        if written:
            self.seq += 1
        else:
            self._fenced = True  # the lease moved on: this attempt no longer speaks for the job
