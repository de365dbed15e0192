"""Create jobs: the one way in, for the API, the CLI and code (async and sync).

Every payload is validated by its type's model before the database is touched, so a bad one
is refused with every field and reason named and nothing is charged. Then one statement,
aijobs.create_jobs, charges and inserts all or nothing under the user's account lock; it
checks the stored values again, so a caller that reaches the database another way (a
Supabase RPC) is held to the same rules. A single job is a batch of one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from aijobs.db.rows import CreatedJob as CreatedJob  # re-exported with the creation path
from aijobs.db.rows import GroupedCreation as GroupedCreation  # re-exported for the API's batcher
from aijobs.db.rows import JobSpec as JobSpec  # re-exported: what enqueue_many takes
from aijobs.db.store import Session
from aijobs.db.sync_session import SyncSession
from aijobs.errors import InvalidArgument, InvalidPayload, NotRetryable
from aijobs.jobs import get_job_type, max_attempts_for
from aijobs.monitoring.metrics import metrics
from aijobs.providers.base import first_unstorable
from aijobs.states import RETRYABLE_STATUSES


def validate_payload(job_type: str, payload: object) -> dict[str, Any]:
    """The payload as the job type will read it, or InvalidPayload naming each field. Text
    PostgreSQL cannot store (NUL, a lone surrogate) is refused here for every job type, so
    no caller meets the database's own error instead."""
    kind = get_job_type(job_type)
    try:
        model = kind.parse(payload)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]) or "payload", "reason": e["msg"]}
            for e in exc.errors()
        ]
        raise _invalid(job_type, problems) from None
    clean: dict[str, Any] = model.model_dump(mode="json", exclude_none=True)
    found = first_unstorable(clean, "")
    if found is not None:
        char, where = found
        reason = (
            "may not contain NUL (\\u0000) characters"
            if char == "\x00"
            else "contains an unpaired UTF-16 surrogate"
        )
        raise _invalid(job_type, [{"field": where.removeprefix(".") or "payload", "reason": reason}])
    return clean


def _invalid(job_type: str, problems: list[dict[str, str]]) -> InvalidPayload:
    summary = "; ".join(f"{p['field']}: {p['reason']}" for p in problems)
    return InvalidPayload(f"invalid payload for {job_type}: {summary}", errors=problems)


def validate_batch(jobs: Sequence[JobSpec]) -> list[JobSpec]:
    """Each job with its payload as its type reads it, or InvalidPayload whose fields start
    with `jobs[i].` for the first bad one (a single job's fields are not prefixed)."""
    if len(jobs) == 1:
        job = jobs[0]
        return [replace(job, payload=validate_payload(job.type, job.payload), max_attempts=_attempts(job))]
    cleaned = []
    for i, job in enumerate(jobs):
        try:
            cleaned.append(
                replace(job, payload=validate_payload(job.type, job.payload), max_attempts=_attempts(job))
            )
        except InvalidPayload as exc:
            problems = [{**p, "field": f"jobs[{i}].{p['field']}"} for p in exc.errors]
            raise InvalidPayload(f"jobs[{i}]: {exc}", errors=problems) from None
    return cleaned


#: Attempts of a job whose caller and type name none: MAX_RETRIES' default (3) plus one. The
#: API and the CLI pass the deployment's own (MAX_RETRIES + 1) when the type names none.
DEFAULT_MAX_ATTEMPTS = 4


def _attempts(job: JobSpec) -> int:
    """The job's own max_attempts, else its type's `Retry(max_attempts=...)`, else the default."""
    if job.max_attempts is not None:
        return job.max_attempts
    return max_attempts_for(job.type, DEFAULT_MAX_ATTEMPTS)


async def enqueue_many(
    session: Session,
    *,
    user_id: UUID | None,
    jobs: Sequence[JobSpec],
    quota: bool = False,
    tenant: UUID | None = None,
) -> list[CreatedJob]:
    """Create jobs for one user in one statement: every job or none, charged the sum; rows
    in input order. `user_id` None: the user a session as `authenticated` is signed in as.
    `quota`: hold this trusted call to the user's in-flight quota (the API does). `tenant`:
    whose fair share and limit on running jobs the jobs count in (an organisation, say);
    None: the user's own. The batch is one transaction holding the user's account lock, so
    keep it to a request's size."""
    if not jobs:
        return []
    created = await session.jobs.create(
        user_id=user_id, jobs=validate_batch(jobs), quota=quota, tenant=tenant
    )
    return _counted(jobs, created)


