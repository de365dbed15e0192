"""The numbers `aijobs stats` prints and the dashboard shows, computed once for both.

Everything but `status_summary` (the seed's own all-time query, kept so its numbers can be
compared with ours) is bounded by a time window or by the live queue, and reads indexes made
for it (db/schema.sql), so the cost does not grow with history.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aijobs.db.provider_rows import ProviderPause
from aijobs.db.read_rows import DepthRow, StatusSummaryRow, TenantDepthRow, WorkerRow
from aijobs.db.store import Session

WINDOWS = (1, 5, 15, 60)


@dataclass
class Window:
    """Finished work in the last `minutes`: per-minute rates, latencies (seconds), errors.

    p50/p95/avg are processing times: each the duration of the attempt that completed a job
    (what `aijobs_job_processing_seconds{outcome="completed"}` observes), so backoff between
    retries and rate-limit holds are not in them. avg_wait runs from creation to first claim.
    """

    minutes: int
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    completed_after_retry: int = 0
    attempts: int = 0
    retries: int = 0
    lost: int = 0
    rate_limited: int = 0
    p50: float | None = None
    p95: float | None = None
    avg: float | None = None
    avg_wait: float | None = None

    @property
    def completed_per_minute(self) -> float:
        return self.completed / self.minutes

    @property
    def failed_per_minute(self) -> float:
        return self.failed / self.minutes

    @property
    def error_rate(self) -> float | None:
        """Failed share of jobs that ended completed or failed (None when none ended)."""
        ended = self.completed + self.failed
        return self.failed / ended if ended else None

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "completed_per_minute": round(self.completed_per_minute, 3),
            "failed_per_minute": round(self.failed_per_minute, 3),
            "error_rate": self.error_rate,
        }


@dataclass
class ProviderWindow:
    minutes: int
    provider: str
    model: str
    calls: int
    p50_ms: float | None
    p95_ms: float | None
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal


@dataclass
class Stats:
    taken_at: datetime
    queue_depth: list[DepthRow]
    #: Since the earliest passed run_at of a pending job (None when none may run yet).
    oldest_pending_seconds: float | None
    windows: list[Window]
    providers: list[ProviderWindow]
    workers: list[WorkerRow]
    status_summary: list[StatusSummaryRow] = field(default_factory=list)
    #: The tenants with the most jobs pending, then processing (fair share: they take turns).
    top_tenants: list[TenantDepthRow] = field(default_factory=list)
    #: Providers no worker calls until a probe is answered (a wrong key, an unknown model...).
    provider_pauses: list[ProviderPause] = field(default_factory=list)

    @property
    def pending(self) -> int:
        return sum(int(r["count"]) for r in self.queue_depth if r["status"] == "pending")

    @property
    def processing(self) -> int:
        return sum(int(r["count"]) for r in self.queue_depth if r["status"] == "processing")

    def window(self, minutes: int) -> Window:
        return next(w for w in self.windows if w.minutes == minutes)

    def live_workers(self) -> list[WorkerRow]:
        return [w for w in self.workers if w["state"] == "alive"]

    def as_json(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at.isoformat(),
            "queue": {
                "pending": self.pending,
                "processing": self.processing,
                "oldest_pending_seconds": self.oldest_pending_seconds,
                "depth": self.queue_depth,
                "top_tenants": [{**t, "tenant": str(t["tenant"])} for t in self.top_tenants],
            },
            "windows": [w.as_json() for w in self.windows],
            "providers": [{**asdict(p), "cost_usd": str(p.cost_usd)} for p in self.providers],
            "provider_pauses": [
                {
                    "provider": p.provider,
                    "reason": p.paused_reason,
                    "since": p.paused_since.isoformat(),
                    "seconds": round(p.paused_seconds, 3),
                }
                for p in self.provider_pauses
            ],
            "workers": self.workers,
            "status_summary": self.status_summary,
        }


async def collect(
    session: Session,
    *,
    windows: tuple[int, ...] = WINDOWS,
    dead_after_seconds: float = 30.0,
    include_summary: bool = False,
    tenants: int = 10,
) -> Stats:
    """Read every figure. `include_summary` adds the seed's all-time query (a full scan)."""
    by_minutes = {m: Window(minutes=m) for m in windows}
    for row in await session.monitoring.job_windows(windows):
        w = by_minutes[row["minutes"]]
        w.completed, w.failed, w.cancelled = row["completed"], row["failed"], row["cancelled"]
        w.completed_after_retry = row["completed_after_retry"]
        w.p50, w.p95, w.avg, w.avg_wait = (
            _f(row["p50"]),
            _f(row["p95"]),
            _f(row["avg"]),
            _f(row["avg_wait"]),
        )
    for attempt_row in await session.monitoring.attempt_windows(windows):
        w = by_minutes[attempt_row["minutes"]]
        w.attempts, w.retries, w.lost, w.rate_limited = (
            attempt_row["attempts"],
            attempt_row["retries"],
            attempt_row["lost"],
            attempt_row["rate_limited"],
        )
    providers = [
        ProviderWindow(
            minutes=row["minutes"],
            provider=row["provider"],
            model=row["model"],
            calls=row["calls"],
            p50_ms=_f(row["p50_ms"]),
            p95_ms=_f(row["p95_ms"]),
            input_tokens=int(row["input_tokens"]),
            output_tokens=int(row["output_tokens"]),
            reasoning_tokens=int(row["reasoning_tokens"]),
            cost_usd=Decimal(row["cost_usd"]),
        )
        for row in await session.monitoring.provider_windows(windows)
    ]
    stats = Stats(
        taken_at=datetime.now(UTC),
        queue_depth=await session.monitoring.queue_depth(),
        oldest_pending_seconds=await session.monitoring.oldest_pending_seconds(),
        windows=[by_minutes[m] for m in windows],
        providers=providers,
        workers=await session.monitoring.workers(dead_after_seconds),
        top_tenants=await session.monitoring.top_tenants(tenants),
        provider_pauses=await session.providers.pauses(),
    )
    if include_summary:
        stats.status_summary = await session.jobs.status_summary()
    return stats


