"""Fair share between tenants (a tenant is a user): claims take turns between the users with
work waiting, in proportion to their weights; a user's priority orders only that user's jobs;
a bulk import does not hold back another user's single job. One claimer, one worker, and
three worker processes."""

from __future__ import annotations

import signal
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from aijobs import errors
from aijobs.config import Settings
from aijobs.db.queries import query
from aijobs.db.store import Store
from aijobs.monitoring.stats import collect
from aijobs.monitoring.view import render
from aijobs.queue.enqueue import JobSpec, enqueue_many
from tests.conftest import worker_env
from tests.support.workers import WorkerProcess, running_worker, wait_until


async def create(
    store: Store,
    user: uuid.UUID,
    n: int,
    *,
    text: str = "Lovely staff.",
    priority: int = 0,
    run_at: datetime | None = None,
) -> list[uuid.UUID]:
    """n jobs of `user` in one creation (one batch, as a bulk import makes them)."""
    async with store.session() as s:
        await s.accounts.grant_credits(user, n)
        spec = JobSpec("sentiment_analysis", {"text": text}, priority, run_at)
        created = await enqueue_many(s, user_id=user, jobs=[spec] * n)
    return [c.id for c in created]


def claim(db_url: str, limit: int = 1) -> list[uuid.UUID]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            query("job_claim"), {"worker_id": "test", "limit": limit, "lease_seconds": 60}
        ).fetchall()
    return [r[0] for r in rows]


def claim_one_by_one(db_url: str, n: int) -> list[uuid.UUID]:
    return [job_id for _ in range(n) for job_id in claim(db_url)]


async def tenants(store: Store, *names: str) -> dict[str, uuid.UUID]:
    users = {name: uuid.uuid4() for name in names}
    async with store.session() as s:
        for user in users.values():
            await s.accounts.create(user)
    return users


def labelled(db_url: str, users: dict[str, uuid.UUID], order_by: str) -> str:
    """The jobs' owners as letters, in the order given (claim order: lease_token)."""
    name = {u: n for n, u in users.items()}
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            f"select user_id from aijobs.jobs where lease_token is not null order by {order_by}"
        ).fetchall()
    return "".join(name[r[0]] for r in rows)


async def test_claims_take_turns_between_tenants(db_url: str, store: Store) -> None:
    users = await tenants(store, "A", "B", "C")
    for name in "ABC":
        await create(store, users[name], 5)
    claim_one_by_one(db_url, 15)
    assert labelled(db_url, users, "lease_token") == "ABC" * 5


async def test_one_worker_runs_tenants_in_turn(db_url: str, store: Store, settings: Settings) -> None:
    users = await tenants(store, "A", "B", "C")
    for name in "ABC":
        await create(store, users[name], 5)
    one_slot = settings.model_copy(update={"worker_concurrency": 1})
    async with running_worker(one_slot, store):

        async def all_done() -> bool:
            async with store.session() as s:
                cur = await s.conn.execute("select count(*) from aijobs.jobs where status = 'completed'")
                row = await cur.fetchone()
            return row is not None and row[0] == 15

        await wait_until(all_done, timeout=60, what="15 jobs completed")
    assert labelled(db_url, users, "lease_token") == "ABC" * 5


