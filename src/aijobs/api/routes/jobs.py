"""`/api/jobs`: create, read (optionally long-polling), list, cancel, retry, stream; `/api/job-types`.

Every handler runs its queries in `store.as_user(claims)`, so row-level security decides
what the caller sees: another user's job is simply not there, and answers 404 exactly as a
job that does not exist. (A creation without an Idempotency-Key does the same in a statement
shared with other requests, `api_create_jobs_grouped`: see `aijobs/api/grouped_creation.py`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sse_starlette import EventSourceResponse

from aijobs.api.auth import CurrentUser, Principal
from aijobs.api.creation import (
    IDEMPOTENCY_HEADER,
    NewJob,
    check_idempotency_key,
    clean_element,
    create_batch_for_user,
    create_for_user,
    refuse_elements,
)
from aijobs.api.events import DELTA, RESYNC, JobEventsHub
from aijobs.api.job_schemas import result_schema
from aijobs.api.models import (
    MAX_BATCH_JOBS,
    Job,
    JobBatch,
    JobBatchCreate,
    JobCreate,
    JobDelta,
    JobEvent,
    JobPage,
    JobReset,
    JobStatus,
    JobTypeInfo,
)
from aijobs.api.pagination import job_cursor, parse_job_cursor
from aijobs.api.problems import ProblemError, from_domain, invalid, not_found, responses
from aijobs.api.state import ApiState, get_hub, get_state, get_store
from aijobs.api.streams import SlotEventSourceResponse
from aijobs.api.unavailable import replays_with_idempotency_key
from aijobs.db.store import Store
from aijobs.errors import AijobsError
from aijobs.jobs import max_attempts_for, registry
from aijobs.queue.enqueue import check_retryable
from aijobs.states import TERMINAL_STATUSES, UNCANCELLABLE_STATUSES

router = APIRouter(tags=["jobs"])


class EventStream(Response):
    """Only documents the SSE media type in OpenAPI; the handler returns an EventSourceResponse."""

    media_type = "text/event-stream"


StoreDep = Annotated[Store, Depends(get_store)]
StateDep = Annotated[ApiState, Depends(get_state)]
HubDep = Annotated[JobEventsHub, Depends(get_hub)]
KeyHeader = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        description="Replays the first response for the same request; 1-255 printable ASCII characters.",
    ),
]


async def read_job(store: Store, principal: Principal, job_id: UUID) -> Job:
    async with store.as_user(principal.claims) as session:
        row = await session.jobs.get_for_api(job_id)
    if row is None:
        raise not_found()
    return Job.model_validate(row)


def created_response(status: int, body: Mapping[str, Any], replayed: bool) -> JSONResponse:
    # Through the model both times, so a replay is byte for byte the first response (the
    # stored jsonb does not keep key order).
    body = Job.model_validate(body).model_dump(mode="json")
    headers = {"Location": f"/api/jobs/{body['id']}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=status, headers=headers)


async def _create(
    store: Store, state: ApiState, principal: Principal, new: NewJob, key: str | None
) -> JSONResponse:
    """A single creation (new or a retry) under this process's cap and groups, answered."""
    created = await create_for_user(
        store,
        state.grouped_creations,
        principal,
        new,
        key=key,
        tenant=principal.tenant(state.settings.tenant_claim),
    )
    return created_response(created.status, created.body, created.replayed)


def _new_job(body: JobCreate, state: ApiState, request: dict[str, Any]) -> NewJob:
    """What a client asked for, as the creation path takes it: `MAX_RETRIES + 1` attempts
    unless the body says otherwise. `request` is what the idempotency hash covers."""
    return NewJob(
        type=body.type,
        payload=body.payload,
        priority=body.priority,
        run_at=body.run_at,
        max_attempts=body.max_attempts or max_attempts_for(body.type, state.settings.max_attempts),
        retry_of=None,
        request=request,
    )


@router.get("/api/job-types", response_model=list[JobTypeInfo], summary="Job types, costs and examples")
async def job_types() -> list[JobTypeInfo]:
    """Public: what a client may create, what it costs, and a valid example payload for each."""
    return [
        JobTypeInfo(
            name=jt.name,
            description=jt.description,
            cost=jt.cost,
            timeout_seconds=jt.timeout_seconds,
            max_attempts=jt.retry.max_attempts,
            example=jt.example,
            payload_schema=jt.payload_model.model_json_schema(),
            result_schema=result_schema(jt),
        )
        for jt in registry().values()
    ]


