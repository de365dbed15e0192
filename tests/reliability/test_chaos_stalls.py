"""Scenarios 2 and 7: workers that stall — frozen by SIGSTOP past their lease, or with the
event loop blocked and the CPU saturated. A stall shorter than the lease must not cost the
job its owner; a longer one may, and then the fence must refuse the late worker's write.
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

from aijobs.providers.fake_openai import FakeOpenAI
from tests.conftest import worker_env
from tests.reliability.chaos import (
    Fleet,
    Row,
    bulk_create,
    chaos_summary,  # noqa: F401  (prints and writes the summary table)
    completed,
    cpu_burners,
    finish_scenario,
    openai_env,
    seconds,
    wait_for,
)
from tests.support.workers import WorkerProcess, fetch_all, fetch_one, wait_until

pytestmark = pytest.mark.slow

LEASE = 3.0


async def one_job(db_url: str, text: str) -> uuid.UUID:
    await bulk_create(db_url, uuid.uuid4(), 1, text)
    return (await fetch_one(db_url, "select id from aijobs.jobs order by created_at desc limit 1"))["id"]


async def attempts(db_url: str, job_id: uuid.UUID) -> list[dict[str, object]]:
    return await fetch_all(
        db_url,
        "select worker_id, outcome from aijobs.job_attempts where job_id = %s order by lease_token",
        job_id,
    )


async def claimed_by(db_url: str, job_id: uuid.UUID, pid: int) -> bool:
    rows = await fetch_all(
        db_url, "select 1 from aijobs.jobs where id = %s and lease_owner like %s", job_id, f"%-{pid}-%"
    )
    return bool(rows)


# -- 2. SIGSTOP past the lease, SIGCONT after the takeover ------------------------------------
async def test_sigstopped_worker_is_fenced_after_takeover(db_url: str, tmp_path: Path) -> None:
    """Worker A is frozen (SIGSTOP) in the middle of a job whose handler has its answer ready
    (`block:1`: the answer comes in the same loop step that ends the block, before any
    heartbeat can notice the lost lease). B takes the job after the lease and completes it.
    A is thawed: its write must be refused — one result, one charge, A's attempt superseded."""
    # DEBUG: the job's steps (the "Processing job" line waited for below) are logged there.
    env = worker_env(db_url, WORKER_CONCURRENCY="1", LEASE_SECONDS=str(LEASE), LOG_LEVEL="DEBUG")
    a = WorkerProcess(env, tmp_path / "a.log")
    b: WorkerProcess | None = None
    try:
        await a.wait_for_output("⏳")
        job_id = await one_job(db_url, "block:1")
        await wait_until(
            lambda: claimed_by(db_url, job_id, a.pid), timeout=10, interval=0.01, what="A claims"
        )
        # Frozen inside the 1 s block, not before it: the line is logged just before the
        # block starts. Stopped between the claim and the block, A would run its lease
        # watchdog first on SIGCONT and hand the job back (attempt left `lost`), never
        # writing the answer this scenario is about.
        await a.wait_for_output(f"Processing job {job_id}", timeout=10)
        a.send(signal.SIGSTOP)
        b = WorkerProcess(env, tmp_path / "b.log")

        async def b_completed() -> bool:
            rows = await attempts(db_url, job_id)
            return any(r["outcome"] == "completed" for r in rows)

        takeover = await wait_for(b_completed, timeout=30, what="B completes the job")
        a.send(signal.SIGCONT)
        await a.wait_for_output("refused", timeout=15)
    finally:
        a.send(signal.SIGCONT)
        a.send(signal.SIGTERM)
        if b is not None:
            b.send(signal.SIGTERM)
        codes = [await a.wait(), await b.wait()] if b is not None else [await a.wait()]
    assert codes == [0, 0], codes
    rows = await attempts(db_url, job_id)
    assert [r["outcome"] for r in rows] == ["superseded", "completed"], rows
    assert f"-{a.pid}-" in str(rows[0]["worker_id"]) and f"-{b.pid}-" in str(rows[1]["worker_id"])
    job = await fetch_one(db_url, "select status, result from aijobs.jobs where id = %s", job_id)
    assert job["status"] == "completed" and job["result"] is not None
    ledger = await fetch_all(db_url, "select kind from aijobs.credit_ledger where job_id = %s", job_id)
    assert [r["kind"] for r in ledger] == ["debit"]
    await finish_scenario(
        db_url,
        Row(
            "2 SIGSTOP past lease",
            "SIGSTOP 1 worker mid-job, SIGCONT after takeover",
            1,
            0,
            0,
            f"taken over and completed {takeover:.1f} s after SIGSTOP (lease {LEASE:g} s)",
            "late write fenced: attempts superseded + completed, one debit",
        ),
    )