async def test_three_worker_processes_take_turns(db_url: str, store: Store, tmp_path: Path) -> None:
    users = await tenants(store, "A", "B", "C")
    env = worker_env(db_url, LOG_LEVEL="INFO", WORKER_CONCURRENCY="1")
    workers = [WorkerProcess(env, tmp_path / f"w{i}.log") for i in range(3)]
    try:
        # Every worker waiting (and able to stop on SIGTERM) before the jobs appear, all at
        # one commit: none of them has the queue to itself at the start.
        for w in workers:
            await w.wait_for_output("Starting Job Processor Worker", timeout=60)
        spec = JobSpec("sentiment_analysis", {"text": "sleep:0.05"})
        async with store.transaction() as s:
            for name in "ABC":
                await s.accounts.grant_credits(users[name], 5)
                await enqueue_many(s, user_id=users[name], jobs=[spec] * 5)

        async def all_done() -> bool:
            async with store.session() as s:
                cur = await s.conn.execute("select count(*) from aijobs.jobs where status = 'completed'")
                row = await cur.fetchone()
            return row is not None and row[0] == 15

        await wait_until(all_done, timeout=90, interval=0.1, what="15 jobs completed")
    finally:
        for w in workers:
            w.send(signal.SIGTERM)
        codes = [await w.wait() for w in workers]
    assert codes == [0, 0, 0]
    order = labelled(db_url, users, "lease_token")
    assert sorted(order) == sorted("ABC" * 5)
    # Claims in flight at once may take turns out of order (each skips the rows the others
    # hold), never more than that: at every point the tenants have had nearly equal service.
    # First come, first served gives A all of the first five.
    for end in range(1, len(order) + 1):
        counts = Counter(order[:end])
        served = [counts[name] for name in "ABC"]
        assert max(served) - min(served) <= 2, order


async def test_priority_orders_only_the_tenants_own_jobs(db_url: str, store: Store) -> None:
    users = await tenants(store, "A", "B")
    await create(store, users["A"], 3)
    b_plain = await create(store, users["B"], 3)
    # The most a user can ask for: the top priority, and a run_at long past.
    (b_urgent,) = await create(
        store, users["B"], 1, priority=100, run_at=datetime.now(UTC) - timedelta(days=30)
    )
    claimed = claim_one_by_one(db_url, 7)
    assert labelled(db_url, users, "lease_token") == "ABABABB"
    b_claimed = [j for j in claimed if j in {*b_plain, b_urgent}]
    assert b_claimed == [b_urgent, *b_plain]


async def test_a_bulk_import_does_not_hold_back_another_tenants_job(db_url: str, store: Store) -> None:
    users = await tenants(store, "A", "B")
    await create(store, users["A"], 2000)
    assert len(claim(db_url, limit=10)) == 10  # workers are busy with A's import
    (b_job,) = await create(store, users["B"], 1)
    assert b_job in claim(db_url, limit=10)


async def test_a_bulk_import_does_not_starve_a_job_under_a_running_worker(
    db_url: str, store: Store, settings: Settings
) -> None:
    users = await tenants(store, "A", "B")
    await create(store, users["A"], 300, text="sleep:0.02")
    async with running_worker(settings, store):  # 10 slots

        async def count(sql: str) -> int:
            async with store.session() as s:
                cur = await s.conn.execute(sql)
                row = await cur.fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        async def some_done() -> bool:
            return await count("select count(*) from aijobs.jobs where status = 'completed'") >= 20

        await wait_until(some_done, timeout=60, what="20 of A's jobs completed")
        (b_job,) = await create(store, users["B"], 1)
        claims_before = await count("select max(lease_token) from aijobs.jobs")

        async def b_done() -> bool:
            return (
                await count(f"select count(*) from aijobs.jobs where id = '{b_job}' and status = 'completed'")
                == 1
            )

        await wait_until(b_done, timeout=60, what="B's job completed")
        # Claimed by an earlier statement than B's job: a claim's rows share its start time
        # (started_at), and within one claim tokens follow the ids, B's (the newest) last.
        a_ahead = await count(
            f"select count(*) from aijobs.jobs where user_id = '{users['A']}'"
            f" and lease_token > {claims_before}"
            f" and started_at < (select started_at from aijobs.jobs where id = '{b_job}')"
        )
    # Once B's job is in, it takes the next turn: at most the claims in flight when it was
    # committed go before it. First come, first served ran the rest of A's 280 first.
    assert a_ahead <= settings.worker_concurrency, a_ahead


