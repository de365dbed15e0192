"""The API and a starting worker while PostgreSQL restarts or its backends are terminated.

The API: every request during and after the fault answers 2xx or a 503 problem with
Retry-After, never a 500; pooled connections the fault killed are replaced before use, so
requests once the database is back succeed; a creation refused with 503 may be sent again
with its Idempotency-Key and is made once. A worker started while the database is down
waits for it (one log line), then works, and stops cleanly.

Each test restarts a PostgreSQL of this module's own (the embedded wheel), never the
machine's shared server.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from aijobs.api.tokens import mint_token
from aijobs.db.store import Store
from aijobs.queue.enqueue import JobSpec, enqueue_many
from tests.conftest import ROOT, worker_env
from tests.support.api_process import api_env, api_process
from tests.support.database import create_test_database, drop_database, ensure_template
from tests.support.invariants import assert_invariants
from tests.support.pg_ctl import own_server, pg_ctl, start
from tests.support.workers import WorkerProcess, fetch_one, status_counts, wait_until

# One PostgreSQL cluster of the module's own, restarted and stopped by its tests: they run in
# one xdist worker, one after the other, or one restarts it under the other.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("restart-pgdata")]

PGDATA = ROOT / ".aijobs" / "restart-pgdata"
JWT_SECRET = "test-jwt-secret-that-is-long-enough-for-hs256"
SENTIMENT = {"type": "sentiment_analysis", "payload": {"text": "Lovely staff."}}


@pytest.fixture(scope="module")
def restartable() -> Iterator[tuple[str, Path]]:
    """(admin URL, data directory) of a server these tests may stop and start."""
    with own_server(PGDATA) as url:
        yield url, PGDATA


@pytest.fixture
def own_db(restartable: tuple[str, Path]) -> Iterator[str]:
    admin_url, _ = restartable
    url = create_test_database(admin_url, ensure_template(admin_url), prefix="aj_restart")
    try:
        yield url
    finally:
        if not (PGDATA / "postmaster.pid").exists():
            start(PGDATA)
        drop_database(admin_url, url)


async def terminate_backends(db_url: str) -> None:
    """pg_terminate_backend every other connection to this database, and wait until they
    have ended (a terminated backend says so on its socket before it exits)."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cur = await conn.execute(
            "select coalesce(array_agg(pid), '{}') from pg_stat_activity"
            " where datname = current_database() and pid <> pg_backend_pid()"
        )
        row = await cur.fetchone()
        pids = row[0] if row else []
        assert pids, "nothing to terminate"
        await conn.execute("select pg_terminate_backend(p) from unnest(%s::int[]) p", (pids,))

        async def ended() -> bool:
            left = await conn.execute("select count(*) from pg_stat_activity where pid = any(%s)", (pids,))
            got = await left.fetchone()
            return got is not None and got[0] == 0

        await wait_until(ended, timeout=30, what="the terminated backends to end")


async def create_jobs(db_url: str, user: uuid.UUID, n: int) -> None:
    store = await Store.open(db_url, name="aijobs-test")
    try:
        async with store.session() as session:
            await session.accounts.grant_credits(user, n, "test credits")
            await enqueue_many(
                session, user_id=user, jobs=[JobSpec("sentiment_analysis", {"text": "fine"})] * n
            )
    finally:
        await store.close()


def stop(data: Path) -> None:
    pg_ctl(data, "stop", "-m", "fast", "-w", "-t", "60")


async def burst(http: httpx.AsyncClient, auth: dict[str, str], n: int = 8) -> list[httpx.Response]:
    """n reads at once (enough to need every pooled connection) and two creations, one keyed."""
    reads = [http.get("/api/me", headers=auth) for _ in range(n)]
    creations = [
        http.post("/api/jobs", json=SENTIMENT, headers=auth),
        http.post("/api/jobs", json=SENTIMENT, headers={**auth, "Idempotency-Key": str(uuid.uuid4())}),
    ]
    return list(await asyncio.gather(*reads, *creations))


