"""Creation from synchronous code (`SyncSession`, `enqueue_sync`, `enqueue_many_sync`) on
the caller's own psycopg connection, against a real database: the same charge and refusals
as the async path, and atomic with the caller's own transaction."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from aijobs.db.repos.jobs import PREPARED_STATEMENTS_CAP
from aijobs.db.store import Store
from aijobs.db.sync_session import SyncSession
from aijobs.errors import InsufficientCredits, InvalidArgument, InvalidPayload, UnknownJobType, UnknownUser
from aijobs.monitoring.metrics import metrics
from aijobs.queue.enqueue import JobSpec, enqueue, enqueue_many_sync, enqueue_sync
from tests.integration.test_credits import ledger_state
from tests.support.invariants import assert_invariants
from tests.support.jobs import create_job

TEXT = {"text": "Quick and kind."}


def job_row(db_url: str, job_id: uuid.UUID) -> tuple[object, ...] | None:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "select user_id, type, payload, priority, max_attempts, idempotency_key, cost, status"
            " from aijobs.jobs where id = %s",
            (job_id,),
        ).fetchone()


async def test_a_sync_creation_writes_what_the_async_one_writes(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    """Same function, same rows: one job, one debit each."""
    text = {"text": "Slow, but they answered."}
    with psycopg.connect(db_url, autocommit=True) as conn:
        made = enqueue_sync(
            SyncSession(conn),
            user_id=funded_user,
            job_type="sentiment_analysis",
            payload=text,
            priority=3,
            max_attempts=2,
        )
    async with store.session() as s:
        twin = await enqueue(
            s, user_id=funded_user, job_type="sentiment_analysis", payload=text, priority=3, max_attempts=2
        )
    assert (made.created, made.status, made.cost, made.balance) == (True, "pending", 1, 999)
    assert twin.balance == 998
    assert job_row(db_url, made.id) == job_row(db_url, twin.id)
    assert await ledger_state(db_url, funded_user) == (998, 998, 2)
    await assert_invariants(db_url)


async def test_the_callers_rollback_takes_the_job_and_its_charge_with_it(
    db_url: str, funded_user: uuid.UUID
) -> None:
    with psycopg.connect(db_url) as conn:
        session = SyncSession(conn)
        with conn.transaction(force_rollback=True):
            created = enqueue_sync(session, user_id=funded_user, job_type="sentiment_analysis", payload=TEXT)
            assert created.balance == 999  # charged inside the caller's transaction...
        assert job_row(db_url, created.id) is None  # ...and gone with it
        with conn.transaction():
            kept = enqueue_sync(session, user_id=funded_user, job_type="sentiment_analysis", payload=TEXT)
    assert job_row(db_url, kept.id) is not None
    assert await ledger_state(db_url, funded_user) == (999, 999, 1)
    await assert_invariants(db_url)


def test_workers_are_woken_at_the_callers_commit_not_before(db_url: str, funded_user: uuid.UUID) -> None:
    with psycopg.connect(db_url, autocommit=True) as listener, psycopg.connect(db_url) as conn:
        listener.execute("listen aijobs_jobs")
        with conn.transaction():
            enqueue_sync(
                SyncSession(conn),
                user_id=funded_user,
                job_type="review_processing",
                payload={"review_text": "ok"},
            )
            assert list(listener.notifies(timeout=0.3, stop_after=1)) == []
        woken = [n.payload for n in listener.notifies(timeout=2.0, stop_after=1)]
    assert woken == ["review_processing"]


async def test_refusals_are_the_typed_errors_and_charge_nothing(db_url: str, funded_user: uuid.UUID) -> None:
    poor = uuid.uuid4()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("select aijobs.grant_credits(%s, 2, 'test')", (poor,))
        session = SyncSession(conn)
        with pytest.raises(InvalidPayload) as bad:
            enqueue_sync(session, user_id=funded_user, job_type="sentiment_analysis", payload={"txt": "x"})
        assert {e["field"] for e in bad.value.errors} == {"text", "txt"}
        with pytest.raises(UnknownJobType):
            session.create(user_id=funded_user, jobs=[JobSpec("no_such_type", {})])
        with pytest.raises(InsufficientCredits) as broke:
            enqueue_sync(session, user_id=poor, job_type="review_processing", payload={"review_text": "ok"})
        assert (broke.value.balance, broke.value.cost) == (2, 3)
        with pytest.raises(InvalidArgument):
            session.create(user_id=None, jobs=[JobSpec("sentiment_analysis", TEXT)])
        # The session goes on after a refusal: its cursor is still usable.
        enqueue_sync(session, user_id=poor, job_type="sentiment_analysis", payload=TEXT)
    assert await ledger_state(db_url, funded_user) == (1000, 1000, 0)
    assert await ledger_state(db_url, poor) == (1, 1, 1)


async def test_an_idempotency_key_replays_the_first_job_without_a_second_charge(
    db_url: str, funded_user: uuid.UUID
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        session = SyncSession(conn)
        first = enqueue_sync(
            session, user_id=funded_user, job_type="sentiment_analysis", payload=TEXT, idempotency_key="k-1"
        )
        again = enqueue_sync(
            session, user_id=funded_user, job_type="sentiment_analysis", payload=TEXT, idempotency_key="k-1"
        )
    assert (first.created, again.created, again.id) == (True, False, first.id)
    assert await ledger_state(db_url, funded_user) == (999, 999, 1)


async def test_without_prepared_statements_as_behind_pgbouncer(db_url: str, funded_user: uuid.UUID) -> None:
    """A connection with prepare_threshold=None never gets a prepared statement from aijobs."""
    with psycopg.connect(db_url, autocommit=True, prepare_threshold=None) as conn:
        session = SyncSession(conn)
        for _ in range(3):
            enqueue_sync(session, user_id=funded_user, job_type="sentiment_analysis", payload=TEXT)
        assert conn.execute("select count(*) from pg_prepared_statements").fetchone() == (0,)
    with psycopg.connect(db_url, autocommit=True) as conn:
        enqueue_sync(SyncSession(conn), user_id=funded_user, job_type="sentiment_analysis", payload=TEXT)
        prepared = conn.execute("select count(*) from pg_prepared_statements").fetchone()
        assert prepared is not None and prepared[0] >= 1
    assert await ledger_state(db_url, funded_user) == (996, 996, 4)


async def test_a_sync_batch_is_all_or_nothing(db_url: str, funded_user: uuid.UUID) -> None:
    jobs = [JobSpec("sentiment_analysis", {"text": f"r{i}"}) for i in range(3)]
    with psycopg.connect(db_url, autocommit=True) as conn:
        session = SyncSession(conn)
        assert enqueue_many_sync(session, user_id=funded_user, jobs=[]) == []
        created = enqueue_many_sync(
            session, user_id=funded_user, jobs=[*jobs, JobSpec("review_processing", {"review_text": "ok"})]
        )
        with pytest.raises(InvalidPayload) as bad:
            enqueue_many_sync(session, user_id=funded_user, jobs=[*jobs, JobSpec("sentiment_analysis", {})])
    assert [c.cost for c in created] == [1, 1, 1, 3]
    assert created[-1].balance == 994
    assert [e["field"] for e in bad.value.errors] == ["jobs[3].text"]
    assert await ledger_state(db_url, funded_user) == (994, 994, 4)
    await assert_invariants(db_url)


async def test_a_refusal_in_a_savepoint_keeps_the_callers_other_writes(
    db_url: str, funded_user: uuid.UUID
) -> None:
    """What the README tells a caller that wants to go on after a refusal in its transaction."""
    poor = uuid.uuid4()
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("select aijobs.grant_credits(%s, 1, 'test')", (poor,))
    with psycopg.connect(db_url) as conn:
        session = SyncSession(conn)
        with conn.transaction():
            kept = enqueue_sync(session, user_id=funded_user, job_type="sentiment_analysis", payload=TEXT)
            with pytest.raises(InsufficientCredits), conn.transaction():
                enqueue_sync(
                    session, user_id=poor, job_type="review_processing", payload={"review_text": "ok"}
                )
            also = enqueue_sync(session, user_id=poor, job_type="sentiment_analysis", payload=TEXT)
    assert job_row(db_url, kept.id) is not None and job_row(db_url, also.id) is not None
    assert await ledger_state(db_url, funded_user) == (999, 999, 1)
    assert await ledger_state(db_url, poor) == (0, 0, 1)


def created_counter() -> float:
    return (
        metrics().registry.get_sample_value("aijobs_jobs_created_total", {"type": "prompt_analysis"}) or 0.0
    )


def test_only_committed_creations_move_this_processs_counters(db_url: str, funded_user: uuid.UUID) -> None:
    """Inside the caller's transaction the job may yet roll back: no counter moves for it."""
    payload = {"prompt": "Reply to: 'Great pizza, slow delivery.'"}
    before = created_counter()
    with psycopg.connect(db_url) as conn:
        session = SyncSession(conn)
        with conn.transaction(force_rollback=True):
            enqueue_sync(session, user_id=funded_user, job_type="prompt_analysis", payload=payload)
            enqueue_many_sync(session, user_id=funded_user, jobs=[JobSpec("prompt_analysis", payload)])
    assert created_counter() == before
    with psycopg.connect(db_url, autocommit=True) as conn:
        session = SyncSession(conn)
        enqueue_sync(session, user_id=funded_user, job_type="prompt_analysis", payload=payload)
        enqueue_many_sync(session, user_id=funded_user, jobs=[JobSpec("prompt_analysis", payload)] * 2)
    assert created_counter() == before + 3


