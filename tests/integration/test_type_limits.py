"""A job type's own limit on running jobs per tenant (`job_types.max_running_per_tenant`): at
most that many of one tenant's jobs of the type run at once, across all workers; the tenant's
jobs of other types, and other tenants' jobs of the type, run meanwhile."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import psycopg

from aijobs.db.store import Store
from aijobs.queue.enqueue import JobSpec, enqueue_many
from tests.conftest import worker_env
from tests.integration.test_fair_share import claim, tenants
from tests.integration.test_tenant_limits import finish
from tests.support.workers import WorkerProcess, wait_until

LIMITED = "sentiment_analysis"
OTHER = "prompt_analysis"


async def add(store: Store, user: uuid.UUID, job_type: str, n: int, text: str = "Lovely staff.") -> None:
    payload = {"text": text} if job_type == LIMITED else {"prompt": text}
    async with store.session() as s:
        await s.accounts.grant_credits(user, 3 * n)
        await enqueue_many(s, user_id=user, jobs=[JobSpec(job_type, payload)] * n)


async def limit_type(store: Store, job_type: str, n: int) -> None:
    async with store.session() as s:
        row = await s.job_types.switch(job_type, max_running_per_tenant=n)
    assert row is not None
    assert row["max_running_per_tenant"] == (n or None)


def claimed_by(db_url: str, ids: list[uuid.UUID]) -> list[tuple[uuid.UUID, str]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute("select user_id, type from aijobs.jobs where id = any(%s)", (ids,)).fetchall()
    return [(r[0], r[1]) for r in rows]


async def test_a_type_limit_caps_each_tenants_jobs_of_that_type_only(db_url: str, store: Store) -> None:
    users = await tenants(store, "A", "B")
    await limit_type(store, LIMITED, 2)
    await add(store, users["A"], LIMITED, 5)
    await add(store, users["A"], OTHER, 3)
    await add(store, users["B"], LIMITED, 4)
    first = claimed_by(db_url, claim(db_url, limit=20))
    count = {(u, t): sum(1 for x in first if x == (u, t)) for u in users.values() for t in (LIMITED, OTHER)}
    assert count[(users["A"], LIMITED)] == 2
    assert count[(users["A"], OTHER)] == 3  # the tenant's other type is not held back
    assert count[(users["B"], LIMITED)] == 2  # each tenant has its own two
    assert claim(db_url, limit=20) == []  # the rest wait
    # One of A's limited jobs ends: exactly one more of A's starts.
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "select id from aijobs.jobs where user_id = %s and type = %s and status = 'processing' limit 1",
            (users["A"], LIMITED),
        ).fetchone()
    assert row is not None
    finish(db_url, row[0])
    assert claimed_by(db_url, claim(db_url, limit=20)) == [(users["A"], LIMITED)]


async def test_removing_a_type_limit_lets_the_waiting_jobs_run(db_url: str, store: Store) -> None:
    users = await tenants(store, "A")
    await limit_type(store, LIMITED, 1)
    await add(store, users["A"], LIMITED, 4)
    assert len(claim(db_url, limit=10)) == 1
    await limit_type(store, LIMITED, 0)
    assert len(claim(db_url, limit=10)) == 3


async def test_the_tenants_own_limit_and_the_types_both_apply(db_url: str, store: Store) -> None:
    users = await tenants(store, "A")
    async with store.session() as s:
        await s.accounts.set_max_running(users["A"], 3)
    await limit_type(store, LIMITED, 2)
    await add(store, users["A"], LIMITED, 4)
    await add(store, users["A"], OTHER, 4)
    first = claimed_by(db_url, claim(db_url, limit=10))
    # The claim picks the tenant's best three (all of the limited type, made first) and starts
    # the two its type's limit leaves; the next claim fills the tenant's last place with the
    # other type.
    assert first == [(users["A"], LIMITED)] * 2
    assert claimed_by(db_url, claim(db_url, limit=10)) == [(users["A"], OTHER)]
    assert claim(db_url, limit=10) == []


async def test_three_worker_processes_never_pass_a_type_limit(
    db_url: str, store: Store, tmp_path: Path
) -> None:
    """Three workers of 5 slots each, the type limited to 2 per tenant, two tenants with 12
    jobs each: at every moment at most 2 of each tenant's jobs run, both tenants run at once,
    and all jobs end."""
    users = await tenants(store, "A", "B")
    await limit_type(store, LIMITED, 2)
    env = worker_env(db_url, LOG_LEVEL="INFO", WORKER_CONCURRENCY="5", POLLING_INTERVAL="10000")
    workers = [WorkerProcess(env, tmp_path / f"w{i}.log") for i in range(3)]
    seen: list[tuple[int, int]] = []
    try:
        for w in workers:
            await w.wait_for_output("Starting Job Processor Worker", timeout=60)
        async with store.transaction() as s:
            for user in users.values():
                await s.accounts.grant_credits(user, 12)
                await enqueue_many(s, user_id=user, jobs=[JobSpec(LIMITED, {"text": "sleep:0.1"})] * 12)

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
            return bool(row[2] == 24)

        await wait_until(all_done, timeout=40, interval=0.01, what="24 jobs completed")
    finally:
        for w in workers:
            w.send(signal.SIGTERM)
        codes = [await w.wait() for w in workers]
    assert codes == [0, 0, 0]
    assert max(a for a, _ in seen) == 2 and max(b for _, b in seen) == 2, seen
    assert max(a + b for a, b in seen) >= 3, seen  # the two tenants ran side by side
