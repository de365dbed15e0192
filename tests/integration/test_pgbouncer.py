"""The API and the worker through a real PgBouncer in transaction mode (Debian's package,
started by the test in front of the test database), as behind Supabase's transaction pooler.

There a server connection is lent per transaction: a statement prepared on one backend is
unknown to the next, and nobody can hold a LISTEN. With DATABASE_POOL_MODE=transaction the
store prepares nothing and, without LISTEN_DATABASE_URL, workers and streams poll.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from aijobs.config import Settings
from aijobs.db.store import Store
from aijobs.db.sync_session import SyncSession
from aijobs.errors import UnknownUser
from aijobs.queue.enqueue import enqueue, enqueue_sync
from tests.conftest import ROOT, worker_env
from tests.support.api_server import ApiServer, api_settings
from tests.support.invariants import assert_invariants
from tests.support.pgbouncer import PgBouncer, pgbouncer_binary
from tests.support.providers import ScriptedProvider
from tests.support.snapshots import snapshot
from tests.support.sse import sse_events
from tests.support.workers import WorkerProcess, job, running_worker, status_counts, wait_until

TERMINAL = {"completed", "failed", "cancelled"}


@pytest.fixture(scope="session")
def pgbouncer(admin_url: str) -> Iterator[PgBouncer]:
    if pgbouncer_binary() is None:
        pytest.skip(
            "pgbouncer is not installed and scripts/install-pgbouncer.sh could not (no root or apt-get)"
        )
    bouncer = PgBouncer(admin_url).start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
def pooled(settings: Settings, db_url: str, pgbouncer: PgBouncer) -> Settings:
    """The test's settings with DATABASE_URL through PgBouncer in transaction mode."""
    return settings.model_copy(
        update={"database_url": pgbouncer.url_for(db_url), "database_pool_mode": "transaction"}
    )


@pytest.fixture
async def pooled_store(pooled: Settings) -> AsyncIterator[Store]:
    assert pooled.database_url is not None
    store = await Store.open(pooled.database_url, max_size=8, prepare=pooled.prepared_statements)
    try:
        yield store
    finally:
        await store.close()


async def test_prepared_statements_break_behind_the_pooler_and_are_off_in_transaction_mode(
    pgbouncer: PgBouncer, db_url: str
) -> None:
    """The failure the setting prevents, shown: a statement prepared on one backend is run on
    another once a second client holds the first. Unprepared, the same sequence succeeds."""
    url = pgbouncer.url_for(db_url)

    async def claim_twice(store: Store) -> None:
        async with store.session() as session:
            await session.jobs.claim("w", 1, 30)  # prepare=True: on the backend lent now
        async with await psycopg.AsyncConnection.connect(url) as other, other.transaction():
            await other.execute("select 1")  # holds that backend (lent last-in, first-out)
            async with store.session() as session:
                await session.jobs.claim("w", 1, 30)  # on another backend

    prepared = await Store.open(url, max_size=1)
    try:
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            await claim_twice(prepared)
    finally:
        await prepared.close()
    unprepared = await Store.open(url, max_size=1, prepare=False)
    try:
        await claim_twice(unprepared)
    finally:
        await unprepared.close()