@pytest.mark.chaos
@pytest.mark.timeout(600)
async def test_sigstop_rounds_with_real_provider_calls(db_url: str, tmp_path: Path) -> None:
    """Scenario 2 repeated with the fake OpenAI server (1 s per call): each round freezes a
    worker mid-call past its lease. Whether the thawed worker learns of the lost lease from
    its heartbeat (and abandons) or writes first (and is fenced), no effect may double."""
    rounds = 8
    with FakeOpenAI(latency_ms=1000) as fake:
        env = openai_env(db_url, fake, WORKER_CONCURRENCY="4", LEASE_SECONDS=str(LEASE))
        crew = Fleet(env, tmp_path)
        crew.start(2)
        takeovers: list[float] = []
        try:
            for i in range(rounds):
                await bulk_create(db_url, uuid.uuid4(), 4)
                # Either worker may claim all four jobs: the victim is whichever holds one,
                # preferring alternate workers from round to round.
                holders: list[WorkerProcess] = []

                async def busy() -> bool:
                    rows = await fetch_all(
                        db_url, "select lease_owner from aijobs.jobs where status = 'processing'"
                    )
                    owners = {str(r["lease_owner"]) for r in rows}
                    holders[:] = [w for w in crew.alive() if any(f"-{w.pid}-" in o for o in owners)]
                    return bool(holders)

                await wait_until(busy, timeout=20, interval=0.02, what="a worker holds a job")
                victim = holders[i % len(holders)]
                victim.send(signal.SIGSTOP)
                took = await wait_for(
                    lambda: _done(db_url, 4 * (i + 1)), timeout=60, what="the other worker finishes the round"
                )
                takeovers.append(took)
                victim.send(signal.SIGCONT)
        finally:
            for w in crew.alive():
                w.send(signal.SIGCONT)
            codes = await crew.stop()
    assert codes == [0, 0], codes
    outcomes = await fetch_all(db_url, "select outcome, count(*) as n from aijobs.job_attempts group by 1")
    counts = {r["outcome"]: int(r["n"]) for r in outcomes}
    await finish_scenario(
        db_url,
        Row(
            "2 SIGSTOP rounds (fake OpenAI)",
            f"{rounds} SIGSTOP/SIGCONT past the lease",
            rounds * 4,
            0,
            0,
            f"round done after SIGSTOP: {seconds(takeovers)}",
            f"attempt outcomes {counts}",
        ),
    )


async def _done(db_url: str, n: int) -> bool:
    return await completed(db_url) >= n


# -- 7. blocked event loop, saturated CPU ---------------------------------------------------------
async def test_blocked_loop_and_busy_cpu_below_the_lease_take_over_nothing(
    db_url: str, tmp_path: Path
) -> None:
    """Handlers that block the event loop for 0.3 s each, on a CPU saturated by 2 busy
    processes per core: heartbeats are late but inside the lease, so no job changes hands."""
    jobs = 60
    await bulk_create(db_url, uuid.uuid4(), jobs, "block:0.3")
    env = worker_env(db_url, WORKER_CONCURRENCY="4", LEASE_SECONDS=str(LEASE), LOG_LEVEL="WARNING")
    burners = 2 * (os.cpu_count() or 1)
    with cpu_burners(burners, seconds=40):
        crew = Fleet(env, tmp_path)
        crew.start(2)
        try:
            took = await wait_for(lambda: _done(db_url, jobs), timeout=60, what="all jobs completed")
        finally:
            codes = await crew.stop()
    assert codes == [0, 0], codes
    row = await fetch_one(
        db_url,
        "select count(*) as n, count(*) filter (where outcome <> 'completed') as other"
        " from aijobs.job_attempts",
    )
    assert row["n"] == jobs and row["other"] == 0, f"a job changed hands: {row}\n{crew.logs()[-2000:]}"
    await finish_scenario(
        db_url,
        Row(
            "7 blocked loop < lease",
            f"{jobs} x 0.3 s loop blocks, {burners} CPU burners",
            jobs,
            0,
            0,
            "none needed: 0 takeovers",
            f"drained in {took:.1f} s, one attempt per job",
        ),
    )


async def test_blocked_loop_past_the_lease_is_fenced(db_url: str, tmp_path: Path) -> None:
    """A handler blocks its worker's loop for longer than the lease: the other worker takes
    the job over and completes it; the blocked worker's answer, ready the moment its loop
    wakes, is refused by the fence."""
    marker = tmp_path / "blocked-once"
    env = worker_env(db_url, WORKER_CONCURRENCY="2", LEASE_SECONDS=str(LEASE), LOG_LEVEL="INFO")
    with cpu_burners(2, seconds=20):
        crew = Fleet(env, tmp_path)
        crew.start(2)
        try:
            await crew.workers[0].wait_for_output("⏳")
            await crew.workers[1].wait_for_output("⏳")
            job_id = await one_job(db_url, f"block-once:{marker}:{LEASE * 2:g}")

            async def settled() -> bool:
                outs = [r["outcome"] for r in await attempts(db_url, job_id)]
                return outs == ["superseded", "completed"]

            took = await wait_for(settled, timeout=40, what="takeover, completion and the fenced late write")
        finally:
            codes = await crew.stop()
    assert codes == [0, 0], codes
    assert "refused" in crew.logs()
    ledger = await fetch_all(db_url, "select kind from aijobs.credit_ledger where job_id = %s", job_id)
    assert [r["kind"] for r in ledger] == ["debit"]
    await finish_scenario(
        db_url,
        Row(
            "7 blocked loop > lease",
            f"event loop blocked {LEASE * 2:g} s (lease {LEASE:g} s), CPU burners",
            1,
            0,
            0,
            f"completed elsewhere, late write fenced, {took:.1f} s",
            "attempts superseded + completed, one debit",
        ),
    )
