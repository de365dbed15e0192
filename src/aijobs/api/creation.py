"""Creating a charged job for a user: Idempotency-Key, the in-flight cap, the credit function.

The API acts for the signed-in user it verified, as the owner role, in one transaction; the
jobs take the turns of the tenant the route read from the same token (`Principal.tenant`):

1. With a key, insert (user, key, request hash). A concurrent request with the same key waits
   on the primary key until this transaction ends, then finds the row and replays the stored
   response (same request) or is refused with 409 (different request). So 20 identical
   requests make one job and one debit.
2. Create through the one creation path (aijobs.queue.enqueue) with the deployment's in-flight
   quota (429 over it, 402 when the balance is short).
3. Store the response beside the key, then commit.

A refusal rolls the whole transaction back: no job, no debit, no key, so the client may retry
with the same key. Without a key there is nothing to store, and step 2 runs in one statement
shared with the other such requests waiting in this process (`grouped_creation.py`), each
refused on its own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from aijobs.api.auth import Principal
from aijobs.api.grouped_creation import CreationGroups
from aijobs.api.models import Job
from aijobs.api.problems import ProblemError, from_domain, invalid
from aijobs.db.store import Session, Store
from aijobs.errors import AijobsError, InsufficientCredits, TooManyInFlight
from aijobs.monitoring.metrics import metrics
from aijobs.queue.enqueue import CreatedJob, GroupedCreation, JobSpec, enqueue, enqueue_many, validate_payload

IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class NewJob:
    """What to create. `request` is what the idempotency hash covers (method, path, body)."""

    type: str
    payload: object
    priority: int
    run_at: datetime | None
    max_attempts: int
    retry_of: UUID | None
    request: dict[str, Any]


@dataclass(frozen=True)
class Created:
    status: int
    body: dict[str, Any]
    replayed: bool


def check_idempotency_key(key: str | None) -> str | None:
    """The key as given, or a 422 naming the header. Printable ASCII, 1-255 characters."""
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not all(" " <= ch <= "~" for ch in key):
        raise invalid(f"header.{IDEMPOTENCY_HEADER}", "must be 1-255 printable ASCII characters")
    return key


def request_hash(request: dict[str, Any]) -> str:
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def create_for_user(
    store: Store,
    creations: CreationGroups,
    principal: Principal,
    new: NewJob,
    *,
    key: str | None,
    tenant: UUID,
) -> Created:
    assert principal.user_id is not None
    payload = validate_payload(new.type, new.payload)
    if key is None:
        # Step 2 only, grouped with the other requests waiting (grouped_creation.py).
        with _in_flight_cap():
            created = await creations.create(
                GroupedCreation(
                    principal.user_id,
                    JobSpec(
                        new.type, payload, new.priority, new.run_at, new.max_attempts, retry_of=new.retry_of
                    ),
                    tenant,
                )
            )
        # Without a key the function always creates (created=False needs a key to match).
        assert created.created
        metrics().job_created(new.type, created.cost)
        body = _new_job_body(principal.user_id, tenant, new, payload, created, key)
        return Created(201, body, replayed=False)
    return await _create_with_key(store, principal, new, payload, key=key, tenant=tenant)


async def _create_with_key(
    store: Store, principal: Principal, new: NewJob, payload: dict[str, Any], *, key: str, tenant: UUID
) -> Created:
    assert principal.user_id is not None
    user = principal.user_id
    digest = request_hash(new.request)
    async with store.transaction() as session:
        if not await session.idempotency.claim(user, key, digest):
            return await _replay(session, user, key, digest)
        with _in_flight_cap():
            created = await enqueue(
                session,
                user_id=user,
                job_type=new.type,
                payload=payload,
                priority=new.priority,
                run_at=new.run_at,
                max_attempts=new.max_attempts,
                idempotency_key=key,
                retry_of=new.retry_of,
                quota=True,
                tenant=tenant,
            )
        if created.created:
            body = _new_job_body(user, tenant, new, payload, created, key)
        else:
            row = await session.jobs.get_for_api(created.id)
            assert row is not None
            if not _same_job(row, new, payload):
                # The key's stored response was purged (after 24 hours) but its job remains:
                # a different request must not be answered with that old job as if created.
                raise key_reused()
            body = Job.model_validate(row).model_dump(mode="json")
        await session.idempotency.save(user, key, status=201, body=body, job_id=created.id)
    # created=False: the jobs table already held this key (set outside the API): same job.
    return Created(201, body, replayed=not created.created)


async def create_batch_for_user(
    store: Store,
    principal: Principal,
    news: list[NewJob],
    *,
    request: dict[str, Any],
    key: str | None,
    tenant: UUID,
    where: Callable[[int], str] = lambda i: f"body.jobs.{i}",
    payloads: list[dict[str, Any]] | None = None,
) -> Created:
    """The batch form of `create_for_user`: every job or none, in one transaction as the user.

    Each payload is validated first (a 422 names `body.jobs.<i>.payload.<field>`); then the
    same steps as a single creation with a key, the cap admitting the batch whole
    (the quota admits the batch whole). The body is `{"items": [job, ...]}` in request order.
    `request` is what the idempotency hash covers; the elements' own `request` is unused.
    """
    assert principal.user_id is not None
    user = principal.user_id
    if payloads is None:
        payloads = clean_elements(news, where)
    digest = request_hash(request)
    async with store.transaction() as session:
        if key is not None and not await session.idempotency.claim(user, key, digest):
            return await _replay(session, user, key, digest)
        with _in_flight_cap(), _batch_charge():
            created = await enqueue_many(
                session,
                user_id=user,
                quota=True,
                tenant=tenant,
                jobs=[
                    JobSpec(new.type, payload, new.priority, new.run_at, new.max_attempts)
                    for new, payload in zip(news, payloads, strict=True)
                ],
            )
        body = {
            "items": [
                _new_job_body(user, tenant, new, payload, row, None)
                for new, payload, row in zip(news, payloads, created, strict=True)
            ]
        }
        if key is not None:
            await session.idempotency.save(user, key, status=201, body=body, job_id=None)
    return Created(201, body, replayed=False)


#: The most invalid fields one refusal of a batch lists; `invalid_count` says how many there were.
MAX_REPORTED_ERRORS = 100


def clean_element(new: NewJob, where: str) -> tuple[dict[str, Any] | None, ProblemError | None]:
    """One element's validated payload, or its refusal with every field under `where`
    (`body.jobs.3`, `body.line.4`)."""
    try:
        return validate_payload(new.type, new.payload), None
    except (AijobsError, ProblemError) as exc:
        problem = from_domain(exc) if isinstance(exc, AijobsError) else exc
    errors = problem.extra.get("errors") or [{"field": "body", "reason": problem.detail}]
    problem.extra["errors"] = [{**e, "field": where + e["field"].removeprefix("body")} for e in errors]
    return None, problem


def refuse_elements(problems: Sequence[ProblemError], total: int, noun: str) -> ProblemError:
    """One refusal for a batch's invalid elements: every field of each (up to
    MAX_REPORTED_ERRORS; `invalid_count` says how many there were), so a client fixes a whole
    import in one round. A disabled type alone is a conflict (409); anything else a 422."""
    found = [e for p in problems for e in p.extra.get("errors") or []]
    statuses = {p.status for p in problems}
    codes = {p.code or "invalid_request" for p in problems}
    first = found[0]
    return ProblemError(
        statuses.pop() if len(statuses) == 1 else 422,
        f"{len(problems)} of {total} {noun} are invalid, none was created; first {first['field']}: "
        f"{first['reason']}",
        code=codes.pop() if len(codes) == 1 else "invalid_request",
        errors=found[:MAX_REPORTED_ERRORS],
        invalid_count=len(found),
    )


def clean_elements(news: Sequence[NewJob], where: Callable[[int], str]) -> list[dict[str, Any]]:
    """Every element's validated payload, or one refusal naming every invalid element."""
    payloads: list[dict[str, Any]] = []
    problems: list[ProblemError] = []
    for i, new in enumerate(news):
        payload, problem = clean_element(new, where(i))
        if problem is not None:
            problems.append(problem)
        elif payload is not None:
            payloads.append(payload)
    if problems:
        raise refuse_elements(problems, len(news), "jobs")
    return payloads


