"""A request whose database connection breaks under it: run once more when that is safe (a
read, or a keyed request to a route that claims its key with its write), otherwise a 503
problem, never a 500."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from aijobs.api import creation
from aijobs.db.repos.accounts import AccountsRepo
from aijobs.db.repos.webhooks import WebhooksRepo
from aijobs.db.store import Store
from tests.integration.api.conftest import StartApi
from tests.support.api_server import SERVICE_KEY
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


async def lose_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    """End this connection's own backend: a real lost connection, after what it committed."""
    await conn.execute("select pg_terminate_backend(pg_backend_pid())")


async def test_a_keyed_grant_whose_connection_is_lost_after_its_commit_grants_once(
    start_api: StartApi, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`POST /api/admin/credits` claims its Idempotency-Key with the grant: its grant commits,
    its connection is lost, the API runs it again, and the second run finds the key."""
    user = uuid.uuid4()
    grant = AccountsRepo.grant_credits
    calls = 0

    async def grant_then_lose(
        self: AccountsRepo, user_id: uuid.UUID, amount: int, note: str = "grant", *, key: str | None = None
    ) -> int:
        nonlocal calls
        calls += 1
        balance = await grant(self, user_id, amount, note, key=key)
        if calls == 1:
            await lose_connection(self.conn)
        return balance

    monkeypatch.setattr(AccountsRepo, "grant_credits", grant_then_lose)
    api = start_api()
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        answer = await http.post(
            "/api/admin/credits",
            json={"user_id": str(user), "amount": 10},
            headers={"Authorization": f"Bearer {SERVICE_KEY}", "Idempotency-Key": "grant-1"},
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["balance"] == 10
    grants = await fetch_one(
        db_url, "select count(*) as n from aijobs.credit_ledger where user_id = %s and kind = 'grant'", user
    )
    assert (calls, grants["n"]) == (2, 1)


async def test_a_keyed_write_to_a_route_that_ignores_the_key_is_not_run_again(
    start_api: StartApi, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registering a webhook endpoint ignores an Idempotency-Key, so running it again would
    register two. Its row commits, then its connection is lost: a 503 that does not say
    nothing was written (nor call it a job), and one endpoint."""
    create = WebhooksRepo.create_endpoint
    calls = 0

    async def create_then_lose(self: WebhooksRepo, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        row = await create(self, *args, **kwargs)
        if calls == 1:
            await lose_connection(self.conn)
        return row

    monkeypatch.setattr(WebhooksRepo, "create_endpoint", create_then_lose)
    api = start_api(webhook_allow_private=True)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        answer = await http.post(
            "/api/admin/webhooks",
            json={"url": "http://127.0.0.1:9/hook"},
            headers={"Authorization": f"Bearer {SERVICE_KEY}", "Idempotency-Key": "hook-1"},
        )
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["retry-after"]) > 0
    problem = answer.json()
    assert problem["code"] == "database_unavailable"
    assert "may or may not have taken effect" in problem["detail"]
    assert "job" not in problem["detail"]
    endpoints = await fetch_one(db_url, "select count(*) as n from aijobs.webhook_endpoints")
    assert (calls, endpoints["n"]) == (1, 1)


async def test_a_keyed_creation_whose_connection_is_lost_after_its_commit_replays_it(
    start_api: StartApi, funded_user: uuid.UUID, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The creation commits its job with its key, then its connection is lost: the API runs it
    again, which finds the key and answers the first job (one job, one debit)."""
    create = creation._create_with_key
    calls = 0

    async def create_then_lose(store: Store, *args: Any, **kwargs: Any) -> creation.Created:
        nonlocal calls
        calls += 1
        created = await create(store, *args, **kwargs)
        if calls == 1:
            async with store.session() as session:
                await lose_connection(session.conn)
        return created

    monkeypatch.setattr(creation, "_create_with_key", create_then_lose)
    api = start_api()
    headers = {**api.auth(funded_user), "Idempotency-Key": str(uuid.uuid4())}
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        created = await http.post("/api/jobs", json=SENTIMENT, headers=headers)
    assert created.status_code == 201, created.text
    assert created.headers["idempotent-replayed"] == "true"
    jobs = await fetch_one(db_url, "select count(*) as n from aijobs.jobs where user_id = %s", funded_user)
    debits = await fetch_one(
        db_url,
        "select count(*) as n from aijobs.credit_ledger where user_id = %s and kind = 'debit'",
        funded_user,
    )
    assert (calls, jobs["n"], debits["n"]) == (2, 1, 1)
