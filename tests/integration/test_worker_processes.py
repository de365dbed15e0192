"""Real `aijobs worker` processes: exactly-once under contention, crashes, signals, lost connections."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import psycopg
import pytest

from aijobs.db.store import Store
from tests.conftest import worker_env
from tests.support.jobs import create_job
from tests.support.workers import WorkerProcess, fetch_all, fetch_one, job, status_counts, wait_until

pytestmark = pytest.mark.slow


async def bulk_create(db_url: str, user: uuid.UUID, n: int, text: str = "Lovely staff.") -> None:
    """n sentiment jobs through the credit function, in one statement."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute("select aijobs.grant_credits(%s, %s, 'bulk')", (user, n))
        await conn.execute(
            "select aijobs.create_jobs(%s, array['sentiment_analysis'],"
            " array[jsonb_build_object('text', %s::text)]) from generate_series(1, %s)",
            (user, text, n),
        )


async def create_one(store: Store, user: uuid.UUID, text: str) -> uuid.UUID:
    async with store.session() as s:
        await s.accounts.grant_credits(user, 1)
        created = await create_job(s, user_id=user, type="sentiment_analysis", payload={"text": text})
    return created.id


async def test_four_workers_two_thousand_jobs_each_exactly_once(db_url: str, tmp_path: Path) -> None:
    user = uuid.uuid4()
    await bulk_create(db_url, user, 8000)
    env = worker_env(db_url, LOG_LEVEL="WARNING", WORKER_CONCURRENCY="50")
    workers = [WorkerProcess(env, tmp_path / f"w{i}.log") for i in range(4)]
    try:

        async def drained() -> bool:
            return (await status_counts(db_url)).get("completed", 0) == 8000

        await wait_until(drained, timeout=120, interval=0.25, what="8,000 jobs completed")
    finally:
        for w in workers:
            w.send(signal.SIGTERM)
        codes = [await w.wait() for w in workers]
    assert codes == [0, 0, 0, 0]
    attempts = await fetch_one(
        db_url,
        "select count(*) as n, count(distinct job_id) as jobs, count(distinct worker_id) as workers,"
        " count(*) filter (where outcome = 'completed') as completed from aijobs.job_attempts",
    )
    assert attempts["n"] == attempts["jobs"] == attempts["completed"] == 8000, attempts
    assert attempts["workers"] >= 2, "work should have been shared"
    ledger = await fetch_one(
        db_url, "select balance, (select sum(amount) from aijobs.credit_ledger) as total from aijobs.accounts"
    )
    assert ledger["balance"] == ledger["total"] == 0


async def test_sigkill_mid_job_completes_on_another_worker_after_the_lease(
    db_url: str, store: Store, tmp_path: Path
) -> None:
    user = uuid.uuid4()
    marker = tmp_path / "marker"
    job_id = await create_one(store, user, f"slow-once:{marker}")
    env = worker_env(db_url)
    first = WorkerProcess(env, tmp_path / "first.log")

    async def running() -> bool:
        # The handler itself has started (it creates the marker): a kill between the claim's
        # commit and the handler would leave the slow first run to the second worker.
        return (await job(db_url, job_id))["status"] == "processing" and marker.exists()

    await wait_until(running, what="the first worker to start the job")
    first.proc.kill()
    await first.wait()
    second = WorkerProcess(env, tmp_path / "second.log")
    try:

        async def completed() -> bool:
            return (await job(db_url, job_id))["status"] == "completed"

        await wait_until(completed, timeout=20, what="the job to complete on the second worker")
    finally:
        second.send(signal.SIGTERM)
        assert await second.wait() == 0
    row = await job(db_url, job_id)
    assert row["attempts"] == 2
    outcomes = await fetch_all(
        db_url, "select outcome from aijobs.job_attempts where job_id = %s order by lease_token", job_id
    )
    assert [o["outcome"] for o in outcomes] == ["lost", "completed"]
    ledger = await fetch_all(
        db_url, "select kind, amount from aijobs.credit_ledger where job_id = %s", job_id
    )
    assert [(r["kind"], r["amount"]) for r in ledger] == [("debit", -1)]


async def test_sigterm_drains_then_hands_back_unfinished_work(
    db_url: str, store: Store, tmp_path: Path
) -> None:
    user = uuid.uuid4()
    quick = await create_one(store, user, "sleep:0.5")
    slow = await create_one(store, user, "sleep:60")
    worker = WorkerProcess(worker_env(db_url, SHUTDOWN_GRACE_SECONDS="2"), tmp_path / "w.log")

    async def both_running() -> bool:
        rows = await fetch_all(db_url, "select count(*) as n from aijobs.jobs where status = 'processing'")
        return rows[0]["n"] == 2

    await wait_until(both_running, what="both jobs to start")
    worker.send(signal.SIGTERM)
    assert await worker.wait(timeout=15) == 0
    assert (await job(db_url, quick))["status"] == "completed"
    slow_row = await job(db_url, slow)
    assert slow_row["status"] == "pending"
    assert slow_row["attempts"] == 0, "a handed-back job keeps its attempt"
    outcome = await fetch_one(db_url, "select outcome from aijobs.job_attempts where job_id = %s", slow)
    assert outcome["outcome"] == "handed_back"
    assert "Handing back 1 unfinished job" in worker.output()


async def test_worker_recovers_after_its_connections_are_killed(
    db_url: str, store: Store, tmp_path: Path
) -> None:
    user = uuid.uuid4()
    await bulk_create(db_url, user, 50)
    worker = WorkerProcess(worker_env(db_url, LOG_LEVEL="WARNING"), tmp_path / "w.log")
    try:

        async def first_batch_done() -> bool:
            return (await status_counts(db_url)).get("completed", 0) == 50

        await wait_until(first_batch_done, what="the first 50 jobs")
        dbname = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            cur = await conn.execute(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity"
                " where datname = %s and pid <> pg_backend_pid() and application_name like 'aijobs%%'",
                (dbname,),
            )
            killed = (await cur.fetchone() or [0])[0]
        assert killed >= 1
        await asyncio.sleep(0.2)
        await bulk_create(db_url, user, 50)

        async def all_done() -> bool:
            return (await status_counts(db_url)).get("completed", 0) == 100

        await wait_until(all_done, timeout=30, what="jobs created after the kill")
    finally:
        worker.send(signal.SIGTERM)
        assert await worker.wait() == 0
