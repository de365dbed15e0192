"""The parameters of the credit-consuming creation calls, built once for both sessions.

`Session` (async, the API, worker and CLI) and `SyncSession` (the caller's own synchronous
connection) send the same named queries; building their parameters in one place keeps the
two from drifting: a field added to one would otherwise be silently NULL in the other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from aijobs.db.jsonb import jsonb
from aijobs.db.rows import ClaimsCreation, JobSpec


def single_statement(max_in_flight: int | None) -> str:
    """The named query of one creation: capped for the API's signed-in user, plain otherwise."""
    return "job_create" if max_in_flight is None else "job_create_within_cap"


def single(
    *,
    user_id: UUID | None,
    type: str,
    payload: dict[str, Any],
    priority: int,
    run_at: datetime | None,
    max_attempts: int,
    idempotency_key: str | None,
    retry_of: UUID | None,
    max_in_flight: int | None,
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "type": type,
        "payload": jsonb(payload),
        "priority": priority,
        "run_at": run_at,
        "max_attempts": max_attempts,
        "idempotency_key": idempotency_key,
        "retry_of": retry_of,
        "max_in_flight": max_in_flight,
    }


def batch_statement(max_in_flight: int | None) -> str:
    return "job_create_many" if max_in_flight is None else "job_create_many_within_cap"


def batch(*, user_id: UUID | None, jobs: Sequence[JobSpec], max_in_flight: int | None) -> dict[str, Any]:
    """One array per field: element i of each is job i (015_create_jobs_in_batches.sql)."""
    return {
        "max_in_flight": max_in_flight,
        "user_id": user_id,
        "types": [job.type for job in jobs],
        "payloads": [jsonb(job.payload) for job in jobs],
        "priorities": [job.priority for job in jobs],
        "run_ats": _array_or_null([job.run_at for job in jobs]),
        "max_attempts": [job.max_attempts for job in jobs],
    }


def grouped(*, requests: Sequence[ClaimsCreation], max_in_flight: int) -> dict[str, Any]:
    """Several users' creations (019_api_create_jobs_grouped.sql): element i of each array is
    request i. The claims travel as text, as `request.jwt.claims` holds them."""
    return {
        "claims": [json.dumps(r.claims) for r in requests],
        "max_in_flight": max_in_flight,
        "types": [r.type for r in requests],
        "payloads": [jsonb(r.payload) for r in requests],
        "priorities": [r.priority for r in requests],
        "run_ats": _array_or_null([r.run_at for r in requests]),
        "max_attempts": [r.max_attempts for r in requests],
        "retry_ofs": _array_or_null([r.retry_of for r in requests]),
    }


def _array_or_null(values: list[Any]) -> list[Any] | None:
    """A list of only None has no element type for psycopg to send: NULL instead, which the
    functions read as None for every element (for run_at: "now" for every job)."""
    return None if all(v is None for v in values) else values
