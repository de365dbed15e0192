"""The worker process: wires producer, executor, completer, heartbeat and listener together.

Producer: claims as many jobs as there are free slots, in one statement, whenever it is
woken — by NOTIFY, by a freed slot after a full claim, or by the jittered poll every
POLLING_INTERVAL (the fallback that works even when notifications are lost).

Lifecycle: the first SIGTERM/SIGINT stops claiming and lets running jobs finish within the
grace period; what is still running then is handed back to pending without burning an
attempt. A second signal exits at once; the leases still protect those jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from uuid import UUID

import psycopg

from aijobs import __version__
from aijobs.config import Settings
from aijobs.db.listener import Listener
from aijobs.db.reachable import retry_while_unreachable
from aijobs.db.rows import ClaimedJob, Finish
from aijobs.db.store import Session, Store
from aijobs.jobs import registry
from aijobs.jobs.catalog import JobTypeCatalog, Mismatch, compare
from aijobs.monitoring import maintenance
from aijobs.monitoring.metrics import metrics
from aijobs.providers.base import Provider
from aijobs.queue import outcomes
from aijobs.queue.retry import RetryPolicy
from aijobs.worker.completer import Completer
from aijobs.worker.executor import AccountSettingsSource, Executor
from aijobs.worker.heartbeat import Heartbeat
from aijobs.worker.provider_gate import ProviderGate
from aijobs.worker.sources import StoreAccountSettings, StoreCatalog
from aijobs.worker.streaming import StreamPublisher
from aijobs.worker.webhooks import WEBHOOKS_CHANNEL, Deliverer

log = logging.getLogger("aijobs.worker")

JOBS_CHANNEL = "aijobs_jobs"
CANCEL_CHANNEL = "aijobs_cancel"
StopReason = Literal["cancelled", "lease_lost", "lease_expiring", "shutdown", "timeout"]


@dataclass
class Running:
    job: ClaimedJob
    task: asyncio.Task[None]
    started: float
    deadline: float
    #: No later than this (monotonic) the database's lease ends, unless renewed: measured
    #: from when the claim or the last heartbeat that renewed it was *sent*, since the
    #: server's `now()` of that statement came after.
    leased_until: float
    stop_reason: StopReason | None = None


@dataclass
class Totals:
    processed: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    fenced: int = 0
    rescued: int = 0


def make_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        provider: Provider,
        listen_conninfo: str | None,
        *,
        catalog: JobTypeCatalog | None = None,
        account_settings: AccountSettingsSource | None = None,
    ) -> None:
        """`listen_conninfo` None: no LISTEN (a transaction-mode pooler has no session to
        hold it); the producer polls every POLLING_INTERVAL and cancels arrive by heartbeat.
        `catalog` (the database's job types, compared at start) and `account_settings` (a job
        owner's settings, for types that use them) are read from the store unless given."""
        self.settings = settings
        self.store = store
        self.provider = provider
        self.listen_conninfo = listen_conninfo
        self.id = make_worker_id()
        self.concurrency = settings.worker_concurrency
        self.policy = RetryPolicy(settings.retry_base_seconds, settings.retry_max_seconds)
        # Shared rate limits: holds and budgets kept in PostgreSQL.
        self.gate = ProviderGate(store, settings, provider, self.policy)
        provider = self.gate.provider
        self.catalog: JobTypeCatalog = catalog or StoreCatalog(store)
        self.executor = Executor(
            provider,
            self.policy,
            timeout_cap=settings.job_timeout_seconds,
            account_settings=account_settings or StoreAccountSettings(store),
            streams=StreamPublisher(store),
        )
        self.completer = Completer(store, self.id)
        self.running: dict[UUID, Running] = {}
        self._limits: dict[str, float] = {}
        self.totals = Totals()
        self.metrics = metrics()
        # Read when scraped rather than set twice per job on the hot path.
        self.metrics.in_flight.set_function(lambda: len(self.running))
        self.maintenance = maintenance.for_worker(store, self.id, self.metrics, settings)
        self._wake = asyncio.Event()
        self.webhooks = Deliverer(store, self.id, settings)
        self._stop_claiming = asyncio.Event()
        self._stop_services = asyncio.Event()
        self._more_waiting = False
        self._idle_logged = False
        self._signals = 0
        self.listener = (
            None
            if listen_conninfo is None
            else Listener(
                listen_conninfo,
                [JOBS_CHANNEL, CANCEL_CHANNEL, WEBHOOKS_CHANNEL],
                on_notify=self._on_notify,
                on_connect=self._on_connect,
                health_seconds=max(settings.polling_seconds, 1.0),
            )
        )
        self.heartbeat = Heartbeat(
            store,
            self.id,
            interval=settings.heartbeat_seconds,
            lease_seconds=settings.lease_seconds,
            running=lambda: {job_id: r.job.lease_token for job_id, r in self.running.items()},
            on_cancel=lambda job_id, token: self._stop_job(job_id, "cancelled", token),
            on_lost=lambda job_id, token: self._stop_job(job_id, "lease_lost", token),
            on_renewed=self._renewed,
            on_rescued=self._count_rescued,
            register=self._register_in,
        )
        # A lease this worker can no longer renew (its heartbeats fail: the database is out
        # of reach, or its pool is stuck) is given up this long before it would end, so that
        # the attempt stops before a rescuer can hand the job to another worker: otherwise
        # both would run it, and both calls to the provider are paid for.
        self.lease_margin = min(max(settings.heartbeat_seconds, 1.0), settings.lease_seconds / 2)

    # -- public -------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Begin a graceful shutdown (what the first SIGTERM/SIGINT does)."""
        self._stop_claiming.set()
        self._wake.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    async def run(self) -> None:
        """Run until asked to stop, then drain and hand back. Returns normally on a clean stop."""
        self._banner()
        registered = await retry_while_unreachable(
            self._register,
            give_up_after=self.settings.db_start_timeout_seconds,
            what=f"worker {self.id}",
            stop=self._stop_claiming,
        )
        if registered is None:  # stopped before the database answered: nothing to drain
            log.info("👋 Worker %s stopped before it started", self.id)
            return
        await self.check_job_types()
        services = [
            asyncio.create_task(self.heartbeat.run(self._stop_services), name="heartbeat"),
            asyncio.create_task(self.completer.run(self._stop_services), name="completer"),
            asyncio.create_task(self.maintenance.run(self._stop_services), name="maintenance"),
            asyncio.create_task(self._watchdog(self._stop_services), name="watchdog"),
            asyncio.create_task(self.webhooks.run(self._stop_services), name="webhooks"),
        ]
        listening = None
        if self.listener is not None:
            listening = asyncio.create_task(self.listener.run(self._stop_services), name="listener")
            services.append(listening)
        try:
            await self._produce()
            await self._drain()
        finally:
            self._stop_services.set()
            if listening is not None:
                listening.cancel()  # it may be parked in a long wait for notifications
            await asyncio.gather(*services, return_exceptions=True)
            try:
                async with self.store.session() as session:
                    await session.workers.stop(self.id)
            except psycopg.Error:
                log.warning("could not mark worker %s stopped", self.id)
            self._log_totals()
            log.info("👋 Worker %s stopped", self.id)

    async def _register(self) -> bool:
        async with self.store.session() as session:
            await self._register_in(session)
        return True

    async def _register_in(self, session: Session) -> None:
        await session.workers.register(
            worker_id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            concurrency=self.concurrency,
        )

    async def check_job_types(self) -> list[Mismatch]:
        """Say at start which job types disagree with the database's, and how to fix it. A
        warning, not a refusal: during a rolling deploy old and new workers overlap."""
        mismatches = compare(registry(), await self.catalog.stored_job_types())
        for mismatch in mismatches:
            log.warning("⚠️ %s", mismatch, extra={"job_type": mismatch.name})
        return mismatches

    # -- producer -----------------------------------------------------------------------
    async def _produce(self) -> None:
        backoff = 0.1
        while not self._stop_claiming.is_set():
            free = self.concurrency - len(self.running)
            held = await self.gate.claim_pause()  # cached: no round trip per claim
            if held > 0:
                await self._sleep(held)
                continue
            if free > 0:
                try:
                    leased_until = time.monotonic() + self.settings.lease_seconds
                    async with self.store.session() as session:
                        jobs = await session.jobs.claim(self.id, free, self.settings.lease_seconds)
                    backoff = 0.1
                except (psycopg.Error, OSError) as exc:
                    log.warning("🔌 Could not claim jobs (%s); retrying", type(exc).__name__)
                    await self._sleep(backoff + random.uniform(0, backoff))
                    backoff = min(backoff * 2, 5.0)
                    continue
                for job in jobs:
                    self._start(job, leased_until)
                self._more_waiting = len(jobs) == free
                if jobs:
                    self._idle_logged = False
                elif not self.running and not self._idle_logged:
                    log.info("⏳ No pending jobs found, waiting...")
                    self._idle_logged = True
                if self._more_waiting and len(self.running) < self.concurrency:
                    continue
            await self._sleep(self.settings.polling_seconds * random.uniform(0.9, 1.1))

    async def _sleep(self, seconds: float) -> None:
        """Wait for a wake-up (NOTIFY, freed slot, stop) or the poll timeout."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        # Let the other jobs that finished in this turn of the loop free their slots too,
        # so the next claim fetches them all in one statement instead of one by one.
        await asyncio.sleep(0)
        self._wake.clear()

    def _on_connect(self) -> None:
        # Anything announced while the listener was away is caught up on at once.
        self._wake.set()
        self.webhooks.wake()

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel == WEBHOOKS_CHANNEL:
            self.webhooks.wake()
        elif channel == CANCEL_CHANNEL:
            try:
                self._stop_job(UUID(payload), "cancelled")
            except ValueError:
                return
        elif len(self.running) < self.concurrency:
            self._wake.set()

    # -- jobs ---------------------------------------------------------------------------
    def _start(self, job: ClaimedJob, leased_until: float) -> None:
        task = asyncio.create_task(self._run_job(job))
        started = time.monotonic()
        limit = self._limits.get(job.type)
        if limit is None:
            limit = self._limits[job.type] = self.executor.time_limit(job.type)
        self.running[job.id] = Running(
            job=job, task=task, started=started, deadline=started + limit, leased_until=leased_until
        )
        # A stop handled before the task's first step (a cancel NOTIFY read in the same turn
        # as the claim) cancels a coroutine that never runs: `_run_job` cannot clean up after
        # itself then, so this callback does.
        task.add_done_callback(functools.partial(self._ended, job))
        self.metrics.job_claimed(job)

    async def _run_job(self, job: ClaimedJob) -> None:
        entry = self.running[job.id]
        finish: Finish | None
        try:
            finish = await self.executor.execute(job)
            finish = await self.gate.settle(job, finish)
        except asyncio.CancelledError:
            finish = self._finish_for_stop(job, entry.stop_reason)
        if finish is None:
            self._release(job.id)
            return
        self._release(job.id)
        seconds = time.monotonic() - entry.started
        self.completer.submit(finish, functools.partial(self._record, job, seconds=seconds))

    def _ended(self, job: ClaimedJob, task: asyncio.Task[None]) -> None:
        """Release a job whose task ended without releasing it, and write its stop outcome.

        Normally `_run_job` has released the slot by now and this does nothing. A task
        cancelled before its first step (or one that raised) would otherwise keep its entry
        in `running` for good: the heartbeat would extend its lease forever, its slot would be
        lost and the job would stay `processing`.
        """
        entry = self.running.get(job.id)
        if entry is None or entry.task is not task:
            return
        finish: Finish | None
        if task.cancelled():
            finish = self._finish_for_stop(job, entry.stop_reason)
        else:
            exc = task.exception()
            log.error("💥 The task of job %s failed unexpectedly", job.id, exc_info=exc)
            if entry.stop_reason is not None or exc is None:
                finish = self._finish_for_stop(job, entry.stop_reason)
            else:
                finish = self.executor.failed(job, exc)
        self._release(job.id)
        if finish is not None:
            seconds = time.monotonic() - entry.started
            self.completer.submit(finish, functools.partial(self._record, job, seconds=seconds))

    def _release(self, job_id: UUID) -> None:
        self.running.pop(job_id, None)
        if self._more_waiting or self._stop_claiming.is_set():
            self._wake.set()

    def _finish_for_stop(self, job: ClaimedJob, reason: StopReason | None) -> Finish | None:
        if reason == "cancelled":
            return outcomes.cancelled(job)
        if reason == "timeout":
            return self.executor.failed(job, TimeoutError())
        if reason in ("shutdown", "lease_expiring"):
            # Fenced like every write: if another worker has the job by the time this lands,
            # it changes nothing.
            return outcomes.handed_back(job)
        # Lease lost: another worker owns the job now; any write of ours would be fenced.
        return None

    def _stop_job(self, job_id: UUID, reason: StopReason, lease_token: int | None = None) -> None:
        """Stop the attempt running `job_id`; with `lease_token`, only if it is that attempt."""
        entry = self.running.get(job_id)
        if entry is None or entry.stop_reason is not None:
            return
        if lease_token is not None and entry.job.lease_token != lease_token:
            return  # news about an earlier attempt of this job, not the one running now
        entry.stop_reason = reason
        if reason == "lease_lost":
            log.warning("🚫 Lost the lease on job %s; abandoning this attempt", job_id)
        elif reason == "lease_expiring":
            log.warning("🚫 Could not renew the lease on job %s; handing it back before it expires", job_id)
        elif reason == "cancelled":
            log.info("🛑 Cancelling job %s on request", job_id)
        entry.task.cancel()

    def _record(self, job: ClaimedJob, finish: Finish, won: bool, *, seconds: float) -> None:
        """After the write: metrics, totals and the seed's log lines for one attempt.

        `finish.status` is the status the write stored, which may not be the one the attempt
        asked for: a cancel asked while it ended on its way back to pending (retry, rate
        limit, hand-back) made it `cancelled`, and the job counts as cancelled."""
        self.metrics.job_finished(job, finish, won, seconds)
        totals = self.totals
        if not won:
            totals.fenced += 1
            log.warning(
                "🧱 Result of job %s refused: its lease was taken over (fenced)",
                job.id,
                extra={"job_id": str(job.id), "job_type": job.type, "status": finish.status, "won": won},
            )
            return
        if finish.status == "cancelled":
            totals.cancelled += 1
        elif finish.outcome == "completed":
            totals.processed += 1
        elif finish.outcome == "failed":
            totals.failed += 1
        elif finish.outcome == "retry":
            totals.retried += 1
        if not log.isEnabledFor(logging.INFO):
            return
        extra = {"job_id": str(job.id), "job_type": job.type, "status": finish.status, "won": won}
        log.debug("💾 Job %s status updated to: %s", job.id, finish.status, extra=extra)
        if finish.outcome == "completed":
            log.info("✅ Job %s completed successfully in %dms", job.id, seconds * 1000, extra=extra)
            self._log_totals(logging.DEBUG)
        elif finish.status == "cancelled" and finish.outcome != "cancelled":
            ended = finish.outcome.replace("_", " ") + (f": {finish.error}" if finish.error else "")
            log.info(
                "🛑 Job %s cancelled on request as its attempt ended (%s); credits refunded",
                job.id,
                ended,
                extra=extra,
            )

    def _renewed(self, renewed: Mapping[UUID, int], leased_until: float) -> None:
        """A heartbeat extended these attempts' leases (job id: lease token)."""
        for job_id, token in renewed.items():
            entry = self.running.get(job_id)
            if entry is not None and entry.job.lease_token == token:
                entry.leased_until = max(entry.leased_until, leased_until)

    async def _watchdog(self, stop: asyncio.Event) -> None:
        """Stop attempts that outran their job type's time limit, or whose lease is about to
        end unrenewed (checked every `tick`)."""
        tick = min(1.0, max(0.05, min(self.executor.time_limit(t) for t in registry()) / 4))
        tick = min(tick, self.lease_margin / 2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick):
                    await stop.wait()
            now = time.monotonic()
            for job_id, entry in list(self.running.items()):
                if entry.deadline <= now:
                    self._stop_job(job_id, "timeout")
                elif entry.leased_until - self.lease_margin <= now:
                    self._stop_job(job_id, "lease_expiring")

    def _count_rescued(self, n: int) -> None:
        self.totals.rescued += n
        self._wake.set()

    # -- shutdown -----------------------------------------------------------------------
    async def _drain(self) -> None:
        if self.running:
            log.info(
                "🧘 Stopping: waiting up to %.0fs for %d running job(s)",
                self.settings.shutdown_grace_seconds,
                len(self.running),
            )
            tasks = [r.task for r in self.running.values()]
            await asyncio.wait(tasks, timeout=self.settings.shutdown_grace_seconds)
        leftover = list(self.running.values())
        for entry in leftover:
            # An attempt already stopped (cancelled, timed out, lease lost) may still be
            # unwinding: it keeps that reason, and the outcome that goes with it.
            if entry.stop_reason is None:
                entry.stop_reason = "shutdown"
            entry.task.cancel()
        if leftover:
            log.info("↩️ Handing back %d unfinished job(s) to the queue", len(leftover))
            await asyncio.gather(*(e.task for e in leftover), return_exceptions=True)
        await self.completer.drained()

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("⚡ Second %s: exiting now; leases will return running jobs", sig.name)
            logging.shutdown()
            os._exit(1)
        log.info("📴 %s received: finishing running jobs, claiming no more", sig.name)
        self.request_stop()

    # -- logs -----------------------------------------------------------------------------
    def _banner(self) -> None:
        s = self.settings
        log.info("🚀 Starting Job Processor Worker v%s (%s)", __version__, self.id)
        log.info(
            "📊 Configuration: Polling every %dms, Max retries: %d, Concurrency: %d, Lease: %.0fs, "
            "Heartbeat: %.0fs",
            s.polling_interval,
            s.max_retries,
            self.concurrency,
            s.lease_seconds,
            s.heartbeat_seconds,
        )
        conninfo = self.store.pool.conninfo
        if isinstance(conninfo, str):
            log.info("🔗 Connected to PostgreSQL: %s", describe_conninfo(conninfo))
        if self.listen_conninfo is None:
            log.info("👂 No LISTEN connection (transaction pooling): polling every %dms", s.polling_interval)
        elif self.listen_conninfo != conninfo:
            log.info("👂 Listening on: %s", describe_conninfo(self.listen_conninfo))
        log.info("🤖 Provider: %s (model %s)", self.provider.name, self.provider.model)
        log.info("⏰ Started at: %s", datetime.now(UTC).isoformat(timespec="milliseconds"))
        log.info("─" * 60)

    def _log_totals(self, level: int = logging.INFO) -> None:
        t = self.totals
        log.log(
            level,
            "📊 Total processed: %d, Failed: %d, Retried: %d, Cancelled: %d",
            t.processed,
            t.failed,
            t.retried,
            t.cancelled,
        )


def describe_conninfo(conninfo: str) -> str:
    """host/port/dbname of a connection string, never its password."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "(unparseable DATABASE_URL)"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"{host}:{port}/{params.get('dbname') or params.get('user') or ''} as {params.get('user') or '?'}"
