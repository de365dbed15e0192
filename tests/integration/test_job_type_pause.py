"""Pausing a job type: a running worker leaves its pending jobs alone (kept, charged, no attempt
spent) while it runs other types, creations of it are still accepted, and a resume wakes the
worker at once to run them."""

from __future__ import annotations

import uuid

from aijobs.config import Settings
from aijobs.db.store import Store
from tests.integration.test_cli_errors import aijobs, refused
from tests.integration.test_worker import balance_and_ledger, create
from tests.support.workers import fetch_all, job, running_worker, wait_until


async def test_a_paused_types_jobs_wait_and_run_after_resume(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    # A poll a minute apart: only the resume's NOTIFY can start the waiting jobs in time.
    slow_poll = settings.model_copy(update={"polling_interval": 60_000})
    async with store.session() as s:
        state = await s.job_types.switch("sentiment_analysis", paused=True)
    assert state == {
        "name": "sentiment_analysis",
        "enabled": True,
        "paused": True,
        "max_running_per_tenant": None,
    }

    async with running_worker(slow_poll, store):
        # Created while paused (accepted and charged), and ahead of the other type's job in
        # the fair-share order: the claim must pass over them, not stop at them.
        waiting = [await create(store, funded_user, f"kept {i}") for i in range(3)]
        other = await create(store, funded_user, "Write a haiku", job_type="prompt_analysis")

        async def other_done() -> bool:
            return (await job(db_url, other))["status"] == "completed"

        await wait_until(other_done, what="the other type's job to run")
        for job_id in waiting:
            row = await job(db_url, job_id)
            assert (row["status"], row["attempts"], row["lease_owner"]) == ("pending", 0, None)
        attempts = await fetch_all(
            db_url, "select 1 from aijobs.job_attempts where job_id = any(%s)", waiting
        )
        assert attempts == []
        # Charged and not refunded: a pause loses nothing and gives nothing back.
        assert await balance_and_ledger(db_url, funded_user) == (1000 - 3 * 1 - 2, 1000 - 5)

        async with store.session() as s:
            state = await s.job_types.switch("sentiment_analysis", paused=False)
        assert state is not None and state["paused"] is False

        async def all_done() -> bool:
            return [(await job(db_url, i))["status"] for i in waiting] == ["completed"] * 3

        await wait_until(all_done, timeout=15, what="the paused jobs to run after the resume")
    assert await balance_and_ledger(db_url, funded_user) == (1000 - 5, 1000 - 5)


async def test_switching_an_unknown_type_finds_nothing(store: Store) -> None:
    async with store.session() as s:
        assert await s.job_types.switch("no_such_type", paused=True) is None


def test_the_cli_pauses_and_resumes_a_type(db_url: str) -> None:
    paused = aijobs(db_url, "types-pause", "sentiment_analysis")
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.strip() == "sentiment_analysis: enabled, paused, no limit per tenant"
    resumed = aijobs(db_url, "types-resume", "sentiment_analysis")
    assert resumed.stdout.strip() == "sentiment_analysis: enabled, not paused, no limit per tenant"
    refused(aijobs(db_url, "types-pause", "no_such_type"), 1, "no job type 'no_such_type'")
    limited = aijobs(db_url, "types-limit", "sentiment_analysis", "--max-running-per-tenant", "2")
    assert limited.stdout.strip() == "sentiment_analysis: enabled, not paused, at most 2 running per tenant"
    unlimited = aijobs(db_url, "types-limit", "sentiment_analysis", "--max-running-per-tenant", "0")
    assert unlimited.stdout.strip().endswith("no limit per tenant")
    refused(
        aijobs(db_url, "types-limit", "sentiment_analysis", "--max-running-per-tenant", "-1"),
        2,
        "--max-running-per-tenant",
    )
