"""The completer against a real database: a row PostgreSQL refuses holds up nothing else."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from aijobs.db.rows import ClaimedJob, Finish
from aijobs.db.store import Store
from aijobs.queue import outcomes
from aijobs.worker.completer import Completer
from tests.support.jobs import create_job
from tests.support.workers import fetch_all, job

DEEP: dict[str, Any] = {"a": 1}
for _ in range(40):
    DEEP = {"a": DEEP}

#: Results no retry can store: refused by PostgreSQL (NUL, a lone surrogate in jsonb) or by
#: the client before sending (a set has no JSON form).
REFUSED: dict[str, dict[str, Any]] = {
    "nul": {"output": {"summary": "bad\x00byte"}},
    "lone-surrogate": {"output": {"summary": "bad\ud800"}},
    "not-json": {"output": {"tags": {"a", "b"}}},
    # Refused by the result's bounds inside aijobs.finish_attempts, which names the field.
    "too-big": {"output": "x" * 70_000},
    "too-deep": {"output": DEEP},
}


async def claim(store: Store, user: uuid.UUID, n: int) -> list[ClaimedJob]:
    async with store.session() as s:
        for i in range(n):
            await create_job(s, user_id=user, type="sentiment_analysis", payload={"text": f"ok {i}"})
        return await s.jobs.claim("w1", n, lease_seconds=30)


@pytest.mark.parametrize("result", REFUSED.values(), ids=REFUSED.keys())
async def test_a_refused_row_fails_its_attempt_and_every_other_row_is_written(
    store: Store, db_url: str, funded_user: uuid.UUID, result: dict[str, Any]
) -> None:
    jobs = await claim(store, funded_user, 7)
    bad = jobs[3]
    completer = Completer(store, "w1")
    stop = asyncio.Event()
    task = asyncio.create_task(completer.run(stop))
    stored: dict[uuid.UUID, tuple[Finish, bool]] = {}

    def written(finish: Finish, won: bool) -> None:
        stored[finish.id] = (finish, won)

    try:
        for claimed in jobs[:6]:
            given = result if claimed is bad else {"output": "fine"}
            completer.submit(outcomes.completed(claimed, given, None), written)
        await asyncio.wait_for(completer.drained(), 10)
        # ... and a finish queued after it is written too.
        completer.submit(outcomes.completed(jobs[6], {"output": "fine"}, None), written)
        await asyncio.wait_for(completer.drained(), 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert set(stored) == {j.id for j in jobs} and all(won for _, won in stored.values())
    assert stored[bad.id][0].outcome == "failed"
    for claimed in jobs:
        row = await job(db_url, claimed.id)
        if claimed is bad:
            assert row["status"] == "failed" and row["result"] is None
            assert row["error"].startswith("the outcome of this attempt could not be stored: ")
            assert "rows[" not in row["error"], "the batch's row number means nothing in a job's error"
        else:
            assert row["status"] == "completed" and row["result"] == {"output": "fine"}
    refunds = await fetch_all(db_url, "select job_id from aijobs.credit_ledger where kind = 'refund'")
    assert [r["job_id"] for r in refunds] == [bad.id]


async def test_a_stale_attempt_beside_the_current_one_in_a_batch_is_reported_fenced(
    store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    """One worker may end two attempts of one job in one batch: one whose lease expired and
    was rescued, and the attempt that claimed the job again. Only the current one won."""
    async with store.session() as s:
        await create_job(s, user_id=funded_user, type="sentiment_analysis", payload={"text": "ok"})
        [stale] = await s.jobs.claim("w1", 1, lease_seconds=0.1)
    await asyncio.sleep(0.3)
    async with store.session() as s:
        assert [r.id for r in await s.jobs.rescue_expired()] == [stale.id]
        [current] = await s.jobs.claim("w1", 1, lease_seconds=30)
    assert (current.id, current.lease_token) != (stale.id, stale.lease_token)
    completer = Completer(store, "w1")
    reported: dict[int, bool] = {}

    def written(finish: Finish, won: bool) -> None:
        reported[finish.lease_token] = won

    # Both submitted before the completer runs: they are written in one statement.
    completer.submit(outcomes.completed(stale, {"output": "stale"}, None), written)
    completer.submit(outcomes.completed(current, {"output": "current"}, None), written)
    stop = asyncio.Event()
    task = asyncio.create_task(completer.run(stop))
    try:
        await asyncio.wait_for(completer.drained(), 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert reported == {stale.lease_token: False, current.lease_token: True}
    row = await job(db_url, current.id)
    assert row["status"] == "completed" and row["result"] == {"output": "current"}
