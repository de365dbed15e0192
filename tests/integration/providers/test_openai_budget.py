"""A shared OPENAI_RPM budget holds across workers: counted at the server, never exceeded."""

from __future__ import annotations

import uuid

from aijobs.config import Settings
from aijobs.db.store import Store
from aijobs.providers.fake_openai import FakeOpenAI
from tests.integration.providers.helpers import create, openai_workers, wait_for_status
from tests.support.fake_openai_fixtures import openai_settings_for
from tests.support.workers import fetch_one


def max_in_any_window(times: list[float], window: float) -> int:
    """The most requests seen in any sliding window of `window` seconds."""
    times = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_rpm_budget_is_never_exceeded_by_three_workers(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID, fake_openai: FakeOpenAI
) -> None:
    rpm, window, jobs = 4, 1.5, 14
    cfg = openai_settings_for(
        settings, fake_openai, openai_rpm=rpm, rate_limit_window_seconds=window, worker_concurrency=4
    )
    ids = [
        await create(store, funded_user, "sentiment_analysis", {"text": f"review {i}"}) for i in range(jobs)
    ]
    async with openai_workers(cfg, store, n=3) as workers:
        await wait_for_status(db_url, ids, "completed", timeout=60)
        assert len({w.id for w in workers}) == 3

    times = [r.at for r in fake_openai.requests]
    assert len(times) == jobs  # one call per job: the budget spent no call on a 429
    # Counted where it matters, at the server, over the full window (less 10 ms for reading
    # two clocks): a call holds its budget slot until one window after it ended.
    assert max_in_any_window(times, window - 0.01) <= rpm
    # ...and the budget was really the limit: the run needed several windows.
    assert max(times) - min(times) >= window * (jobs // rpm - 1) - 0.1
    row = await fetch_one(
        db_url, "select count(distinct worker_id) as n from aijobs.job_attempts where outcome = 'completed'"
    )
    assert row["n"] >= 2  # the workers shared the work, and the budget


def test_window_counter() -> None:
    assert max_in_any_window([0, 0.5, 1.0, 1.49, 1.5, 3.0], 1.5) == 4
    assert max_in_any_window([], 1.0) == 0
