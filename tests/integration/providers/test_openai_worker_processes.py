"""`aijobs worker` processes with OPENAI_API_KEY + OPENAI_BASE_URL: the factory picks the SDK
provider, and a 429 seen by one process holds back the other (state in PostgreSQL, not memory)."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

from aijobs.db.store import Store
from aijobs.providers.fake_openai import FakeOpenAI, Step
from tests.conftest import worker_env
from tests.integration.providers.helpers import attempts, create, held, wait_for_status
from tests.support.fake_openai_fixtures import TEST_KEY
from tests.support.workers import WorkerProcess, wait_until


async def test_two_worker_processes_share_a_rate_limit_hold(
    store: Store, db_url: str, funded_user: uuid.UUID, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    env = worker_env(
        db_url,
        LLM_PROVIDER="auto",
        OPENAI_API_KEY=TEST_KEY,
        OPENAI_BASE_URL=fake_openai.base_url,
        WORKER_CONCURRENCY="2",
    )
    hold = 2.0
    fake_openai.latency = 0.3  # each call takes a while, so both processes get a share
    fake_openai.script(Step.rate_limited(retry_after_ms=int(hold * 1000)))
    procs = [WorkerProcess(env, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        for p in procs:
            await p.wait_for_output("Using OpenAI provider")
        first = await create(store, funded_user, "sentiment_analysis")

        async def limited() -> bool:
            return any(r.status == 429 for r in fake_openai.requests)

        await wait_until(limited, what="the 429")
        limited_at = next(r.at for r in fake_openai.requests if r.status == 429)
        # Once the worker that met the 429 has recorded the hold, nobody calls until it ends.
        # (In the few ms before that, another worker may still call and meet a 429 itself.)
        await wait_until(lambda: held(db_url), what="the hold recorded")
        others = [await create(store, funded_user, "review_processing") for _ in range(4)]
        await wait_for_status(db_url, [first, *others], "completed")
    finally:
        for p in procs:
            p.send(signal.SIGTERM)
        codes = [await p.wait() for p in procs]
    assert codes == [0, 0]
    later = [r.at for r in fake_openai.requests if r.at > limited_at]
    assert len(later) == 5 and min(later) >= limited_at + hold - 0.05
    assert [a["outcome"] for a in await attempts(db_url, first)] == ["rate_limited", "completed"]
    workers = {a["worker_id"] for o in others for a in await attempts(db_url, o)}
    assert len(workers) == 2  # both processes worked, and both had waited
    for p in procs:
        assert TEST_KEY not in p.output() and "SECRET" not in p.output()