@router.post(
    "/api/jobs",
    status_code=201,
    response_model=Job,
    summary="Create a job (charges its credits)",
    responses=responses(401, 402, 409, 413, 422, 429, 503),
)
@replays_with_idempotency_key
async def create_job(
    body: JobCreate,
    principal: CurrentUser,
    store: StoreDep,
    state: StateDep,
    idempotency_key: KeyHeader = None,
) -> JSONResponse:
    key = check_idempotency_key(idempotency_key)
    request = {"method": "POST", "path": "/api/jobs", "body": body.model_dump(mode="json")}
    new = _new_job(body, state, request)
    return await _create(store, state, principal, new, key)


@router.post(
    "/api/jobs/batch",
    status_code=201,
    response_model=JobBatch,
    summary="Create several jobs, all or nothing (charges their credits together)",
    responses=responses(401, 402, 409, 413, 422, 429, 503),
)
@replays_with_idempotency_key
async def create_jobs(
    body: JobBatchCreate,
    principal: CurrentUser,
    store: StoreDep,
    state: StateDep,
    idempotency_key: KeyHeader = None,
) -> JSONResponse:
    """Up to 10,000 jobs in one request and one transaction: if any is refused (a bad payload,
    the balance short of their total, the in-flight cap) none is created and nothing is
    charged, and every invalid element is named (up to 100 fields). Each job gets its own
    debit, and its own refund if it fails or is cancelled, as if it had been created alone.
    The body may be up to MAX_BATCH_BODY_BYTES (16 MiB by default)."""
    key = check_idempotency_key(idempotency_key)
    # The idempotency hash covers the whole request (below), not each element.
    news = [_new_job(job, state, request={}) for job in body.jobs]
    created = await create_batch_for_user(
        store,
        principal,
        news,
        request={"method": "POST", "path": "/api/jobs/batch", "body": body.model_dump(mode="json")},
        key=key,
        tenant=principal.tenant(state.settings.tenant_claim),
    )
    # Through the model both times, so a replay is byte for byte the first response.
    content = JobBatch.model_validate(created.body).model_dump(mode="json")
    headers = {"Idempotent-Replayed": "true"} if created.replayed else None
    return JSONResponse(content, status_code=created.status, headers=headers)


#: The media types of a JSON Lines body (one job per line).
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl")

_IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One job (as POST /api/jobs takes it) per line; blank lines are skipped.",
        "content": {
            NDJSON_TYPES[0]: {
                "schema": {"type": "string"},
                "example": '{"type": "sentiment_analysis", "payload": {"text": "Lovely staff."}}\n'
                '{"type": "review_processing", "payload": {"review_text": "Cold coffee."}, "priority": 5}\n',
            }
        },
    }
}


