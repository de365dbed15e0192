"""The HTTP API's Idempotency-Key store (queries/idempotency.sql), written as the API's own
role inside the transaction of the creation it describes."""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from aijobs.db.queries import query
from aijobs.db.read_rows import IdempotencyRow


class IdempotencyRepo:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def claim(self, user_id: UUID, key: str, request_hash: str) -> bool:
        """True when this request now owns the key; False when it was already recorded."""
        cur = await self.conn.execute(
            query("api_idempotency_claim"), {"user_id": user_id, "key": key, "request_hash": request_hash}
        )
        return await cur.fetchone() is not None

    async def get(self, user_id: UUID, key: str) -> IdempotencyRow | None:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("api_idempotency_get"), {"user_id": user_id, "key": key})
            return cast("IdempotencyRow | None", await cur.fetchone())

    async def save(self, user_id: UUID, key: str, *, status: int, body: Any, job_id: UUID | None) -> None:
        await self.conn.execute(
            query("api_idempotency_save"),
            {"user_id": user_id, "key": key, "status": status, "body": Jsonb(body), "job_id": job_id},
        )

    async def purge(self, older_than_hours: float = 24.0) -> int:
        """Forget keys older than the retention; never fewer than 24 hours, Stripe's promise."""
        cur = await self.conn.execute(query("api_idempotency_purge"), {"hours": max(older_than_hours, 24.0)})
        return cur.rowcount
