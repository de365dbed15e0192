"""Webhooks across a PostgreSQL crash: every job that ended has its outbox row, none that did
not, and each row is delivered at least once after the restart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from aijobs.config import load_settings
from aijobs.db.store import Store
from aijobs.queue.enqueue import JobSpec, enqueue_many
from tests.conftest import ROOT
from tests.support.database import create_test_database, drop_database, ensure_template
from tests.support.pg_ctl import own_server as own_pg_server
from tests.support.pg_ctl import pg_ctl
from tests.support.webhook_receiver import WebhookReceiver
from tests.support.workers import fetch_all, running_worker, wait_until

pytestmark = pytest.mark.slow

PGDATA = ROOT / ".aijobs" / "webhooks-pgdata"
JOBS = 300


@pytest.fixture(scope="module")
def own_server() -> Iterator[str]:
    """This module's own server, because the test crashes it."""
    with own_pg_server(PGDATA) as url:
        yield url


async def _rows(db_url: str, query: str) -> list[dict[str, object]] | None:
    try:
        return await fetch_all(db_url, query)
    except psycopg.OperationalError:
        return None  # the server is restarting


async def test_every_ended_job_has_its_outbox_row_after_a_crash_and_each_is_delivered(
    own_server: str,
) -> None:
    db_url = create_test_database(own_server, ensure_template(own_server), prefix="aj_hooks")
    settings = load_settings(
        database_url=db_url,
        polling_interval=200,
        lease_seconds=3.0,
        heartbeat_seconds=0.5,
        retry_base_seconds=0.05,
        retry_max_seconds=0.2,
        shutdown_grace_seconds=5.0,
        worker_concurrency=10,
        webhook_allow_private=True,
        webhook_retry_base_seconds=0.05,
        llm_provider="offline",
        _env_file=None,
    )
    store = await Store.open(db_url, min_size=1, max_size=8, name="aijobs-test")
    try:
        async with WebhookReceiver() as receiver:
            user = uuid.uuid4()
            async with store.session() as session:
                await session.accounts.grant_credits(user, 10 * JOBS, "test credits")
                await session.conn.execute(
                    "insert into aijobs.webhook_endpoints (url, secret, events) values (%s, %s, %s)",
                    (
                        receiver.url,
                        "whsec_" + "A" * 43 + "=",
                        ["job.completed", "job.failed", "job.cancelled"],
                    ),
                )
                await enqueue_many(
                    session,
                    user_id=user,
                    jobs=[JobSpec("sentiment_analysis", {"text": "sleep:0.1"}) for _ in range(JOBS)],
                )

            async def ended(n: int) -> bool:
                rows = await _rows(
                    db_url, "select count(*) as n from aijobs.jobs where finished_at is not null"
                )
                return rows is not None and int(str(rows[0]["n"])) >= n

            async with running_worker(settings, store):
                await wait_until(lambda: ended(JOBS // 5), timeout=60, what="a fifth of the jobs done")
                # A crash, not a clean stop: transactions in flight are cut off mid-way.
                pg_ctl(PGDATA, "restart", "-m", "immediate", "-w", "-t", "60")
                await wait_until(lambda: ended(JOBS), timeout=120, interval=0.2, what="every job ended")

                async def all_delivered() -> bool:
                    rows = await _rows(
                        db_url,
                        "select count(*) as n from aijobs.webhook_deliveries where status <> 'delivered'",
                    )
                    return rows is not None and int(str(rows[0]["n"])) == 0

                await wait_until(all_delivered, timeout=60, interval=0.2, what="every delivery made")

            jobs = await fetch_all(db_url, "select id, status::text as status from aijobs.jobs")
            outbox = await fetch_all(
                db_url, "select id, job_id, event, status from aijobs.webhook_deliveries"
            )
            assert len(jobs) == JOBS
            assert {j["status"] for j in jobs} <= {"completed", "failed", "cancelled"}
            # Exactly one row per ended job, for the end it had: none lost, none invented.
            assert sorted((r["job_id"], r["event"]) for r in outbox) == sorted(
                (j["id"], f"job.{j['status']}") for j in jobs
            )
            # At least once: every delivery reached the receiver (a repeat has the same id).
            assert set(receiver.effective) == {str(r["id"]) for r in outbox}
    finally:
        await store.close()
        drop_database(own_server, db_url)