@router.post(
    "/api/jobs/import",
    status_code=201,
    response_model=JobBatch,
    summary="Create jobs from JSON Lines, all or nothing (charges their credits together)",
    responses=responses(401, 402, 409, 413, 415, 422, 429, 503),
    openapi_extra=_IMPORT_BODY,
)
@replays_with_idempotency_key
async def import_jobs(
    request: Request,
    principal: CurrentUser,
    store: StoreDep,
    state: StateDep,
    idempotency_key: KeyHeader = None,
) -> JSONResponse:
    """A bulk import: `Content-Type: application/x-ndjson`, one job per line, up to 10,000
    lines, created and charged as one batch. Every line is validated first: if any is invalid,
    the answer names every invalid field by its line (`body.line.<n>.<field>`, lines counted
    from 1, up to 100 fields; `invalid_count` says how many) and nothing is created."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in NDJSON_TYPES:
        raise ProblemError(
            415,
            f"send one job per line as {NDJSON_TYPES[0]}, not {media or 'no content type'}",
            code="unsupported_media_type",
        )
    key = check_idempotency_key(idempotency_key)
    raw = await request.body()
    lines, news, payloads = parse_job_lines(raw, state)
    try:
        created = await create_batch_for_user(
            store,
            principal,
            news,
            request={"method": "POST", "path": "/api/jobs/import", "sha256": hashlib.sha256(raw).hexdigest()},
            key=key,
            tenant=principal.tenant(state.settings.tenant_claim),
            where=lambda i: f"body.line.{lines[i]}",
            payloads=payloads,
        )
    except AijobsError as exc:
        # A value only the database refuses names `jobs.<i>`: the client counts lines.
        problem = from_domain(exc)
        problem.extra["errors"] = [
            {
                **e,
                "field": re.sub(r"^body\.jobs\.(\d+)", lambda m: f"body.line.{lines[int(m[1])]}", e["field"]),
            }
            for e in problem.extra.get("errors") or []
        ]
        raise problem from None
    content = JobBatch.model_validate(created.body).model_dump(mode="json")
    headers = {"Idempotent-Replayed": "true"} if created.replayed else None
    return JSONResponse(content, status_code=created.status, headers=headers)


def parse_job_lines(raw: bytes, state: ApiState) -> tuple[list[int], list[NewJob], list[dict[str, Any]]]:
    """Each non-blank line's number (from 1), job and validated payload, or one 422 naming
    every invalid field of every line in line order (up to MAX_REPORTED_ERRORS)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid("body", "is not UTF-8") from None
    numbered = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    if not numbered:
        raise invalid("body", "holds no jobs: send one JSON object per line")
    if len(numbered) > MAX_BATCH_JOBS:
        raise invalid("body", f"holds {len(numbered)} jobs; one import takes at most {MAX_BATCH_JOBS}")
    problems: list[ProblemError] = []
    lines: list[int] = []
    news: list[NewJob] = []
    payloads: list[dict[str, Any]] = []
    for n, line in numbered:
        try:
            body = JobCreate.model_validate_json(line)
        except ValidationError as exc:
            fields = []
            for e in exc.errors(include_url=False):
                where = ".".join(str(part) for part in e["loc"])
                fields.append(
                    {"field": f"body.line.{n}" + (f".{where}" if where else ""), "reason": e["msg"]}
                )
            problems.append(ProblemError(422, fields[0]["reason"], code="invalid_request", errors=fields))
            continue
        new = _new_job(body, state, request={})
        payload, problem = clean_element(new, f"body.line.{n}")
        if problem is not None:
            problems.append(problem)
        elif payload is not None:
            lines.append(n)
            news.append(new)
            payloads.append(payload)
    if problems:
        raise refuse_elements(problems, len(numbered), "lines")
    return lines, news, payloads


@router.get(
    "/api/jobs",
    response_model=JobPage,
    summary="My jobs, newest first",
    responses=responses(401, 422),
)
async def list_jobs(
    principal: CurrentUser,
    store: StoreDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
    type: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z][a-z0-9_]*$")] = None,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JobPage:
    before = parse_job_cursor(cursor)
    async with store.as_user(principal.claims) as session:
        rows = await session.jobs.page(
            user_id=principal.user_id, status=status, type=type, before=before, limit=limit + 1
        )
    return page_of(rows, limit)


def page_of(rows: Sequence[Mapping[str, Any]], limit: int) -> JobPage:
    items = [Job.model_validate(r) for r in rows[:limit]]
    more = len(rows) > limit
    return JobPage(items=items, next_cursor=job_cursor(items[-1].created_at, items[-1].id) if more else None)


