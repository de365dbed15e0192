"""The maintenance loop: one leader at a time samples the queue and enforces retention.

Every worker runs this loop; each tick it tries to take or renew a lease row in
`maintenance_leader` (judged by the database clock, like job leases). Only the holder does
the work, so N workers do not prune N times over. If the leader dies or stalls, its lease
expires after `ttl` seconds and the next worker to tick takes over; a clean shutdown
releases the lease at once. A lease row (rather than a session advisory lock) survives
transaction-mode connection poolers such as Supabase's and shows up on the dashboard.

The work of a leader tick, each step its own short transaction:
  * sample queue depth into `queue_samples` (the dashboard's queue chart), and again every
    QUEUE_SAMPLE_SECONDS between ticks, so a burst that drains in seconds shows in the chart;
  * delete finished jobs older than RETENTION_DAYS in batches of RETENTION_BATCH_SIZE, at most
    `max_batches` per tick, so locks stay short and claims are never held up for long;
    the credit ledger is never touched;
  * forget queue samples and worker rows that stopped heartbeating long ago, and finished
    webhook deliveries older than RETENTION_DAYS and streamed pieces of attempts that ended
    (one batch each per tick).
Every worker, leader or not, refreshes its cached queue gauges on the same tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import psycopg

from aijobs.config import Settings
from aijobs.db.store import Store
from aijobs.monitoring.gauges import refresh
from aijobs.monitoring.metrics import Metrics

log = logging.getLogger("aijobs.maintenance")

LEADER_NAME = "maintenance"
#: Streamed pieces outlive their attempt this long, for subscribers still catching up.
STREAM_GRACE_SECONDS = 60.0


@dataclass(frozen=True)
class RetentionPolicy:
    job_age_seconds: float = 7 * 86400.0
    batch_size: int = 1000
    max_batches: int = 10
    sample_age_seconds: float = 86400.0
    worker_age_seconds: float = 86400.0


@dataclass
class TickResult:
    leader: bool
    pruned_jobs: int = 0
    purged_keys: int = 0
    pruned_deliveries: int = 0
    batches: int = 0


class Maintenance:
    def __init__(
        self,
        store: Store,
        holder: str,
        metrics: Metrics,
        *,
        interval: float = 10.0,
        policy: RetentionPolicy | None = None,
        sample_interval: float | None = None,
    ) -> None:
        self.store = store
        self.holder = holder
        self.metrics = metrics
        self.interval = interval
        #: Between ticks the leader samples queue depth this often (None: at ticks only).
        self.sample_interval = sample_interval if sample_interval and sample_interval < interval else None
        self.ttl = max(interval * 3, 1.0)
        self.policy = policy or RetentionPolicy()
        self.is_leader = False
        self.pruned_total = 0

    async def tick(self) -> TickResult:
        await refresh(self.store, self.metrics.queue)
        async with self.store.session() as session:
            leader = await session.monitoring.leader_acquire(LEADER_NAME, self.holder, self.ttl)
        if leader != self.is_leader:
            log.info("🗳️ %s maintenance leadership", "Took" if leader else "Lost")
        self.is_leader = leader
        self.metrics.leader.set(1 if leader else 0)
        if not leader:
            return TickResult(leader=False)
        async with self.store.session() as session:
            await session.monitoring.queue_sample()
        result = TickResult(leader=True)
        p = self.policy
        while result.batches < p.max_batches:
            async with self.store.session() as session:
                n = await session.monitoring.prune_jobs(p.job_age_seconds, p.batch_size)
            result.batches += 1
            result.pruned_jobs += n
            if n < p.batch_size:
                break
        async with self.store.session() as session:
            await session.monitoring.prune_samples(p.sample_age_seconds)
            await session.monitoring.prune_workers(p.worker_age_seconds)
            # Idempotency keys are kept 24 hours (Stripe's promise), then forgotten.
            result.purged_keys = await session.idempotency.purge(24.0)
            # Finished webhook deliveries and their log are kept as long as finished jobs.
            result.pruned_deliveries = await session.webhooks.prune(p.job_age_seconds, p.batch_size)
            # Streamed pieces of attempts that ended: the job's result is what stays.
            await session.streams.prune(STREAM_GRACE_SECONDS, p.batch_size)
        if result.pruned_jobs:
            self.pruned_total += result.pruned_jobs
            self.metrics.pruned_jobs(result.pruned_jobs)
            log.info(
                "🧹 Retention pruned %d finished job(s) in %d batch(es)", result.pruned_jobs, result.batches
            )
        return result

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while not stop.is_set():
            if loop.time() >= next_tick:
                next_tick = loop.time() + self.interval
                try:
                    await self.tick()
                except (psycopg.Error, OSError) as exc:
                    log.warning("🧹 Maintenance tick failed (%s); will retry", type(exc).__name__)
            elif self.is_leader:
                await self.sample()
            pause = next_tick - loop.time()
            if self.is_leader and self.sample_interval is not None:
                pause = min(pause, self.sample_interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(pause, 0.0))
        await self.release()

    async def sample(self) -> None:
        """A queue-depth sample between ticks (the tick's own failure log covers outages)."""
        with contextlib.suppress(psycopg.Error, OSError):
            async with self.store.session() as session:
                await session.monitoring.queue_sample()

    async def release(self) -> None:
        if not self.is_leader:
            return
        try:
            async with self.store.session() as session:
                await session.monitoring.leader_release(LEADER_NAME, self.holder)
        except (psycopg.Error, OSError):
            log.warning("could not release maintenance leadership; it expires in %.0fs", self.ttl)
        self.is_leader = False
        self.metrics.leader.set(0)


def for_worker(store: Store, holder: str, metrics: Metrics, settings: Settings) -> Maintenance:
    """The maintenance loop a worker runs, configured from its settings."""
    policy = RetentionPolicy(
        job_age_seconds=settings.retention_days * 86400.0,
        batch_size=settings.retention_batch_size,
    )
    return Maintenance(
        store,
        holder,
        metrics,
        interval=settings.maintenance_interval_seconds,
        policy=policy,
        sample_interval=settings.queue_sample_seconds,
    )
