"""The shapes of the rows the repositories read, one per query, as the queries name their
columns. TypedDicts rather than classes: readers (the API's models, the templates, `--json`)
take them as mappings, and mypy checks every key they read."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, TypedDict
from uuid import UUID


class JobRow(TypedDict):
    """A job as the API and the CLI show it (job_list, api_job_get)."""

    id: UUID
    user_id: UUID
    tenant: UUID
    type: str
    payload: dict[str, Any]
    status: str
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


class JobDetailRow(JobRow):
    """Every column of a job, with how many attempt rows it has (job_get: the inspector)."""

    lease_token: int | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    attempt_started_at: datetime | None
    rate_limited_seconds: float
    attempt_rows: int


class FoundJobRow(TypedDict):
    """A job found by part of its id (job_find_by_id_part)."""

    id: UUID
    type: str
    status: str
    created_at: datetime


class AttemptRow(TypedDict):
    lease_token: int
    job_id: UUID
    attempt: int
    worker_id: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    error: str | None
    provider: str | None
    model: str | None
    request_id: str | None
    latency_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    reasoning_tokens: int | None
    cost_usd: Decimal | None


class CancelRow(TypedDict):
    id: UUID
    status: str
    cancel_requested: bool


class StatusSummaryRow(TypedDict):
    status: str
    count: int
    avg_processing_time: Decimal | None


class LedgerRow(TypedDict):
    id: int
    user_id: UUID
    job_id: UUID | None
    kind: str
    amount: int
    note: str | None
    created_at: datetime


class LedgerEntryRow(TypedDict):
    id: int
    job_id: UUID | None
    kind: str
    amount: int
    note: str | None
    created_at: datetime


class IdempotencyRow(TypedDict):
    request_hash: str
    response_status: int | None
    response_body: Any
    job_id: UUID | None
    created_at: datetime


class ProviderLimitsRow(TypedDict):
    provider: str
    hold_until: datetime | None
    hold_reason: str | None
    holds: int
    updated_at: datetime
    paused_since: datetime | None
    paused_reason: str | None
    recent_calls: int


class JobUsageRow(TypedDict):
    job_id: UUID
    attempts: int
    calls: int
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal | None
    avg_latency_ms: float | None


class UserUsageRow(TypedDict):
    user_id: UUID
    provider: str
    model: str | None
    calls: int
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal | None


class DepthRow(TypedDict):
    type: str
    status: str
    count: int


class TenantDepthRow(TypedDict):
    tenant: UUID
    pending: int
    processing: int
    weight: int
    #: The tenant's limit on running jobs (its own, else the deployment's); None: no limit.
    max_running: int | None


class JobWindowRow(TypedDict):
    minutes: int
    completed: int
    failed: int
    cancelled: int
    completed_after_retry: int
    p50: float | None
    p95: float | None
    avg: float | None
    avg_wait: float | None


class AttemptWindowRow(TypedDict):
    minutes: int
    attempts: int
    retries: int
    lost: int
    rate_limited: int


class ProviderWindowRow(TypedDict):
    minutes: int
    provider: str
    model: str
    calls: int
    p50_ms: float | None
    p95_ms: float | None
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal


class JobSeriesRow(TypedDict):
    bucket: datetime
    completed: int
    failed: int
    p50: float | None
    p95: float | None


class ProviderSeriesRow(TypedDict):
    bucket: datetime
    calls: int
    p50_ms: float | None
    p95_ms: float | None


class QueueSampleRow(TypedDict):
    sampled_at: datetime
    pending: int
    processing: int
    oldest_pending_seconds: float | None


class WorkerRow(TypedDict):
    id: str
    host: str
    pid: int
    version: str
    concurrency: int
    started_at: datetime
    last_heartbeat_at: datetime
    stopped_at: datetime | None
    in_flight: int
    state: str
    heartbeat_age_seconds: float
    holding: int
    jobs: list[dict[str, Any]]


class FailureRow(TypedDict):
    id: UUID
    type: str
    user_id: UUID
    error: str | None
    attempts: int
    max_attempts: int
    cost: int
    created_at: datetime
    finished_at: datetime
    requeued_as: UUID | None


class LeaderRow(TypedDict):
    name: str
    holder: str
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    valid: bool


class StoredJobTypeRow(TypedDict):
    name: str
    cost: int
    timeout_seconds: float
    enabled: bool
    paused: bool
    pending: int


class JobTypeSwitchRow(TypedDict):
    """A type's deployment switches (job_types_switches, job_type_switch)."""

    name: str
    enabled: bool
    paused: bool
    max_running_per_tenant: int | None


class AccountSettingsRow(TypedDict):
    brand_voice: str | None
    business_name: str | None
    signature: str | None
    default_language: str | None
    default_tone: str | None


class WebhookEndpointRow(TypedDict):
    """A webhook endpoint without its secret (webhook_endpoint_*)."""

    id: UUID
    user_id: UUID | None
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    created_at: datetime


class WebhookAttemptRow(TypedDict):
    """One attempt of a delivery (webhook_delivery_attempts)."""

    delivery_id: UUID
    attempt: int
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float | None


class WebhookDeliveryRow(TypedDict):
    """One job end for one endpoint (webhook_delivery_page), with its attempt log."""

    id: UUID
    endpoint_id: UUID
    job_id: UUID
    event: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    updated_at: datetime
    log: list[WebhookAttemptRow]


class RecentWebhookDeliveryRow(TypedDict):
    """A delivery with its endpoint's URL and owner (webhook_delivery_recent: the dashboard)."""

    id: UUID
    endpoint_id: UUID
    url: str
    user_id: UUID | None
    job_id: UUID
    event: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime
    updated_at: datetime
