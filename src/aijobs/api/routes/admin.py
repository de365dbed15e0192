"""`/api/admin/*`: for the service key (server-side callers) or a user with an admin claim.

These run as the owner role (`Store.session()`), which sees every row by explicit policy.
A requeue is a *new* charged job with `retry_of` pointing at the old one, made by the same
credit function as any creation: the old job keeps its refund, so the ledger stays exact.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from aijobs.api.auth import Admin
from aijobs.api.creation import check_idempotency_key, key_reused
from aijobs.api.models import (
    Balance,
    CreditGrant,
    Job,
    JobPage,
    JobStatus,
    TenantList,
    TenantLoad,
    TenantSettings,
)
from aijobs.api.pagination import parse_job_cursor
from aijobs.api.problems import ProblemError, not_found, responses
from aijobs.api.routes.jobs import KeyHeader, created_response, page_of
from aijobs.api.routes.me import store_settings
from aijobs.api.state import get_store
from aijobs.api.unavailable import replays_with_idempotency_key
from aijobs.db.store import Store
from aijobs.jobs import AccountSettings
from aijobs.queue.enqueue import retry_as_new_job

router = APIRouter(prefix="/api/admin", tags=["admin"])
StoreDep = Annotated[Store, Depends(get_store)]


@router.post(
    "/credits",
    response_model=Balance,
    summary="Grant credits (creates the account)",
    responses=responses(401, 403, 409, 422),
)
@replays_with_idempotency_key
async def grant_credits(
    body: CreditGrant, _admin: Admin, store: StoreDep, idempotency_key: KeyHeader = None
) -> Balance:
    """With an Idempotency-Key (a payment's event id, say) the grant is made once: sent again
    it answers the balance the first left; the key with another amount or note is a 409."""
    key = check_idempotency_key(idempotency_key)
    async with store.session() as session:
        balance = await session.accounts.grant_credits(body.user_id, body.amount, body.note, key=key)
    return Balance(user_id=body.user_id, balance=balance)


@router.get("/jobs", response_model=JobPage, summary="All users' jobs", responses=responses(401, 403, 422))
async def list_all_jobs(
    _admin: Admin,
    store: StoreDep,
    user_id: UUID | None = None,
    status: JobStatus | None = None,
    type: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z][a-z0-9_]*$")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JobPage:
    before = parse_job_cursor(cursor)
    async with store.session() as session:
        rows = await session.jobs.page(
            user_id=user_id, status=status, type=type, before=before, limit=limit + 1
        )
    return page_of(rows, limit)


@router.post(
    "/jobs/{job_id}/requeue",
    status_code=201,
    response_model=Job,
    summary="Run a failed or cancelled job again as a new job, charged to its owner",
    responses=responses(401, 402, 403, 404, 409, 422),
)
@replays_with_idempotency_key
async def requeue(
    job_id: UUID, _admin: Admin, store: StoreDep, idempotency_key: KeyHeader = None
) -> JSONResponse:
    """With an Idempotency-Key, sending the request again (a client's retry after a timeout)
    answers the job the first one made and charges nothing. The key is stored on the new job
    among its owner's keys, so a key the owner used for another job is refused (409)."""
    key = check_idempotency_key(idempotency_key)
    async with store.transaction() as session:
        row = await session.jobs.get_for_api(job_id)
        if row is None:
            raise not_found()
        created = await retry_as_new_job(session, row, idempotency_key=key)
        new_row = await session.jobs.get_for_api(created.id)
    assert new_row is not None
    if not created.created and new_row["retry_of"] != job_id:
        raise key_reused()
    return created_response(201, new_row, replayed=not created.created)


@router.post(
    "/jobs/{job_id}/expedite",
    response_model=Job,
    summary="Move a pending job ahead of every other tenant's jobs",
    responses=responses(401, 403, 404, 409, 422),
)
async def expedite(job_id: UUID, _admin: Admin, store: StoreDep) -> Job:
    """Its tenant takes the queue's next turn and the job is first among its tenant's own
    (priority 100, due now). Users order only their own jobs (priority); going ahead of other
    tenants is the service's decision. The tenant's limit on running jobs still applies."""
    async with store.transaction() as session:
        moved = await session.jobs.expedite(job_id)
        row = await session.jobs.get_for_api(job_id)
    if row is None:
        raise not_found()
    if not moved:
        raise ProblemError(
            409, f"the job is {row['status']}: only a pending job can be expedited", code="job_not_pending"
        )
    return Job.model_validate(row)


@router.get(
    "/tenants",
    response_model=TenantList,
    summary="The tenants with the most jobs waiting, with their running jobs and limits",
    responses=responses(401, 403, 422),
)
async def top_tenants(
    _admin: Admin, store: StoreDep, limit: Annotated[int, Query(ge=1, le=500)] = 20
) -> TenantList:
    """Most jobs pending first, then running; read from the live queue only. Tenants with
    nothing pending or running are not listed."""
    async with store.session() as session:
        rows = await session.monitoring.top_tenants(limit)
    return TenantList(items=[TenantLoad.model_validate(dict(row)) for row in rows])


@router.put(
    "/tenants/{tenant}",
    response_model=TenantSettings,
    summary="Set a tenant's fair-share weight and its limit on running jobs",
    responses=responses(401, 403, 422),
)
async def put_tenant(tenant: UUID, body: TenantSettings, _admin: Admin, store: StoreDep) -> TenantSettings:
    """Both at once (a field left out takes its default: weight 1, the deployment's limit). The
    tenant is a user's id, or an organisation's where TENANT_CLAIM names one. The weight
    applies to jobs created from now on, the limit to the next claims."""
    async with store.session() as session:
        weight, max_running = await session.accounts.set_tenant(tenant, body.weight, body.max_running)
    return TenantSettings(weight=weight, max_running=max_running)


@router.get(
    "/accounts/{user_id}/settings",
    response_model=AccountSettings,
    summary="An account's settings for LLM job types",
    responses=responses(401, 403, 422),
)
async def account_settings(user_id: UUID, _admin: Admin, store: StoreDep) -> AccountSettings:
    async with store.session() as session:
        row = await session.accounts.settings(user_id)
    return AccountSettings.model_validate(row or {})


@router.put(
    "/accounts/{user_id}/settings",
    response_model=AccountSettings,
    summary="Replace an account's settings (a field left out is cleared)",
    responses=responses(401, 403, 422),
)
async def put_account_settings(
    user_id: UUID, body: AccountSettings, _admin: Admin, store: StoreDep
) -> AccountSettings:
    return await store_settings(store, user_id, body)


class JobTypeSwitch(BaseModel):
    """The switches to set; one left out stays as it is."""

    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool | None = Field(
        default=None, description="false refuses new jobs of the type (409); its pending jobs still run"
    )
    paused: StrictBool | None = Field(
        default=None,
        description="true stops workers claiming its pending jobs (they wait, kept and charged); "
        "new jobs are still accepted and wait too; false resumes them",
    )
    max_running_per_tenant: StrictInt | None = Field(
        default=None,
        ge=0,
        le=2_147_483_647,
        description="the most jobs of this type one tenant may have running at once, across all "
        "workers (the tenant's own limit applies too); 0 removes the type's limit",
    )


class JobTypeState(BaseModel):
    name: str
    enabled: bool
    paused: bool
    max_running_per_tenant: int | None = Field(
        description="the type's own limit on running jobs per tenant; null: none"
    )


@router.put(
    "/job-types/{name}",
    response_model=JobTypeState,
    summary="Enable/disable (creations refused) or pause/resume (pending jobs not claimed) a job type",
    responses=responses(401, 403, 404, 422),
)
async def switch_job_type(
    name: Annotated[str, Path(max_length=63, pattern=r"^[a-z][a-z0-9_]*$")],
    body: JobTypeSwitch,
    _admin: Admin,
    store: StoreDep,
) -> JobTypeState:
    return await set_job_type_switches(
        store,
        name,
        enabled=body.enabled,
        paused=body.paused,
        max_running_per_tenant=body.max_running_per_tenant,
    )


async def set_job_type_switches(
    store: Store,
    name: str,
    *,
    enabled: bool | None = None,
    paused: bool | None = None,
    max_running_per_tenant: int | None = None,
) -> JobTypeState:
    """Shared with the dashboard's Pause/Resume buttons."""
    async with store.session() as session:
        row = await session.job_types.switch(
            name, enabled=enabled, paused=paused, max_running_per_tenant=max_running_per_tenant
        )
    if row is None:
        raise not_found("job type")
    return JobTypeState.model_validate(row)
