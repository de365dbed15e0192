"""Shared steps for the OpenAI-path tests: enqueue, run workers, read rows."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from aijobs.config import Settings
from aijobs.db.store import Store
from aijobs.jobs import get_job_type
from aijobs.queue.enqueue import enqueue
from aijobs.worker.runner import Worker
from tests.support.fake_openai_fixtures import provider_for
from tests.support.workers import fetch_all, job, running_worker, wait_until


async def create(
    store: Store, user: uuid.UUID, job_type: str, payload: dict[str, Any] | None = None
) -> uuid.UUID:
    async with store.session() as s:
        created = await enqueue(
            s, user_id=user, job_type=job_type, payload=payload or get_job_type(job_type).example
        )
    return created.id


@asynccontextmanager
async def openai_workers(settings: Settings, store: Store, n: int = 1) -> AsyncIterator[list[Worker]]:
    """`n` in-process workers, each with its own OpenAI provider (SDK client) like separate hosts."""
    async with AsyncExitStack() as stack:
        workers = []
        for _ in range(n):
            provider = provider_for(settings)
            stack.push_async_callback(provider.aclose)
            workers.append(await stack.enter_async_context(running_worker(settings, store, provider)))
        yield workers


async def wait_for_status(db_url: str, ids: Sequence[uuid.UUID], status: str, timeout: float = 30) -> None:
    async def done() -> bool:
        return [(await job(db_url, i))["status"] for i in ids] == [status] * len(ids)

    await wait_until(done, timeout=timeout, what=f"jobs {status}")


async def attempts(db_url: str, job_id: uuid.UUID) -> list[dict[str, Any]]:
    return await fetch_all(
        db_url, "select * from aijobs.job_attempts where job_id = %s order by lease_token", job_id
    )


async def ledger(db_url: str, job_id: uuid.UUID) -> list[dict[str, Any]]:
    return await fetch_all(
        db_url, "select kind, amount from aijobs.credit_ledger where job_id = %s order by id", job_id
    )


async def held(db_url: str, provider: str = "openai") -> bool:
    """Whether a rate-limit hold is recorded for `provider` (any worker may have set it)."""
    rows = await fetch_all(
        db_url, "select 1 from aijobs.provider_limits where provider = %s and hold_until > now()", provider
    )
    return bool(rows)
