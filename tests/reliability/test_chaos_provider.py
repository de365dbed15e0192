"""Scenario 8: the provider is down — every call answered 500, or 429, or never answered —
for a bounded time. Jobs wait (rate limits hold them without spending attempts) or fail
as designed (refunded), credits stay consistent, and the fake server counts the requests:
an outage must not turn into a hot retry loop.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.reliability.chaos import (
    Fleet,
    OutageFake,
    Row,
    bulk_create,
    chaos_summary,  # noqa: F401  (prints and writes the summary table)
    finish_scenario,
    openai_env,
    terminal,
)
from tests.support.workers import status_counts, wait_until

pytestmark = pytest.mark.slow

MAX_ATTEMPTS = 6


async def outage(db_url: str, tmp_path: Path, *, mode: str, seconds: float, jobs: int, label: str) -> None:
    await bulk_create(db_url, uuid.uuid4(), jobs, max_attempts=MAX_ATTEMPTS)
    with OutageFake(latency_ms=20) as fake:
        fake.mode = mode
        env = openai_env(
            db_url,
            fake,
            LOG_LEVEL="WARNING",
            WORKER_CONCURRENCY="5",
            RETRY_BASE_SECONDS="0.5",
            RETRY_MAX_SECONDS="4",
            OPENAI_TIMEOUT_SECONDS="1",
        )
        crew = Fleet(env, tmp_path)
        crew.start(2)
        try:
            start = time.monotonic()
            # The outage lasts `seconds` (a fault schedule, not a wait for an event) ...
            await wait_until(
                lambda: _after(start + seconds), timeout=seconds + 5, interval=0.2, what="outage"
            )
            during = len(fake.requests)
            fake.mode = None
            # ... then every job must end: completed, or failed with its refund.
            await wait_until(
                lambda: _all_terminal(db_url, jobs), timeout=120, interval=0.2, what="jobs settle"
            )
            settled = time.monotonic() - start - seconds
        finally:
            codes = await crew.stop()
        total = len(fake.requests)
    assert codes == [0, 0], codes
    counts = await status_counts(db_url)
    # No hot loop: during the outage each job made at most its attempt budget of calls, and
    # a rate limit (held for every worker at once) far fewer.
    budget = jobs * MAX_ATTEMPTS
    assert during <= budget, f"{during} requests during the outage for {jobs} jobs"
    if mode == "429":
        assert counts.get("failed", 0) == 0, "a rate limit makes jobs wait, not fail"
        # The hold is shared, so the fleet calls at most once per free slot per retry-after
        # window (2 workers x 5 slots per 1 s), never in a tight loop.
        per_second = during / seconds
        assert per_second <= 2 * 5 * 1.5, f"{per_second:.1f} requests/s under a 1 s retry-after"
    assert total <= budget + jobs
    await finish_scenario(
        db_url,
        Row(
            label,
            f"all {mode} for {seconds:g} s",
            jobs,
            0,
            0,
            f"settled {settled:.1f} s after the outage",
            f"{during} requests during the outage ({during / seconds:.1f}/s), {total} in all for {jobs} jobs"
            f" (budget {budget}); final {counts}",
        ),
    )


async def _after(t: float) -> bool:
    return time.monotonic() >= t


async def _all_terminal(db_url: str, n: int) -> bool:
    return await terminal(db_url) >= n


@pytest.mark.parametrize("mode", ["500", "429", "hang"])
async def test_provider_outage_short(db_url: str, tmp_path: Path, mode: str) -> None:
    await outage(db_url, tmp_path, mode=mode, seconds=4, jobs=20, label=f"8 provider {mode} (fast)")


@pytest.mark.chaos
@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", ["500", "429", "hang"])
async def test_provider_outage_for_a_minute(db_url: str, tmp_path: Path, mode: str) -> None:
    await outage(db_url, tmp_path, mode=mode, seconds=60, jobs=100, label=f"8 provider {mode} 60 s")