@router.get(
    "/api/jobs/{job_id}",
    response_model=Job,
    summary="A job (optionally waiting for its status to change)",
    responses=responses(401, 404, 422, 429),
)
async def get_job(
    job_id: UUID,
    request: Request,
    principal: CurrentUser,
    store: StoreDep,
    hub: HubDep,
    state: StateDep,
    wait: Annotated[
        float,
        Query(
            ge=0, le=60, description="Long-poll: answer as soon as the status changes, or after this many s."
        ),
    ] = 0,
) -> Job:
    """With `wait`, a long poll: it holds one of the user's MAX_STREAMS_PER_USER slots, as an
    event stream does, for as long as it waits (429 `too_many_streams` past the cap), and no
    longer than its client stays: a client that leaves gives the slot back at once."""
    if wait <= 0:
        return await read_job(store, principal, job_id)
    assert principal.user_id is not None
    slot = state.streams.acquire(principal.user_id)  # 429 before any database work
    # uvicorn does not cancel a handler whose client has gone, so the wait watches for it.
    gone = asyncio.ensure_future(client_gone(request))
    try:
        async with hub.subscribe(job_id) as events:
            job = await read_job(store, principal, job_id)
            if job.status in TERMINAL_STATUSES:
                return job
            changed = asyncio.ensure_future(
                status_change(store, principal, job, events, wait, hub.recheck_seconds)
            )
            try:
                await asyncio.wait((changed, gone), return_when=asyncio.FIRST_COMPLETED)
                if not changed.done():
                    return job  # the client has gone: nobody reads this answer
                changed.result()  # a database error is the request's error
            finally:
                await settle(changed)
    finally:
        await settle(gone)
        slot.release()
    return await read_job(store, principal, job_id)


async def status_change(
    store: Store, principal: Principal, job: Job, events: asyncio.Queue[str], wait: float, recheck: float
) -> None:
    """Return when `job`'s status is no longer the one it had, or after `wait` seconds;
    re-read at least every `recheck` seconds, news or not."""
    deadline = time.monotonic() + wait
    while (remaining := deadline - time.monotonic()) > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(events.get(), timeout=min(remaining, recheck))
        async with store.as_user(principal.claims) as session:
            status = await session.jobs.status_of(job.id)
        if status != job.status:
            return


