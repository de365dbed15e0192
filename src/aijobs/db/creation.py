"""The statements that create jobs and their parameters, built once for both sessions.

`Session` (async: the API, worker and CLI) and `SyncSession` (the caller's own synchronous
connection) send the same statement; building its parameters in one place keeps them from
drifting. Element i of every array is job i (aijobs.create_jobs in schema.sql).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from aijobs.db.jsonb import jsonb
from aijobs.db.rows import GroupedCreation, JobSpec


def statement(
    *, user_id: UUID | None, jobs: Sequence[JobSpec], quota: bool, tenant: UUID | None = None
) -> tuple[str, dict[str, Any]]:
    """The named query that creates `jobs` and its parameters: a single job takes scalars.
    `tenant` None: the user's own (a user's own session: the one its JWT names)."""
    if len(jobs) == 1:
        job = jobs[0]
        return "job_create_one", {
            "user_id": user_id,
            "type": job.type,
            "payload": jsonb(job.payload),
            "priority": job.priority,
            "run_at": job.run_at,
            "max_attempts": job.max_attempts,
            "idempotency_key": job.idempotency_key,
            "retry_of": job.retry_of,
            "quota": quota,
            "tenant": tenant,
        }
    return "job_create", {
        "user_id": user_id,
        "types": [job.type for job in jobs],
        "payloads": [jsonb(job.payload) for job in jobs],
        "priorities": [job.priority for job in jobs],
        "run_ats": _array_or_null([job.run_at for job in jobs]),
        "max_attempts": [job.max_attempts for job in jobs],
        "idempotency_keys": _array_or_null([job.idempotency_key for job in jobs]),
        "retry_ofs": _array_or_null([job.retry_of for job in jobs]),
        "quota": quota,
        "tenant": tenant,
    }


def grouped_params(requests: Sequence[GroupedCreation]) -> dict[str, Any]:
    """Several users' single creations: element i of each array is request i (a tenant of
    None: that user's own)."""
    return {
        "user_ids": [r.user_id for r in requests],
        "types": [r.job.type for r in requests],
        "payloads": [jsonb(r.job.payload) for r in requests],
        "priorities": [r.job.priority for r in requests],
        "run_ats": _array_or_null([r.job.run_at for r in requests]),
        "max_attempts": [r.job.max_attempts for r in requests],
        "retry_ofs": _array_or_null([r.job.retry_of for r in requests]),
        "tenants": _array_or_null([r.tenant for r in requests]),
    }


def _array_or_null(values: list[Any]) -> list[Any] | None:
    """A list of only None has no element type for psycopg to send: NULL instead, which the
    function reads as None for every element (for run_at: "now")."""
    return None if all(v is None for v in values) else values
