"""The shared budget and hold queries on their own, against a real database."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from aijobs.config import PG_INT_MAX, ConfigError, load_settings
from aijobs.db.provider_rows import ProviderState
from aijobs.db.store import Store
from aijobs.providers.retry_after import MAX_WAIT_SECONDS


async def test_rpm_reservations_are_exact_under_concurrency(store: Store) -> None:
    async def reserve() -> bool:
        async with store.session() as s:
            slot = await s.providers.budget_reserve(
                provider="p", rpm=5, tpm=None, tokens=1, window_seconds=30
            )
        return slot.ok

    results = await asyncio.gather(*(reserve() for _ in range(20)))
    assert sum(results) == 5
    async with store.session() as s:
        refused = await s.providers.budget_reserve(provider="p", rpm=5, tpm=None, tokens=1, window_seconds=30)
    assert not refused.ok and refused.call_id is None and 29 < refused.wait_seconds <= 30


async def test_tpm_counts_tokens_and_settles_to_actual_use(store: Store) -> None:
    async with store.session() as s:
        first = await s.providers.budget_reserve(
            provider="t", rpm=None, tpm=1000, tokens=900, window_seconds=30
        )
        assert first.ok and first.call_id is not None
        assert not (
            await s.providers.budget_reserve(provider="t", rpm=None, tpm=1000, tokens=200, window_seconds=30)
        ).ok
        await s.providers.budget_settle(first.call_id, 300)  # the call used less than estimated
        assert (
            await s.providers.budget_reserve(provider="t", rpm=None, tpm=1000, tokens=200, window_seconds=30)
        ).ok
        # A call bigger than the whole budget still runs once the window is empty.
        big = await s.providers.budget_reserve(
            provider="u", rpm=None, tpm=100, tokens=5000, window_seconds=30
        )
        assert big.ok


async def test_window_slides(store: Store) -> None:
    async with store.session() as s:
        assert (
            await s.providers.budget_reserve(provider="w", rpm=1, tpm=None, tokens=0, window_seconds=0.3)
        ).ok
        assert not (
            await s.providers.budget_reserve(provider="w", rpm=1, tpm=None, tokens=0, window_seconds=0.3)
        ).ok
    await asyncio.sleep(0.35)
    async with store.session() as s:
        assert (
            await s.providers.budget_reserve(provider="w", rpm=1, tpm=None, tokens=0, window_seconds=0.3)
        ).ok


async def test_a_hold_is_never_shortened(store: Store) -> None:
    async with store.session() as s:
        assert await s.providers.hold_seconds("openai") == 0.0
        job = uuid.uuid4()
        long = await s.providers.rate_limited(
            provider="openai", job_id=job, lease_token=0, retry_after=20, reason="429 a"
        )
        short = await s.providers.rate_limited(
            provider="openai", job_id=job, lease_token=0, retry_after=1, reason="429 b"
        )
        assert 19 < long.hold_seconds <= 20 and 19 < short.hold_seconds <= 20
        assert long.total_wait_seconds is None  # no lease: the job's total is fenced
        assert 19 < await s.providers.hold_seconds("openai") <= 20
        limits = await s.providers.limits("openai")
        assert limits is not None and limits["holds"] == 2


async def test_the_largest_settings_and_waits_fit_the_sql(store: Store) -> None:
    """OPENAI_RPM / OPENAI_TPM go to `integer` parameters, and a 429's wait (cut to
    MAX_WAIT_SECONDS) becomes now() + an interval: what config and retry_after let through fits."""
    async with store.session() as s:
        slot = await s.providers.budget_reserve(
            provider="big", rpm=PG_INT_MAX, tpm=PG_INT_MAX, tokens=1, window_seconds=1
        )
        assert slot.ok
        hold = await s.providers.rate_limited(
            provider="big", job_id=uuid.uuid4(), lease_token=0, retry_after=MAX_WAIT_SECONDS, reason="429"
        )
        assert MAX_WAIT_SECONDS - 5 < hold.hold_seconds <= MAX_WAIT_SECONDS
    with pytest.raises(psycopg.errors.NumericValueOutOfRange):  # why the settings are bounded
        async with store.session() as s:
            await s.providers.budget_reserve(
                provider="big", rpm=PG_INT_MAX + 1, tpm=None, tokens=1, window_seconds=1
            )
    for name, value in [("openai_rpm", PG_INT_MAX), ("openai_tpm", PG_INT_MAX)]:
        assert getattr(load_settings(_env_file=None, **{name: value}), name) == value
        with pytest.raises(ConfigError, match=name.upper()):
            load_settings(_env_file=None, **{name: value + 1})


async def test_a_pause_is_started_once_probed_by_one_caller_at_a_time_and_lifted(store: Store) -> None:
    async with store.session() as s:
        assert await s.providers.pause(provider="openai", reason="401 first", probe_seconds=0) is True
        # Another worker meeting the same fault updates the reason, not the start or probe turn.
        assert await s.providers.pause(provider="openai", reason="401 again", probe_seconds=60) is False
        assert (await s.providers.state("openai")).paused_reason == "401 again"

    async def claim() -> str | None:
        async with store.session() as s:
            return await s.providers.probe_claim(provider="openai", probe_seconds=60)

    claims = await asyncio.gather(*(claim() for _ in range(10)))
    assert claims.count("401 again") == 1 and claims.count(None) == 9
    async with store.session() as s:
        [pause] = await s.providers.pauses()
        assert (pause.provider, pause.paused_reason) == ("openai", "401 again")
        lasted = await s.providers.resume("openai")
        assert lasted is not None and lasted >= 0
        assert await s.providers.resume("openai") is None  # lifted once
        assert await s.providers.pauses() == []
        assert await s.providers.probe_claim(provider="openai", probe_seconds=60) is None
        assert await s.providers.state("openai") == ProviderState(0.0, None)
