"""Retention and the maintenance leader: only old finished jobs go, in bounded batches, by
one leader at a time, while workers keep processing; the credit ledger is never touched."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import psycopg
import pytest

from aijobs.db.store import Store
from aijobs.monitoring.maintenance import LEADER_NAME, Maintenance, RetentionPolicy
from aijobs.monitoring.metrics import Metrics
from tests.conftest import worker_env
from tests.support.jobs import create_job
from tests.support.workers import WorkerProcess, fetch_all, fetch_one, status_counts, wait_until


async def seed_history(db_url: str, user: uuid.UUID, *, old: int, recent: int, live: int) -> None:
    """Jobs made by the credit function (so each has a ledger debit), then aged by hand:
    `old` finished 8 days ago (every 5th failed, hence refunded), `recent` finished an hour
    ago, `live` left pending with a creation date 10 days back (old, but not finished)."""
    n = old + recent + live
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute("select aijobs.grant_credits(%s, %s, 'history')", (user, n))
        await conn.execute(
            "select aijobs.create_jobs(%s, array['sentiment_analysis'],"
            " array[jsonb_build_object('text', 'ok')])"
            " from generate_series(1, %s)",
            (user, n),
        )
        await conn.execute(
            """with ranked as (select id, row_number() over (order by id) as i from aijobs.jobs)
               update aijobs.jobs j set
                   status = case when r.i <= %(old)s and r.i %% 5 = 0 then 'failed'
                                 else 'completed' end::aijobs.job_status,
                   started_at = now() - a.age,
                   finished_at = now() - a.age
               from ranked r,
                    lateral (select case when r.i <= %(old)s then interval '8 days'
                                         else interval '1 hour' end as age) a
               where j.id = r.id and r.i <= %(finished)s""",
            {"old": old, "finished": old + recent},
        )
        await conn.execute(
            "update aijobs.jobs set created_at = now() - interval '10 days' where status = 'pending'"
        )


async def ledger_state(db_url: str) -> dict[str, int]:
    row = await fetch_one(
        db_url,
        "select count(*) as rows, coalesce(sum(amount), 0) as total,"
        " (select sum(balance) from aijobs.accounts) as balances from aijobs.credit_ledger",
    )
    return {k: int(v) for k, v in row.items()}


async def test_tick_prunes_old_finished_jobs_in_bounded_batches(
    db_url: str, store: Store, funded_user: uuid.UUID
) -> None:
    await seed_history(db_url, funded_user, old=130, recent=20, live=10)
    before = await ledger_state(db_url)
    policy = RetentionPolicy(job_age_seconds=7 * 86400, batch_size=50, max_batches=2)
    m = Maintenance(store, "tester", Metrics(), interval=60, policy=policy)

    first = await m.tick()
    assert (first.leader, first.pruned_jobs, first.batches) == (True, 100, 2)  # bounded per tick
    second = await m.tick()
    assert (second.pruned_jobs, second.batches) == (30, 1)
    third = await m.tick()
    assert third.pruned_jobs == 0

    counts = await status_counts(db_url)
    assert counts == {"completed": 20, "pending": 10}  # recent and live jobs stay
    orphans = await fetch_one(
        db_url,
        "select count(*) as n from aijobs.job_attempts a"
        " where not exists (select 1 from aijobs.jobs j where j.id = a.job_id)",
    )
    assert orphans["n"] == 0
    after = await ledger_state(db_url)
    assert after == before  # the ledger is never pruned, and still sums to the balances
    assert after["total"] == after["balances"]
    samples = await fetch_one(db_url, "select count(*) as n from aijobs.queue_samples")
    assert samples["n"] == 3


async def test_leader_forgets_idempotency_keys_after_24_hours(
    db_url: str, store: Store, funded_user: uuid.UUID
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(
            "insert into aijobs.api_idempotency_keys (user_id, key, request_hash, created_at) values"
            " (%s, 'old', 'h', now() - interval '25 hours'), (%s, 'fresh', 'h', now() - interval '23 hours')",
            (funded_user, funded_user),
        )
    result = await Maintenance(store, "tester", Metrics(), interval=60, policy=RetentionPolicy()).tick()
    assert result.purged_keys == 1
    keys = await fetch_all(db_url, "select key from aijobs.api_idempotency_keys")
    assert [k["key"] for k in keys] == ["fresh"]


async def test_one_leader_at_a_time_with_takeover(store: Store) -> None:
    a = Maintenance(store, "worker-a", Metrics(), interval=0.2)  # lease ttl 1 s
    b = Maintenance(store, "worker-b", Metrics(), interval=0.2)
    assert (await a.tick()).leader
    assert not (await b.tick()).leader
    assert (await a.tick()).leader  # renewal keeps it
    await a.release()
    assert (await b.tick()).leader  # a clean release hands over at once
    await asyncio.sleep(1.2)  # b stops renewing (as if dead): its lease expires by the DB clock
    assert (await a.tick()).leader
    assert not (await b.tick()).leader
    async with store.session() as s:
        leader = await s.monitoring.leader_get(LEADER_NAME)
    assert leader is not None and leader["holder"] == "worker-a" and leader["valid"]


@pytest.mark.slow
async def test_retention_runs_on_the_leader_while_workers_process(
    db_url: str, store: Store, funded_user: uuid.UUID, tmp_path: Path
) -> None:
    await seed_history(db_url, funded_user, old=600, recent=50, live=0)
    before = await ledger_state(db_url)
    env = worker_env(
        db_url, MAINTENANCE_INTERVAL_SECONDS="0.3", RETENTION_BATCH_SIZE="40", WORKER_CONCURRENCY="5"
    )
    workers = [WorkerProcess(env, tmp_path / f"w{i}.log") for i in range(2)]
    try:
        # Both are up and polling first: on a loaded machine one worker could otherwise do
        # all the work (and be the only one asked to stop) before the other had started.
        for w in workers:
            await w.wait_for_output("⏳", timeout=60)
        # New work arrives and is processed while history is pruned.
        async with store.session() as s:
            await s.accounts.grant_credits(funded_user, 60)
            for _ in range(60):
                await create_job(
                    s, user_id=funded_user, type="sentiment_analysis", payload={"text": "sleep:0.05"}
                )

        async def done() -> bool:
            left = await fetch_one(
                db_url, "select count(*) as n from aijobs.jobs where finished_at < now() - interval '7 days'"
            )
            counts = await status_counts(db_url)
            return left["n"] == 0 and counts.get("completed", 0) == 110

        await wait_until(done, timeout=60, interval=0.2, what="old jobs pruned and new jobs completed")
        holders = await fetch_all(
            db_url, "select holder from aijobs.maintenance_leader where expires_at > now()"
        )
        assert len(holders) == 1
    finally:
        for w in workers:
            w.send(signal.SIGTERM)
        codes = [await w.wait() for w in workers]
    assert codes == [0, 0]
    logs = [w.output() for w in workers]
    pruners = [log for log in logs if "Retention pruned" in log]
    assert len(pruners) == 1, "only the leader prunes"
    assert sum(log.count("Took maintenance leadership") for log in logs) == 1
    counts = await status_counts(db_url)
    assert counts == {"completed": 110}  # 50 recent + 60 new, none pruned
    after = await ledger_state(db_url)
    assert after["rows"] == before["rows"] + 60 + 1  # 60 new debits and one grant; nothing removed
    assert after["total"] == after["balances"]