async def test_create_claim_finish_cancel_and_stream_through_pgbouncer_polling_alone(
    pooled: Settings, pooled_store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    api = ApiServer(api_settings(pooled)).start()
    auth = api.auth(funded_user)
    try:
        async with (
            httpx.AsyncClient(base_url=api.url, timeout=30) as client,
            running_worker(pooled, pooled_store, ScriptedProvider()) as worker,
        ):
            assert worker.listener is None, "nobody LISTENs through a transaction pooler"

            async def create(text: str, **extra: object) -> dict:
                body = {"type": "sentiment_analysis", "payload": {"text": text}, **extra}
                response = await client.post("/api/jobs", json=body, headers=auth)
                assert response.status_code == 201, response.text
                return response.json()

            # Creations without a key arrive together and share grouped statements.
            grouped = await asyncio.gather(*(create(f"Lovely staff {i}.") for i in range(20)))
            assert len({j["id"] for j in grouped}) == 20
            keyed = [
                await client.post(
                    "/api/jobs",
                    json={"type": "sentiment_analysis", "payload": {"text": "Kind."}},
                    headers=auth | {"Idempotency-Key": "through-the-pooler"},
                )
                for _ in range(2)
            ]
            assert [r.status_code for r in keyed] == [201, 201]
            assert keyed[0].json()["id"] == keyed[1].json()["id"], "replayed, not charged twice"
            batch = await client.post(
                "/api/jobs/batch",
                json={
                    "jobs": [
                        {"type": "sentiment_analysis", "payload": {"text": f"Fine {i}."}} for i in range(5)
                    ]
                },
                headers=auth,
            )
            assert batch.status_code == 201, batch.text

            # A stream follows a job to the end, re-reading it at each poll.
            streamed = await create("sleep:0.5")
            async with client.stream("GET", f"/api/jobs/{streamed['id']}/events", headers=auth) as response:
                assert response.status_code == 200
                statuses = []
                async with asyncio.timeout(30):
                    async for event in sse_events(response.aiter_lines()):
                        statuses.append(event["data"]["status"])
                        if statuses[-1] in TERMINAL:
                            break
            assert statuses[0] == "pending" and statuses[-1] == "completed", statuses

            # Cancels: a pending job at once, a running one through its heartbeat.
            later = await create("Later.", run_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
            cancelled = await client.post(f"/api/jobs/{later['id']}/cancel", headers=auth)
            assert cancelled.json()["status"] == "cancelled"
            running = await create("sleep:60")

            async def is_processing() -> bool:
                return (await job(db_url, uuid.UUID(running["id"])))["status"] == "processing"

            await wait_until(is_processing, what="the long job claimed")
            assert (await client.post(f"/api/jobs/{running['id']}/cancel", headers=auth)).status_code == 200
            # A long poll answers when the status changes (no notification: it re-reads).
            polled = await client.get(f"/api/jobs/{running['id']}", params={"wait": 20}, headers=auth)
            assert polled.json()["status"] == "cancelled", polled.json()

            async def all_done() -> bool:
                counts = await status_counts(db_url)
                return counts.get("completed", 0) == 27 and counts.get("cancelled", 0) == 2

            await wait_until(all_done, timeout=30, what="27 completed and 2 cancelled")
        assert worker.totals.processed == 27 and worker.totals.cancelled == 1
    finally:
        api.stop()
    # The money: 29 jobs of 1 credit debited once each, the two cancelled refunded once.
    state = await snapshot(db_url, funded_user)
    assert (state.balance, state.ledger_sum, state.jobs) == (1000 - 27, 1000 - 27, 29)
    await assert_invariants(db_url)


async def test_listen_goes_to_its_own_url_while_queries_go_through_pgbouncer(
    pooled: Settings, pooled_store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    """With LISTEN_DATABASE_URL a worker is woken by NOTIFY (its poll is an hour away) and
    the API's streams hear each change, although every query goes through the pooler."""
    listening = pooled.model_copy(update={"listen_database_url": db_url, "polling_interval": 3_600_000})
    api = ApiServer(api_settings(listening)).start()
    auth = api.auth(funded_user)
    body = {"type": "sentiment_analysis", "payload": {"text": "sleep:0.5"}}
    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client, AsyncExitStack() as stack:
            created = (await client.post("/api/jobs", json=body, headers=auth)).json()
            async with client.stream("GET", f"/api/jobs/{created['id']}/events", headers=auth) as response:
                statuses: list[str] = []
                async with asyncio.timeout(20):
                    async for event in sse_events(response.aiter_lines()):
                        statuses.append(event["data"]["status"])
                        if len(statuses) == 1:  # the stream is live: now start the worker
                            worker = await stack.enter_async_context(
                                running_worker(listening, pooled_store, ScriptedProvider())
                            )
                        if statuses[-1] in TERMINAL:
                            break
            assert statuses == ["pending", "processing", "completed"]
            assert worker.listener is not None and worker.listener.conninfo == db_url
            # Idle now; only a notification can wake it within the hour.
            woken = (await client.post("/api/jobs", json=body, headers=auth)).json()

            async def completed() -> bool:
                return (await job(db_url, uuid.UUID(woken["id"])))["status"] == "completed"

            await wait_until(completed, what="the job completed after a NOTIFY")
    finally:
        api.stop()
    await assert_invariants(db_url)


async def test_the_worker_command_runs_through_pgbouncer_polling_alone(
    pgbouncer: PgBouncer, db_url: str, store: Store, funded_user: uuid.UUID, tmp_path: Path
) -> None:
    """`aijobs worker` itself (the CLI's wiring of the settings), as a deployment runs it."""
    async with store.session() as session:
        for i in range(5):
            await enqueue(
                session, user_id=funded_user, job_type="sentiment_analysis", payload={"text": f"Nice {i}."}
            )
    env = worker_env(pgbouncer.url_for(db_url), DATABASE_POOL_MODE="transaction")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:

        async def drained() -> bool:
            return (await status_counts(db_url)).get("completed", 0) == 5

        await wait_until(drained, what="5 jobs completed by the worker process")
    finally:
        worker.send(signal.SIGTERM)
        code = await worker.wait()
    assert code == 0, worker.output()
    assert "No LISTEN connection (transaction pooling): polling every 200ms" in worker.output()
    await assert_invariants(db_url)


async def test_sync_creation_on_your_own_connection_through_pgbouncer(
    pgbouncer: PgBouncer, db_url: str, funded_user: uuid.UUID
) -> None:
    """What docs/supabase.md tells a caller of `enqueue_sync` behind a transaction pooler:
    `prepare_threshold=None`, and creations work while other clients take the backends."""
    url = pgbouncer.url_for(db_url)
    with (
        psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn,
        psycopg.connect(url) as other,
    ):
        session = SyncSession(conn)
        made = []
        for i in range(6):
            with other.transaction():  # holds a backend, so the next creation gets another
                other.execute("select 1")
                made.append(
                    enqueue_sync(
                        session,
                        user_id=funded_user,
                        job_type="sentiment_analysis",
                        payload={"text": f"Kind {i}."},
                    )
                )
            with pytest.raises(UnknownUser):  # a refusal between creations, as callers meet them
                enqueue_sync(
                    session, user_id=uuid.uuid4(), job_type="sentiment_analysis", payload={"text": "x"}
                )
    assert len({j.id for j in made}) == 6
    state = await snapshot(db_url, funded_user)
    assert (state.balance, state.jobs) == (1000 - 6, 6)
    await assert_invariants(db_url)


def test_migrate_refuses_a_transaction_pooler(pgbouncer: PgBouncer, db_url: str) -> None:
    env = worker_env(pgbouncer.url_for(db_url), DATABASE_POOL_MODE="transaction")
    done = subprocess.run(
        [sys.executable, "-m", "aijobs", "migrate"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert "aijobs migrate needs a session" in done.stderr
