"""The store: one typed method per named query, over a psycopg connection pool.

`Store.session()` lends a pooled connection as the owner role (worker, CLI, admin);
`Store.as_user(claims)` opens a transaction as Supabase's `authenticated` role with the JWT
claims set locally, so row-level security decides what the request may see. Either way the
caller gets a `Session`, whose methods are the only SQL the rest of aijobs runs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any, Literal, get_args
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import args_row, class_row, dict_row
from psycopg.types.json import Jsonb, set_json_dumps
from psycopg_pool import AsyncConnectionPool

from aijobs import errors
from aijobs.db import creation_params
from aijobs.db.jsonb import json_dumps
from aijobs.db.provider_rows import BudgetReservation, RateLimitHold
from aijobs.db.queries import query
from aijobs.db.rows import Account, ClaimedJob, ClaimsCreation, CreatedJob, Finish, JobSpec, Rescued

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

# SQLSTATEs raised by the SQL functions (see 003_create_credit_consuming_job_function.sql).
_SQLSTATE_ERRORS: dict[str, type[errors.AijobsError]] = {
    "AJ001": errors.UnknownJobType,
    "AJ002": errors.UnknownUser,
    "AJ003": errors.InsufficientCredits,
    "AJ004": errors.Forbidden,
    "AJ005": errors.InvalidArgument,
    "AJ006": errors.TooManyInFlight,
    "42501": errors.Forbidden,  # insufficient_privilege: e.g. `anon` calling a function
}


@contextmanager
def refusals() -> Iterator[None]:
    """Re-raise a typed refusal from SQL as its domain error; anything else unchanged."""
    try:
        yield
    except psycopg.Error as exc:
        mapped = translate(exc)
        if mapped is None:
            raise
        raise mapped from None


def translate(exc: psycopg.Error) -> errors.AijobsError | None:
    """Map a typed refusal from SQL to its domain error (None for anything else)."""
    return _refusal(exc.sqlstate or "", exc.diag.message_primary or str(exc), exc.diag.message_detail)


def _refusal(sqlstate: str, message: str, detail: str | None) -> errors.AijobsError | None:
    kind = _SQLSTATE_ERRORS.get(sqlstate)
    if kind is None:
        return None
    details: dict[str, Any] = json.loads(detail) if detail else {}
    return kind(message, **details)


def element_error(sqlstate: str, message: str, detail: str | None) -> Exception:
    """An error one element of a grouped statement reported in its row, as the error the
    statement would have raised alone: the domain refusal for an AJ code, otherwise
    psycopg's class for that SQLSTATE (so the API answers it as it would have)."""
    mapped = _refusal(sqlstate, message, detail)
    if mapped is not None:
        return mapped
    try:
        kind = psycopg.errors.lookup(sqlstate)
    except KeyError:
        kind = psycopg.DatabaseError
    return kind(f"{message} (SQLSTATE {sqlstate})")


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    set_json_dumps(json_dumps, conn)


#: psycopg forgets a statement whose first prepared execution fails, yet the server keeps it
#: prepared (3.3's PrepareManager.validate drops the name and sends no DEALLOCATE). A refused
#: creation (no credits, unknown type or user) is such a failure, so a connection on which no
#: creation has succeeded yet gathers one server-side statement per refusal, without end: one
#: user with no credits could grow a backend's memory at will. After a refusal outside a
#: transaction, a connection holding more than this many drops them all (`bound_prepared`);
#: psycopg keeps at most 100 of its own (`prepared_max`), so a healthy one never gets there.
PREPARED_STATEMENTS_CAP = 200


