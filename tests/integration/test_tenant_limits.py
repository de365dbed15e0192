"""A limit on each tenant's running jobs: the deployment's default
(`settings.max_running_per_tenant`) or a tenant's own (`tenants.max_running`). The claim never
starts more than the limit leaves, across all workers; the jobs over it wait and run later;
other tenants' jobs run meanwhile, even behind a limited tenant's backlog."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import psycopg
import pytest

from aijobs.config import Settings, load_settings
from aijobs.db.migrate import DeploymentSettings, migrate
from aijobs.db.queries import query
from aijobs.db.rows import Finish
from aijobs.db.store import Session, Store
from aijobs.queue.enqueue import JobSpec, enqueue_many
from tests.conftest import worker_env
from tests.integration.test_fair_share import claim, create, labelled, tenants
from tests.support.workers import WorkerProcess, running_worker, wait_until


async def set_default_limit(session: Session, limit: int | None) -> None:
    """The deployment's limit, as `aijobs migrate` writes it from MAX_RUNNING_PER_TENANT."""
    await session.conn.execute(query("settings_sync_running"), {"max_running": limit})


def finish(db_url: str, job_id: uuid.UUID) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("select lease_token from aijobs.jobs where id = %s", (job_id,)).fetchone()
        assert row is not None
        done = Finish(id=job_id, lease_token=row[0], status="completed", outcome="completed", result={})
        conn.execute(
            query("job_finish_many"), {"rows": psycopg.types.json.Jsonb([done.as_json()]), "worker_id": "t"}
        )


def running(db_url: str, user: uuid.UUID) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "select count(*) from aijobs.jobs where user_id = %s and status = 'processing'", (user,)
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_the_default_limit_caps_each_tenant_and_the_rest_wait(db_url: str, store: Store) -> None:
    users = await tenants(store, "A", "B")
    async with store.session() as s:
        await set_default_limit(s, 2)
    await create(store, users["A"], 5)
    await create(store, users["B"], 3)
    first = claim(db_url, limit=10)
    assert len(first) == 4
    assert sorted(labelled(db_url, users, "lease_token")) == ["A", "A", "B", "B"]
    assert claim(db_url, limit=10) == []  # both at their limit; the rest wait
    finish(db_url, first[0])
    again = claim(db_url, limit=10)
    assert len(again) == 1
    assert running(db_url, users["A"]) == 2 and running(db_url, users["B"]) == 2


async def test_a_tenants_own_limit_overrides_the_default(db_url: str, store: Store) -> None:
    users = await tenants(store, "A", "B")
    async with store.session() as s:
        await set_default_limit(s, 3)
        assert await s.accounts.set_max_running(users["A"], 1) == 1
        assert await s.accounts.set_max_running(users["B"], 4) == 4
    await create(store, users["A"], 5)
    await create(store, users["B"], 5)
    claim(db_url, limit=20)
    assert running(db_url, users["A"]) == 1
    assert running(db_url, users["B"]) == 4
    async with store.session() as s:
        assert await s.accounts.set_max_running(users["A"], None) is None  # back to the default
    claim(db_url, limit=20)
    assert running(db_url, users["A"]) == 3


async def test_without_a_default_only_the_tenant_with_a_limit_is_held(db_url: str, store: Store) -> None:
    users = await tenants(store, "A", "B")
    async with store.session() as s:
        await s.accounts.set_max_running(users["A"], 2)
    await create(store, users["A"], 6)
    await create(store, users["B"], 6)
    claim(db_url, limit=20)
    assert running(db_url, users["A"]) == 2
    assert running(db_url, users["B"]) == 6


async def test_a_tenant_at_its_limit_does_not_hold_back_the_others(db_url: str, store: Store) -> None:
    """A's backlog holds the earliest turns; with A at its limit the claim passes them over
    to B's job, one slot at a time as a busy worker claims."""
    users = await tenants(store, "A", "B")
    async with store.session() as s:
        await set_default_limit(s, 1)
    await create(store, users["A"], 2000)
    assert len(claim(db_url)) == 1
    (b_job,) = await create(store, users["B"], 1)
    assert claim(db_url) == [b_job]