def statuses(responses: list[httpx.Response]) -> list[int]:
    return [r.status_code for r in responses]


def assert_503_problem(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["code"] == "database_unavailable"


async def test_api_never_answers_500_across_restarts(own_db: str, tmp_path: Path) -> None:
    user = uuid.uuid4()
    async with await psycopg.AsyncConnection.connect(own_db, autocommit=True) as conn:
        await conn.execute("select aijobs.grant_credits(%s, 1000, 'test credits')", (user,))
    auth = {"Authorization": f"Bearer {mint_token(JWT_SECRET, user)}"}
    env = api_env(own_db, JWT_SECRET=JWT_SECRET, DB_POOL_SIZE="4")
    with api_process(env, tmp_path / "api.log") as api:
        async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
            assert set(statuses(await burst(http, auth))) <= {200, 201}

            # Backends terminated: every pooled connection is dead, the database answers.
            await terminate_backends(own_db)
            after_terminate = await burst(http, auth)
            assert set(statuses(after_terminate)) <= {200, 201}, [r.text for r in after_terminate]

            # A restart while the pool is idle: the same, once the server is back.
            pg_ctl(PGDATA, "restart", "-m", "fast", "-w", "-t", "60")
            after_restart = await burst(http, auth)
            assert set(statuses(after_restart)) <= {200, 201}, [r.text for r in after_restart]

            # The database down: a 503 problem for reads and creations, nothing written.
            stop(PGDATA)
            key = str(uuid.uuid4())
            try:
                for response in await burst(http, auth, n=2):
                    assert_503_problem(response)
                refused = await http.post(
                    "/api/jobs", json=SENTIMENT, headers={**auth, "Idempotency-Key": key}
                )
                assert_503_problem(refused)
                assert "nothing was written" in refused.json()["detail"]
            finally:
                start(PGDATA)

            # Back: 503 until the pool has reconnected, then 2xx; never a 500.
            async def recovered() -> bool:
                codes = statuses(await burst(http, auth, n=4))
                assert set(codes) <= {200, 201, 503}, codes
                return set(codes) <= {200, 201}

            await wait_until(recovered, timeout=90, interval=0.2, what="the API to recover")
            resent = await http.post("/api/jobs", json=SENTIMENT, headers={**auth, "Idempotency-Key": key})
            assert resent.status_code == 201 and "idempotent-replayed" not in resent.headers, resent.text
            again = await http.post("/api/jobs", json=SENTIMENT, headers={**auth, "Idempotency-Key": key})
            assert again.json()["id"] == resent.json()["id"]
    assert "unexpected error" not in api.log.read_text(), api.log.read_text()
    await assert_invariants(own_db)


async def test_worker_started_while_the_database_restarts_waits_and_works(
    own_db: str, tmp_path: Path
) -> None:
    user = uuid.uuid4()
    stop(PGDATA)
    worker = WorkerProcess(worker_env(own_db, LOG_LEVEL="INFO"), tmp_path / "worker.log")
    try:
        try:
            await worker.wait_for_output("PostgreSQL is not answering", timeout=60)
        finally:
            start(PGDATA)
        await worker.wait_for_output("PostgreSQL answers again", timeout=60)
        await create_jobs(own_db, user, 3)

        async def done() -> bool:
            return (await status_counts(own_db)).get("completed", 0) == 3

        await wait_until(done, timeout=60, what="the jobs completed")
        registered = await fetch_one(
            own_db, "select count(*) as n from aijobs.workers where pid = %s", worker.pid
        )
        assert registered["n"] == 1
    finally:
        worker.send(signal.SIGTERM)
        code = await worker.wait()
    output = worker.output()
    assert code == 0, output
    assert output.count("PostgreSQL is not answering") == 1, output
    assert "Traceback" not in output, output
