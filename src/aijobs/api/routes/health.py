"""`/healthz` (the process answers) and `/readyz` (the database answers and is fully migrated).

A load balancer sends traffic only when /readyz is 200, so a deploy that is ahead of its
migrations, or a lost database, takes the instance out instead of failing requests. A paused
provider (its configuration failed) answers 200 `degraded`, naming it: the API still serves,
and no instance taken out would fix the provider.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends
from psycopg_pool import PoolTimeout

from aijobs.api.models import Health, ProviderPause, Readiness
from aijobs.api.problems import ProblemError, responses
from aijobs.api.state import get_store
from aijobs.db.migrate import not_applied
from aijobs.db.store import Store

router = APIRouter(tags=["health"])
log = logging.getLogger("aijobs.api")


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Database reachable, migrations current (degraded: a provider is paused)",
    responses=responses(503),
)
async def readyz(store: Annotated[Store, Depends(get_store)]) -> Readiness:
    try:
        async with asyncio.timeout(5):
            async with store.session() as session:
                missing = not_applied(await session.applied_migrations())
                pauses = [] if missing else await session.providers.pauses()
    except (psycopg.Error, PoolTimeout, OSError, TimeoutError) as exc:
        log.warning("not ready: database unreachable (%s)", type(exc).__name__)
        raise ProblemError(503, "database unreachable", code="database_unreachable") from None
    if missing:
        raise ProblemError(
            503, f"migrations pending: {', '.join(missing)}", code="migrations_pending", pending=missing
        )
    paused = [
        ProviderPause(provider=p.provider, reason=p.paused_reason, since=p.paused_since) for p in pauses
    ]
    return Readiness(status="degraded" if paused else "ready", migrations_pending=[], providers_paused=paused)
