"""The worker against a real database: it runs jobs, stores results, retries, cancels."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest

from aijobs.config import Settings
from aijobs.db.store import Session, Store
from aijobs.monitoring.metrics import metrics
from aijobs.providers.base import Completion, LLMTask, M, RateLimitedError, RetryableProviderError
from aijobs.providers.offline import OfflineProvider
from aijobs.queue.enqueue import enqueue
from aijobs.worker.runner import StopReason, Worker
from tests.support.providers import ScriptedProvider
from tests.support.workers import fetch_all, job, running_worker, wait_until

#: A test-only trigger that plays a user who cancels every job the moment it is claimed: the
#: cancel NOTIFY is sent at the claim's commit, so the worker often reads it in the same
#: turn of its event loop as the claim's answer, before the job's task has taken a step.
CANCEL_ON_CLAIM = """
create function test_cancel_on_claim() returns trigger language plpgsql as $$
begin
  if old.status = 'pending' and new.status = 'processing' then
    new.cancel_requested := true;
    perform pg_notify('aijobs_cancel', new.id::text);
  end if;
  return new;
end $$;
create trigger test_cancel_on_claim before update of status on aijobs.jobs
  for each row execute function test_cancel_on_claim();
"""


async def create(
    store: Store,
    user: uuid.UUID,
    text: str,
    *,
    job_type: str = "sentiment_analysis",
    max_attempts: int = 4,
    priority: int = 0,
) -> uuid.UUID:
    field = {"sentiment_analysis": "text", "prompt_analysis": "prompt"}.get(job_type, "review_text")
    async with store.session() as s:
        created = await enqueue(
            s,
            user_id=user,
            job_type=job_type,
            payload={field: text},
            max_attempts=max_attempts,
            priority=priority,
        )
    return created.id


async def balance_and_ledger(db_url: str, user: uuid.UUID) -> tuple[int, int]:
    rows = await fetch_all(
        db_url,
        "select a.balance,"
        " (select sum(amount) from aijobs.credit_ledger l where l.user_id = a.user_id) as total "
        "from aijobs.accounts a where a.user_id = %s",
        user,
    )
    return int(rows[0]["balance"]), int(rows[0]["total"])


async def test_worker_completes_each_job_type_and_stores_the_result(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    ids = [
        await create(store, funded_user, "The staff were lovely and quick!", job_type=t)
        for t in ("ai_generation", "review_processing", "sentiment_analysis", "prompt_analysis")
    ]
    async with running_worker(settings, store):

        async def all_done() -> bool:
            return [(await job(db_url, i))["status"] for i in ids] == ["completed"] * len(ids)

        await wait_until(all_done, what="all four jobs completed")
    for job_id in ids:
        row = await job(db_url, job_id)
        assert row["result"]["provider"] == "offline"
        assert row["result"]["output"]
        assert row["attempts"] == 1 and row["error"] is None
        assert row["finished_at"] is not None and row["lease_owner"] is None
        attempts = await fetch_all(db_url, "select * from aijobs.job_attempts where job_id = %s", job_id)
        assert [a["outcome"] for a in attempts] == ["completed"]
        assert attempts[0]["provider"] == "offline" and attempts[0]["latency_ms"] is not None
    assert await balance_and_ledger(db_url, funded_user) == (1000 - 2 - 3 - 1 - 2, 1000 - 8)


async def test_retries_with_backoff_then_fails_with_exactly_one_refund(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    job_id = await create(store, funded_user, "fail", max_attempts=3)
    async with running_worker(settings, store):

        async def failed() -> bool:
            return (await job(db_url, job_id))["status"] == "failed"

        await wait_until(failed, what="the job to fail")
    row = await job(db_url, job_id)
    assert row["attempts"] == 3
    assert "scripted failure" in row["error"]
    attempts = await fetch_all(
        db_url,
        "select outcome, started_at, finished_at from aijobs.job_attempts"
        " where job_id = %s order by lease_token",
        job_id,
    )
    assert [a["outcome"] for a in attempts] == ["retry", "retry", "failed"]
    # Backoff: each retry started no earlier than the previous attempt ended plus half its base delay.
    for before, after in zip(attempts, attempts[1:], strict=False):
        assert (
            after["started_at"] - before["finished_at"]
        ).total_seconds() >= settings.retry_base_seconds * 0.5
    refunds = await fetch_all(
        db_url, "select amount from aijobs.credit_ledger where job_id = %s and kind = 'refund'", job_id
    )
    assert [r["amount"] for r in refunds] == [1]
    assert await balance_and_ledger(db_url, funded_user) == (1000, 1000)


async def test_flaky_job_succeeds_after_retries_and_keeps_its_charge(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    job_id = await create(store, funded_user, "flaky:2")
    async with running_worker(settings, store):

        async def done() -> bool:
            return (await job(db_url, job_id))["status"] == "completed"

        await wait_until(done, what="the flaky job to complete")
    assert (await job(db_url, job_id))["attempts"] == 3
    assert await balance_and_ledger(db_url, funded_user) == (999, 999)


async def test_fatal_error_fails_at_once(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    job_id = await create(store, funded_user, "fatal")
    async with running_worker(settings, store):

        async def failed() -> bool:
            return (await job(db_url, job_id))["status"] == "failed"

        await wait_until(failed, what="the job to fail")
    row = await job(db_url, job_id)
    assert row["attempts"] == 1 and "scripted fatal error" in row["error"]
    assert await balance_and_ledger(db_url, funded_user) == (1000, 1000)


async def test_a_hung_handler_is_bounded_by_the_time_limit(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    bounded = settings.model_copy(update={"job_timeout_seconds": 0.3})
    job_id = await create(store, funded_user, "hang", max_attempts=2)
    async with running_worker(bounded, store):

        async def failed() -> bool:
            return (await job(db_url, job_id))["status"] == "failed"

        await wait_until(failed, what="the hung job to time out twice")
    row = await job(db_url, job_id)
    assert row["attempts"] == 2 and "timed out" in row["error"]


async def test_cancel_pending_refunds_at_once_and_running_job_stops(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    pending = await create(store, funded_user, "Nice.")
    async with store.session() as s:
        row = await s.jobs.cancel(pending)
    assert row is not None and row["status"] == "cancelled"
    running = await create(store, funded_user, "sleep:30")
    async with running_worker(settings, store):

        async def started() -> bool:
            return (await job(db_url, running))["status"] == "processing"

        await wait_until(started, what="the slow job to start")
        async with store.session() as s:
            row = await s.jobs.cancel(running)
        assert row is not None and row["cancel_requested"]

        async def cancelled() -> bool:
            return (await job(db_url, running))["status"] == "cancelled"

        await wait_until(cancelled, timeout=5, what="the running job to be cancelled")
    refunds = await fetch_all(db_url, "select job_id from aijobs.credit_ledger where kind = 'refund'")
    assert {r["job_id"] for r in refunds} == {pending, running}
    assert await balance_and_ledger(db_url, funded_user) == (1000, 1000)


async def test_jobs_cancelled_as_they_are_claimed_all_end_cancelled_and_free_their_slots(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(CANCEL_ON_CLAIM)
    ids: list[uuid.UUID] = []
    async with running_worker(settings, store) as worker:
        # One at a time while the worker runs: each claim then races its cancel NOTIFY (about
        # one in four lost the race before the fix). Slow jobs, so no answer beats a cancel.
        for _ in range(40):
            ids.append(await create(store, funded_user, "sleep:2"))
            await asyncio.sleep(0.05)

        async def all_cancelled() -> bool:
            rows = await fetch_all(db_url, "select count(*) as n from aijobs.jobs where status = 'cancelled'")
            return rows[0]["n"] == len(ids)

        await wait_until(all_cancelled, what="every job cancelled (none stuck in processing)")
        assert not worker.running, "a cancelled job kept its slot"
    refunds = await fetch_all(db_url, "select job_id from aijobs.credit_ledger where kind = 'refund'")
    assert {r["job_id"] for r in refunds} == set(ids)
    assert await balance_and_ledger(db_url, funded_user) == (1000, 1000)


@pytest.mark.parametrize(
    ("reason", "status", "attempts"),
    [
        ("cancelled", "cancelled", 1),
        ("shutdown", "pending", 0),
        ("lease_expiring", "pending", 0),
        ("timeout", "pending", 1),
    ],
)
async def test_a_job_stopped_before_its_task_ran_gets_the_outcome_of_its_stop(
    settings: Settings,
    store: Store,
    db_url: str,
    funded_user: uuid.UUID,
    reason: StopReason,
    status: str,
    attempts: int,
) -> None:
    """The stop lands in the same turn as the start, so the task is cancelled before its
    first step (driven through the worker's own methods: nothing public can time it so)."""
    worker = Worker(settings, store, ScriptedProvider(), db_url)
    job_id = await create(store, funded_user, "Nice.")
    async with store.session() as s:
        [claimed] = await s.jobs.claim(worker.id, 1, settings.lease_seconds)
        if reason == "cancelled":
            await s.jobs.cancel(job_id)
    stop = asyncio.Event()
    completer = asyncio.create_task(worker.completer.run(stop))
    try:
        worker._start(claimed, time.monotonic() + settings.lease_seconds)
        worker._stop_job(claimed.id, reason)
        await asyncio.wait_for(asyncio.gather(worker.running[job_id].task, return_exceptions=True), 5)
        await asyncio.sleep(0)  # the task's done callbacks
        assert not worker.running, "the stopped job kept its slot"
        await asyncio.wait_for(worker.completer.drained(), 5)
    finally:
        stop.set()
        await completer
    row = await job(db_url, job_id)
    assert (row["status"], row["attempts"], row["lease_owner"]) == (status, attempts, None)


async def test_an_attempt_whose_lease_cannot_be_renewed_is_handed_back_before_it_expires(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    """The worker's heartbeats fail (its database out of reach, its pool stuck) while a long
    provider call runs. A rescuer elsewhere would take the job once its lease ends and run it
    again beside this one, both calls paid for; so the attempt is stopped and handed back
    while the lease is still this worker's, with its attempt returned."""

    async def unreachable() -> None:
        raise psycopg.OperationalError("the database is out of reach")

    async with running_worker(settings, store) as worker:
        worker.heartbeat.beat = unreachable  # type: ignore[method-assign]
        job_id = await create(store, funded_user, "sleep:30")

        async def handed_back() -> bool:
            rows = await fetch_all(
                db_url, "select outcome from aijobs.job_attempts where job_id = %s", job_id
            )
            return bool(rows)

        await wait_until(handed_back, timeout=settings.lease_seconds + 5, what="the attempt handed back")
    # The first attempt (the job is claimed again at once, and handed back at the shutdown).
    attempt = (
        await fetch_all(
            db_url,
            """select outcome, finished_at - started_at as ran from aijobs.job_attempts
                where job_id = %s order by started_at limit 1""",
            job_id,
        )
    )[0]
    assert attempt["outcome"] == "handed_back"
    assert attempt["ran"].total_seconds() < settings.lease_seconds, "stopped only after the lease had ended"


class SlowToStopProvider:
    """Hangs; once cancelled, takes two seconds to clean up (closing a stream, say)."""

    name = "slow-to-stop"
    model = None

    def __init__(self) -> None:
        self.stopping = asyncio.Event()

    async def run(self, task: LLMTask[M]) -> Completion[M]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.stopping.set()
            await asyncio.sleep(2)
            raise
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        return None


async def test_a_shutdown_keeps_the_reason_of_an_earlier_stop(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    """An attempt that timed out, still unwinding when the grace period ends, is recorded as
    timed out (an attempt spent), not handed back as if the shutdown had stopped it."""
    quick = settings.model_copy(update={"job_timeout_seconds": 0.3, "shutdown_grace_seconds": 0.1})
    provider = SlowToStopProvider()
    job_id = await create(store, funded_user, "Nice.", max_attempts=1)
    async with running_worker(quick, store, provider):
        await asyncio.wait_for(provider.stopping.wait(), 10)
    row = await job(db_url, job_id)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert "timed out" in row["error"]


class GatedStore:
    """A store whose sessions wait while `gate` is closed (a pool with no connection free)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = asyncio.Event()

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        if not self.gate.is_set():
            self.waiting.set()
            await self.gate.wait()
        async with self.inner.session() as session:
            yield session


class TwoAttemptsProvider:
    """The first call fails (retryable) when `end_first` is set; the second call hangs."""

    name = "two-attempts"
    model = None

    def __init__(self) -> None:
        self.end_first = asyncio.Event()
        self.calls = 0
        self.started = [asyncio.Event(), asyncio.Event()]
        self.second_cancelled = False

    async def run(self, task: LLMTask[M]) -> Completion[M]:
        self.calls += 1
        self.started[min(self.calls, 2) - 1].set()
        if self.calls == 1:
            await self.end_first.wait()
            raise RetryableProviderError("503 from the provider")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.second_cancelled = True
            raise
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        return None


async def test_a_late_heartbeat_answer_about_an_ended_attempt_leaves_the_next_one_running(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    """The beat reads the leases held (attempt 1), then waits for a connection; meanwhile
    attempt 1 ends and the same worker claims the job again. The beat's answer (attempt 1's
    lease is gone) is about attempt 1 only: attempt 2 must go on."""
    provider = TwoAttemptsProvider()
    job_id = await create(store, funded_user, "Nice.")
    quick_stop = settings.model_copy(update={"shutdown_grace_seconds": 0.2})
    async with running_worker(quick_stop, store, provider) as worker:
        gated = GatedStore(store)
        worker.heartbeat.store = gated  # type: ignore[assignment]
        await asyncio.wait_for(provider.started[0].wait(), 10)
        gated.gate.clear()
        await asyncio.wait_for(gated.waiting.wait(), 10)  # the beat has read attempt 1's lease
        provider.end_first.set()
        await asyncio.wait_for(provider.started[1].wait(), 10)  # attempt 2 runs
        beats = worker.heartbeat.beats
        gated.gate.set()

        async def beaten() -> bool:
            return worker.heartbeat.beats > beats

        await wait_until(beaten, what="the held-back beat to end")
        await asyncio.sleep(0.1)
        assert not provider.second_cancelled, "the second attempt was stopped as a lost lease"
        assert worker.running[job_id].stop_reason is None
        row = await job(db_url, job_id)
        assert (row["status"], row["attempts"], row["lease_token"]) == (
            "processing",
            2,
            worker.running[job_id].job.lease_token,
        )


class GarbledProvider:
    """Answers like the offline provider, with `garble` in the answer's reasons or, with
    `in_error`, fails every call with it in the error message."""

    name = "garbled"
    model = None

    def __init__(self, garble: str, *, in_error: bool = False) -> None:
        self.garble = garble
        self.in_error = in_error
        self.offline = OfflineProvider()

    async def run(self, task: LLMTask[M]) -> Completion[M]:
        if self.in_error:
            raise RetryableProviderError(f"upstream said {self.garble}")
        completion = await self.offline.run(task)
        output = completion.output.model_copy(update={"reasons": [f"a reason {self.garble}"]})
        return dataclasses.replace(completion, output=output)

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize("garble", ["\x00", "\ud800"], ids=["nul", "lone-surrogate"])
async def test_an_answer_postgres_cannot_store_fails_the_attempt_cleanly(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID, garble: str
) -> None:
    job_id = await create(store, funded_user, "Nice.", max_attempts=2)
    async with running_worker(settings, store, GarbledProvider(garble)):

        async def failed() -> bool:
            return (await job(db_url, job_id))["status"] == "failed"

        await wait_until(failed, what="the job to fail")
    row = await job(db_url, job_id)
    # Retried like any bad answer, then failed with a refund: never stored altered.
    assert row["attempts"] == 2 and row["result"] is None
    assert row["error"].startswith("the answer cannot be stored: it contains")
    attempts = await fetch_all(db_url, "select outcome from aijobs.job_attempts where job_id = %s", job_id)
    assert [a["outcome"] for a in attempts] == ["retry", "failed"]
    assert await balance_and_ledger(db_url, funded_user) == (1000, 1000)


@pytest.mark.parametrize("garble", ["\x00", "\ud800"], ids=["nul", "lone-surrogate"])
async def test_an_error_text_postgres_cannot_store_is_kept_with_a_replacement_character(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID, garble: str
) -> None:
    job_id = await create(store, funded_user, "Nice.", max_attempts=1)
    async with running_worker(settings, store, GarbledProvider(garble, in_error=True)):

        async def failed() -> bool:
            return (await job(db_url, job_id))["status"] == "failed"

        await wait_until(failed, what="the job to fail")
    assert (await job(db_url, job_id))["error"] == "upstream said \ufffd"


async def test_priority_then_fifo_within_a_worker(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    low = [await create(store, funded_user, f"low {i}", priority=0) for i in range(3)]
    high = [await create(store, funded_user, f"high {i}", priority=5) for i in range(3)]
    one_at_a_time = settings.model_copy(update={"worker_concurrency": 1})
    async with running_worker(one_at_a_time, store):

        async def all_done() -> bool:
            rows = await fetch_all(db_url, "select count(*) as n from aijobs.jobs where status = 'completed'")
            return rows[0]["n"] == 6

        await wait_until(all_done, what="six jobs completed")
    order = await fetch_all(db_url, "select job_id from aijobs.job_attempts order by lease_token")
    assert [r["job_id"] for r in order] == high + low


class FailsOnceCancelled:
    """Fails every call retryably (or rate limited) just after the job's user asked to
    cancel it: the cancel lands while the attempt is ending on its way back to pending. The
    flag is set without the cancel's NOTIFY, as if the worker had not heard of it yet (its
    heartbeat is too slow to ask in time)."""

    name = "scripted"
    model = "scripted-v1"

    def __init__(self, db_url: str, error: Exception) -> None:
        self.db_url = db_url
        self.error = error

    async def run(self, task: LLMTask[M]) -> Completion[M]:
        async with await psycopg.AsyncConnection.connect(self.db_url, autocommit=True) as conn:
            await conn.execute("update aijobs.jobs set cancel_requested = true where status = 'processing'")
        raise self.error

    async def aclose(self) -> None:
        return None


def sample(name: str, job_type: str) -> float:
    return metrics().registry.get_sample_value(name, {"type": job_type}) or 0.0


@pytest.mark.parametrize("outcome", ["retry", "rate_limited"])
async def test_an_attempt_ending_for_a_retry_under_a_cancel_is_logged_and_counted_as_cancelled(
    settings: Settings,
    store: Store,
    db_url: str,
    funded_user: uuid.UUID,
    caplog: pytest.LogCaptureFixture,
    outcome: str,
) -> None:
    """job_finish_many writes `cancelled` for such an attempt, not `pending`: the worker's
    log line and its metrics must say what was written, not what the attempt asked for."""
    error = {
        "retry": RetryableProviderError("upstream 503"),
        "rate_limited": RateLimitedError("upstream 429", retry_after=0.0),
    }[outcome]
    job_id = await create(store, funded_user, "Nice.")
    names = ("aijobs_jobs_cancelled_total", "aijobs_jobs_retried_total", "aijobs_jobs_handed_back_total")
    before = {n: sample(n, "sentiment_analysis") for n in [*names, "aijobs_credits_refunded_total"]}
    slow_beat = settings.model_copy(update={"heartbeat_seconds": 30.0, "lease_seconds": 120.0})
    with caplog.at_level(logging.DEBUG, logger="aijobs.worker"):
        async with running_worker(slow_beat, store, FailsOnceCancelled(db_url, error)):

            async def ended() -> bool:
                return (await job(db_url, job_id))["status"] != "processing" and any(
                    "status updated to" in r.getMessage() for r in caplog.records
                )

            await wait_until(ended, what="the attempt's end to be written")
    row = await job(db_url, job_id)
    assert row["status"] == "cancelled" and row["error"].startswith("cancelled while running")
    attempts = await fetch_all(db_url, "select outcome from aijobs.job_attempts where job_id = %s", job_id)
    assert [a["outcome"] for a in attempts] == [outcome]  # the attempt keeps its own ending
    assert await balance_and_ledger(db_url, funded_user) == (1000, 1000)

    lines = [r.getMessage() for r in caplog.records if str(job_id) in r.getMessage()]
    assert f"💾 Job {job_id} status updated to: cancelled" in lines, lines
    [said] = [line for line in lines if line.startswith("🛑")]
    assert "cancelled" in said and "upstream" in said and "refunded" in said, said
    written = [r for r in caplog.records if getattr(r, "status", None) is not None]
    assert {r.status for r in written} == {"cancelled"}  # type: ignore[attr-defined]

    after = {n: sample(n, "sentiment_analysis") for n in before}
    assert {n: after[n] - before[n] for n in before} == {
        "aijobs_jobs_cancelled_total": 1,
        "aijobs_jobs_retried_total": 0,
        "aijobs_jobs_handed_back_total": 0,
        "aijobs_credits_refunded_total": 1,
    }


async def test_a_job_is_one_info_line_and_its_steps_are_debug(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID, caplog: pytest.LogCaptureFixture
) -> None:
    """At INFO a worker logs one line per job (10,000 jobs, 10,000 lines, not 70,000); the
    steps (locked, payload, processing, the handler's own line, status written) are DEBUG."""
    ids = [await create(store, funded_user, f"Nice {i}.") for i in range(5)]
    with caplog.at_level(logging.DEBUG):
        async with running_worker(settings, store, OfflineProvider()):

            async def all_done() -> bool:
                return [(await job(db_url, i))["status"] for i in ids] == ["completed"] * len(ids)

            await wait_until(all_done, what="the jobs completed")
    for job_id in ids:
        about = [
            r
            for r in caplog.records
            if str(job_id) in r.getMessage() or getattr(r, "job_id", None) == str(job_id)
        ]
        info = [r.getMessage() for r in about if r.levelno >= logging.INFO]
        assert len(info) == 1 and info[0].startswith("✅"), info
        assert len([r for r in about if r.levelno == logging.DEBUG]) >= 4


async def test_a_worker_forgotten_by_retention_registers_again_at_its_next_beat(
    settings: Settings, store: Store, db_url: str
) -> None:
    """Retention forgets workers that have not beaten for a day (one cut off from the database
    that long, say): when it beats again it is back in the registry, as stats and the
    dashboard read it."""
    async with running_worker(settings, store, OfflineProvider()) as worker:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await conn.execute("delete from aijobs.workers where id = %s", (worker.id,))
        await worker.heartbeat.beat()
        [row] = await fetch_all(
            db_url, "select host, pid, concurrency from aijobs.workers where id = %s", worker.id
        )
        assert row["pid"] > 0 and row["concurrency"] == worker.concurrency
