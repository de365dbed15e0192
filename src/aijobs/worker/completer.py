"""The completer: writes the ends of attempts in batches, one statement for many jobs.

While a write is in flight, finishes queue up and go together in the next statement, so the
batch size follows the load with no added wait. A write that fails (database restarting) is
retried with backoff, never dropped: until it lands the job's lease keeps it safe, and the
fence refuses it if another worker took the job meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import psycopg

from aijobs.db.rows import Finish
from aijobs.db.store import Store

log = logging.getLogger("aijobs.worker")

#: Called with True when the write won, False when the fence refused it.
Written = Callable[[bool], None]


class Completer:
    def __init__(self, store: Store, worker_id: str, *, max_batch: int = 1000) -> None:
        self.store = store
        self.worker_id = worker_id
        self.max_batch = max_batch
        self._pending: list[tuple[Finish, Written]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, finish: Finish, written: Written) -> None:
        """Queue a finish; `written(won)` runs once it is stored (won=False: fenced out).

        A callback rather than a future the job's task awaits: the task can end at once,
        which saves a future and a task wake-up per job on the hot path.
        """
        self._pending.append((finish, written))
        self._idle.clear()
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Write until `stop` is set and everything queued has been written."""
        backoff = 0.05
        while True:
            if not self._pending:
                self._idle.set()
                if stop.is_set():
                    return
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                continue
            batch = self._pending[: self.max_batch]
            try:
                async with self.store.session() as session:
                    won = await session.finish([finish for finish, _ in batch], self.worker_id)
            except (psycopg.Error, OSError) as exc:
                log.warning("💾 Could not write %d job results (%s); retrying", len(batch), exc)
                await asyncio.sleep(backoff + random.uniform(0, backoff))
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.05
            del self._pending[: len(batch)]
            for finish, written in batch:
                try:
                    written(finish.id in won)
                except Exception:
                    log.exception("💾 after-write step for job %s failed", finish.id)

    async def drained(self) -> None:
        await self._idle.wait()