@contextmanager
def _batch_charge() -> Iterator[None]:
    """402 for the batch's total, not "this job costs"."""
    try:
        yield
    except InsufficientCredits as exc:
        raise ProblemError(
            402,
            f"these jobs cost {exc.cost} credits together and the balance is {exc.balance}",
            code=exc.code,
            balance=exc.balance,
            cost=exc.cost,
        ) from None


@contextmanager
def _in_flight_cap() -> Iterator[None]:
    """The user's pending and processing jobs reach the cap: 429, with when to try again."""
    try:
        yield
    except TooManyInFlight as exc:
        raise ProblemError(
            429,
            exc.message,
            code=exc.code,
            headers={"Retry-After": "5"},
            in_flight=exc.in_flight,
            limit=exc.limit,
        ) from None


def _new_job_body(
    user: UUID, tenant: UUID, new: NewJob, payload: dict[str, Any], created: CreatedJob, key: str | None
) -> dict[str, Any]:
    """Everything a new job holds is known here: no second query to read it back."""
    return Job(
        id=created.id,
        user_id=user,
        tenant=tenant,
        type=new.type,
        payload=payload,
        status=created.status,
        priority=new.priority,
        run_at=created.run_at,
        attempts=0,
        max_attempts=new.max_attempts,
        result=None,
        error=None,
        cost=created.cost,
        idempotency_key=key,
        retry_of=new.retry_of,
        cancel_requested=False,
        created_at=created.created_at,
        started_at=None,
        finished_at=None,
        updated_at=created.created_at,
    ).model_dump(mode="json")


async def _replay(session: Session, user: UUID, key: str, digest: str) -> Created:
    row = await session.idempotency.get(user, key)
    if row is None or row["response_status"] is None:
        raise ProblemError(409, "a request with this Idempotency-Key is in progress", code="idempotency_busy")
    if row["request_hash"] != digest:
        raise key_reused()
    return Created(int(row["response_status"]), dict(row["response_body"]), replayed=True)


def key_reused() -> ProblemError:
    reason = "this Idempotency-Key was used with a different request; use a new key"
    return ProblemError(409, reason, code="idempotency_key_reused")


def _same_job(row: Mapping[str, Any], new: NewJob, payload: dict[str, Any]) -> bool:
    """Whether the job already holding a key is what this request asks for. `run_at` counts
    only when the request names one: left out, it was the creation's own clock."""
    return (
        row["type"] == new.type
        and row["payload"] == payload
        and row["priority"] == new.priority
        and row["max_attempts"] == new.max_attempts
        and row["retry_of"] == new.retry_of
        and (new.run_at is None or row["run_at"] == new.run_at)
    )
