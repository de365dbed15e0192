"""One job through the raw creation statement (`session.jobs.create`), without the payload
model's validation `enqueue` adds: what tests that mean the database's own rules call."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from aijobs.db.rows import CreatedJob, JobSpec
from aijobs.db.store import Session


async def create_job(
    session: Session,
    *,
    user_id: UUID | None,
    type: str,
    payload: Any,
    priority: int = 0,
    run_at: datetime | None = None,
    max_attempts: int = 4,
    idempotency_key: str | None = None,
    retry_of: UUID | None = None,
    quota: bool = False,
) -> CreatedJob:
    spec = JobSpec(type, payload, priority, run_at, max_attempts, idempotency_key, retry_of)
    (created,) = await session.jobs.create(user_id=user_id, jobs=[spec], quota=quota)
    return created
