"""Jobs: the queue's claim, finish, heartbeat and rescue, cancellation, and reads
(queries/jobs.sql). Creation is `create` here, the one way in (aijobs.create_jobs)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast
from uuid import UUID

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import args_row, class_row, dict_row
from psycopg.types.json import Jsonb

from aijobs import errors
from aijobs.db import creation
from aijobs.db.queries import query
from aijobs.db.read_rows import (
    AccountSettingsRow,
    AttemptRow,
    CancelRow,
    FoundJobRow,
    JobDetailRow,
    JobRow,
    StatusSummaryRow,
)
from aijobs.db.refusals import element_error, refusals
from aijobs.db.rows import ClaimedJob, CreatedJob, Finish, GroupedCreation, JobSpec, Rescued

#: psycopg forgets a statement whose first prepared execution fails, yet the server keeps it
#: prepared, so a connection on which no creation has succeeded yet gathers one server-side
#: statement per refusal: one user with no credits could grow a backend's memory at will.
#: After a refusal outside a transaction, a connection holding more than this many drops
#: them all; psycopg keeps at most 100 of its own (`prepared_max`).
PREPARED_STATEMENTS_CAP = 200


class JobsRepo:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self._creator: psycopg.AsyncCursor[CreatedJob] | None = None

    async def create(
        self,
        *,
        user_id: UUID | None,
        jobs: Sequence[JobSpec],
        quota: bool = False,
        tenant: UUID | None = None,
    ) -> list[CreatedJob]:
        """Charge and insert jobs for one user (aijobs.create_jobs), all or nothing, rows in
        input order, or raise the typed refusal. `user_id` None: the signed-in user of a
        session as `authenticated`. With `quota` a trusted caller (the API acting for a user)
        is held to the deployment's in-flight quota, as a user's own call always is. The jobs
        take `tenant`'s turns (None: the user's; a session as `authenticated` gets the one its
        JWT names and may name no other).

        The cursor is kept for the session: a new psycopg cursor looks up every parameter's
        dumper and every column's loader again, a noticeable part of a creation's client CPU.
        Tasks sharing a session may share it: nothing between `execute` and `fetchall` yields.
        """
        if self._creator is None:
            self._creator = self.conn.cursor(row_factory=args_row(CreatedJob))
        cur = self._creator
        try:
            with refusals():
                name, params = creation.statement(user_id=user_id, jobs=jobs, quota=quota, tenant=tenant)
                await cur.execute(query(name), params, prepare=True)
                return await cur.fetchall()
        except errors.AijobsError:
            await self._bound_prepared()
            raise

    async def create_grouped(self, requests: Sequence[GroupedCreation]) -> list[CreatedJob | Exception]:
        """Several API requests' single creations, each for its own user and refused on its
        own, in one statement and one commit: for each request in order, its job or the error
        it would have raised alone. Only outside a transaction (each element is a
        subtransaction of the statement's own)."""
        if self.conn.info.transaction_status != TransactionStatus.IDLE:
            raise RuntimeError("create_grouped runs only in autocommit, outside a transaction")
        cur = await self.conn.execute(
            query("job_create_grouped"), creation.grouped_params(requests), prepare=True
        )
        outcomes: list[CreatedJob | Exception | None] = [None] * len(requests)
        for row in await cur.fetchall():
            ord_, *job, state, message, detail = row
            outcomes[ord_ - 1] = CreatedJob(*job) if state is None else element_error(state, message, detail)
        if any(o is None for o in outcomes):
            raise RuntimeError("aijobs.create_jobs_grouped did not answer for every request")
        return [o for o in outcomes if o is not None]

    async def _bound_prepared(self) -> None:
        """Drop this connection's prepared statements if refusals have left more than
        PREPARED_STATEMENTS_CAP of them. Only outside a transaction: inside one, the refusal
        has aborted it and its rollback comes first."""
        if self.conn.info.transaction_status != TransactionStatus.IDLE:
            return
        try:
            row = await (await self.conn.execute(query("conn_prepared_count"))).fetchone()
            if row is not None and row[0] > PREPARED_STATEMENTS_CAP:
                await self.conn.execute(query("conn_deallocate_all"))
        except psycopg.Error:  # the refusal is the caller's answer, not this
            pass

    async def claim(self, worker_id: str, limit: int, lease_seconds: float) -> list[ClaimedJob]:
        # Positional: the query returns ClaimedJob's fields in order (no per-row kwargs dict).
        async with self.conn.cursor(row_factory=args_row(ClaimedJob)) as cur:
            await cur.execute(
                query("job_claim"),
                {"worker_id": worker_id, "limit": limit, "lease_seconds": lease_seconds},
                prepare=True,
            )
            return await cur.fetchall()

    async def finish(self, rows: Sequence[Finish], worker_id: str) -> dict[tuple[UUID, int], str]:
        """End attempts `worker_id` ran; returns {(job id, lease token): the status written}
        for the writes that won (the others were fenced out). Keyed by attempt, not job: a
        batch may hold a stale attempt of a job beside its current one. The status written is
        the row's own, except that a cancel asked meanwhile turns a way back to `pending` into
        `cancelled`. The attempt rows of the winners are written by the same statement."""
        if not rows:
            return {}
        cur = await self.conn.execute(
            query("job_finish_many"),
            {"rows": Jsonb([r.as_json() for r in rows]), "worker_id": worker_id},
            prepare=True,
        )
        return {(row[0], row[1]): row[2] for row in await cur.fetchall()}

    async def heartbeat(
        self, ids: Sequence[UUID], tokens: Sequence[int], lease_seconds: float
    ) -> dict[UUID, bool]:
        """Extend held leases; returns {job id: cancel requested} for leases still held."""
        cur = await self.conn.execute(
            query("job_heartbeat"),
            {"ids": list(ids), "tokens": list(tokens), "lease_seconds": lease_seconds},
            prepare=True,
        )
        return {row[0]: row[1] for row in await cur.fetchall()}

    async def rescue_expired(self, limit: int = 100) -> list[Rescued]:
        async with self.conn.cursor(row_factory=class_row(Rescued)) as cur:
            await cur.execute(query("job_rescue_expired"), {"limit": limit}, prepare=True)
            return await cur.fetchall()

    async def cancel(self, job_id: UUID, user_id: UUID | None = None) -> CancelRow | None:
        with refusals():
            async with self.conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query("job_cancel"), {"id": job_id, "user_id": user_id})
                return cast("CancelRow | None", await cur.fetchone())

    async def expedite(self, job_id: UUID) -> bool:
        """Move a pending job ahead of every other tenant's; False when it is not pending."""
        with refusals():
            cur = await self.conn.execute(query("job_expedite"), {"id": job_id})
            return await cur.fetchone() is not None

    async def get(self, job_id: UUID) -> JobDetailRow | None:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("job_get"), {"id": job_id})
            return cast("JobDetailRow | None", await cur.fetchone())

    async def find_by_id_part(
        self, low: UUID, high: UUID, suffix: str, *, scan: int, limit: int
    ) -> list[FoundJobRow]:
        """Jobs with an id in [low, high] that ends with `suffix` (hex digits, no dashes),
        among the newest `scan` ids of that range; the newest `limit`, newest first."""
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                query("job_find_by_id_part"),
                {"low": low, "high": high, "suffix": suffix, "scan": scan, "limit": limit},
            )
            return cast("list[FoundJobRow]", await cur.fetchall())

    async def attempts(self, job_id: UUID) -> list[AttemptRow]:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("job_attempts_for"), {"id": job_id})
            return cast("list[AttemptRow]", await cur.fetchall())

    async def page(
        self,
        *,
        user_id: UUID | None = None,
        status: str | None = None,
        type: str | None = None,
        before: tuple[datetime, UUID] | None = None,
        limit: int = 50,
    ) -> list[JobRow]:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                query("job_list"),
                {
                    "user_id": user_id,
                    "status": status,
                    "type": type,
                    "before_created_at": before[0] if before else None,
                    "before_id": before[1] if before else None,
                    "limit": limit,
                },
            )
            return cast("list[JobRow]", await cur.fetchall())

    async def status_summary(self) -> list[StatusSummaryRow]:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("job_status_summary"))
            return cast("list[StatusSummaryRow]", await cur.fetchall())

    async def get_for_api(self, job_id: UUID) -> JobRow | None:
        """One job as the API shows it (None when absent or not visible to this role)."""
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("api_job_get"), {"id": job_id}, prepare=True)
            return cast("JobRow | None", await cur.fetchone())

    async def status_of(self, job_id: UUID) -> str | None:
        """Only the status: what an SSE stream or a long poll re-reads."""
        cur = await self.conn.execute(query("api_job_status"), {"id": job_id}, prepare=True)
        row = await cur.fetchone()
        return str(row[0]) if row else None

    async def in_flight(self, user_id: UUID) -> int:
        """How many of the user's jobs are pending or processing."""
        cur = await self.conn.execute(query("api_in_flight_count"), {"user_id": user_id})
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def account_settings_for_job(self, job_id: UUID) -> AccountSettingsRow | None:
        """The settings of the account that owns `job_id` (None when it has none)."""
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("account_settings_for_job"), {"job_id": job_id})
            return cast("AccountSettingsRow | None", await cur.fetchone())
