"""What the stats and dashboard figures mean, on rows whose right answer is known.

Processing time is the duration of the attempt that completed a job (as the Prometheus
histogram `aijobs_job_processing_seconds` measures it), not the span from the first claim,
which would count retry backoff and rate-limit holds. The queue's oldest wait counts only
jobs that may run now, from when they could (`run_at`), not scheduled or backing-off jobs.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from aijobs.db.store import Store
from aijobs.monitoring.stats import collect, series

# A job created 60 s ago, first claimed 50 s ago; that attempt failed after 1 s and the job
# was claimed again 10 s ago, completing 2 s later: its processing time is those 2 s, not
# the 42 s since the first claim, most of which it spent waiting out its backoff.
COMPLETED_AFTER_A_RETRY = """
with job as (
    insert into aijobs.jobs (user_id, tenant, type, payload, status, attempts, cost,
                      created_at, run_at, started_at, finished_at, updated_at)
    values (%(user)s, %(user)s, 'sentiment_analysis', '{"text": "hi"}', 'completed', 2, 1,
            now() - interval '60 s', now() - interval '12 s', now() - interval '50 s',
            now() - interval '8 s', now() - interval '8 s')
    returning id
)
insert into aijobs.job_attempts
    (lease_token, job_id, attempt, worker_id, started_at, finished_at, outcome)
select nextval('aijobs.job_lease_seq'), job.id, a.attempt, 'w', now() - a.started, now() - a.finished,
       a.outcome
from job, (values (1, interval '50 s', interval '49 s', 'retry'),
                  (2, interval '10 s', interval '8 s', 'completed')) as a(attempt, started, finished, outcome)
"""

# Pending jobs: one created long ago but scheduled an hour ahead (not runnable), one backing
# off for another minute, and one whose backoff ended 20 s ago (created 300 s ago).
PENDING = """
insert into aijobs.jobs (user_id, tenant, type, payload, status, cost, created_at, run_at)
values (%(user)s, %(user)s, 'sentiment_analysis', '{"text": "later"}', 'pending', 1,
        now() - interval '1000 s', now() + interval '1 hour'),
       (%(user)s, %(user)s, 'sentiment_analysis', '{"text": "backoff"}', 'pending', 1,
        now() - interval '900 s', now() + interval '1 minute'),
       (%(user)s, %(user)s, 'sentiment_analysis', '{"text": "due"}', 'pending', 1,
        now() - interval '300 s', now() - interval '20 s')
"""


@pytest.fixture
def user(db_url: str) -> uuid.UUID:
    user = uuid.uuid4()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("insert into aijobs.accounts (user_id) values (%s)", (user,))
    return user


async def test_processing_time_is_the_completing_attempt_not_the_span_since_the_first_claim(
    db_url: str, store: Store, user: uuid.UUID
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(COMPLETED_AFTER_A_RETRY, {"user": user})
    async with store.session() as session:
        stats = await collect(session, dead_after_seconds=30)
        points = await series(session, minutes=5, bucket_seconds=60)
    w5 = stats.window(5)
    assert w5.completed == 1 and w5.completed_after_retry == 1
    assert (w5.p50, w5.p95, w5.avg) == pytest.approx((2.0, 2.0, 2.0), abs=0.01)
    assert w5.avg_wait == pytest.approx(10.0, abs=0.01)  # creation to first claim
    charted = [p for p in points if p.p50 is not None]
    assert [(p.p50, p.p95) for p in charted] == [pytest.approx((2.0, 2.0), abs=0.01)]
    assert sum(p.completed for p in points) == 1


async def test_oldest_pending_counts_runnable_jobs_from_their_run_at(
    db_url: str, store: Store, user: uuid.UUID
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(PENDING, {"user": user})
    async with store.session() as session:
        stats = await collect(session, dead_after_seconds=30)
        await session.monitoring.queue_sample()
        samples = await session.monitoring.queue_series(5)
    assert stats.pending == 3
    assert stats.oldest_pending_seconds == pytest.approx(20.0, abs=1.0)
    assert [s["pending"] for s in samples] == [3]
    assert samples[0]["oldest_pending_seconds"] == pytest.approx(20.0, abs=1.0)


async def test_oldest_pending_is_none_when_nothing_may_run_yet(
    db_url: str, store: Store, user: uuid.UUID
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(PENDING.replace("now() - interval '20 s'", "now() + interval '20 s'"), {"user": user})
    async with store.session() as session:
        stats = await collect(session, dead_after_seconds=30)
    assert stats.pending == 3
    assert stats.oldest_pending_seconds is None
