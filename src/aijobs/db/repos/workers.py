"""The workers table: registration, heartbeat, stop (queries/workers.sql)."""

from __future__ import annotations

from typing import Any

import psycopg

from aijobs.db.queries import query


class WorkersRepo:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def register(self, *, worker_id: str, host: str, pid: int, version: str, concurrency: int) -> None:
        await self.conn.execute(
            query("worker_register"),
            {"id": worker_id, "host": host, "pid": pid, "version": version, "concurrency": concurrency},
        )

    async def beat(self, worker_id: str, in_flight: int) -> bool:
        """Whether the worker's row was there to update (retention forgets a worker that has
        not beaten for a day: one cut off that long registers again)."""
        cur = await self.conn.execute(
            query("worker_beat"), {"id": worker_id, "in_flight": in_flight}, prepare=True
        )
        return cur.rowcount > 0

    async def stop(self, worker_id: str) -> None:
        await self.conn.execute(query("worker_stop"), {"id": worker_id})
