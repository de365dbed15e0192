"""Scenarios 1, 3 and 6: workers that die — killed from outside, crashing between the
provider's answer and the commit, or killed by the job itself (a poison job).

Real `aijobs worker` processes, the real database, the fake OpenAI server on loopback.
Each scenario is bounded in time and ends with the invariant check.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid
from pathlib import Path

import pytest

from aijobs.providers.fake_openai import FakeOpenAI
from tests.conftest import worker_env
from tests.reliability.chaos import (
    Fleet,
    Row,
    all_terminal,
    bulk_create,
    chaos_summary,  # noqa: F401  (prints and writes the summary table)
    completed,
    finish_scenario,
    lease_holders,
    openai_env,
    seconds,
    terminal,
    wait_for,
)
from tests.support.workers import fetch_all, fetch_one, wait_until

pytestmark = pytest.mark.slow


# -- 1. SIGKILL workers at random while they drain a queue ------------------------------------
async def sigkill_soak(
    db_url: str,
    tmp_path: Path,
    *,
    jobs: int,
    workers: int,
    concurrency: int,
    latency_ms: float,
    kill_for: float,
    timeout: float,
    label: str,
) -> None:
    """Drain `jobs` with `workers` processes while one random worker is SIGKILLed every
    0.5-2 s (for `kill_for` seconds) and replaced at once. Recovery time per kill: from the
    kill until every job the dead worker held is finished by someone else."""
    rng = random.Random(6)
    user = uuid.uuid4()
    # 10 attempts: a job killed mid-run four times in a row is unlucky, not a bug.
    await bulk_create(db_url, user, jobs, max_attempts=10)
    recoveries: list[float] = []  # kill -> every orphaned job taken back (lease expired, rescued)
    finishes: list[float] = []  # kill -> every orphaned job finished by another worker
    orphans_total = 0
    watchers: list[asyncio.Task[None]] = []

    async def watch(ids: list[uuid.UUID], pid: int, killed_at: float) -> None:
        async def taken_back() -> bool:
            return not set(ids) & set(await lease_holders(db_url, pid))

        await wait_until(taken_back, timeout=60, interval=0.05, what="a killed worker's jobs rescued")
        recoveries.append(time.monotonic() - killed_at)
        await wait_until(
            lambda: all_terminal(db_url, ids), timeout=timeout, interval=0.1, what="a killed worker's jobs"
        )
        finishes.append(time.monotonic() - killed_at)

    with FakeOpenAI(latency_ms=latency_ms) as fake:
        env = openai_env(db_url, fake, LOG_LEVEL="WARNING", WORKER_CONCURRENCY=str(concurrency))
        crew = Fleet(env, tmp_path)
        crew.start(workers)
        kills = 0
        try:
            start = time.monotonic()
            while time.monotonic() - start < kill_for and await completed(db_url) < jobs:
                await asyncio.sleep(rng.uniform(0.5, 2.0))  # the fault schedule, not a wait for an event
                victim = rng.choice(crew.alive())
                held = await lease_holders(db_url, victim.pid)
                victim.send(signal.SIGKILL)
                killed_at = time.monotonic()
                kills += 1
                orphans_total += len(held)
                if held:
                    watchers.append(asyncio.create_task(watch(held, victim.pid, killed_at)))
                crew.start(1)
            drain = await wait_for(
                lambda: _all_done(db_url, jobs), timeout=timeout, what=f"{jobs} jobs completed", interval=0.25
            )
            await asyncio.gather(*watchers)
            elapsed = time.monotonic() - start
        finally:
            for w in watchers:
                w.cancel()
            codes = await crew.stop()
        requests = len(fake.requests)
    assert await completed(db_url) == jobs
    assert codes and all(c == 0 for c in codes), codes
    attempts = await fetch_one(
        db_url,
        "select count(*) filter (where outcome = 'lost') as lost, count(*) as n,"
        " count(*) filter (where outcome = 'superseded') as superseded from aijobs.job_attempts",
    )
    await finish_scenario(
        db_url,
        Row(
            label,
            f"{kills} SIGKILLs ({orphans_total} jobs orphaned), {workers} workers x {concurrency}",
            jobs,
            0,
            0,
            f"orphans taken back: {seconds(recoveries)}",
            f"orphans finished: {seconds(finishes)} (a rescued job keeps its run_at: back at the front);"
            f" drained in {elapsed:.1f} s ({drain:.1f} s after the last kill);"
            f" {attempts['lost']} attempts lost,"
            f" {attempts['superseded']} fenced; {requests} provider requests for {jobs} jobs",
        ),
    )


async def _all_done(db_url: str, jobs: int) -> bool:
    return await completed(db_url) == jobs


async def test_sigkill_workers_while_draining(db_url: str, tmp_path: Path) -> None:
    """Scenario 1, bounded: 2 workers, 300 jobs, kills for 6 s."""
    await sigkill_soak(
        db_url,
        tmp_path,
        jobs=300,
        workers=2,
        concurrency=10,
        latency_ms=100,
        kill_for=6,
        timeout=90,
        label="1 SIGKILL (fast)",
    )


@pytest.mark.chaos
@pytest.mark.timeout(900)
async def test_sigkill_soak_four_workers_three_thousand_jobs(db_url: str, tmp_path: Path) -> None:
    """Scenario 1 as the issue states it: 4 workers drain 3,000 jobs, a kill every 0.5-2 s."""
    await sigkill_soak(
        db_url,
        tmp_path,
        jobs=3000,
        workers=4,
        concurrency=20,
        latency_ms=200,
        kill_for=600,
        timeout=600,
        label="1 SIGKILL soak",
    )


# -- 3. crash after the provider answered, before the result was committed --------------------
async def crash_before_commit(db_url: str, tmp_path: Path, *, jobs: int, label: str) -> None:
    """Each job's first completed result dies with its worker just before the commit
    (tests.support.fault_worker). The re-run must store one result and charge once."""
    user = uuid.uuid4()
    await bulk_create(db_url, user, jobs)
    markers = tmp_path / "crashed"
    with FakeOpenAI(latency_ms=20) as fake:
        env = openai_env(
            db_url,
            fake,
            LOG_LEVEL="WARNING",
            WORKER_CONCURRENCY="4",
            AIJOBS_TEST_CRASH_BEFORE_COMMIT=str(markers),
        )
        crew = Fleet(env, tmp_path, module="tests.support.fault_worker")
        crew.start(2)
        crashes = 0
        deadline = time.monotonic() + 120
        try:
            # A supervisor: restart whatever died, until every job is done (bounded).
            while await completed(db_url) < jobs:
                assert time.monotonic() < deadline, f"not done in time:\n{crew.logs()[-3000:]}"
                for w in crew.workers:
                    if w.proc.poll() is not None and not w._log.closed:
                        assert w.proc.returncode == 137, w.output()
                        w.kill()  # closes its log
                        crashes += 1
                        crew.start(1)
                await asyncio.sleep(0.1)  # supervisor tick
        finally:
            codes = await crew.stop()
        answered = [r for r in fake.requests if r.status == 200]
    assert crashes >= 1
    assert all(c == 0 for c in codes), codes
    crashed_jobs = {p.name for p in markers.iterdir()}
    assert len(crashed_jobs) == jobs, "every job crashed once after its answer"
    # Every job was answered at least twice (the crashed call and the re-run), stored once.
    assert len(answered) >= 2 * jobs
    per_job = await fetch_all(
        db_url,
        "select j.id, j.result is not null as has_result,"
        " count(a.*) filter (where a.outcome = 'completed') as wins,"
        " (select count(*) from aijobs.credit_ledger l where l.job_id = j.id and l.kind = 'debit') as debits"
        " from aijobs.jobs j join aijobs.job_attempts a on a.job_id = j.id group by j.id",
    )
    assert all(r["has_result"] and r["wins"] == 1 and r["debits"] == 1 for r in per_job), per_job
    await finish_scenario(
        db_url,
        Row(
            label,
            f"{crashes} crashes between provider answer and commit",
            jobs,
            0,
            0,
            "next claim after the lease (3 s)",
            f"{len(answered)} answered provider calls for {jobs} jobs; one result, one debit each",
        ),
    )


async def test_crash_after_provider_answered_before_commit(db_url: str, tmp_path: Path) -> None:
    await crash_before_commit(db_url, tmp_path, jobs=6, label="3 crash before commit (fast)")


@pytest.mark.chaos
@pytest.mark.timeout(300)
async def test_crash_before_commit_many(db_url: str, tmp_path: Path) -> None:
    await crash_before_commit(db_url, tmp_path, jobs=40, label="3 crash before commit")


# -- 6. a poison job that kills its worker every time -------------------------------------------
async def poison(db_url: str, tmp_path: Path, *, others: int, label: str) -> None:
    user = uuid.uuid4()
    await bulk_create(db_url, user, 1, "crash", max_attempts=3)
    poison_id = (await fetch_one(db_url, "select id from aijobs.jobs"))["id"]
    await bulk_create(db_url, user, others, "sleep:0.05")
    env = worker_env(db_url, LOG_LEVEL="WARNING", WORKER_CONCURRENCY="4", LEASE_SECONDS="2")
    crew = Fleet(env, tmp_path)
    crew.start(2)
    deaths = 0
    start = time.monotonic()
    try:
        while await terminal(db_url) < others + 1:
            assert time.monotonic() - start < 90, "poison scenario did not settle"
            for w in crew.workers:
                if w.proc.poll() is not None and not w._log.closed:
                    w.kill()
                    deaths += 1
                    crew.start(1)
            await asyncio.sleep(0.1)  # supervisor tick
        settled = time.monotonic() - start
    finally:
        codes = await crew.stop()
    assert codes and all(c == 0 for c in codes), codes
    row = await fetch_one(db_url, "select * from aijobs.jobs where id = %s", poison_id)
    assert row["status"] == "failed" and row["attempts"] == 3, row
    assert "lease expired" in row["error"]
    outcomes = [
        r["outcome"]
        for r in await fetch_all(
            db_url, "select outcome from aijobs.job_attempts where job_id = %s", poison_id
        )
    ]
    assert outcomes == ["lost"] * 3, outcomes
    refunds = await fetch_all(
        db_url, "select amount from aijobs.credit_ledger where job_id = %s and kind = 'refund'", poison_id
    )
    assert len(refunds) == 1
    assert deaths == 3, f"the poison job ran exactly max_attempts times ({deaths} deaths)"
    assert await completed(db_url) == others
    await finish_scenario(
        db_url,
        Row(
            label,
            f"poison job (crash directive) killed {deaths} workers",
            others + 1,
            0,
            0,
            f"failed + refunded after {settled:.1f} s",
            f"attempts {outcomes}; {others} other jobs completed",
        ),
    )


async def test_poison_job_fails_after_its_attempts_with_one_refund(db_url: str, tmp_path: Path) -> None:
    await poison(db_url, tmp_path, others=30, label="6 poison job")
