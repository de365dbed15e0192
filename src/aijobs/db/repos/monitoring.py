"""Stats, dashboard, queue samples, the maintenance leader and retention
(queries/monitoring.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar, cast

import psycopg
from psycopg.rows import dict_row

from aijobs.db.queries import query
from aijobs.db.read_rows import (
    AttemptWindowRow,
    DepthRow,
    FailureRow,
    JobSeriesRow,
    JobWindowRow,
    LeaderRow,
    ProviderSeriesRow,
    ProviderWindowRow,
    QueueSampleRow,
    TenantDepthRow,
    WorkerRow,
)

R = TypeVar("R")


class MonitoringRepo:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def queue_depth(self) -> list[DepthRow]:
        """Pending/processing counts per type, read from the live-queue index only."""
        return await self._rows(DepthRow, "mon_queue_depth")

    async def top_tenants(self, limit: int = 10) -> list[TenantDepthRow]:
        """The tenants with the most jobs waiting (then running), from the live queue only."""
        return await self._rows(TenantDepthRow, "mon_top_tenants", {"limit": limit})

    async def oldest_pending_seconds(self) -> float | None:
        rows = await self._rows(dict, "mon_oldest_pending")
        value = rows[0]["seconds"] if rows else None
        return float(value) if value is not None else None

    async def job_windows(self, windows: Sequence[int]) -> list[JobWindowRow]:
        return await self._rows(
            JobWindowRow, "mon_job_windows", {"windows": list(windows), "max_minutes": max(windows)}
        )

    async def attempt_windows(self, windows: Sequence[int]) -> list[AttemptWindowRow]:
        return await self._rows(
            AttemptWindowRow, "mon_attempt_windows", {"windows": list(windows), "max_minutes": max(windows)}
        )

    async def provider_windows(self, windows: Sequence[int]) -> list[ProviderWindowRow]:
        return await self._rows(
            ProviderWindowRow, "mon_provider_windows", {"windows": list(windows), "max_minutes": max(windows)}
        )

    async def job_series(self, minutes: int, bucket_seconds: int) -> list[JobSeriesRow]:
        return await self._rows(
            JobSeriesRow, "mon_job_series", {"minutes": minutes, "bucket_seconds": bucket_seconds}
        )

    async def provider_series(self, minutes: int, bucket_seconds: int) -> list[ProviderSeriesRow]:
        return await self._rows(
            ProviderSeriesRow, "mon_provider_series", {"minutes": minutes, "bucket_seconds": bucket_seconds}
        )

    async def queue_series(self, minutes: int) -> list[QueueSampleRow]:
        return await self._rows(QueueSampleRow, "mon_queue_series", {"minutes": minutes})

    async def workers(self, dead_after_seconds: float, stopped_minutes: int = 60) -> list[WorkerRow]:
        return await self._rows(
            WorkerRow,
            "mon_workers",
            {"dead_after_seconds": dead_after_seconds, "stopped_minutes": stopped_minutes},
        )

    async def recent_failures(self, limit: int = 20) -> list[FailureRow]:
        return await self._rows(FailureRow, "mon_recent_failures", {"limit": limit})

    async def queue_sample(self) -> None:
        await self.conn.execute(query("mon_queue_sample"))

    async def leader_acquire(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """Take or renew a leader lease; True while `holder` has it (database clock)."""
        cur = await self.conn.execute(
            query("mon_leader_acquire"), {"name": name, "holder": holder, "ttl_seconds": ttl_seconds}
        )
        return await cur.fetchone() is not None

    async def leader_release(self, name: str, holder: str) -> None:
        await self.conn.execute(query("mon_leader_release"), {"name": name, "holder": holder})

    async def leader_get(self, name: str) -> LeaderRow | None:
        rows = await self._rows(LeaderRow, "mon_leader_get", {"name": name})
        return rows[0] if rows else None

    async def prune_jobs(self, age_seconds: float, batch: int) -> int:
        """Delete one batch of finished jobs older than the age; returns how many."""
        cur = await self.conn.execute(query("mon_prune_jobs"), {"age_seconds": age_seconds, "batch": batch})
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def prune_samples(self, age_seconds: float) -> int:
        cur = await self.conn.execute(query("mon_prune_samples"), {"age_seconds": age_seconds})
        return cur.rowcount

    async def prune_workers(self, age_seconds: float) -> int:
        cur = await self.conn.execute(query("mon_prune_workers"), {"age_seconds": age_seconds})
        return cur.rowcount

    async def _rows(self, shape: type[R], name: str, params: dict[str, Any] | None = None) -> list[R]:
        """The rows of `name`, as `shape` (a TypedDict naming the query's columns)."""
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query(name), params or {})
            return cast(list[R], await cur.fetchall())