async def test_weights_share_the_turns(db_url: str, store: Store) -> None:
    users = await tenants(store, "A", "B")
    async with store.session() as s:
        assert await s.accounts.set_weight(users["A"], 2) == 2
    await create(store, users["B"], 6)
    await create(store, users["A"], 6)
    claim_one_by_one(db_url, 9)
    assert Counter(labelled(db_url, users, "lease_token")) == {"A": 6, "B": 3}


async def test_idle_time_earns_no_turns_and_a_past_backlog_costs_none(db_url: str, store: Store) -> None:
    users = await tenants(store, "A", "B")
    await create(store, users["A"], 10)
    claim(db_url, limit=10)  # A had the workers to itself; nothing is waiting now
    await create(store, users["B"], 3)
    await create(store, users["A"], 3)
    claim_one_by_one(db_url, 6)
    assert labelled(db_url, users, "lease_token")[10:] == "BABABA"


async def test_a_job_taken_back_from_a_dead_worker_keeps_its_turn(db_url: str, store: Store) -> None:
    users = await tenants(store, "A", "B")
    (a_first, *_) = await create(store, users["A"], 3)
    await create(store, users["B"], 3)
    assert claim(db_url) == [a_first]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "update aijobs.jobs set lease_expires_at = now() - interval '1 second' where id = %s", (a_first,)
        )
        rescued = conn.execute(query("job_rescue_expired"), {"limit": 10}).fetchall()
    assert [r[0] for r in rescued] == [a_first]
    assert claim(db_url) == [a_first]


def turns(db_url: str, ids: list[uuid.UUID]) -> list[int | None]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute("select id, fair_tag from aijobs.jobs where id = any(%s)", (ids,)).fetchall()
    tag = dict(rows)
    return [tag[i] for i in ids]


def come_due(db_url: str, ids: list[uuid.UUID]) -> None:
    """What time does to jobs created for later: their run_at is past."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("update aijobs.jobs set run_at = now() - interval '1 second' where id = any(%s)", (ids,))


async def test_jobs_for_later_take_their_turns_when_due(db_url: str, store: Store) -> None:
    """A job created for later has no turn until it is due, so it never stands ahead of due
    jobs in the claim's order; once due, its tenant takes turns with the others from there."""
    users = await tenants(store, "A", "B")
    later = await create(store, users["A"], 5, run_at=datetime.now(UTC) + timedelta(hours=1))
    assert turns(db_url, later) == [None] * 5
    await create(store, users["B"], 10)
    assert len(claim(db_url, limit=4)) == 4  # B's alone: A's jobs are not due
    come_due(db_url, later)
    claim_one_by_one(db_url, 6)
    # From the claim after they came due, A's jobs take turns with B's remaining six.
    assert labelled(db_url, users, "lease_token")[4:] == "ABABAB"
    assert all(tag is not None for tag in turns(db_url, later))


async def test_a_retry_set_to_wait_gives_up_its_turn_and_takes_one_when_due(
    db_url: str, store: Store
) -> None:
    users = await tenants(store, "A", "B")
    (a_first, *_) = await create(store, users["A"], 2)
    await create(store, users["B"], 3)
    with psycopg.connect(db_url, autocommit=True) as conn:
        token = conn.execute("select lease_token from aijobs.claim_jobs('w', 1, 60)").fetchone()
        assert token is not None
        retry = {
            "id": str(a_first),
            "lease_token": token[0],
            "status": "pending",
            "outcome": "retry",
            "error": "upstream 503",
            "retry_in": 3600,
        }
        conn.execute(
            "select * from aijobs.finish_attempts('w', %s::jsonb)", (psycopg.types.json.Jsonb([retry]),)
        )
    assert turns(db_url, [a_first]) == [None]
    assert a_first not in claim(db_url, limit=10)  # waiting: passed over, the rest claimed
    come_due(db_url, [a_first])
    assert claim(db_url) == [a_first]


