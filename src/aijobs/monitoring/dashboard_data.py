"""Everything one dashboard refresh shows, read in one session (each query a few ms at 1M jobs)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aijobs.db.read_rows import FailureRow, LeaderRow, QueueSampleRow
from aijobs.db.store import Session
from aijobs.monitoring import charts
from aijobs.monitoring.maintenance import LEADER_NAME
from aijobs.monitoring.stats import SeriesPoint, Stats, collect, series

CHART_MINUTES = 60
BUCKET_SECONDS = 60


@dataclass
class DashboardData:
    stats: Stats
    points: list[SeriesPoint]
    queue_points: list[tuple[int | None, int | None]]
    failures: list[FailureRow]
    leader: LeaderRow | None

    def charts(self) -> dict[str, str]:
        """The four charts as inline SVG, over the last hour in one-minute buckets."""
        first = self.points[0].at if self.points else datetime.now(UTC)
        labels = (f"{first:%H:%M}", "now")
        ended = [p.completed + p.failed for p in self.points]
        return {
            "throughput": charts.chart(
                "Jobs finished per minute",
                [
                    charts.Line("completed", [p.completed for p in self.points], "#16a34a", bars=True),
                    charts.Line("failed", [p.failed for p in self.points], "#dc2626", bars=True),
                ],
                labels,
                chart_id="chart-throughput",
            ),
            "queue": charts.chart(
                "Queue depth",
                [
                    charts.Line("pending", [q[0] for q in self.queue_points], "#d97706"),
                    charts.Line("processing", [q[1] for q in self.queue_points], "#2563eb"),
                ],
                labels,
                chart_id="chart-queue",
            ),
            "latency": charts.chart(
                "Processing time",
                [
                    charts.Line("p50", [p.p50 for p in self.points], "#2563eb"),
                    charts.Line("p95", [p.p95 for p in self.points], "#7c3aed"),
                    charts.Line(
                        "provider p95",
                        [
                            p.provider_p95_ms / 1000 if p.provider_p95_ms is not None else None
                            for p in self.points
                        ],
                        "#0d9488",
                    ),
                ],
                labels,
                unit="s",
                chart_id="chart-latency",
            ),
            "errors": charts.chart(
                "Error rate",
                [
                    charts.Line(
                        "failed share",
                        [p.failed / n if n else None for p, n in zip(self.points, ended, strict=True)],
                        "#dc2626",
                    )
                ],
                labels,
                unit="%",
                chart_id="chart-errors",
            ),
        }


async def load(session: Session, *, dead_after_seconds: float, failures: int = 12) -> DashboardData:
    stats = await collect(session, dead_after_seconds=dead_after_seconds)
    points = await series(session, CHART_MINUTES, BUCKET_SECONDS)
    samples = await session.monitoring.queue_series(CHART_MINUTES)
    return DashboardData(
        stats=stats,
        points=points,
        queue_points=queue_buckets(points, samples, stats),
        failures=await session.monitoring.recent_failures(failures),
        leader=await session.monitoring.leader_get(LEADER_NAME),
    )


def queue_buckets(
    points: list[SeriesPoint], samples: list[QueueSampleRow], stats: Stats
) -> list[tuple[int | None, int | None]]:
    """The highest sampled depth in each chart bucket; the last bucket also counts the live value."""
    step = timedelta(seconds=BUCKET_SECONDS)
    out: list[tuple[int | None, int | None]] = []
    i = 0
    for point in points:
        pending: int | None = None
        processing: int | None = None
        while i < len(samples) and samples[i]["sampled_at"] < point.at + step:
            if samples[i]["sampled_at"] >= point.at:
                pending = max(pending or 0, samples[i]["pending"])
                processing = max(processing or 0, samples[i]["processing"])
            i += 1
        out.append((pending, processing))
    if out:
        last_p, last_r = out[-1]
        out[-1] = (max(last_p or 0, stats.pending), max(last_r or 0, stats.processing))
    return out