@dataclass
class SeriesPoint:
    at: datetime
    completed: int = 0
    failed: int = 0
    p50: float | None = None
    p95: float | None = None
    provider_p50_ms: float | None = None
    provider_p95_ms: float | None = None


async def series(session: Session, minutes: int = 60, bucket_seconds: int = 60) -> list[SeriesPoint]:
    """Per-bucket throughput and latencies for the charts, with empty buckets filled in."""
    points: dict[datetime, SeriesPoint] = {}
    for row in await session.monitoring.job_series(minutes, bucket_seconds):
        points[row["bucket"]] = SeriesPoint(
            at=row["bucket"],
            completed=row["completed"],
            failed=row["failed"],
            p50=_f(row["p50"]),
            p95=_f(row["p95"]),
        )
    for call_row in await session.monitoring.provider_series(minutes, bucket_seconds):
        point = points.setdefault(call_row["bucket"], SeriesPoint(at=call_row["bucket"]))
        point.provider_p50_ms, point.provider_p95_ms = _f(call_row["p50_ms"]), _f(call_row["p95_ms"])
    return fill_buckets(points, minutes, bucket_seconds)


def fill_buckets(
    points: dict[datetime, SeriesPoint], minutes: int, bucket_seconds: int, now: datetime | None = None
) -> list[SeriesPoint]:
    """One point per bucket from `minutes` ago to now, aligned like SQL's date_bin."""
    now = now or datetime.now(UTC)
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    step = timedelta(seconds=bucket_seconds)
    last = epoch + step * ((now - epoch) // step)
    count = max(1, minutes * 60 // bucket_seconds)
    out = []
    for i in range(count - 1, -1, -1):
        at = last - step * i
        out.append(points.get(at, SeriesPoint(at=at)))
    return out


def _f(value: Any) -> float | None:
    return float(value) if value is not None else None
