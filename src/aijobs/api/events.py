"""One LISTEN connection for the whole API process, fanned out to every SSE stream and long poll.

The database announces each job status change on `aijobs_job_events` as "<job id> <status>",
and each piece of text a running attempt streams on `aijobs_job_stream` as "<job id> <lease
token> <seq>". Streams subscribe per job id and receive those statuses, and a `DELTA` marker
per piece (the text itself is read from the table), in commit order. After the listener
reconnects (database restart, killed connection) every subscriber gets a `RESYNC` marker
and re-reads its job, since notifications sent while nobody listened are lost.

Each subscriber's queue is bounded: one that does not keep up (its client reads slowly)
loses markers rather than growing the process's memory; its stream re-reads the job and the
pieces it has not sent at the next marker or recheck, so it falls behind but misses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

from aijobs.db.listener import Listener

log = logging.getLogger("aijobs.api")

JOB_EVENTS_CHANNEL = "aijobs_job_events"
JOB_STREAM_CHANNEL = "aijobs_job_stream"
#: Put on every queue after a (re)connect: "you may have missed something, re-read".
RESYNC = "resync"
#: How often a waiting stream re-reads its job even without a notification (belt and braces).
RECHECK_SECONDS = 10.0
#: "The attempt has written more text": read the pieces after the last one sent.
DELTA = "delta"
#: Markers one subscriber may have waiting; past it, new ones are dropped.
QUEUE_BOUND = 256


class JobEventsHub:
    """Without `conninfo` (behind a transaction-mode pooler, with no LISTEN URL) nothing is
    announced, and streams re-read their job every `poll_seconds` instead."""

    def __init__(self, conninfo: str | None, *, poll_seconds: float = RECHECK_SECONDS) -> None:
        self._subscribers: dict[UUID, set[asyncio.Queue[str]]] = defaultdict(set)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.listener = (
            None
            if conninfo is None
            else Listener(
                conninfo,
                [JOB_EVENTS_CHANNEL, JOB_STREAM_CHANNEL],
                on_notify=self._on_notify,
                on_connect=self._on_connect,
            )
        )
        #: How long a stream waits for news before it re-reads its job.
        self.recheck_seconds = RECHECK_SECONDS if self.listener is not None else poll_seconds

    async def start(self, connect_seconds: float = 10.0) -> None:
        """Start listening; wait (bounded) for the first connection so early streams miss nothing."""
        if self.listener is None:
            return
        self._task = asyncio.create_task(self.listener.run(self._stop), name="api-job-events")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listener.connected.wait(), connect_seconds)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @asynccontextmanager
    async def subscribe(self, job_id: UUID) -> AsyncIterator[asyncio.Queue[str]]:
        """Statuses of `job_id` from now on. Subscribe *before* reading the job, so no change
        between the read and the subscription can be missed."""
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_BOUND)
        self._subscribers[job_id].add(queue)
        try:
            yield queue
        finally:
            subscribers = self._subscribers.get(job_id)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del self._subscribers[job_id]

    @property
    def connected(self) -> bool:
        return self.listener is not None and self.listener.connected.is_set()

    def _on_notify(self, channel: str, payload: str) -> None:
        job_text, _, status = payload.partition(" ")
        try:
            job_id = UUID(job_text)
        except ValueError:
            log.warning("ignoring malformed job event %r", payload)
            return
        note = DELTA if channel == JOB_STREAM_CHANNEL else status
        for queue in self._subscribers.get(job_id, ()):
            _offer(queue, note)

    def _on_connect(self) -> None:
        for queues in self._subscribers.values():
            for queue in queues:
                _offer(queue, RESYNC)


def _offer(queue: asyncio.Queue[str], note: str) -> None:
    with contextlib.suppress(asyncio.QueueFull):
        queue.put_nowait(note)