@pytest.mark.parametrize("limit", [0, -1])
async def test_a_limit_is_positive(store: Store, limit: int) -> None:
    async with store.session() as s:
        with pytest.raises(psycopg.errors.CheckViolation):
            await s.accounts.set_max_running(uuid.uuid4(), limit)
        with pytest.raises(psycopg.errors.CheckViolation):
            await set_default_limit(s, limit)


async def test_three_worker_processes_never_pass_the_limit(db_url: str, store: Store, tmp_path: Path) -> None:
    """Three workers of 5 slots each, tenant A limited to 2 (its own limit; B has none): at
    every moment at most 2 of A's jobs run, all of them run in the end, and B's jobs run
    beside them. Polls are 10 s apart, so a stall would show as a timeout."""
    users = await tenants(store, "A", "B")
    async with store.session() as s:
        await s.accounts.set_max_running(users["A"], 2)
    env = worker_env(db_url, LOG_LEVEL="INFO", WORKER_CONCURRENCY="5", POLLING_INTERVAL="10000")
    workers = [WorkerProcess(env, tmp_path / f"w{i}.log") for i in range(3)]
    seen: list[tuple[int, int]] = []
    try:
        for w in workers:
            await w.wait_for_output("Starting Job Processor Worker", timeout=60)
        async with store.transaction() as s:
            await s.accounts.grant_credits(users["A"], 20)
            await s.accounts.grant_credits(users["B"], 6)
            await enqueue_many(
                s, user_id=users["A"], jobs=[JobSpec("sentiment_analysis", {"text": "sleep:0.1"})] * 20
            )
            await enqueue_many(
                s, user_id=users["B"], jobs=[JobSpec("sentiment_analysis", {"text": "sleep:0.5"})] * 6
            )

        async def all_done() -> bool:
            async with store.session() as s:
                cur = await s.conn.execute(
                    "select count(*) filter (where status = 'processing' and user_id = %s),"
                    " count(*) filter (where status = 'processing' and user_id = %s),"
                    " count(*) filter (where status = 'completed') from aijobs.jobs",
                    (users["A"], users["B"]),
                )
                row = await cur.fetchone()
            assert row is not None
            seen.append((row[0], row[1]))
            return bool(row[2] == 26)

        await wait_until(all_done, timeout=40, interval=0.01, what="26 jobs completed")
    finally:
        for w in workers:
            w.send(signal.SIGTERM)
        codes = [await w.wait() for w in workers]
    assert codes == [0, 0, 0]
    assert max(a for a, _ in seen) == 2, seen
    # B, without a limit, ran more than A's limit at once beside A's two (at least the three
    # slots one worker has left), not after A's twenty.
    assert max(b for _, b in seen) >= 3, seen


async def test_a_job_that_ends_wakes_the_workers_for_the_jobs_it_held_back(
    db_url: str, store: Store, settings: Settings
) -> None:
    """A worker whose claim came back short sleeps until woken or its next poll (10 s here):
    an ending job of a limited tenant wakes it, so the tenant's next job starts at once."""
    users = await tenants(store, "A")
    async with store.session() as s:
        await s.accounts.set_max_running(users["A"], 1)
    await create(store, users["A"], 5, text="sleep:0.05")
    slow_polls = settings.model_copy(update={"polling_interval": 10_000})
    async with running_worker(slow_polls, store):

        async def all_done() -> bool:
            async with store.session() as s:
                cur = await s.conn.execute("select count(*) from aijobs.jobs where status = 'completed'")
                row = await cur.fetchone()
            return row is not None and row[0] == 5

        await wait_until(all_done, timeout=8, what="5 jobs completed one at a time")


def test_migrate_writes_the_deployments_limit(db_url: str) -> None:
    """`aijobs migrate` copies MAX_RUNNING_PER_TENANT to where the claim reads it (0: none)."""
    migrate(db_url, settings=DeploymentSettings(max_jobs_in_flight_per_user=None, max_running_per_tenant=7))
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("select max_running_per_tenant from aijobs.settings").fetchone() == (7,)
    migrate(db_url, settings=DeploymentSettings(max_jobs_in_flight_per_user=None))
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("select max_running_per_tenant from aijobs.settings").fetchone() == (None,)
    assert load_settings(max_running_per_tenant=0, _env_file=None).running_limit is None
    assert load_settings(max_running_per_tenant=3, _env_file=None).running_limit == 3
