"""What running attempts stream, piece by piece (queries/streams.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from aijobs.db.queries import query


@dataclass(frozen=True)
class StreamChunk:
    lease_token: int
    seq: int
    text: str


class StreamsRepo:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def append(self, job_id: UUID, lease_token: int, seq: int, text: str) -> bool:
        """Write one piece and announce it; False when the attempt no longer holds the lease."""
        cur = await self.conn.execute(
            query("job_stream_append"),
            {"job_id": job_id, "lease_token": lease_token, "seq": seq, "text": text},
            prepare=True,
        )
        return await cur.fetchone() is not None

    async def read(self, job_id: UUID, *, after_lease: int, after_seq: int) -> list[StreamChunk]:
        """The latest attempt's pieces after (after_lease, after_seq), in order."""
        cur = await self.conn.execute(
            query("job_stream_read"), {"job_id": job_id, "lease_token": after_lease, "seq": after_seq}
        )
        return [StreamChunk(*row) for row in await cur.fetchall()]

    async def prune(self, grace_seconds: float, batch: int) -> int:
        cur = await self.conn.execute(
            query("job_stream_prune"), {"grace_seconds": grace_seconds, "batch": batch}
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0
