"""Migrations (twice, concurrently) and row-level security as Supabase's `authenticated` role."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from aijobs.db.migrate import available, migrate, pending
from aijobs.db.store import Store
from aijobs.errors import Forbidden
from tests.support.database import create_test_database, drop_database, job_type_rows
from tests.support.jobs import create_job


@pytest.fixture
def empty_db(admin_url: str) -> str:
    url = create_test_database(admin_url, "template0")
    yield url  # type: ignore[misc]
    drop_database(admin_url, url)


def test_migrations_apply_concurrently_and_twice(empty_db: str) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: migrate(empty_db, job_types=job_type_rows()), range(4)))
    applied = [name for names in results for name in names]
    assert sorted(applied) == sorted(f"{m.version:03d}_{m.name}" for m in available())
    assert migrate(empty_db) == []
    assert pending(empty_db) == []
    with psycopg.connect(empty_db) as conn:
        rows = conn.execute("select count(*) from aijobs.schema_migrations").fetchone()
        assert rows is not None and rows[0] == len(available())
        types = conn.execute("select name, cost from aijobs.job_types order by name").fetchall()
    assert dict(types) == {name: cost for name, cost, _ in job_type_rows()}


def test_the_credit_function_is_in_the_baseline_migration() -> None:
    """The seed's 003_create_credit_consuming_job_function.sql was folded into the baseline
    with the move to schema `aijobs`: the one creation function is defined there."""
    migrations = {f"{m.version:03d}_{m.name}.sql": m.sql for m in available()}
    assert "001_baseline.sql" in migrations
    assert "create function aijobs.create_jobs(" in migrations["001_baseline.sql"]


#: Each bound on a job's own columns, with a value past it. The single-column
#: ones are domains rather than table CHECKs; whoever writes the row, the value is refused.
OUT_OF_BOUNDS = [
    ("payload", "'[1, 2]'::jsonb"),
    ("priority", "101"),
    ("priority", "-101"),
    ("max_attempts", "0"),
    ("max_attempts", "101"),
    ("attempts", "-1"),
    ("cost", "-1"),
    ("idempotency_key", "''"),
    ("idempotency_key", "repeat('k', 256)"),
    ("rate_limited_seconds", "-0.5"),
    ("finished_at", "now()"),  # a pending job has no end
    ("status", "'processing'"),  # processing needs a lease
]


@pytest.mark.parametrize(("column", "value"), OUT_OF_BOUNDS)
def test_the_database_refuses_job_values_out_of_bounds(db_url: str, column: str, value: str) -> None:
    """Direct SQL as the owner, past the credit function's own checks: the schema still refuses."""
    user = uuid.uuid4()
    # Test data, not user input: columns and values come from OUT_OF_BOUNDS above.
    fields = {
        "user_id": "%s",
        "tenant": "gen_random_uuid()",
        "type": "'sentiment_analysis'",
        "payload": "'{}'::jsonb",
        "cost": "1",
    }
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("select aijobs.grant_credits(%s, 5)", (user,))
        insert = "insert into aijobs.jobs ({}) values ({}) returning id"
        row = conn.execute(insert.format(", ".join(fields), ", ".join(fields.values())).encode(), (user,))
        job = row.fetchone()
        assert job is not None  # the same insert with every value in bounds is accepted
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(f"update aijobs.jobs set {column} = {value} where id = %s".encode(), (job[0],))
        bad = {**fields, column: value}
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(insert.format(", ".join(bad), ", ".join(bad.values())).encode(), (user,))
        # The ledger's kinds are the three its sign rule names (the separate list was dropped).
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "insert into aijobs.credit_ledger (user_id, kind, amount) values (%s, 'bonus', 1)", (user,)
            )


async def test_rls_users_see_only_their_own_rows(store: Store, db_url: str) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    async with store.session() as s:
        for user in (alice, bob):
            await s.accounts.grant_credits(user, 10)
            await create_job(s, user_id=user, type="sentiment_analysis", payload={"text": f"from {user}"})
    async with store.as_user({"sub": str(alice), "role": "authenticated"}) as s:
        jobs = await s.jobs.page()
        assert {j["user_id"] for j in jobs} == {alice}
        ledger_rows = await s.accounts.ledger(bob)
        assert ledger_rows == []
        assert await s.accounts.get(bob) is None
        mine = await s.accounts.get(alice)
        assert mine is not None and mine.balance == 9
    # Raw SQL as `authenticated` cannot see or change other rows either.
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        await conn.execute(
            "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
            (json.dumps({"sub": str(alice)}),),
        )
        cur = await conn.execute(
            "select count(*), count(*) filter (where user_id = %s) from aijobs.jobs", (alice,)
        )
        assert await cur.fetchone() == (1, 1)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("update aijobs.jobs set status = 'completed'")


async def test_authenticated_users_cannot_create_or_cancel_for_others(store: Store) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    async with store.session() as s:
        await s.accounts.grant_credits(alice, 10)
        await s.accounts.grant_credits(bob, 10)
        bobs = await create_job(s, user_id=bob, type="sentiment_analysis", payload={"text": "bob"})
    with pytest.raises(Forbidden):
        async with store.as_user({"sub": str(alice)}) as s:
            await create_job(s, user_id=bob, type="sentiment_analysis", payload={"text": "for bob"})
    async with store.as_user({"sub": str(alice)}) as s:
        assert await s.jobs.cancel(bobs.id) is None
    with pytest.raises(Forbidden):
        async with store.as_user(None) as s:
            await create_job(s, user_id=None, type="sentiment_analysis", payload={"text": "anon"})
    async with store.session() as s:
        row = await s.jobs.get(bobs.id)
    assert row is not None and row["status"] == "pending"


async def test_a_column_type_changed_under_a_running_process_fails_its_prepared_statement_once(
    db_url: str,
) -> None:
    """A migration that changes the type of a column a running process's prepared statements
    return (making six of jobs' columns domains did) makes PostgreSQL refuse them with 0A000,
    "cached plan must not change result type", on every execution, on every connection that
    prepared them before: during a rolling deploy a process of the previous release failed
    every such read until it was restarted. After that error the store drops the connection's
    prepared statements, so the next use prepares again against the new schema."""
    store = await Store.open(db_url, min_size=1, max_size=1)
    try:
        async with store.session() as session:
            assert await session.jobs.get_for_api(uuid.uuid4()) is None
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("alter table aijobs.jobs alter column error type varchar")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            async with store.session() as session:
                await session.jobs.get_for_api(uuid.uuid4())
        async with store.session() as session:
            assert await session.jobs.get_for_api(uuid.uuid4()) is None
        # The same inside a request's transaction (rolled back first, then the statements go).
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("alter table aijobs.jobs alter column error type text")
        claims = {"sub": str(uuid.uuid4()), "role": "authenticated"}
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            async with store.as_user(claims) as session:
                await session.jobs.get_for_api(uuid.uuid4())
        async with store.as_user(claims) as session:
            assert await session.jobs.get_for_api(uuid.uuid4()) is None
    finally:
        await store.close()