class Session:
    """Typed queries on one connection (inside whatever transaction the caller holds)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self._creator: psycopg.AsyncCursor[CreatedJob] | None = None

    # -- queue hot path -------------------------------------------------------------
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

    # -- jobs -----------------------------------------------------------------------
    async def create_job(
        self,
        *,
        user_id: UUID | None,
        type: str,
        payload: dict[str, Any],
        priority: int = 0,
        run_at: datetime | None = None,
        max_attempts: int = 4,
        idempotency_key: str | None = None,
        retry_of: UUID | None = None,
        max_in_flight: int | None = None,
    ) -> CreatedJob:
        """Charge and insert through the credit-consuming function, or raise its typed error.

        With `max_in_flight` (the API, as the signed-in user) the same statement first
        refuses a user whose pending and processing jobs reach the cap (TooManyInFlight).
        """
        params = creation_params.single(
            user_id=user_id,
            type=type,
            payload=payload,
            priority=priority,
            run_at=run_at,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
            retry_of=retry_of,
            max_in_flight=max_in_flight,
        )
        statement = query(creation_params.single_statement(max_in_flight))
        return await self._create(statement, params)

    async def create_jobs(
        self, *, user_id: UUID | None, jobs: Sequence[JobSpec], max_in_flight: int | None = None
    ) -> list[CreatedJob]:
        """Charge and insert a batch for one user in one statement, all or nothing; rows in
        input order. The SQL function takes one array per field: element i of each is job i.

        With `max_in_flight` (the API, as the signed-in user) the statement first refuses a
        batch that would take the user's pending and processing jobs past the cap.
        """
        params = creation_params.batch(user_id=user_id, jobs=jobs, max_in_flight=max_in_flight)
        try:
            with refusals():
                async with self.conn.cursor(row_factory=args_row(CreatedJob)) as cur:
                    await cur.execute(query(creation_params.batch_statement(max_in_flight)), params)
                    return await cur.fetchall()
        except errors.AijobsError:
            await self.bound_prepared()
            raise

    async def create_jobs_for_claims(
        self, requests: Sequence[ClaimsCreation], *, max_in_flight: int
    ) -> list[CreatedJob | Exception]:
        """Several API requests' creations, each as its own user and each refused on its
        own, in one statement and one commit (019): for each request in order, its job or
        the error it would have raised alone (`element_error`).

        Only outside a transaction: the function switches to `authenticated` for the rest of
        the transaction it runs in, which in autocommit ends with the statement.
        """
        if self.conn.info.transaction_status != TransactionStatus.IDLE:
            raise RuntimeError("create_jobs_for_claims runs only in autocommit, outside a transaction")
        params = creation_params.grouped(requests=requests, max_in_flight=max_in_flight)
        cur = await self.conn.execute(query("job_create_grouped_for_claims"), params, prepare=True)
        outcomes: list[CreatedJob | Exception | None] = [None] * len(requests)
        for row in await cur.fetchall():
            ord_, *job, state, message, detail = row
            outcomes[ord_ - 1] = CreatedJob(*job) if state is None else element_error(state, message, detail)
        if any(o is None for o in outcomes):
            raise RuntimeError("api_create_jobs_grouped did not answer for every request")
        return [o for o in outcomes if o is not None]

    async def _create(self, statement: sql.SQL, params: dict[str, Any]) -> CreatedJob:
        """One creation on this session's creation cursor.

        The cursor is made once per session and kept: a new psycopg cursor builds its own
        adapters map and transformer and looks up every parameter's dumper and every
        column's loader again: about 15 of the 175 µs of client CPU a creation took (W1
        makes thousands on one session). Rows are built by position (`args_row`):
        `class_row` would match the column names to the fields at every result, and
        `test_created_job_fields_match_the_creation_functions` keeps the order true.
        Tasks sharing a session may share the cursor: nothing between `execute` and
        `fetchone` yields to the loop, so no other call can replace the result in between
        (`test_concurrent_creations_on_one_session_each_read_their_own_row`).
        """
        if self._creator is None:
            self._creator = self.conn.cursor(row_factory=args_row(CreatedJob))
        cur = self._creator
        try:
            with refusals():
                await cur.execute(statement, params, prepare=True)
                row = await cur.fetchone()
        except errors.AijobsError:
            await self.bound_prepared()
            raise
        assert row is not None
        return row

    async def bound_prepared(self) -> None:
        """After a refused creation: drop this connection's prepared statements if a run of
        refusals has left more than PREPARED_STATEMENTS_CAP of them (see there). Only outside
        a transaction: inside one, the refusal has aborted it and its rollback comes first."""
        if self.conn.info.transaction_status != TransactionStatus.IDLE:
            return
        with contextlib.suppress(psycopg.Error):  # the refusal is the caller's answer, not this
            row = await (await self.conn.execute(query("conn_prepared_count"))).fetchone()
            if row is not None and row[0] > PREPARED_STATEMENTS_CAP:
                await self.conn.execute(query("conn_deallocate_all"))

    async def cancel_job(self, job_id: UUID, user_id: UUID | None = None) -> dict[str, Any] | None:
        with refusals():
            async with self.conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query("job_cancel"), {"id": job_id, "user_id": user_id})
                return await cur.fetchone()

    async def get_job(self, job_id: UUID) -> dict[str, Any] | None:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("job_get"), {"id": job_id})
            return await cur.fetchone()

    async def job_attempts(self, job_id: UUID) -> list[dict[str, Any]]:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("job_attempts_for"), {"id": job_id})
            return await cur.fetchall()

    async def list_jobs(
        self,
        *,
        user_id: UUID | None = None,
        status: str | None = None,
        type: str | None = None,
        before: tuple[datetime, UUID] | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
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
            return await cur.fetchall()

    async def status_summary(self) -> list[dict[str, Any]]:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("job_status_summary"))
            return await cur.fetchall()

    async def queue_depth(self) -> list[dict[str, Any]]:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("job_queue_depth"))
            return await cur.fetchall()

    # -- accounts -------------------------------------------------------------------
    async def create_account(self, user_id: UUID) -> bool:
        cur = await self.conn.execute(query("account_create"), {"user_id": user_id})
        return await cur.fetchone() is not None

    async def grant_credits(self, user_id: UUID, amount: int, note: str = "grant") -> int:
        with refusals():
            cur = await self.conn.execute(
                query("credit_grant"), {"user_id": user_id, "amount": amount, "note": note}
            )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def get_account(self, user_id: UUID) -> Account | None:
        async with self.conn.cursor(row_factory=class_row(Account)) as cur:
            await cur.execute(query("account_get"), {"user_id": user_id})
            return await cur.fetchone()

    async def ledger(self, user_id: UUID, limit: int = 100) -> list[dict[str, Any]]:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("ledger_for_user"), {"user_id": user_id, "limit": limit})
            return await cur.fetchall()

    # -- workers --------------------------------------------------------------------
    async def register_worker(
        self, *, worker_id: str, host: str, pid: int, version: str, concurrency: int
    ) -> None:
        await self.conn.execute(
            query("worker_register"),
            {"id": worker_id, "host": host, "pid": pid, "version": version, "concurrency": concurrency},
        )

    async def beat_worker(self, worker_id: str, in_flight: int) -> None:
        await self.conn.execute(query("worker_beat"), {"id": worker_id, "in_flight": in_flight}, prepare=True)

    async def stop_worker(self, worker_id: str) -> None:
        await self.conn.execute(query("worker_stop"), {"id": worker_id})

    # -- HTTP API (aijobs.api; queries in queries/api.sql) -----------------------------
    # Run as `authenticated` inside Store.as_user (RLS decides what is visible) or as the
    # owner for admin endpoints; the user_id arguments only narrow what RLS already allows.
    async def api_get_job(self, job_id: UUID) -> dict[str, Any] | None:
        """One job as the API shows it (None when absent or not visible to this role)."""
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("api_job_get"), {"id": job_id}, prepare=True)
            return await cur.fetchone()

    async def api_job_status(self, job_id: UUID) -> str | None:
        """Only the status: what an SSE stream or a long poll re-reads."""
        cur = await self.conn.execute(query("api_job_status"), {"id": job_id}, prepare=True)
        row = await cur.fetchone()
        return str(row[0]) if row else None

    async def api_in_flight(self, user_id: UUID) -> int:
        """How many of the user's jobs are pending or processing."""
        cur = await self.conn.execute(query("api_in_flight_count"), {"user_id": user_id})
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def api_balance(self, user_id: UUID) -> int | None:
        """The user's credit balance, or None when they have no account."""
        cur = await self.conn.execute(query("api_balance"), {"user_id": user_id})
        row = await cur.fetchone()
        return int(row[0]) if row else None

    async def api_ledger_page(
        self, user_id: UUID, *, before_id: int | None, limit: int
    ) -> list[dict[str, Any]]:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                query("api_ledger_page"), {"user_id": user_id, "before_id": before_id, "limit": limit}
            )
            return await cur.fetchall()

    async def api_idempotency_claim(self, user_id: UUID, key: str, request_hash: str) -> bool:
        """True when this request now owns the key; False when it was already recorded."""
        cur = await self.conn.execute(
            query("api_idempotency_claim"), {"user_id": user_id, "key": key, "request_hash": request_hash}
        )
        return await cur.fetchone() is not None

    async def api_idempotency_get(self, user_id: UUID, key: str) -> dict[str, Any] | None:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("api_idempotency_get"), {"user_id": user_id, "key": key})
            return await cur.fetchone()

    async def api_idempotency_save(
        self, user_id: UUID, key: str, *, status: int, body: Any, job_id: UUID | None
    ) -> None:
        await self.conn.execute(
            query("api_idempotency_save"),
            {"user_id": user_id, "key": key, "status": status, "body": Jsonb(body), "job_id": job_id},
        )

    async def api_idempotency_purge(self, older_than_hours: float = 24.0) -> int:
        """Forget keys older than the retention; never fewer than 24 hours, Stripe's promise."""
        cur = await self.conn.execute(query("api_idempotency_purge"), {"hours": max(older_than_hours, 24.0)})
        return cur.rowcount

    async def api_applied_migrations(self) -> set[int]:
        cur = await self.conn.execute(query("api_applied_migrations"))
        return {row[0] for row in await cur.fetchall()}

    # -- monitoring (issue 5: stats, dashboard, maintenance; queries in monitoring.sql) ------
    async def _mon_rows(self, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query(name), params or {})
            return await cur.fetchall()

    async def mon_queue_depth(self) -> list[dict[str, Any]]:
        """Pending/processing counts per type, read from the live-queue index only."""
        return await self._mon_rows("mon_queue_depth")

    async def mon_oldest_pending_seconds(self) -> float | None:
        rows = await self._mon_rows("mon_oldest_pending")
        value = rows[0]["seconds"] if rows else None
        return float(value) if value is not None else None

    async def mon_job_windows(self, windows: Sequence[int]) -> list[dict[str, Any]]:
        return await self._mon_rows(
            "mon_job_windows", {"windows": list(windows), "max_minutes": max(windows)}
        )

    async def mon_attempt_windows(self, windows: Sequence[int]) -> list[dict[str, Any]]:
        return await self._mon_rows(
            "mon_attempt_windows", {"windows": list(windows), "max_minutes": max(windows)}
        )

    async def mon_provider_windows(self, windows: Sequence[int]) -> list[dict[str, Any]]:
        return await self._mon_rows(
            "mon_provider_windows", {"windows": list(windows), "max_minutes": max(windows)}
        )

    async def mon_job_series(self, minutes: int, bucket_seconds: int) -> list[dict[str, Any]]:
        return await self._mon_rows("mon_job_series", {"minutes": minutes, "bucket_seconds": bucket_seconds})

    async def mon_provider_series(self, minutes: int, bucket_seconds: int) -> list[dict[str, Any]]:
        return await self._mon_rows(
            "mon_provider_series", {"minutes": minutes, "bucket_seconds": bucket_seconds}
        )

    async def mon_queue_series(self, minutes: int) -> list[dict[str, Any]]:
        return await self._mon_rows("mon_queue_series", {"minutes": minutes})

    async def mon_workers(self, dead_after_seconds: float, stopped_minutes: int = 60) -> list[dict[str, Any]]:
        return await self._mon_rows(
            "mon_workers", {"dead_after_seconds": dead_after_seconds, "stopped_minutes": stopped_minutes}
        )

    async def mon_recent_failures(self, limit: int = 20) -> list[dict[str, Any]]:
        return await self._mon_rows("mon_recent_failures", {"limit": limit})

    async def mon_queue_sample(self) -> None:
        await self.conn.execute(query("mon_queue_sample"))

    async def mon_leader_acquire(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """Take or renew a leader lease; True while `holder` has it (database clock)."""
        cur = await self.conn.execute(
            query("mon_leader_acquire"), {"name": name, "holder": holder, "ttl_seconds": ttl_seconds}
        )
        return await cur.fetchone() is not None

    async def mon_leader_release(self, name: str, holder: str) -> None:
        await self.conn.execute(query("mon_leader_release"), {"name": name, "holder": holder})

    async def mon_leader_get(self, name: str) -> dict[str, Any] | None:
        rows = await self._mon_rows("mon_leader_get", {"name": name})
        return rows[0] if rows else None

    async def mon_prune_jobs(self, age_seconds: float, batch: int) -> int:
        """Delete one batch of finished jobs older than the age; returns how many."""
        cur = await self.conn.execute(query("mon_prune_jobs"), {"age_seconds": age_seconds, "batch": batch})
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def mon_prune_samples(self, age_seconds: float) -> int:
        cur = await self.conn.execute(query("mon_prune_samples"), {"age_seconds": age_seconds})
        return cur.rowcount

    async def mon_prune_workers(self, age_seconds: float) -> int:
        cur = await self.conn.execute(query("mon_prune_workers"), {"age_seconds": age_seconds})
        return cur.rowcount

    # -- end of monitoring ----------------------------------------------------------------

    # -- providers: rate-limit holds and shared budgets (issue 3, migration 006) ------------
    async def provider_hold_seconds(self, provider: str) -> float:
        """Seconds left on `provider`'s hold by the database clock; 0 when none is in force."""
        cur = await self.conn.execute(query("provider_hold_get"), {"provider": provider}, prepare=True)
        row = await cur.fetchone()
        return float(row[0]) if row else 0.0

    async def provider_rate_limited(
        self,
        *,
        provider: str,
        job_id: UUID,
        lease_token: int,
        retry_after: float,
        reason: str,
        extend: bool = True,
        min_wait: float = 0.0,
    ) -> RateLimitHold:
        """Hold `provider` for every worker (unless `extend` is false) and add the wait to the
        job's total, at least `min_wait` (the job's own backoff), fenced by its lease token."""
        async with self.conn.cursor(row_factory=class_row(RateLimitHold)) as cur:
            await cur.execute(
                query("provider_rate_limited"),
                {
                    "provider": provider,
                    "job_id": job_id,
                    "lease_token": lease_token,
                    "retry_after": retry_after,
                    "reason": reason,
                    "extend": extend,
                    "min_wait": min_wait,
                },
            )
            row = await cur.fetchone()
        assert row is not None
        return row

    async def rate_limited_attempts(self, job_id: UUID) -> int:
        """How many of the job's attempts ended rate limited."""
        cur = await self.conn.execute(query("job_rate_limited_attempts"), {"job_id": job_id})
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def provider_budget_reserve(
        self, *, provider: str, rpm: int | None, tpm: int | None, tokens: int, window_seconds: float
    ) -> BudgetReservation:
        """Take one call from the shared RPM/TPM budget, or learn how long until one frees."""
        async with self.conn.cursor(row_factory=class_row(BudgetReservation)) as cur:
            await cur.execute(
                query("provider_budget_reserve"),
                {
                    "provider": provider,
                    "rpm": rpm,
                    "tpm": tpm,
                    "tokens": tokens,
                    "window_seconds": window_seconds,
                },
                prepare=True,
            )
            row = await cur.fetchone()
        assert row is not None
        return row

    async def provider_budget_settle(self, call_id: int, tokens: int | None) -> None:
        """Count a finished call from its end, with the tokens it really used (None: estimate)."""
        await self.conn.execute(query("provider_budget_settle"), {"call_id": call_id, "tokens": tokens})

    async def provider_limits(self, provider: str) -> dict[str, Any] | None:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("provider_limits_get"), {"provider": provider})
            return await cur.fetchone()

    async def provider_usage_for_job(self, job_id: UUID) -> dict[str, Any] | None:
        """Tokens, estimated cost and latency over every attempt of one job."""
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("provider_usage_for_job"), {"job_id": job_id})
            return await cur.fetchone()

    async def provider_usage_by_user(
        self, *, user_id: UUID | None = None, hours: int = 24
    ) -> list[dict[str, Any]]:
        """Calls, tokens and estimated cost per user, provider and model over the last hours."""
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("provider_usage_by_user"), {"user_id": user_id, "hours": hours})
            return await cur.fetchall()

    # -- end of providers -----------------------------------------------------------------

    # -- invariants (issue 6: aijobs.queue.invariants, `aijobs check`; invariants.sql) -------
    async def inv_begin_snapshot(self) -> None:
        """Make the enclosing transaction one read-only snapshot, so checks agree with each other."""
        await self.conn.execute(query("inv_snapshot"))

    async def inv_violations(self, check: InvariantQuery, limit: int) -> tuple[int, list[tuple[str, str]]]:
        """(total violations, up to `limit` of them as (subject, detail)) for one `inv_*` check."""
        if check not in INVARIANT_QUERIES:
            raise ValueError(f"not an invariant query: {check!r}")
        cur = await self.conn.execute(query(check), {"limit": limit})
        rows = await cur.fetchall()
        total = int(rows[0][2]) if rows else 0
        return total, [(str(r[0]), str(r[1])) for r in rows]

    async def inv_summary(self) -> dict[str, int]:
        """Counts of what the checks looked at (jobs by status, attempts, ledger rows)."""
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("inv_summary"))
            row = await cur.fetchone()
        assert row is not None
        return {k: int(v) for k, v in row.items()}

    # -- end of invariants ----------------------------------------------------------------


