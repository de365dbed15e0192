"""A request whose database connection breaks under it: run once more when that is safe (a
keyed creation), otherwise a 503 problem, never a 500."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import psycopg

from tests.integration.api.conftest import StartApi
from tests.support.workers import fetch_one, wait_until

SENTIMENT = {"type": "sentiment_analysis", "payload": {"text": "Lovely staff."}}


async def _waiting_on_a_lock(db_url: str) -> bool:
    row = await fetch_one(
        db_url,
        "select count(*) as n from pg_stat_activity where datname = current_database()"
        " and application_name = 'aijobs-api' and wait_event_type = 'Lock'",
    )
    return int(row["n"]) == 1


async def test_a_keyed_creation_whose_connection_is_terminated_runs_again(
    start_api: StartApi, funded_user: uuid.UUID, db_url: str
) -> None:
    """The creation waits on its key, held by another transaction; its backend is terminated
    there. Its key and job were rolled back with it, so the API runs it again: 201, one job."""
    api = start_api()
    key = str(uuid.uuid4())
    headers = {**api.auth(funded_user), "Idempotency-Key": key}
    async with await psycopg.AsyncConnection.connect(db_url) as holder:
        await holder.execute(
            "insert into aijobs.api_idempotency_keys (user_id, key, request_hash) values (%s, %s, 'held')",
            (funded_user, key),
        )
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
            post = asyncio.create_task(http.post("/api/jobs", json=SENTIMENT, headers=headers))
            await wait_until(lambda: _waiting_on_a_lock(db_url), what="the creation to wait on its key")
            await holder.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database()"
                " and application_name = 'aijobs-api' and wait_event_type = 'Lock'"
            )
            await holder.rollback()
            created = await post
    assert created.status_code == 201, created.text
    jobs = await fetch_one(db_url, "select count(*) as n from aijobs.jobs where user_id = %s", funded_user)
    assert jobs["n"] == 1


async def test_a_read_whose_connection_is_terminated_runs_again(
    start_api: StartApi, funded_user: uuid.UUID, db_url: str
) -> None:
    """`GET /api/me` waits on a lock another transaction holds on the accounts table; its
    backend is terminated there. A read is safe to run again: 200, not a 500."""
    api = start_api()
    async with await psycopg.AsyncConnection.connect(db_url) as holder:
        await holder.execute("lock table aijobs.accounts in access exclusive mode")
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
            read = asyncio.create_task(http.get("/api/me", headers=api.auth(funded_user)))
            await wait_until(lambda: _waiting_on_a_lock(db_url), what="the read to wait on the lock")
            await holder.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database()"
                " and application_name = 'aijobs-api' and wait_event_type = 'Lock'"
            )
            await holder.rollback()
            answered = await read
    assert answered.status_code == 200, answered.text
    assert answered.json()["balance"] == 1000
