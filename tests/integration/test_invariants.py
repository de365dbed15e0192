"""The invariant checker: silent on a healthy queue, and each check catches the damage it is for.

The damage is done by hand as the owner role (triggers bypassed with
`session_replication_role = replica`, the once-per-job index dropped) because the schema
itself refuses it — which is the point, but the checker must not rely on that.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import psycopg
import pytest

from aijobs.config import Settings
from aijobs.db.store import Store
from aijobs.queue.invariants import check
from tests.conftest import worker_env
from tests.support.invariants import assert_invariants
from tests.support.jobs import create_job
from tests.support.workers import fetch_one, running_worker, status_counts, wait_until


async def healthy_queue(settings: Settings, store: Store, db_url: str, user: uuid.UUID) -> list[uuid.UUID]:
    """Six jobs run to the end: four completed, one failed (refunded), one cancelled (refunded)."""
    ids: list[uuid.UUID] = []
    async with store.session() as s:
        for text in ("good", "fine", "great", "ok", "fatal"):
            ids.append(
                (await create_job(s, user_id=user, type="sentiment_analysis", payload={"text": text})).id
            )
        later = await create_job(
            s, user_id=user, type="sentiment_analysis", payload={"text": "x"}, run_at=None, priority=-100
        )
        await s.jobs.cancel(later.id)
        ids.append(later.id)
    async with running_worker(settings, store):

        async def done() -> bool:
            counts = await status_counts(db_url)
            return counts.get("completed") == 4 and counts.get("failed") == 1

        await wait_until(done, what="4 completed and 1 failed")
    return ids


async def damage(db_url: str, *statements: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute("set session_replication_role = replica")
        for statement in statements:
            await conn.execute(statement)  # type: ignore[arg-type]


async def test_healthy_queue_has_no_violations(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    await healthy_queue(settings, store, db_url, funded_user)
    report = await assert_invariants(db_url)
    assert report.summary["jobs"] == 6
    assert (report.summary["completed"], report.summary["failed"], report.summary["cancelled"]) == (4, 1, 1)


@pytest.mark.parametrize(
    ("check_name", "statements"),
    [
        (
            "job_lost",
            [
                "alter table aijobs.jobs drop constraint jobs_lease_when_processing,"
                " drop constraint jobs_finished_when_terminal",
                "update aijobs.jobs set status = 'processing', lease_token = null where status = 'completed'",
            ],
        ),
        ("attempt_budget", ["update aijobs.jobs set attempts = max_attempts + 1 where status = 'failed'"]),
        ("balance", ["update aijobs.accounts set balance = balance + 1"]),
        (
            "balance",
            [
                "alter domain aijobs.credit_balance drop constraint credit_balance_check",
                "update aijobs.accounts set balance = -1",
            ],
        ),
        (
            "debit",
            [
                "drop index aijobs.credit_ledger_once_per_job",
                "insert into aijobs.credit_ledger (user_id, job_id, kind, amount)"
                " select user_id, id, 'debit', -cost from aijobs.jobs where status = 'completed' limit 1",
            ],
        ),
        ("debit", ["delete from aijobs.credit_ledger where kind = 'debit'"]),
        (
            "refund",
            [
                "insert into aijobs.credit_ledger (user_id, job_id, kind, amount)"
                " select user_id, id, 'refund', cost from aijobs.jobs where status = 'completed' limit 1",
            ],
        ),
        ("refund", ["delete from aijobs.credit_ledger where kind = 'refund'"]),
        (
            "completed_once",
            [
                "insert into aijobs.job_attempts"
                " (lease_token, job_id, attempt, worker_id, finished_at, outcome)"
                " select nextval('aijobs.job_lease_seq'), id, 2, 'ghost', now(), 'completed'"
                " from aijobs.jobs where status = 'completed' limit 1",
            ],
        ),
        ("completed_once", ["update aijobs.job_attempts set outcome = 'lost' where outcome = 'completed'"]),
        ("attempt_open", ["update aijobs.job_attempts set finished_at = null, outcome = null"]),
    ],
)
async def test_each_check_catches_its_damage(
    settings: Settings,
    store: Store,
    db_url: str,
    funded_user: uuid.UUID,
    check_name: str,
    statements: list[str],
) -> None:
    await healthy_queue(settings, store, db_url, funded_user)
    await damage(db_url, *statements)
    report = await check(store, limit=5)
    assert not report.ok
    assert report.totals[check_name] > 0, report.lines()
    assert any(v.check == check_name for v in report.violations)


async def test_processing_job_under_a_live_or_expired_lease_is_not_lost(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    """A job mid-run, or whose worker died and awaits the rescuer, is not a violation."""
    async with store.session() as s:
        for _ in range(2):
            await create_job(s, user_id=funded_user, type="sentiment_analysis", payload={"text": "x"})
        claimed = await s.jobs.claim("w-test", 2, lease_seconds=60)
    assert len(claimed) == 2
    await damage(
        db_url,
        f"update aijobs.jobs set lease_expires_at = now() - interval '1 hour' where id = '{claimed[0].id}'",
    )
    report = await assert_invariants(db_url)
    assert report.summary["processing"] == 2 and report.summary["expired_leases"] == 1
    # Running attempts have no row yet (written when they end); the history shows them open.
    row = await fetch_one(db_url, "select count(*) as n from aijobs.job_attempts")
    assert row["n"] == 0
    async with store.session() as s:
        history = await s.jobs.attempts(claimed[0].id)
    assert [(a["attempt"], a["worker_id"], a["outcome"]) for a in history] == [(1, "w-test", None)]
    assert history[0]["lease_token"] == claimed[0].lease_token and history[0]["started_at"] is not None


def test_cli_check_exits_non_zero_and_lists_violations(db_url: str) -> None:
    env = worker_env(db_url)
    ok = subprocess.run([sys.executable, "-m", "aijobs", "check"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "no job lost" in ok.stdout
    with psycopg.connect(db_url, autocommit=True) as conn:
        user = uuid.uuid4()
        conn.execute("select aijobs.grant_credits(%s, 5, 'x')", (user,))
        conn.execute("set session_replication_role = replica")
        conn.execute("update aijobs.accounts set balance = 7 where user_id = %s", (user,))
    bad = subprocess.run(
        [sys.executable, "-m", "aijobs", "check", "--json"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert '"ok": false' in bad.stdout and str(user) in bad.stdout and "ledger sum 5" in bad.stdout
