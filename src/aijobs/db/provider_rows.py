"""Typed rows for the provider rate-limit queries (queries/providers.sql)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimitHold:
    """After a 429: the hold in force for every worker, and the job's total rate-limit wait.

    `total_wait_seconds` is None when the job's lease was lost (the write was fenced out).
    """

    hold_seconds: float
    total_wait_seconds: float | None


@dataclass(frozen=True, slots=True)
class BudgetReservation:
    """A slot in the shared RPM/TPM budget (`ok`, with the call's id) or how long until one frees."""

    ok: bool
    call_id: int | None
    wait_seconds: float