async def settle(task: asyncio.Future[None]) -> None:
    """Cancel `task` if it still runs and wait for it to end; what it raised was either read
    already (`result()`) or no longer matters (the client it answered has gone)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def client_gone(request: Request) -> None:
    """Return once the client has closed its connection (the ASGI `http.disconnect`).

    A GET's body is one empty message; the receive after it waits until the client goes.
    """
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.post(
    "/api/jobs/{job_id}/cancel",
    response_model=Job,
    summary="Cancel a job (pending: at once, refunded; processing: asked to stop)",
    responses=responses(401, 404, 409, 422),
)
async def cancel_job(job_id: UUID, principal: CurrentUser, store: StoreDep) -> Job:
    async with store.as_user(principal.claims) as session:
        outcome = await session.jobs.cancel(job_id)
        if outcome is None:
            raise not_found()
        row = await session.jobs.get_for_api(job_id)
    assert row is not None
    job = Job.model_validate(row)
    if job.status in UNCANCELLABLE_STATUSES:
        raise ProblemError(409, f"job is already {job.status}; nothing to cancel", code="job_finished")
    return job


@router.post(
    "/api/jobs/{job_id}/retry",
    status_code=201,
    response_model=Job,
    summary="Run a failed or cancelled job again as a new job (charged again)",
    responses=responses(401, 402, 404, 409, 422, 429, 503),
)
@replays_with_idempotency_key
async def retry_job(
    job_id: UUID, principal: CurrentUser, store: StoreDep, state: StateDep, idempotency_key: KeyHeader = None
) -> JSONResponse:
    key = check_idempotency_key(idempotency_key)
    old = await read_job(store, principal, job_id)
    check_retryable(old.id, old.status)
    new = NewJob(
        type=old.type,
        payload=old.payload,
        priority=old.priority,
        run_at=None,
        max_attempts=old.max_attempts,
        retry_of=old.id,
        request={"method": "POST", "path": f"/api/jobs/{job_id}/retry", "body": None},
    )
    return await _create(store, state, principal, new, key)


@router.get(
    "/api/jobs/{job_id}/events",
    response_class=EventStream,
    summary="Server-Sent Events: the job's status changes, and its reply as it is written",
    responses={
        200: {
            "description": "`event: status` with a JobEvent as data, one per transition, without an "
            "id (so a client's Last-Event-ID stays on the last piece); the stream "
            "ends after a terminal status (completed, failed, cancelled). For a type that streams "
            "(ai_generation), `event: delta` (JobDelta: the next piece of the reply, id "
            "`<attempt token>:<seq>`) while it runs, from the start of the running attempt for a "
            "late subscriber, or after the piece named by `Last-Event-ID`; `event: reset` "
            "(JobReset) when a new attempt starts writing: drop the text received so far.",
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string", "description": "SSE; each `data:` is a JobEvent (JSON)."}
                }
            },
        },
        **responses(401, 404, 422, 429),
    },
)
async def job_events(
    job_id: UUID,
    principal: CurrentUser,
    store: StoreDep,
    hub: HubDep,
    state: StateDep,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", max_length=100, description="Resume after this `delta` event."),
    ] = None,
) -> EventSourceResponse:
    """At most MAX_STREAMS_PER_USER streams per user are open at once in one API process;
    one more is a 429 (`too_many_streams`, with `open_streams`, `limit` and a Retry-After)."""
    assert principal.user_id is not None
    slot = state.streams.acquire(principal.user_id)  # 429 before any database work
    sent = Position.parse(last_event_id)

    async def stream() -> AsyncIterator[dict[str, str]]:
        try:
            async with hub.subscribe(job_id) as events:
                job = await read_job(store, principal, job_id)
                last: str = job.status
                yield _event(last, job)
                if last not in TERMINAL_STATUSES:
                    for event in await _pieces(store, job_id, sent):
                        yield event
                while last not in TERMINAL_STATUSES:
                    try:
                        note = await asyncio.wait_for(events.get(), timeout=hub.recheck_seconds)
                    except TimeoutError:
                        note = RESYNC
                    if note in (DELTA, RESYNC):
                        for event in await _pieces(store, job_id, sent):
                            yield event
                        if note == DELTA:
                            continue
                    try:
                        job = await read_job(store, principal, job_id)
                    except ProblemError:
                        return  # the job is gone (pruned)
                    status = job.status if note == RESYNC else note
                    if status == last or status not in JOB_STATUSES:
                        continue
                    if status in TERMINAL_STATUSES:
                        # Every piece is written before the end is: send them first.
                        for event in await _pieces(store, job_id, sent):
                            yield event
                    last = status
                    yield _event(last, job)
        finally:
            slot.release()  # the stream ended: finished job, client gone, shutdown, error

    try:
        await read_job(store, principal, job_id)  # 404 before the stream starts
        # The response releases the slot too: it may end before the generator ever starts.
        return SlotEventSourceResponse(stream(), slot, ping=15, headers={"Cache-Control": "no-store"})
    except BaseException:
        slot.release()
        raise


JOB_STATUSES = frozenset(JobStatus)


@dataclass
class Position:
    """The last piece of streamed text a subscriber has: (attempt's lease token, seq)."""

    lease_token: int = 0
    seq: int = 0

    @classmethod
    def parse(cls, event_id: str | None) -> Position:
        """From a `delta` event's id ("<lease token>:<seq>"); anything else starts afresh."""
        lease, _, seq = (event_id or "").partition(":")
        if not (lease.isdigit() and seq.isdigit() and len(lease) <= 19 and len(seq) <= 9):
            return cls()
        return cls(int(lease), int(seq))


async def _pieces(store: Store, job_id: UUID, sent: Position) -> list[dict[str, str]]:
    """The events for the pieces written since `sent` (which moves on): a `reset` first when
    they are a later attempt's than the ones sent before."""
    async with store.session() as session:
        chunks = await session.streams.read(job_id, after_lease=sent.lease_token, after_seq=sent.seq)
    events: list[dict[str, str]] = []
    for chunk in chunks:
        if chunk.lease_token != sent.lease_token:
            if sent.lease_token:
                reset = JobReset(job_id=job_id, attempt_token=chunk.lease_token)
                events.append({"event": "reset", "data": reset.model_dump_json()})
            sent.lease_token, sent.seq = chunk.lease_token, 0
        sent.seq = chunk.seq
        delta = JobDelta(job_id=job_id, attempt_token=chunk.lease_token, seq=chunk.seq, text=chunk.text)
        events.append(
            {"event": "delta", "id": f"{chunk.lease_token}:{chunk.seq}", "data": delta.model_dump_json()}
        )
    return events


def _event(status: str, job: Job) -> dict[str, str]:
    # No id: an EventSource resumes from the id of the last event of any kind, and only the
    # pieces' ids ("<lease token>:<seq>") say where a reply stands.
    data = JobEvent.model_validate({"job_id": job.id, "status": status, "job": job})
    return {"event": "status", "data": data.model_dump_json()}
