"""The job types the database knows (queries/job_types.sql): synced from the registry by
`aijobs migrate`, listed for the worker's start check, enabled and disabled per deployment."""

from __future__ import annotations

from typing import Any, cast

import psycopg
from psycopg.rows import dict_row

from aijobs.db.queries import query
from aijobs.db.read_rows import StoredJobTypeRow


class JobTypesRepo:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def list(self) -> list[StoredJobTypeRow]:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("job_types_list"))
            return cast("list[StoredJobTypeRow]", await cur.fetchall())

    async def set_enabled(self, name: str, enabled: bool) -> bool:
        """False when the database has no such type."""
        cur = await self.conn.execute(query("job_type_set_enabled"), {"name": name, "enabled": enabled})
        return await cur.fetchone() is not None
