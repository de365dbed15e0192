"""Typed rows for the provider rate-limit and pause queries (queries/providers.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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


@dataclass(frozen=True, slots=True)
class ProviderState:
    """What the gate reads before a call: seconds left on a hold (0: none), and why the
    provider is paused (None: it is not)."""

    hold_seconds: float
    paused_reason: str | None


@dataclass(frozen=True, slots=True)
class ProviderPause:
    """A provider no worker calls until a probe is answered (a wrong key, an unknown model,
    nothing at its base URL)."""

    provider: str
    paused_since: datetime
    paused_reason: str
    paused_seconds: float