async def enqueue(
    session: Session,
    *,
    user_id: UUID | None,
    job_type: str,
    payload: object,
    priority: int = 0,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    idempotency_key: str | None = None,
    retry_of: UUID | None = None,
    quota: bool = False,
    tenant: UUID | None = None,
) -> CreatedJob:
    """One job: `enqueue_many` of one. With an `idempotency_key` that already names a job of
    the user, that job is returned (`created` False) and nothing is charged."""
    spec = JobSpec(job_type, payload, priority, run_at, max_attempts, idempotency_key, retry_of)
    with _single():
        (created,) = await enqueue_many(session, user_id=user_id, jobs=[spec], quota=quota, tenant=tenant)
    return created


def enqueue_many_sync(
    session: SyncSession, *, user_id: UUID, jobs: Sequence[JobSpec], tenant: UUID | None = None
) -> list[CreatedJob]:
    """`enqueue_many` for synchronous code, on the caller's own connection and transaction.

    This process's counters move only for a creation committed when this returns
    (autocommit): inside the caller's transaction the jobs may yet roll back. The
    database's own figures (`aijobs stats`, the dashboard) count every committed job."""
    if not jobs:
        return []
    created = session.create(user_id=user_id, jobs=validate_batch(jobs), tenant=tenant)
    return _counted(jobs, created) if session.committed else created


def enqueue_sync(
    session: SyncSession,
    *,
    user_id: UUID,
    job_type: str,
    payload: object,
    priority: int = 0,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    idempotency_key: str | None = None,
    retry_of: UUID | None = None,
    tenant: UUID | None = None,
) -> CreatedJob:
    """`enqueue` for synchronous code (`enqueue_many_sync` of one)."""
    spec = JobSpec(job_type, payload, priority, run_at, max_attempts, idempotency_key, retry_of)
    with _single():
        (created,) = enqueue_many_sync(session, user_id=user_id, jobs=[spec], tenant=tenant)
    return created


@contextmanager
def _single() -> Iterator[None]:
    """A refusal of a single creation names its field without the batch's `jobs[0].`."""
    try:
        yield
    except InvalidArgument as exc:
        field = exc.details.get("field")
        if isinstance(field, str) and field.startswith("jobs[0]."):
            # A single creation has no index to report either.
            details = {k: v for k, v in exc.details.items() if k != "index"}
            details["field"] = field.removeprefix("jobs[0].")
            raise InvalidArgument(exc.message.removeprefix("jobs[0]."), **details) from None
        raise


def _counted(jobs: Sequence[JobSpec], created: list[CreatedJob]) -> list[CreatedJob]:
    for job, row in zip(jobs, created, strict=True):
        if row.created:  # an idempotent replay charged nothing and created nothing
            metrics().job_created(job.type, row.cost)
    return created


def check_retryable(job_id: UUID, status: str) -> None:
    if status not in RETRYABLE_STATUSES:
        raise NotRetryable(f"job {job_id} is {status}; only failed or cancelled jobs are run again")


async def retry_as_new_job(
    session: Session, job: Mapping[str, Any], *, idempotency_key: str | None = None
) -> CreatedJob:
    """Charge the owner for a copy of `job` (failed or cancelled) with `retry_of` set, in the
    same tenant; the old job keeps its refund, so every job keeps one debit and at most one
    refund. With `idempotency_key` (one of the owner's keys) a repeat returns the job the
    first made (`created` False) and charges nothing; the caller checks it is this job's copy."""
    check_retryable(job["id"], str(job["status"]))
    return await enqueue(
        session,
        user_id=job["user_id"],
        job_type=job["type"],
        payload=job["payload"],
        priority=job["priority"],
        max_attempts=job["max_attempts"],
        retry_of=job["id"],
        idempotency_key=idempotency_key,
        tenant=job.get("tenant"),
    )
