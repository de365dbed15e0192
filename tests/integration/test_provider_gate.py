"""The worker's provider gate after a 429, against a real database."""

from __future__ import annotations

import uuid

import psycopg

from aijobs.config import Settings
from aijobs.db.store import Store
from aijobs.providers.base import RateLimitedError
from aijobs.providers.offline import OfflineProvider
from aijobs.queue.outcomes import from_error
from aijobs.queue.retry import RetryPolicy
from aijobs.worker.provider_gate import ProviderGate
from tests.support.jobs import create_job
from tests.support.workers import job


async def test_a_429_that_says_retry_now_still_backs_off_and_spends_the_wait_budget(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    """Retry-After: 0 on every call. A rate limit gives its attempt back, so only the job's
    total wait can end this; the job's own backoff makes that total grow."""
    policy = RetryPolicy(base_seconds=1.0, max_seconds=8.0)
    tuned = settings.model_copy(
        update={"retry_base_seconds": 1.0, "retry_max_seconds": 8.0, "rate_limit_max_wait_seconds": 20.0}
    )
    gate = ProviderGate(store, tuned, OfflineProvider())  # its policy: from the settings
    async with store.session() as s:
        created = await create_job(
            s, user_id=funded_user, type="sentiment_analysis", payload={"text": "x"}, max_attempts=2
        )
    waits: list[float] = []
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as clock:
        for _ in range(20):
            async with store.session() as s:
                [claimed] = await s.jobs.claim("w1", 1, lease_seconds=30)
            finish = from_error(claimed, RateLimitedError("429", retry_after=0.0), policy)
            finish = await gate.settle(claimed, finish)
            async with store.session() as s:
                assert await s.jobs.finish([finish], "w1") == {
                    (created.id, claimed.lease_token): finish.status
                }
                # The backoff is the job's own: the provider is not held for everyone.
                assert await s.providers.hold_seconds("offline") == 0.0
            if finish.status != "pending":
                break
            assert finish.retry_in is not None
            waits.append(finish.retry_in)
            # The wait passes at once: the test does not sleep through it.
            await clock.execute("update aijobs.jobs set run_at = now() where id = %s", (created.id,))
    row = await job(db_url, created.id)
    assert row["status"] == "failed" and "RATE_LIMIT_MAX_WAIT_SECONDS" in row["error"]
    assert row["attempts"] == 1 and row["rate_limited_seconds"] > 20
    # Each wait at least the policy's backoff for that many rate limits (jitter goes down).
    assert all(w >= policy.ceiling(n) * (1 - policy.jitter) for n, w in enumerate(waits, 1)), waits
    assert len(waits) <= 8
