"""Webhook endpoints: `/api/me/webhooks` (an account's, for its own jobs) and
`/api/admin/webhooks` (the deployment's, for every job), their delivery log and replay.

A URL is refused at registration with the reason (aijobs.worker.webhook_targets). The
secret is shown once, in the answer to the creation: it signs every delivery. These tables
are written as the API's own role, scoped to the caller (users are granted nothing on them).
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field, field_validator

from aijobs.api.auth import Admin, CurrentUser
from aijobs.api.problems import ProblemError, invalid, not_found, responses
from aijobs.api.state import ApiState, get_state, get_store
from aijobs.db.read_rows import WebhookEndpointRow
from aijobs.db.store import Store
from aijobs.providers.base import UNSTORABLE
from aijobs.worker.webhook_targets import MAX_URL_LENGTH, ResolverUnavailable, target_problem

Event = Literal["job.completed", "job.failed", "job.cancelled"]
ALL_EVENTS: list[Event] = ["job.completed", "job.failed", "job.cancelled"]

me_router = APIRouter(prefix="/api/me/webhooks", tags=["webhooks"])
admin_router = APIRouter(prefix="/api/admin/webhooks", tags=["admin"])
StoreDep = Annotated[Store, Depends(get_store)]
StateDep = Annotated[ApiState, Depends(get_state)]
#: What a client is told to wait when the URL's host could not be looked up just now.
RESOLVE_RETRY_AFTER_SECONDS = 5


class WebhookEndpointCreate(BaseModel):
    """Where to POST job ends, and which ones."""

    url: str = Field(max_length=MAX_URL_LENGTH, examples=["https://example.com/hooks/aijobs"])
    events: list[Event] = Field(default_factory=lambda: list(ALL_EVENTS), min_length=1, max_length=3)
    description: str | None = Field(default=None, max_length=200)

    @field_validator("description")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        if value is not None and UNSTORABLE.search(value):
            raise ValueError("holds a character that cannot be stored (NUL or a lone surrogate)")
        return value


class WebhookEndpoint(BaseModel):
    id: UUID
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    created_at: datetime
    scope: Literal["account", "deployment"]


class WebhookEndpointCreated(WebhookEndpoint):
    secret: str = Field(description="Signs every delivery (Standard Webhooks); shown only here, once.")


class WebhookAttempt(BaseModel):
    attempt: int
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float | None


class WebhookDelivery(BaseModel):
    id: UUID = Field(description="Sent as `webhook-id`, the same on every attempt and replay.")
    endpoint_id: UUID
    job_id: UUID
    event: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    log: list[WebhookAttempt]


class WebhookDeliveryPage(BaseModel):
    items: list[WebhookDelivery]
    next_cursor: str | None


def _endpoint(row: WebhookEndpointRow) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row["id"],
        url=row["url"],
        events=row["events"],
        description=row["description"],
        enabled=row["enabled"],
        created_at=row["created_at"],
        scope="deployment" if row["user_id"] is None else "account",
    )


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def _create(
    owner: UUID | None, body: WebhookEndpointCreate, store: Store, state: ApiState
) -> WebhookEndpointCreated:
    settings = state.settings
    try:
        problem = await target_problem(body.url, allow_private=settings.webhook_allow_private)
    except ResolverUnavailable as exc:
        # The resolver failing says nothing of the URL: not a 422 naming it.
        raise ProblemError(
            503,
            f"the URL's host ({exc.host}) could not be looked up just now; try again",
            code="dns_unavailable",
            headers={"Retry-After": str(RESOLVE_RETRY_AFTER_SECONDS)},
        ) from None
    if problem is not None:
        raise invalid("body.url", problem)
    secret = new_secret()
    async with store.session() as session:
        row = await session.webhooks.create_endpoint(
            owner,
            url=body.url,
            secret=secret,
            events=list(dict.fromkeys(body.events)),
            description=body.description,
            max_endpoints=settings.max_webhooks_per_user,
        )
    if row is None:
        raise ProblemError(
            409,
            f"at most {settings.max_webhooks_per_user} webhook endpoints; delete one first",
            code="too_many_webhooks",
        )
    return WebhookEndpointCreated(**_endpoint(row).model_dump(), secret=secret)


async def _list(owner: UUID | None, store: Store) -> list[WebhookEndpoint]:
    async with store.session() as session:
        return [_endpoint(r) for r in await session.webhooks.endpoints(owner)]


async def _delete(owner: UUID | None, endpoint_id: UUID, store: Store) -> Response:
    async with store.session() as session:
        if not await session.webhooks.delete_endpoint(owner, endpoint_id):
            raise not_found("webhook endpoint")
    return Response(status_code=204)


async def _deliveries(
    owner: UUID | None, endpoint_id: UUID, store: Store, cursor: UUID | None, limit: int
) -> WebhookDeliveryPage:
    async with store.session() as session:
        if await session.webhooks.endpoint(owner, endpoint_id) is None:
            raise not_found("webhook endpoint")
        rows = await session.webhooks.deliveries(owner, endpoint_id, before=cursor, limit=limit + 1)
    items = [WebhookDelivery.model_validate(r) for r in rows[:limit]]
    more = len(rows) > limit
    return WebhookDeliveryPage(items=items, next_cursor=str(items[-1].id) if more else None)


async def _replay(owner: UUID | None, endpoint_id: UUID, delivery_id: UUID, store: Store) -> Response:
    async with store.session() as session:
        if not await session.webhooks.replay(owner, endpoint_id, delivery_id):
            raise not_found("webhook delivery")
    return Response(status_code=202)


Limit = Annotated[int, Query(ge=1, le=200)]


# -- an account's own endpoints -------------------------------------------------------------
@me_router.post(
    "",
    status_code=201,
    response_model=WebhookEndpointCreated,
    summary="Register a webhook endpoint for my jobs' ends",
    responses=responses(401, 409, 422, 503),
)
async def create_my_webhook(
    body: WebhookEndpointCreate, principal: CurrentUser, store: StoreDep, state: StateDep
) -> WebhookEndpointCreated:
    return await _create(principal.user_id, body, store, state)


@me_router.get(
    "", response_model=list[WebhookEndpoint], summary="My webhook endpoints", responses=responses(401)
)
async def list_my_webhooks(principal: CurrentUser, store: StoreDep) -> list[WebhookEndpoint]:
    return await _list(principal.user_id, store)


@me_router.delete(
    "/{endpoint_id}",
    status_code=204,
    summary="Delete one of my webhook endpoints",
    responses=responses(401, 404, 422),
)
async def delete_my_webhook(endpoint_id: UUID, principal: CurrentUser, store: StoreDep) -> Response:
    return await _delete(principal.user_id, endpoint_id, store)


@me_router.get(
    "/{endpoint_id}/deliveries",
    response_model=WebhookDeliveryPage,
    summary="The delivery log of one of my endpoints, newest first",
    responses=responses(401, 404, 422),
)
async def my_webhook_deliveries(
    endpoint_id: UUID, principal: CurrentUser, store: StoreDep, cursor: UUID | None = None, limit: Limit = 50
) -> WebhookDeliveryPage:
    return await _deliveries(principal.user_id, endpoint_id, store, cursor, limit)


@me_router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/replay",
    status_code=202,
    summary="Send a delivery again (same id and body)",
    responses=responses(401, 404, 422),
)
async def replay_my_webhook_delivery(
    endpoint_id: UUID, delivery_id: UUID, principal: CurrentUser, store: StoreDep
) -> Response:
    return await _replay(principal.user_id, endpoint_id, delivery_id, store)


# -- the deployment's endpoints ---------------------------------------------------------------
@admin_router.post(
    "",
    status_code=201,
    response_model=WebhookEndpointCreated,
    summary="Register a deployment webhook endpoint (every account's jobs)",
    responses=responses(401, 403, 409, 422, 503),
)
async def create_deployment_webhook(
    body: WebhookEndpointCreate, _admin: Admin, store: StoreDep, state: StateDep
) -> WebhookEndpointCreated:
    return await _create(None, body, store, state)


@admin_router.get(
    "",
    response_model=list[WebhookEndpoint],
    summary="The deployment's webhook endpoints",
    responses=responses(401, 403),
)
async def list_deployment_webhooks(_admin: Admin, store: StoreDep) -> list[WebhookEndpoint]:
    return await _list(None, store)


@admin_router.delete(
    "/{endpoint_id}",
    status_code=204,
    summary="Delete a deployment webhook endpoint",
    responses=responses(401, 403, 404, 422),
)
async def delete_deployment_webhook(endpoint_id: UUID, _admin: Admin, store: StoreDep) -> Response:
    return await _delete(None, endpoint_id, store)


@admin_router.get(
    "/{endpoint_id}/deliveries",
    response_model=WebhookDeliveryPage,
    summary="The delivery log of a deployment endpoint, newest first",
    responses=responses(401, 403, 404, 422),
)
async def deployment_webhook_deliveries(
    endpoint_id: UUID, _admin: Admin, store: StoreDep, cursor: UUID | None = None, limit: Limit = 50
) -> WebhookDeliveryPage:
    return await _deliveries(None, endpoint_id, store, cursor, limit)


@admin_router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/replay",
    status_code=202,
    summary="Send a deployment delivery again (same id and body)",
    responses=responses(401, 403, 404, 422),
)
async def replay_deployment_webhook_delivery(
    endpoint_id: UUID, delivery_id: UUID, _admin: Admin, store: StoreDep
) -> Response:
    return await _replay(None, endpoint_id, delivery_id, store)
