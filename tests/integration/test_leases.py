"""Leases, rescue and fencing, driven statement by statement on a real database."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from aijobs.db.rows import Finish
from aijobs.db.store import Store
from aijobs.providers.base import RateLimitedError, RetryableProviderError
from aijobs.queue.outcomes import from_error, handed_back
from aijobs.queue.retry import RetryPolicy
from tests.support.jobs import create_job
from tests.support.workers import fetch_all, job


async def one_job(store: Store, user: uuid.UUID) -> uuid.UUID:
    async with store.session() as s:
        created = await create_job(s, user_id=user, type="sentiment_analysis", payload={"text": "ok"})
    return created.id


async def test_late_worker_is_fenced_out_after_takeover(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    job_id = await one_job(store, funded_user)
    async with store.session() as s:
        [late] = await s.jobs.claim("worker-a", 1, lease_seconds=0.2)
    await asyncio.sleep(0.3)
    async with store.session() as s:
        rescued = await s.jobs.rescue_expired()
        assert [r.id for r in rescued] == [job_id] and rescued[0].status == "pending"
        [fresh] = await s.jobs.claim("worker-b", 1, lease_seconds=30)
        assert fresh.lease_token != late.lease_token and fresh.attempts == 2
        # Worker A wakes up and tries to finish its stale attempt: refused.
        won = await s.jobs.finish(
            [
                Finish(
                    id=job_id,
                    lease_token=late.lease_token,
                    status="completed",
                    outcome="completed",
                    result={"by": "a"},
                )
            ],
            "worker-a",
        )
        assert won == {}
        # Its heartbeat no longer extends anything either.
        assert await s.jobs.heartbeat([job_id], [late.lease_token], 30) == {}
        won = await s.jobs.finish(
            [
                Finish(
                    id=job_id,
                    lease_token=fresh.lease_token,
                    status="completed",
                    outcome="completed",
                    result={"by": "b"},
                )
            ],
            "worker-b",
        )
        assert won == {(job_id, fresh.lease_token): "completed"}
        # And a replay of B's own write changes nothing: the job is no longer processing.
        again = await s.jobs.finish(
            [
                Finish(
                    id=job_id, lease_token=fresh.lease_token, status="failed", outcome="failed", error="late"
                )
            ],
            "worker-b",
        )
        assert again == {}
    row = await job(db_url, job_id)
    assert row["status"] == "completed" and row["result"] == {"by": "b"}
    outcomes = await fetch_all(
        db_url, "select worker_id, outcome from aijobs.job_attempts order by lease_token"
    )
    assert [(o["worker_id"], o["outcome"]) for o in outcomes] == [
        ("worker-a", "superseded"),
        ("worker-b", "completed"),
    ]
    ledger = await fetch_all(db_url, "select kind from aijobs.credit_ledger where job_id = %s", job_id)
    assert [r["kind"] for r in ledger] == ["debit"]


async def test_expired_lease_of_a_job_out_of_attempts_fails_it_with_a_refund(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    async with store.session() as s:
        created = await create_job(
            s, user_id=funded_user, type="sentiment_analysis", payload={"text": "x"}, max_attempts=1
        )
        await s.jobs.claim("worker-a", 1, lease_seconds=0.1)
    await asyncio.sleep(0.2)
    async with store.session() as s:
        rescued = await s.jobs.rescue_expired()
    assert [(r.id, r.status) for r in rescued] == [(created.id, "failed")]
    row = await job(db_url, created.id)
    assert "lease expired" in row["error"]
    refunds = await fetch_all(
        db_url, "select amount from aijobs.credit_ledger where job_id = %s and kind = 'refund'", created.id
    )
    assert [r["amount"] for r in refunds] == [1]


@pytest.mark.parametrize("outcome", ["retry", "rate_limited", "handed_back"])
async def test_a_cancel_asked_while_an_attempt_ends_wins_over_its_way_back_to_pending(
    store: Store, db_url: str, funded_user: uuid.UUID, outcome: str
) -> None:
    job_id = await one_job(store, funded_user)
    async with store.session() as s:
        [claimed] = await s.jobs.claim("worker-a", 1, lease_seconds=30)
        answered = await s.jobs.cancel(job_id)  # the user cancels while the attempt runs
        assert answered is not None and answered["cancel_requested"]
        ending = {
            "retry": from_error(claimed, RetryableProviderError("503"), RetryPolicy(0.01, 0.01)),
            "rate_limited": from_error(claimed, RateLimitedError("429", retry_after=0.0), RetryPolicy()),
            "handed_back": handed_back(claimed),
        }[outcome]
        assert ending.status == "pending"
        # It answers with the status it wrote, not the one it was given.
        assert await s.jobs.finish([ending], "worker-a") == {(job_id, claimed.lease_token): "cancelled"}
        assert await s.jobs.claim("worker-b", 1, lease_seconds=30) == [], "the cancelled job ran again"
    row = await job(db_url, job_id)
    assert row["status"] == "cancelled" and not row["cancel_requested"]
    assert row["finished_at"] is not None and row["lease_owner"] is None
    assert row["error"].startswith("cancelled while running")
    attempts = await fetch_all(db_url, "select outcome from aijobs.job_attempts where job_id = %s", job_id)
    assert [a["outcome"] for a in attempts] == [outcome]
    ledger = await fetch_all(
        db_url, "select kind from aijobs.credit_ledger where job_id = %s order by id", job_id
    )
    assert [r["kind"] for r in ledger] == ["debit", "refund"]


async def test_a_fenced_out_hand_back_leaves_the_attempt_lost(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    """A hand-back that lost the race (the worker was frozen past its lease) has no call to
    record: the rescuer's `lost` stands, where a late result would mark it `superseded`."""
    await one_job(store, funded_user)
    async with store.session() as s:
        [late] = await s.jobs.claim("worker-a", 1, lease_seconds=0.1)
    await asyncio.sleep(0.2)
    async with store.session() as s:
        await s.jobs.rescue_expired()
        await s.jobs.claim("worker-b", 1, lease_seconds=30)
        assert await s.jobs.finish([handed_back(late)], "worker-a") == {}
    outcomes = await fetch_all(
        db_url, "select worker_id, outcome from aijobs.job_attempts order by lease_token"
    )
    assert [(o["worker_id"], o["outcome"]) for o in outcomes] == [("worker-a", "lost")]


