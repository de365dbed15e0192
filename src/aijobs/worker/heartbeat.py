"""Heartbeat: one statement per beat extends every lease this worker holds.

The same beat reports which of those jobs were asked to cancel and which leases were lost
(taken back after this worker stalled), registers the worker as alive, and takes back jobs
whose leases expired anywhere — every worker rescues, so no leader is needed for it and a
dead worker's jobs return within about one lease of its death, by the database clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from uuid import UUID

import psycopg

from aijobs.db.store import Session, Store
from aijobs.monitoring.metrics import metrics

log = logging.getLogger("aijobs.worker")


class Heartbeat:
    def __init__(
        self,
        store: Store,
        worker_id: str,
        *,
        interval: float,
        lease_seconds: float,
        running: Callable[[], Mapping[UUID, int]],
        on_cancel: Callable[[UUID, int], None],
        on_lost: Callable[[UUID, int], None],
        on_renewed: Callable[[Mapping[UUID, int], float], None],
        on_rescued: Callable[[int], None],
        register: Callable[[Session], Awaitable[None]],
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.interval = interval
        self.lease_seconds = lease_seconds
        self.running = running
        self.on_cancel = on_cancel
        self.on_lost = on_lost
        self.on_renewed = on_renewed
        self.on_rescued = on_rescued
        self.register = register
        self.beats = 0

    async def beat(self) -> None:
        held = dict(self.running())
        async with self.store.session() as session:
            if not await session.workers.beat(self.worker_id, len(held)):
                log.warning(
                    "Worker %s was forgotten (no heartbeat for a day): registering again", self.worker_id
                )
                await self.register(session)
            if held:
                # The leases now end no earlier than this: the statement's now() is later.
                leased_until = time.monotonic() + self.lease_seconds
                alive = await session.jobs.heartbeat(list(held), list(held.values()), self.lease_seconds)
                renewed = {job_id: token for job_id, token in held.items() if job_id in alive}
                self.on_renewed(renewed, leased_until)
                # With the token the answer is about: by now that attempt may have ended and
                # the job been claimed again by this worker, an attempt this beat never saw.
                for job_id, token in held.items():
                    if job_id not in alive:
                        self.on_lost(job_id, token)
                    elif alive[job_id]:
                        self.on_cancel(job_id, token)
            rescued = await session.jobs.rescue_expired()
        for job in rescued:
            metrics().job_rescued(job.type, job.status)
            log.warning(
                "🛟 Took back job %s (%s) after its lease expired: now %s",
                job.id,
                job.type,
                job.status,
                extra={"job_id": str(job.id)},
            )
        if rescued:
            self.on_rescued(len(rescued))
        self.beats += 1

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.beat()
            except (psycopg.Error, OSError) as exc:
                log.warning("💓 Heartbeat failed (%s); will retry", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
