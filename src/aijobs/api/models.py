"""The API's request and response bodies: what /openapi.json publishes and responses obey."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from aijobs.queue.requests import MAX_CREDIT_GRANT, JobRequest
from aijobs.states import JobStatus as JobStatus  # the core's vocabulary, published as is


class JobCreate(JobRequest):
    """What a client sends to create a job. Unknown fields are refused, not ignored."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"type": "sentiment_analysis", "payload": {"text": "Lovely staff, quick service."}}]
        },
    )


#: The most jobs one batch request may create: what aijobs.create_jobs takes in one statement
#: (about a second, holding the user's account lock), within MAX_BATCH_BODY_BYTES.
MAX_BATCH_JOBS = 10_000

#: The routes that take many jobs in one body, held to MAX_BATCH_BODY_BYTES instead of
#: MAX_BODY_BYTES.
BATCH_PATHS = ("/api/jobs/batch", "/api/jobs/import")


class JobBatchCreate(BaseModel):
    """Several jobs for the caller (up to 10,000), created and charged all or nothing."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "jobs": [
                        {"type": "sentiment_analysis", "payload": {"text": "Lovely staff."}},
                        {"type": "review_processing", "payload": {"review_text": "Cold coffee."}},
                    ]
                }
            ]
        },
    )

    jobs: list[JobCreate] = Field(min_length=1, max_length=MAX_BATCH_JOBS)


class Job(BaseModel):
    """A job as its owner (or an admin) sees it."""

    id: UUID
    user_id: UUID
    tenant: UUID | None = Field(
        None,
        description="Whose fair share and limit on running jobs it counts in: the user, or the "
        "organisation its creator's token named (TENANT_CLAIM).",
    )
    type: str
    payload: dict[str, Any]
    status: JobStatus
    priority: int
    run_at: datetime
    attempts: int
    max_attempts: int
    result: dict[str, Any] | None
    error: str | None
    cost: int
    idempotency_key: str | None
    retry_of: UUID | None
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class JobBatch(BaseModel):
    """The jobs a batch created, in the order they were asked for."""

    items: list[Job]


class JobPage(BaseModel):
    items: list[Job]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next (older) page; null at the end."
    )


class JobEvent(BaseModel):
    """One SSE `status` event: the status the job moved to, and the job as read right after."""

    job_id: UUID
    status: JobStatus
    job: Job


class JobDelta(BaseModel):
    """One SSE `delta` event: the next piece of the reply the running attempt is writing.
    Joined in `seq` order, an attempt's pieces are the text it stores when it completes."""

    job_id: UUID
    attempt_token: int = Field(description="Which attempt wrote it (its lease token).")
    seq: int
    text: str


class JobReset(BaseModel):
    """One SSE `reset` event: a new attempt started writing; drop the text received so far."""

    job_id: UUID
    attempt_token: int


class Me(BaseModel):
    user_id: UUID
    balance: int
    has_account: bool
    jobs_in_flight: int
    #: None: this deployment holds users to no quota.
    max_jobs_in_flight: int | None


class LedgerEntry(BaseModel):
    id: int
    job_id: UUID | None
    kind: Literal["grant", "debit", "refund"]
    amount: int
    note: str | None
    created_at: datetime


class LedgerPage(BaseModel):
    items: list[LedgerEntry]
    next_cursor: str | None


class JobTypeInfo(BaseModel):
    name: str
    description: str
    cost: int
    timeout_seconds: float
    max_attempts: int | None = Field(description="The type's own attempt count; null: MAX_RETRIES + 1.")
    example: dict[str, Any] | None
    payload_schema: dict[str, Any]
    result_schema: dict[str, Any] = Field(
        description="What `result` holds once a job of this type completed."
    )


class CreditGrant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: UUID
    amount: StrictInt = Field(ge=1, le=MAX_CREDIT_GRANT)  # `true` is not 1 credit
    note: str = Field("grant", min_length=1, max_length=200)

    @field_validator("note")
    @classmethod
    def _storable(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("may not contain NUL (\\u0000) characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("contains an unpaired UTF-16 surrogate") from None
        return value


class TenantSettings(BaseModel):
    """A tenant's share of the workers and its limit on running jobs (PUT replaces both)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"weight": 2, "max_running": 20}]}
    )

    weight: StrictInt = Field(
        1, ge=1, le=1000, description="Turns for each turn of a weight-1 tenant while both have work waiting."
    )
    max_running: StrictInt | None = Field(
        None,
        ge=1,
        le=2_147_483_647,
        description="The most of its jobs running at once; null: the deployment's MAX_RUNNING_PER_TENANT.",
    )


class TenantLoad(BaseModel):
    """One tenant's share of the queue now: jobs waiting and running, weight and limit."""

    tenant: UUID = Field(description="The tenant: a user's id, or an organisation's (TENANT_CLAIM).")
    pending: int
    processing: int = Field(description="Running now, across all workers.")
    weight: int
    max_running: int | None = Field(
        description="Its limit on running jobs (its own, else the deployment's); null: none."
    )


class TenantList(BaseModel):
    items: list[TenantLoad]


class Balance(BaseModel):
    user_id: UUID
    balance: int


class Health(BaseModel):
    status: Literal["ok"]


class ProviderPause(BaseModel):
    """A provider no worker calls until a probe is answered: its configuration failed (a wrong
    key, an unknown model, nothing at its base URL). Its jobs wait, pending."""

    provider: str
    reason: str
    since: datetime


class Readiness(BaseModel):
    """`degraded`: the API serves (jobs are created and read) but a provider is paused, so
    their jobs wait; still 200, since no API instance can fix a provider's configuration and
    taking them all out of the load balancer would turn it into an outage."""

    status: Literal["ready", "degraded"]
    migrations_pending: list[str]
    providers_paused: list[ProviderPause] = []


class DevToken(BaseModel):
    token: str
    user_id: UUID
    expires_in: int