async def test_a_fenced_out_write_does_not_act_on_a_cancel_request(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    job_id = await one_job(store, funded_user)
    async with store.session() as s:
        [late] = await s.jobs.claim("worker-a", 1, lease_seconds=0.1)
    await asyncio.sleep(0.2)
    async with store.session() as s:
        await s.jobs.rescue_expired()
        [fresh] = await s.jobs.claim("worker-b", 1, lease_seconds=30)
        await s.jobs.cancel(job_id)
        assert await s.jobs.finish([handed_back(late)], "worker-a") == {}
    row = await job(db_url, job_id)
    assert (row["status"], row["lease_token"], row["cancel_requested"]) == (
        "processing",
        fresh.lease_token,
        True,
    )


async def test_heartbeat_keeps_a_lease_alive_and_reports_cancel_requests(
    store: Store, funded_user: uuid.UUID
) -> None:
    job_id = await one_job(store, funded_user)
    async with store.session() as s:
        [claimed] = await s.jobs.claim("worker-a", 1, lease_seconds=0.3)
        for _ in range(4):
            await asyncio.sleep(0.15)
            assert await s.jobs.heartbeat([job_id], [claimed.lease_token], 0.3) == {job_id: False}
        assert await s.jobs.rescue_expired() == []
        await s.jobs.cancel(job_id)
        assert await s.jobs.heartbeat([job_id], [claimed.lease_token], 0.3) == {job_id: True}


async def test_claim_takes_only_as_many_as_asked_and_skips_locked_rows(
    store: Store, funded_user: uuid.UUID
) -> None:
    for _ in range(10):
        await one_job(store, funded_user)
    async with store.session() as a, store.session() as b:
        first, second = await asyncio.gather(a.jobs.claim("a", 4, 30), b.jobs.claim("b", 4, 30))
    assert len(first) == len(second) == 4
    assert not {j.id for j in first} & {j.id for j in second}
    async with store.session() as s:
        assert len(await s.jobs.claim("c", 10, 30)) == 2


@pytest.mark.parametrize("way_back", ["retry", "rescue"])
async def test_a_cancel_racing_a_way_back_to_pending_is_not_lost(
    store: Store, db_url: str, funded_user: uuid.UUID, way_back: str
) -> None:
    """The job goes from processing back to pending in a transaction that the cancel has to
    wait for: the cancel, read after that commit, cancels the pending job instead of finding
    it in neither state."""
    job_id = await one_job(store, funded_user)
    async with store.session() as s:
        [claimed] = await s.jobs.claim("worker-a", 1, lease_seconds=0.2 if way_back == "rescue" else 30)
    if way_back == "rescue":
        await asyncio.sleep(0.3)
    async with store.session() as moving, store.session() as user:
        async with moving.conn.transaction():
            if way_back == "retry":
                ending = from_error(claimed, RetryableProviderError("503"), RetryPolicy(0.01, 0.01))
                assert await moving.jobs.finish([ending], "worker-a") == {
                    (job_id, claimed.lease_token): "pending"
                }
            else:
                assert [r.status for r in await moving.jobs.rescue_expired()] == ["pending"]
            cancel = asyncio.create_task(user.jobs.cancel(job_id))
            for _ in range(500):  # until the cancel waits on the row this transaction holds
                waiting = await fetch_all(
                    db_url,
                    "select 1 from pg_stat_activity where wait_event_type = 'Lock'"
                    " and datname = current_database()",
                )
                if waiting:
                    break
                await asyncio.sleep(0.01)
            assert waiting, "the cancel did not wait for the row"
        answered = await cancel
    assert answered is not None and answered["status"] == "cancelled"
    row = await job(db_url, job_id)
    assert row["status"] == "cancelled"
    async with store.session() as s:
        assert await s.jobs.claim("worker-b", 1, lease_seconds=30) == [], "the cancelled job ran"
