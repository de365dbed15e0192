"""The completer: writes the ends of attempts in batches, one statement for many jobs.

While a write is in flight, finishes queue up and go together in the next statement, so the
batch size follows the load with no added wait. A write that fails (database restarting) is
retried with backoff, never dropped. No other worker runs the job while its lease lasts; if
the database stays out of reach longer than that, the rescuer takes the job back (to run
again, or failed and refunded on its last attempt) and the fence refuses the late write,
whose call is still recorded on the lost attempt.

A row refused for what it holds (text PostgreSQL cannot store, a value the client cannot
encode) would fail every retry and hold up every finish queued behind it. Such a refusal is
narrowed down by halving the batch, the others are written, and the refused attempt is
recorded as failed with a clean error instead.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from uuid import UUID

import psycopg

from aijobs.db.rows import Finish
from aijobs.db.store import Store
from aijobs.queue import outcomes

log = logging.getLogger("aijobs.worker")

#: Called once the attempt's end is stored, with what was stored and whether it won (False:
#: the fence refused it). What was stored: a refused finish is replaced by a failure, and
#: the status is the one the statement wrote (`cancelled` where a cancel was asked while the
#: attempt ended on its way back to pending); the outcome stays the attempt's own.
Written = Callable[[Finish, bool], None]
Entry = tuple[Finish, Written]

#: Refusals of what a row holds, which no retry can change: bad text or JSON (SQLSTATE
#: class 22), a broken constraint (class 23), a value the client cannot encode (a lone
#: surrogate: ValueError; something JSON has no form for: TypeError).
REFUSED: tuple[type[Exception], ...] = (psycopg.DataError, psycopg.IntegrityError, ValueError, TypeError)
#: aijobs.finish_attempts' own name for those, once it has found the row and field (AJ005).
NAMED_REFUSAL = "AJ005"


def refused(exc: BaseException) -> bool:
    """Whether `exc` refuses what a row holds (no retry can store it), rather than the
    database being out of reach or failing for now."""
    return isinstance(exc, REFUSED) or (isinstance(exc, psycopg.Error) and exc.sqlstate == NAMED_REFUSAL)


class Completer:
    def __init__(self, store: Store, worker_id: str, *, max_batch: int = 1000) -> None:
        self.store = store
        self.worker_id = worker_id
        self.max_batch = max_batch
        self._pending: list[Entry] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, finish: Finish, written: Written) -> None:
        """Queue a finish; `written(stored, won)` runs once it is stored.

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
            del self._pending[: len(batch)]
            unwritten = await self._write(batch)
            if unwritten:
                # First in line again, in their order, once the database answers.
                self._pending[:0] = unwritten
                await asyncio.sleep(backoff + random.uniform(0, backoff))
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.05

    async def drained(self) -> None:
        await self._idle.wait()

    async def _write(self, batch: list[Entry]) -> list[Entry]:
        """Write `batch` and run the callbacks of what was stored; answer what could not be
        written for now (the database is unreachable or failing: retried later)."""
        try:
            async with self.store.session() as session:
                won = await session.jobs.finish([finish for finish, _ in batch], self.worker_id)
        except (psycopg.Error, OSError, ValueError, TypeError) as exc:
            if not refused(exc):
                log.warning("💾 Could not write %d job results (%s); retrying", len(batch), exc)
                return batch
            if len(batch) == 1:
                return await self._write_refused(batch[0], exc)
            # Halving finds one bad row among n in about 2 log2(n) statements.
            half = len(batch) // 2
            unwritten = await self._write(batch[:half])
            if unwritten:
                return unwritten + batch[half:]
            return await self._write(batch[half:])
        _written(batch, won)
        return []

    async def _write_refused(self, entry: Entry, exc: Exception) -> list[Entry]:
        finish, written = entry
        # Only the primary message: a server error's detail and context may quote the data.
        reason = f"{type(exc).__name__}: {_primary_message(exc)}"
        log.error(
            "💾 PostgreSQL refused the end of job %s's attempt (%s); recording the attempt as failed",
            finish.id,
            reason,
            extra={"job_id": str(finish.id)},
        )
        failure = outcomes.refused(finish, reason)
        try:
            async with self.store.session() as session:
                won = await session.jobs.finish([failure], self.worker_id)
        except (psycopg.Error, OSError, ValueError, TypeError) as again:
            if not refused(again):
                log.warning("💾 Could not write 1 job result (%s); retrying", again)
                return [(failure, written)]
            # Not even the failure can be written (so nothing of this row is at fault): give
            # up on it rather than hold up every finish. Its lease is no longer extended, so
            # the rescuer takes the job back within about LEASE_SECONDS.
            log.error(
                "💾 Could not record job %s's attempt at all (%s); its lease will expire",
                finish.id,
                _primary_message(again),
                extra={"job_id": str(finish.id)},
            )
            return []
        _written([(failure, written)], won)
        return []


def _written(batch: list[Entry], won: Mapping[tuple[UUID, int], str]) -> None:
    """Run the callbacks of a written batch; `won` is {(job id, lease token): status written}."""
    for finish, written in batch:
        status = won.get((finish.id, finish.lease_token))
        stored = finish if status is None or status == finish.status else replace(finish, status=status)
        try:
            written(stored, status is not None)
        except Exception:
            log.exception("💾 after-write step for job %s failed", finish.id)


def _primary_message(exc: Exception) -> str:
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        # The finish names `rows[i].<field>`: i is the row's place in a batch of one here.
        return re.sub(r"^rows\[\d+\]\.", "", exc.diag.message_primary)
    return str(exc).split("\n", 1)[0]
