"""The invariant checks of `aijobs check` (queries/invariants.sql)."""

from __future__ import annotations

from typing import Any, Literal, get_args

import psycopg
from psycopg.rows import dict_row

from aijobs.db.queries import query

#: The invariant checks in invariants.sql, in the order `aijobs check` reports them.
InvariantQuery = Literal[
    "inv_job_lost",
    "inv_attempt_budget",
    "inv_balance",
    "inv_debit",
    "inv_refund",
    "inv_completed_once",
    "inv_attempt_open",
]
INVARIANT_QUERIES: tuple[InvariantQuery, ...] = get_args(InvariantQuery)


class InvariantsRepo:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def begin_snapshot(self) -> None:
        """Make the enclosing transaction one read-only snapshot, so checks agree with each other."""
        await self.conn.execute(query("inv_snapshot"))

    async def violations(self, check: InvariantQuery, limit: int) -> tuple[int, list[tuple[str, str]]]:
        """(total violations, up to `limit` of them as (subject, detail)) for one `inv_*` check."""
        if check not in INVARIANT_QUERIES:
            raise ValueError(f"not an invariant query: {check!r}")
        cur = await self.conn.execute(query(check), {"limit": limit})
        rows = await cur.fetchall()
        total = int(rows[0][2]) if rows else 0
        return total, [(str(r[0]), str(r[1])) for r in rows]

    async def summary(self) -> dict[str, int]:
        """Counts of what the checks looked at (jobs by status, attempts, ledger rows)."""
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("inv_summary"))
            row = await cur.fetchone()
        assert row is not None
        return {k: int(v) for k, v in row.items()}