class Store:
    """A pool of connections to one database, lent out as Sessions."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    @classmethod
    async def open(
        cls,
        conninfo: str,
        *,
        min_size: int = 1,
        max_size: int = 4,
        name: str = "aijobs",
        prepare: bool = True,
    ) -> Store:
        """`prepare=False` behind a transaction-mode pooler (PgBouncer, Supavisor): psycopg's
        `prepare_threshold=None` then sends every statement unnamed, `prepare=True` included."""
        kwargs: dict[str, Any] = {"autocommit": True, "application_name": name}
        if not prepare:
            kwargs["prepare_threshold"] = None
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs=kwargs,
            open=False,
            # No `check=` round trip before each loan: it doubled the statements on the hot
            # path. A connection broken by a restart fails its query instead; every caller
            # retries, and the pool discards connections returned in a broken state.
            reconnect_timeout=3600,
            configure=_configure,
        )
        await pool.open(wait=True, timeout=30)
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection whose prepared statements are dropped after a 0A000.

        A migration that changes the type of a column a prepared statement returns (014 made
        six of jobs' columns domains) makes PostgreSQL refuse that statement with 0A000,
        "cached plan must not change result type", at every execution on every connection
        that prepared it before: a process of the previous release kept failing until it was
        restarted. After such an error (any 0A000: dropping is harmless, psycopg prepares again
        on use) the connection forgets its statements, so the caller's retry finds it healed.
        Any transaction of the borrower has been rolled back by then (it is the inner block).
        """
        async with self.pool.connection() as conn:
            try:
                yield conn
            except psycopg.errors.FeatureNotSupported:
                if conn.info.transaction_status == TransactionStatus.IDLE:
                    await conn.execute(query("conn_deallocate_all"))
                raise

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        """A connection as the owner role, in autocommit: each query is its own transaction."""
        async with self._connection() as conn:
            yield Session(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        """Several owner-role queries in one transaction."""
        async with self._connection() as conn, conn.transaction():
            yield Session(conn)

    @asynccontextmanager
    async def as_user(self, claims: dict[str, Any] | None) -> AsyncIterator[Session]:
        """A transaction as `authenticated` (or `anon` without claims), claims set locally.

        Both settings are always set, for anonymous requests too, and are local to the
        transaction, so nothing leaks to the next borrower of the pooled connection.
        """
        role = "authenticated" if claims else "anon"
        # No pipeline mode: psycopg's async pipeline flushes each queued command on its own
        # (10.7 sends per created job against 4 without it, counted with strace) and cost
        # the API about 0.3 ms more CPU per request on the benchmark machine.
        async with self._connection() as conn, conn.transaction():
            await conn.execute(
                "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
                (role, json.dumps(claims or {})),
                prepare=True,
            )
            yield Session(conn)
