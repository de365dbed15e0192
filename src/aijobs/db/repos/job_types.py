"""The job types the database knows (queries/job_types.sql): synced from the registry by
`aijobs migrate`, listed for the worker's start check, enabled/disabled and paused/resumed
per deployment."""

from __future__ import annotations

import builtins
from typing import Any, cast

import psycopg
from psycopg.rows import dict_row

from aijobs.db.queries import query
from aijobs.db.read_rows import JobTypeSwitchRow, StoredJobTypeRow


class JobTypesRepo:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def list(self) -> list[StoredJobTypeRow]:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("job_types_list"))
            return cast("list[StoredJobTypeRow]", await cur.fetchall())

    async def switches(self) -> builtins.list[JobTypeSwitchRow]:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("job_types_switches"))
            return cast("builtins.list[JobTypeSwitchRow]", await cur.fetchall())

    async def switch(
        self,
        name: str,
        *,
        enabled: bool | None = None,
        paused: bool | None = None,
        max_running_per_tenant: int | None = None,
    ) -> JobTypeSwitchRow | None:
        """Set the switches given (None leaves one as it is; a limit of 0 removes the type's
        own limit on running jobs per tenant); None when the database has no such type. A
        resume, or a limit raised or removed, wakes idle workers, so jobs that waited start."""
        params = {"name": name, "enabled": enabled, "paused": paused, "max_running": max_running_per_tenant}
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("job_type_switch"), params)
            row = await cur.fetchone()
        if row is not None and (paused is False or max_running_per_tenant is not None):
            await self.conn.execute(query("job_type_wake"), {"name": name})
        return cast("JobTypeSwitchRow | None", row)
