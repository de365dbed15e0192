"""Provider rate-limit holds, pauses, shared budgets and usage (queries/providers.sql); shared
by every worker through these rows (aijobs.worker.provider_gate)."""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

import psycopg
from psycopg.rows import class_row, dict_row

from aijobs.db.provider_rows import BudgetReservation, ProviderPause, ProviderState, RateLimitHold
from aijobs.db.queries import query
from aijobs.db.read_rows import JobUsageRow, ProviderLimitsRow, UserUsageRow


class ProvidersRepo:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def state(self, provider: str) -> ProviderState:
        """Seconds left on `provider`'s hold by the database clock (0 when none is in force),
        and why it is paused (None when it is not)."""
        cur = await self.conn.execute(query("provider_hold_get"), {"provider": provider}, prepare=True)
        row = await cur.fetchone()
        return ProviderState(float(row[0]), row[1]) if row else ProviderState(0.0, None)

    async def hold_seconds(self, provider: str) -> float:
        """Seconds left on `provider`'s hold by the database clock; 0 when none is in force."""
        return (await self.state(provider)).hold_seconds

    async def pause(self, *, provider: str, reason: str, probe_seconds: float) -> bool:
        """Pause `provider` for every worker (the reason updated when it already is); True
        when this call started the pause."""
        cur = await self.conn.execute(
            query("provider_pause"),
            {"provider": provider, "reason": reason, "probe_seconds": probe_seconds},
        )
        row = await cur.fetchone()
        return bool(row and row[0])

    async def probe_claim(self, *, provider: str, probe_seconds: float) -> str | None:
        """The pause's reason when this caller takes the turn to probe `provider` (its probe
        time has passed); None when it is not paused, not due, or another caller took it."""
        cur = await self.conn.execute(
            query("provider_probe_claim"), {"provider": provider, "probe_seconds": probe_seconds}
        )
        row = await cur.fetchone()
        return str(row[0]) if row else None

    async def resume(self, provider: str) -> float | None:
        """Lift `provider`'s pause: how long it lasted, or None when none was in force."""
        cur = await self.conn.execute(query("provider_resume"), {"provider": provider})
        row = await cur.fetchone()
        return float(row[0]) if row else None

    async def pauses(self) -> list[ProviderPause]:
        """Every provider paused now."""
        async with self.conn.cursor(row_factory=class_row(ProviderPause)) as cur:
            await cur.execute(query("provider_pauses"))
            return await cur.fetchall()

    async def rate_limited(
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

    async def budget_reserve(
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

    async def budget_settle(self, call_id: int, tokens: int | None) -> None:
        """Count a finished call from its end, with the tokens it really used (None: estimate)."""
        await self.conn.execute(query("provider_budget_settle"), {"call_id": call_id, "tokens": tokens})

    async def limits(self, provider: str) -> ProviderLimitsRow | None:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("provider_limits_get"), {"provider": provider})
            return cast("ProviderLimitsRow | None", await cur.fetchone())

    async def usage_for_job(self, job_id: UUID) -> JobUsageRow | None:
        """Tokens, estimated cost and latency over every attempt of one job."""
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("provider_usage_for_job"), {"job_id": job_id})
            return cast("JobUsageRow | None", await cur.fetchone())

    async def usage_by_user(self, *, user_id: UUID | None = None, hours: int = 24) -> list[UserUsageRow]:
        """Calls, tokens and estimated cost per user, provider and model over the last hours."""
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("provider_usage_by_user"), {"user_id": user_id, "hours": hours})
            return cast("list[UserUsageRow]", await cur.fetchall())
