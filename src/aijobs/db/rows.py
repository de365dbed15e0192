"""Typed rows that cross the store's boundary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to create (`queue.enqueue`): a single creation is a batch of one.

    An `idempotency_key` that already names a job of the user answers with that job and
    charges nothing; `retry_of` must name one of the user's own jobs."""

    type: str
    payload: Any
    priority: int = 0
    run_at: datetime | None = None
    #: None: its type's `Retry(max_attempts=...)`, else 4 (MAX_RETRIES' default, plus one).
    max_attempts: int | None = None
    idempotency_key: str | None = None
    retry_of: UUID | None = None


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this worker now holds, fenced by `lease_token`."""

    id: UUID
    type: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    lease_token: int
    #: From run_at to this claim, by the database clock (the queue-wait metric).
    waited_seconds: float
    cost: int


@dataclass(frozen=True, slots=True)
class CreatedJob:
    """What the credit-consuming function answers: `created` is False on an idempotent replay."""

    id: UUID
    status: str
    cost: int
    balance: int
    created: bool
    created_at: datetime
    run_at: datetime


@dataclass(frozen=True, slots=True)
class GroupedCreation:
    """One API request's single creation for its verified user, sent with others
    (`JobsRepo.create_grouped`); the in-flight quota applies. No idempotency key: keyed
    requests are created in a transaction of their own. `tenant` None: the user's own."""

    user_id: UUID
    job: JobSpec
    tenant: UUID | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    """How one attempt ends. Serialised into one JSON row of `job_finish_many`."""

    id: UUID
    lease_token: int
    status: str
    outcome: str
    result: dict[str, Any] | None = None
    error: str | None = None
    retry_in: float | None = None
    give_back: bool = False
    provider: str | None = None
    model: str | None = None
    request_id: str | None = None
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_usd: Decimal | None = None

    def as_json(self) -> dict[str, Any]:
        """The JSON row; keys left out read as NULL in `jsonb_to_recordset` (less to encode)."""
        row = {
            "id": str(self.id),
            "lease_token": self.lease_token,
            "status": self.status,
            "outcome": self.outcome,
            "result": self.result,
            "error": self.error,
            "retry_in": self.retry_in,
            "give_back": self.give_back,
            "provider": self.provider,
            "model": self.model,
            "request_id": self.request_id,
            "latency_ms": self.latency_ms,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost_usd": str(self.cost_usd) if self.cost_usd is not None else None,
        }
        return {key: value for key, value in row.items() if value is not None}


@dataclass(frozen=True, slots=True)
class Rescued:
    id: UUID
    type: str
    status: str
    attempts: int
    error: str


@dataclass(frozen=True, slots=True)
class Account:
    user_id: UUID
    balance: int
    created_at: datetime
    updated_at: datetime
