"""A run of known jobs through a real worker process: stats and /metrics tell the same story.

Ten jobs with scripted outcomes (six plain, two that always fail, two flaky) give known
counts: 8 completed, 2 failed, 5 retries, 15 claims. `aijobs stats` figures (the shared
`collect`) and the worker's Prometheus counters must both report them; the seed's own
status query must agree with the windowed counts.
"""

from __future__ import annotations

import asyncio
import signal
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aijobs.db.store import Store
from aijobs.monitoring.stats import collect
from tests.conftest import worker_env
from tests.support.jobs import create_job
from tests.support.net import free_port
from tests.support.workers import WorkerProcess, fetch_one, status_counts, wait_until

pytestmark = pytest.mark.slow

ALLOWED_LABELS = {"type", "status", "outcome", "provider", "model", "kind", "le", "quantile"}


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{sample name: {sorted labels: value}} from a /metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as res:
        text = res.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def total(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    return sum(
        value for key, value in samples.get(name, {}).items() if all((k, v) in key for k, v in labels.items())
    )


async def make_jobs(store: Store, user: uuid.UUID) -> None:
    script = [("sleep:0.3", 4)] * 6 + [("fail", 2)] * 2 + [("flaky:1", 3), ("flaky:2", 3)]
    async with store.session() as s:
        for text, max_attempts in script:
            await create_job(
                s, user_id=user, type="sentiment_analysis", payload={"text": text}, max_attempts=max_attempts
            )


async def test_stats_and_metrics_agree_with_a_known_run(
    db_url: str, store: Store, funded_user: uuid.UUID, tmp_path: Path
) -> None:
    await make_jobs(store, funded_user)
    port = free_port()
    env = worker_env(db_url, MAINTENANCE_INTERVAL_SECONDS="0.3", WORKER_CONCURRENCY="4")
    worker = WorkerProcess(env, tmp_path / "worker.log", "--metrics-port", str(port))
    try:

        async def finished() -> bool:
            counts = await status_counts(db_url)
            return counts.get("completed", 0) + counts.get("failed", 0) == 10

        await wait_until(finished, timeout=60, interval=0.1, what="ten jobs finished")
        await asyncio.sleep(1.0)  # one more maintenance tick refreshes the queue gauges
        samples = scrape(port)
        async with store.session() as s:
            stats = await collect(s, dead_after_seconds=3.0, include_summary=True)
    finally:
        worker.send(signal.SIGTERM)
        assert await worker.wait() == 0, worker.output()

    # Stats: the windowed counts, retries, error rate, latencies.
    hour = stats.window(60)
    assert (hour.completed, hour.failed, hour.cancelled) == (8, 2, 0)
    assert hour.retries == 5
    assert hour.attempts == 15
    assert hour.completed_after_retry == 2
    assert hour.error_rate == pytest.approx(0.2)
    assert hour.p50 is not None and 0.3 <= hour.p50 < 1.5, hour
    assert hour.p95 is not None and hour.p50 <= hour.p95 < 3.0, hour
    assert stats.window(1).completed <= hour.completed
    # The seed's all-time query gives the same numbers.
    seed = {row["status"]: row["count"] for row in stats.status_summary}
    assert seed == {"completed": 8, "failed": 2}
    # Provider calls: one per successful attempt, with latency and tokens.
    calls = [p for p in stats.providers if p.minutes == 60]
    assert sum(p.calls for p in calls) == 8
    # The worker registered, held jobs, and is listed.
    assert any(w["state"] == "alive" for w in stats.workers)
    attempts = await fetch_one(db_url, "select count(distinct worker_id) as n from aijobs.job_attempts")
    assert attempts["n"] == 1

    # Prometheus: the same counts from the worker's own counters.
    t = {"type": "sentiment_analysis"}
    assert total(samples, "aijobs_jobs_claimed_total", **t) == 15
    assert total(samples, "aijobs_jobs_completed_total", **t) == 8
    assert total(samples, "aijobs_jobs_failed_total", **t) == 2
    assert total(samples, "aijobs_jobs_retried_total", **t) == 5
    assert total(samples, "aijobs_job_processing_seconds_count", **t) == 15
    assert total(samples, "aijobs_credits_refunded_total", **t) == 2
    assert total(samples, "aijobs_provider_request_seconds_count") == 8
    assert total(samples, "aijobs_maintenance_leader") == 1
    assert "aijobs_queue_depth" in samples or total(samples, "aijobs_queue_oldest_pending_age_seconds") == 0
    assert total(samples, "aijobs_queue_oldest_pending_age_seconds") == 0
    # Completed attempts' processing time matches the database's view within tolerance.
    done_sum = total(
        samples, "aijobs_job_processing_seconds_sum", type="sentiment_analysis", outcome="completed"
    )
    assert done_sum >= 6 * 0.3
    # No high-cardinality labels: bounded label names, no ids in values.
    for name, series in samples.items():
        for key in series:
            for label, value in key:
                assert label in ALLOWED_LABELS, (name, label)
                with pytest.raises(ValueError):
                    uuid.UUID(value)
