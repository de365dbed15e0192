"""Prometheus metrics: one registry per process, and small hooks called where things happen.

The worker and the API call these hooks (`job_claimed`, `job_finished`, ...) at the points
where events occur; nothing here touches the database. Labels are bounded sets — job type,
status, outcome, provider, model — never a user id or job id, so cardinality stays small.

Queue-depth gauges are different: they describe the database, not this process. They are
read from a `QueueGauges` cache that a background loop refreshes with one cheap query on the
live-queue index, so a scrape never scans the jobs table.

Several processes behind one port (`aijobs api --workers N`) would each answer a scrape with
their own counters, so the numbers would jump between scrapes. There prometheus_client's
multiprocess mode is on (`PROMETHEUS_MULTIPROC_DIR`, set by `aijobs api` before the processes
start): every process writes its values to files in that directory and a scrape, whichever
process serves it, sums them with `MultiProcessCollector`. The queue gauges describe the
database, not a process, so they are served by the answering process as they are.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from aijobs.db.read_rows import DepthRow
from aijobs.db.rows import ClaimedJob, Finish
from aijobs.jobs import get_job_type, registry
from aijobs.states import ACTIVE_STATUSES

# Job durations run from tens of milliseconds (offline rules) to minutes (slow LLM calls).
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
#: HTTP requests: most answer in milliseconds; long polls and event streams take up to minutes.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LIVE_STATUSES = tuple(sorted(ACTIVE_STATUSES))


@dataclass
class QueueSnapshot:
    """What the cache holds: depth per (type, status) and the longest wait of a runnable job."""

    depth: dict[tuple[str, str], int] = field(default_factory=dict)
    oldest_pending_seconds: float | None = None
    taken_at: float = 0.0  # time.monotonic() of the read; 0 = never read


class QueueGauges(Collector):
    """Serves the last queue snapshot as gauges; `update` is called by whoever reads the DB."""

    def __init__(self) -> None:
        self.snapshot = QueueSnapshot()

    def update(self, snapshot: QueueSnapshot) -> None:
        self.snapshot = snapshot

    def age(self) -> float:
        """Seconds since the snapshot was taken (infinite before the first one)."""
        if not self.snapshot.taken_at:
            return float("inf")
        return time.monotonic() - self.snapshot.taken_at

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        if not snap.taken_at:
            return
        depth = GaugeMetricFamily(
            "aijobs_queue_depth", "Jobs pending or processing, by type and status.", labels=["type", "status"]
        )
        # Every registered type in both live statuses, 0 when it has no rows: a series that
        # vanished when the queue drained would read "no data" instead of 0 in alerts and graphs.
        for job_type in sorted({*registry(), *(t for t, _ in snap.depth)}):
            for status in LIVE_STATUSES:
                depth.add_metric([job_type, status], snap.depth.get((job_type, status), 0))
        yield depth
        yield GaugeMetricFamily(
            "aijobs_queue_oldest_pending_age_seconds",
            "Seconds the longest-waiting runnable pending job has waited since its run_at"
            " (0 when none may run yet; scheduled and backing-off jobs are not waiting).",
            value=snap.oldest_pending_seconds or 0.0,
        )
        yield GaugeMetricFamily(
            "aijobs_queue_snapshot_age_seconds",
            "How old the cached queue figures above are.",
            value=time.monotonic() - snap.taken_at,
        )


def multiprocess_dir() -> str | None:
    """The directory of prometheus_client's multiprocess mode, when this process is in it.

    prometheus_client reads the same variable once, when it is imported, to decide where
    values live; `aijobs api --workers N` sets it before its processes start.
    """
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def process_exiting() -> None:
    """Forget this process's live gauges in multiprocess mode (the API calls it at shutdown).

    Counters and histograms of an exited process keep counting in the sum, as they should;
    a gauge of what this process is doing now must not outlive it.
    """
    if multiprocess_dir():
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class Metrics:
    """Every metric aijobs exports, on a registry of its own (so tests can make fresh ones).

    `scrape_registry` is what a scrape serves: `registry` itself, or in multiprocess mode the
    sum of every process's files plus this process's queue gauges.
    """

    def __init__(self) -> None:
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry = CollectorRegistry()
        t = ["type"]
        self.created = Counter("aijobs_jobs_created", "Jobs created (and charged).", t, registry=r)
        self.claimed = Counter(
            "aijobs_jobs_claimed", "Attempts started: jobs claimed by a worker.", t, registry=r
        )
        self.completed = Counter("aijobs_jobs_completed", "Jobs completed.", t, registry=r)
        self.failed = Counter("aijobs_jobs_failed", "Jobs that failed for good (refunded).", t, registry=r)
        self.retried = Counter(
            "aijobs_jobs_retried", "Attempts that failed and were scheduled again.", t, registry=r
        )
        self.cancelled = Counter("aijobs_jobs_cancelled", "Running jobs that ended cancelled.", t, registry=r)
        self.rescued = Counter(
            "aijobs_jobs_rescued",
            "Jobs taken back after their lease expired.",
            ["type", "status"],
            registry=r,
        )
        self.fenced = Counter(
            "aijobs_jobs_fenced", "Attempt results refused because the lease was taken over.", t, registry=r
        )
        self.handed_back = Counter(
            "aijobs_jobs_handed_back",
            "Attempts returned to the queue (shutdown, rate limit, provider paused).",
            t,
            registry=r,
        )
        self.processing = Histogram(
            "aijobs_job_processing_seconds",
            "Wall time of one attempt in the worker, by outcome.",
            ["type", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "aijobs_job_queue_wait_seconds",
            "Time from when a job became runnable to its claim.",
            t,
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        pm = ["provider", "model"]
        self.provider_latency = Histogram(
            "aijobs_provider_request_seconds",
            "Provider call latency as the provider reported it.",
            pm,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("aijobs_provider_tokens", "Tokens used, by kind.", [*pm, "kind"], registry=r)
        self.cost = Counter("aijobs_provider_cost_usd", "Estimated provider cost in USD.", pm, registry=r)
        self.debited = Counter("aijobs_credits_debited", "Credits debited at job creation.", t, registry=r)
        # The refund itself is written by a trigger whoever ends the job; only a worker sees the
        # ends it causes. A pending job cancelled through the API or CLI is refunded by that
        # trigger with no worker involved, and job_cancel does not say whether this call or an
        # earlier one cancelled it, so counting it there could count it twice. Hence the scope.
        self.refunded = Counter(
            "aijobs_credits_refunded",
            "Credits refunded for jobs this worker ended failed or cancelled, or rescued into those"
            " states. Pending jobs cancelled through the API or CLI are refunded by the database"
            " and not counted here; the credit ledger (kind refund) has every refund.",
            t,
            registry=r,
        )
        # multiprocess_mode: how processes' values combine when several serve one scrape
        # (ignored otherwise); "live" drops a process's value when it exits.
        self.in_flight = Gauge(
            "aijobs_worker_jobs_in_flight",
            "Jobs running in this worker.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.leader = Gauge(
            "aijobs_maintenance_leader",
            "1 while this process holds the maintenance lease.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.pruned = Counter(
            "aijobs_retention_pruned_jobs", "Finished jobs deleted by retention.", registry=r
        )
        # By route template and status class only: no user, job id or raw path in a label.
        self.http = Histogram(
            "aijobs_http_request_duration_seconds",
            "HTTP requests the API answered, by method, route template and status class"
            " (an event stream counts when it ends).",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.queue = QueueGauges()
        r.register(self.queue)
        self.scrape_registry = r
        if multiprocess_dir():
            self.scrape_registry = CollectorRegistry()
            MultiProcessCollector(self.scrape_registry)  # type: ignore[no-untyped-call]
            self.scrape_registry.register(self.queue)

    # -- hooks ------------------------------------------------------------------------
    def _child(self, metric: Any, *labels: str) -> Any:
        """The labelled child of `metric`, cached: `labels()` takes a lock and validates on
        every call, and these hooks run for every job on the worker's hot path."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def job_created(self, job_type: str, cost: int) -> None:
        self._child(self.created, job_type).inc()
        self._child(self.debited, job_type).inc(cost)

    def job_claimed(self, job: ClaimedJob) -> None:
        self._child(self.claimed, job.type).inc()
        self._child(self.queue_wait, job.type).observe(max(job.waited_seconds, 0.0))

    def job_finished(self, job: ClaimedJob, finish: Finish, won: bool, seconds: float) -> None:
        """One attempt ended; `won` is False when the fence refused the write.

        `finish.status` is what the write stored: an attempt that ended on its way back to
        pending under a cancel request left the job `cancelled`, and counts as cancelled
        (and refunded); its processing time stays under the attempt's own outcome."""
        self._child(self.processing, job.type, finish.outcome if won else "fenced").observe(seconds)
        self._provider_usage(finish)
        if not won:
            self._child(self.fenced, job.type).inc()
            return
        ending = "cancelled" if finish.status == "cancelled" else finish.outcome
        counter = {
            "completed": self.completed,
            "failed": self.failed,
            "retry": self.retried,
            "cancelled": self.cancelled,
            "handed_back": self.handed_back,
            "rate_limited": self.handed_back,
        }.get(ending)
        if counter is not None:
            self._child(counter, job.type).inc()
        if finish.status in ("failed", "cancelled"):
            self._child(self.refunded, job.type).inc(job.cost)

    def job_rescued(self, job_type: str, status: str) -> None:
        """A lease expired and the job was taken back; a final status there refunds its cost."""
        self._child(self.rescued, job_type, status).inc()
        if status in ("failed", "cancelled"):
            self._child(self.refunded, job_type).inc(_cost_of(job_type))

    def _provider_usage(self, finish: Finish) -> None:
        if finish.provider is None:
            return
        labels = (finish.provider, finish.model or "")
        if finish.latency_ms is not None:
            self._child(self.provider_latency, *labels).observe(finish.latency_ms / 1000.0)
        for kind, value in (
            ("input", finish.input_tokens),
            ("output", finish.output_tokens),
            ("reasoning", finish.reasoning_tokens),
        ):
            if value:
                self._child(self.tokens, *labels, kind).inc(value)
        if finish.cost_usd:
            self._child(self.cost, *labels).inc(float(Decimal(finish.cost_usd)))

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered request; `route` is its template (`/api/jobs/{job_id}`), never the path."""
        kind = method if method in HTTP_METHODS else "other"
        self._child(self.http, kind, route, f"{status // 100}xx").observe(seconds)

    def pruned_jobs(self, n: int) -> None:
        self.pruned.inc(n)

    def render(self) -> bytes:
        """The text exposition format, for a `/metrics` handler."""
        return generate_latest(self.scrape_registry)


@cache
def metrics() -> Metrics:
    """This process's metrics (one registry per process, created on first use)."""
    return Metrics()


def snapshot_from_rows(depth_rows: Iterable[DepthRow], oldest: float | None) -> QueueSnapshot:
    depth = {(r["type"], r["status"]): int(r["count"]) for r in depth_rows}
    return QueueSnapshot(depth=depth, oldest_pending_seconds=oldest, taken_at=time.monotonic())


def _cost_of(job_type: str) -> int:
    try:
        return get_job_type(job_type).cost
    except Exception:
        return 0
