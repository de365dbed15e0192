"""What a paying user gets when the OpenAI API misbehaves: retries, holds, clear failures, refunds."""

from __future__ import annotations

import time
import uuid

from aijobs.config import Settings
from aijobs.db.store import Store
from aijobs.providers.fake_openai import FakeOpenAI, Step
from tests.integration.providers.helpers import (
    attempts,
    create,
    held,
    ledger,
    openai_workers,
    wait_for_status,
)
from tests.support.fake_openai_fixtures import answered, openai_settings_for
from tests.support.workers import fetch_one, job, wait_until


async def test_429_reschedules_without_burning_an_attempt_and_every_worker_waits(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID, fake_openai: FakeOpenAI
) -> None:
    cfg = openai_settings_for(settings, fake_openai)
    hold = 1.5
    fake_openai.script(Step.rate_limited(retry_after_ms=int(hold * 1000)))
    first = await create(store, funded_user, "sentiment_analysis")
    async with openai_workers(cfg, store, n=3):

        async def limited() -> bool:
            return any(r.status == 429 for r in fake_openai.requests)

        await wait_until(limited, what="the 429")
        limited_at = next(r.at for r in fake_openai.requests if r.status == 429)
        # Once the worker that met the 429 has recorded the hold, nobody calls until it ends.
        # (In the few ms before that, another worker may still call and meet a 429 itself.)
        await wait_until(lambda: held(db_url), what="the hold recorded")
        # More work arrives during the hold: no worker may call the provider for it.
        others = [await create(store, funded_user, "sentiment_analysis") for _ in range(6)]
        await wait_for_status(db_url, [first, *others], "completed")

    after = [r for r in fake_openai.requests if r.at > limited_at]
    assert len(after) == 7
    assert min(r.at for r in after) >= limited_at + hold - 0.05, "a worker called during the hold"
    row = await job(db_url, first)
    assert row["attempts"] == 1  # the rate-limited attempt was given back
    assert 1.0 <= row["rate_limited_seconds"] <= hold + 1.0
    outcomes = [a["outcome"] for a in await attempts(db_url, first)]
    assert outcomes == ["rate_limited", "completed"]
    limits = await fetch_one(db_url, "select * from aijobs.provider_limits where provider = 'openai'")
    assert limits["holds"] >= 1 and "429" in limits["hold_reason"]


async def test_500_twice_then_success(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(Step.error(500), Step.error(503))
    job_id = await create(store, funded_user, "review_processing")
    async with openai_workers(openai_settings_for(settings, fake_openai), store):
        await wait_for_status(db_url, [job_id], "completed")
    row = await job(db_url, job_id)
    assert row["attempts"] == 3
    tries = await attempts(db_url, job_id)
    assert [a["outcome"] for a in tries] == ["retry", "retry", "completed"]
    assert tries[0]["error"].startswith("OpenAI API error: 500 Internal Server Error (server_error)")
    assert tries[1]["error"].startswith("OpenAI API error: 503 Service Unavailable")
    assert all(a["request_id"] for a in tries)  # usage recorded on failed attempts too
    assert await ledger(db_url, job_id) == [{"kind": "debit", "amount": -3}]


async def test_a_hung_call_times_out_and_is_retried(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(Step.hanging())
    cfg = openai_settings_for(settings, fake_openai, openai_timeout_seconds=0.5)
    job_id = await create(store, funded_user, "sentiment_analysis")
    started = time.monotonic()
    async with openai_workers(cfg, store):
        await wait_for_status(db_url, [job_id], "completed")
    assert time.monotonic() - started < 10
    tries = await attempts(db_url, job_id)
    assert [a["outcome"] for a in tries] == ["retry", "completed"]
    assert tries[0]["error"] == "OpenAI request timed out after 0.5s"


async def test_an_incomplete_answer_is_retried_not_stored(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(Step.truncated())
    job_id = await create(store, funded_user, "prompt_analysis")
    async with openai_workers(openai_settings_for(settings, fake_openai), store):
        await wait_for_status(db_url, [job_id], "completed")
    tries = await attempts(db_url, job_id)
    assert [a["outcome"] for a in tries] == ["retry", "completed"]
    assert tries[0]["error"] == "OpenAI answer incomplete (max_output_tokens)"
    assert (await job(db_url, job_id))["result"]["output"]["improved_prompt"]


async def test_rate_limit_wait_is_bounded(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(Step.rate_limited(600), Step.rate_limited(600), Step.rate_limited(600))
    cfg = openai_settings_for(settings, fake_openai, rate_limit_max_wait_seconds=1.0)
    job_id = await create(store, funded_user, "sentiment_analysis")
    async with openai_workers(cfg, store):
        await wait_for_status(db_url, [job_id], "failed")
    row = await job(db_url, job_id)
    assert "RATE_LIMIT_MAX_WAIT_SECONDS" in row["error"] and "429" in row["error"]
    assert [a["outcome"] for a in await attempts(db_url, job_id)] == ["rate_limited", "failed"]
    assert [r["kind"] for r in await ledger(db_url, job_id)] == ["debit", "refund"]
    assert len(answered(fake_openai)) == 0
