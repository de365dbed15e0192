"""Create a job: validate the payload first, then charge and insert in one SQL call.

Validation happens before the database is touched, so a bad payload is refused with every
field and reason named, and nothing is charged. The SQL function re-checks type, user and
balance under a row lock, so the charge itself cannot be raced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from aijobs.db.rows import CreatedJob
from aijobs.db.rows import JobSpec as JobSpec  # re-exported: what enqueue_many takes
from aijobs.db.store import Session
from aijobs.db.sync_session import SyncSession
from aijobs.errors import InvalidPayload, NotRetryable
from aijobs.jobs import get_job_type
from aijobs.monitoring.metrics import metrics


def validate_payload(job_type: str, payload: object) -> dict[str, Any]:
    """The payload as the job type will read it, or InvalidPayload naming each field."""
    kind = get_job_type(job_type)
    try:
        model = kind.parse(payload)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]) or "payload", "reason": e["msg"]}
            for e in exc.errors()
        ]
        summary = "; ".join(f"{p['field']}: {p['reason']}" for p in problems)
        raise InvalidPayload(f"invalid payload for {job_type}: {summary}", errors=problems) from None
    return model.model_dump(mode="json", exclude_none=True)


async def enqueue(
    session: Session,
    *,
    user_id: UUID | None,
    job_type: str,
    payload: object,
    priority: int = 0,
    run_at: datetime | None = None,
    max_attempts: int = 4,
    idempotency_key: str | None = None,
    retry_of: UUID | None = None,
) -> CreatedJob:
    clean = validate_payload(job_type, payload)
    created = await session.create_job(
        user_id=user_id,
        type=job_type,
        payload=clean,
        priority=priority,
        run_at=run_at,
        max_attempts=max_attempts,
        idempotency_key=idempotency_key,
        retry_of=retry_of,
    )
    return _counted(job_type, created)


def enqueue_sync(
    session: SyncSession,
    *,
    user_id: UUID,
    job_type: str,
    payload: object,
    priority: int = 0,
    run_at: datetime | None = None,
    max_attempts: int = 4,
    idempotency_key: str | None = None,
    retry_of: UUID | None = None,
) -> CreatedJob:
    """`enqueue` for synchronous code, on the caller's own connection and transaction
    (`SyncSession`): the same validation first, the same charge, the same refusals.

    This process's counters (`aijobs_jobs_created`, credits debited) move only for a creation
    that is committed when this returns (autocommit): inside the caller's transaction the job
    may yet roll back, and nothing here sees that transaction end. The database's own figures
    (`aijobs stats`, the dashboard) count every committed job either way."""
    clean = validate_payload(job_type, payload)
    created = session.create_job(
        user_id=user_id,
        type=job_type,
        payload=clean,
        priority=priority,
        run_at=run_at,
        max_attempts=max_attempts,
        idempotency_key=idempotency_key,
        retry_of=retry_of,
    )
    return _counted(job_type, created) if session.committed else created


def _counted(job_type: str, created: CreatedJob) -> CreatedJob:
    if created.created:  # an idempotent replay charged nothing and created nothing
        metrics().job_created(job_type, created.cost)
    return created


async def enqueue_many(
    session: Session, *, user_id: UUID | None, jobs: Sequence[JobSpec]
) -> list[CreatedJob]:
    """Create a batch for one user in one statement: every job or none, charged the sum.

    Every payload is validated first; a bad one raises InvalidPayload whose fields start with
    `jobs[i].`, so the caller can tell which element to fix, and nothing is charged. The
    whole batch is one transaction holding the user's account lock, so keep batches to a
    size a request would send (the benchmark uses 100). Rows come back in input order; an
    empty batch creates nothing and does not touch the database.
    """
    if not jobs:
        return []
    created = await session.create_jobs(user_id=user_id, jobs=validate_batch(jobs))
    return _counted_batch(jobs, created)


def enqueue_many_sync(session: SyncSession, *, user_id: UUID, jobs: Sequence[JobSpec]) -> list[CreatedJob]:
    """`enqueue_many` for synchronous code, on the caller's own connection (`SyncSession`);
    counted in this process's metrics only when committed at once, as `enqueue_sync`."""
    if not jobs:
        return []
    created = session.create_jobs(user_id=user_id, jobs=validate_batch(jobs))
    return _counted_batch(jobs, created) if session.committed else created


def validate_batch(jobs: Sequence[JobSpec]) -> list[JobSpec]:
    """Each job with its payload as its type reads it, or InvalidPayload whose fields start
    with `jobs[i].` for the first bad one."""
    cleaned = []
    for i, job in enumerate(jobs):
        try:
            cleaned.append(replace(job, payload=validate_payload(job.type, job.payload)))
        except InvalidPayload as exc:
            problems = [{**p, "field": f"jobs[{i}].{p['field']}"} for p in exc.errors]
            raise InvalidPayload(f"jobs[{i}]: {exc}", errors=problems) from None
    return cleaned


def _counted_batch(jobs: Sequence[JobSpec], created: list[CreatedJob]) -> list[CreatedJob]:
    for job, row in zip(jobs, created, strict=True):
        metrics().job_created(job.type, row.cost)
    return created


#: A job in one of these states may be run again, as a new job charged to its owner; the old
#: one keeps its refund, so every job keeps one debit and at most one refund.
RETRYABLE_STATUSES = frozenset({"failed", "cancelled"})


def check_retryable(job_id: UUID, status: str) -> None:
    if status not in RETRYABLE_STATUSES:
        raise NotRetryable(f"job {job_id} is {status}; only failed or cancelled jobs are run again")


async def retry_as_new_job(session: Session, job: Mapping[str, Any]) -> CreatedJob:
    """Charge the owner for a copy of `job` (failed or cancelled) with `retry_of` set."""
    check_retryable(job["id"], str(job["status"]))
    return await enqueue(
        session,
        user_id=job["user_id"],
        job_type=job["type"],
        payload=job["payload"],
        priority=job["priority"],
        max_attempts=job["max_attempts"],
        retry_of=job["id"],
    )