async def test_a_pending_row_written_directly_is_given_a_turn(db_url: str, store: Store) -> None:
    users = await tenants(store, "A")
    with psycopg.connect(db_url, autocommit=True) as conn:
        (job,) = conn.execute(
            "insert into aijobs.jobs (user_id, tenant, type, payload, cost)"
            " values (%s, %s, 'sentiment_analysis', '{}', 0) returning id",
            (users["A"], users["A"]),
        ).fetchone() or (None,)
    assert turns(db_url, [job]) == [None]
    assert claim(db_url) == [job]


@pytest.mark.parametrize("weight", [0, 1001])
async def test_weight_is_bounded(store: Store, weight: int) -> None:
    async with store.session() as s:
        with pytest.raises(psycopg.errors.CheckViolation):
            await s.accounts.set_weight(uuid.uuid4(), weight)


async def test_stats_show_the_tenants_with_the_most_live_jobs(db_url: str, store: Store) -> None:
    users = await tenants(store, "A", "B")
    await create(store, users["A"], 5)
    await create(store, users["B"], 2)
    claim(db_url)  # A's first turn
    async with store.session() as s:
        stats = await collect(s)
    assert [(t["tenant"], t["pending"], t["processing"]) for t in stats.top_tenants] == [
        (users["A"], 4, 1),
        (users["B"], 2, 0),
    ]
    assert stats.as_json()["queue"]["top_tenants"][0] == {
        "tenant": str(users["A"]),
        "pending": 4,
        "processing": 1,
        "weight": 1,
        "max_running": None,
    }
    assert str(users["A"]) in render(stats)


async def test_a_users_own_direct_creation_takes_its_turn_and_cannot_touch_the_tenants(
    db_url: str, store: Store
) -> None:
    """As PostgREST would call it: the creation writes the tenant's turns as its owner, while
    the user may neither read nor write the tenants table."""
    users = await tenants(store, "A", "B")
    await create(store, users["A"], 3)
    async with store.session() as s:
        await s.accounts.grant_credits(users["B"], 1)
    async with store.as_user({"sub": str(users["B"]), "role": "authenticated"}) as s:
        await enqueue_many(s, user_id=None, jobs=[JobSpec("sentiment_analysis", {"text": "mine"})])
    claim_one_by_one(db_url, 4)
    assert labelled(db_url, users, "lease_token") == "ABAA"
    for statement in (
        "select * from aijobs.tenants",
        f"update aijobs.tenants set weight = 1000 where tenant = '{users['B']}'",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            async with store.as_user({"sub": str(users["B"]), "role": "authenticated"}) as s:
                await s.conn.execute(statement)


async def test_without_a_quota_a_bulk_import_is_admitted_whole(store: Store) -> None:
    """The API asks for the quota (quota=True); a deployment without one admits any batch."""
    user = uuid.uuid4()
    spec = JobSpec("sentiment_analysis", {"text": "one of many reviews"})
    async with store.session() as s:
        await s.accounts.grant_credits(user, 1000)
        await s.sync_settings(max_jobs_in_flight_per_user=100)
        with pytest.raises(errors.TooManyInFlight):
            await enqueue_many(s, user_id=user, jobs=[spec] * 500, quota=True)
        await s.sync_settings(max_jobs_in_flight_per_user=None)
        assert len(await enqueue_many(s, user_id=user, jobs=[spec] * 500, quota=True)) == 500


async def test_a_tenant_with_turns_already_creates_ten_thousand_at_once(db_url: str, store: Store) -> None:
    """The largest creation, for a tenant whose turns have got far (10,000 turns apart)."""
    users = await tenants(store, "A", "B")
    await create(store, users["A"], 10_000)
    await create(store, users["A"], 10_000)
    await create(store, users["B"], 1)
    claim(db_url, limit=2)
    assert labelled(db_url, users, "lease_token") == "AB"