async def test_refusals_do_not_gather_prepared_statements_without_end(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    """psycopg forgets a statement whose first prepared execution failed but leaves it on the
    server: a connection that sees only refusals would keep one per refusal."""
    nobody = uuid.uuid4()
    refusals = PREPARED_STATEMENTS_CAP + 50
    with psycopg.connect(db_url, autocommit=True) as conn:
        session = SyncSession(conn)
        for _ in range(refusals):
            with pytest.raises(UnknownUser):
                session.create(user_id=nobody, jobs=[JobSpec("sentiment_analysis", TEXT)])
        held = conn.execute("select count(*) from pg_prepared_statements").fetchone()
        assert held is not None and held[0] <= PREPARED_STATEMENTS_CAP + 1
        enqueue_sync(session, user_id=funded_user, job_type="sentiment_analysis", payload=TEXT)
    async with store.session() as s:
        for _ in range(refusals):
            with pytest.raises(UnknownUser):
                await create_job(s, user_id=nobody, type="sentiment_analysis", payload=TEXT)
        cur = await s.conn.execute("select count(*) from pg_prepared_statements")
        row = await cur.fetchone()
        assert row is not None and row[0] <= PREPARED_STATEMENTS_CAP + 1
        await enqueue(s, user_id=funded_user, job_type="sentiment_analysis", payload=TEXT)
    assert await ledger_state(db_url, funded_user) == (998, 998, 2)
