"""The API's /metrics: a token when METRICS_TOKEN is set, HTTP request metrics by route
template and status class, and queue-depth samples frequent enough to see a short burst."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from aijobs.config import Settings
from aijobs.db.store import Store
from aijobs.monitoring.http import serve_metrics
from aijobs.monitoring.maintenance import for_worker
from aijobs.monitoring.metrics import Metrics
from aijobs.queue.enqueue import JobSpec, enqueue_many
from tests.integration.api.conftest import StartApi
from tests.support.workers import fetch_one, wait_until

METRICS_TOKEN = "a-metrics-token-of-at-least-32-bytes"


async def test_metrics_token_is_required_when_set(start_api: StartApi) -> None:
    api = start_api(metrics_token=SecretStr(METRICS_TOKEN))
    async with httpx.AsyncClient(base_url=api.url) as http:
        assert (await http.get("/metrics")).status_code == 401
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401 and wrong.headers["content-type"] == "application/problem+json"
        ok = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert ok.status_code == 200 and "aijobs_jobs_created" in ok.text


async def test_http_requests_are_counted_by_route_template_and_status_class(
    start_api: StartApi, funded_user: uuid.UUID
) -> None:
    api = start_api()
    job_id = uuid.uuid4()
    async with httpx.AsyncClient(base_url=api.url) as http:
        assert (await http.get(f"/api/jobs/{job_id}", headers=api.auth(funded_user))).status_code == 404
        assert (await http.get("/api/me", headers=api.auth(funded_user))).status_code == 200
        assert (await http.get(f"/no/such/{job_id}")).status_code == 404
        text = (await http.get("/metrics")).text
    assert str(job_id) not in text and str(funded_user) not in text
    counts = {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "aijobs_http_request_duration_seconds"
        for s in family.samples
        if s.name.endswith("_count")
    }
    assert counts[("GET", "/api/jobs/{job_id}", "4xx")] >= 1
    assert counts[("GET", "/api/me", "2xx")] >= 1
    assert counts[("GET", "unmatched", "4xx")] >= 1


async def test_queue_depth_is_sampled_often_enough_to_see_a_burst(
    settings: Settings, store: Store, db_url: str
) -> None:
    """Between its 10 s ticks the maintenance leader samples the queue every
    QUEUE_SAMPLE_SECONDS: a burst created after a tick is in the samples long before the next."""
    tuned = settings.model_copy(update={"maintenance_interval_seconds": 60.0, "queue_sample_seconds": 0.2})
    maintenance = for_worker(store, "burst-test", Metrics(), tuned)
    stop = asyncio.Event()
    task = asyncio.create_task(maintenance.run(stop))
    try:
        await wait_until(lambda: _is_leader(maintenance), what="leadership")
        user = uuid.uuid4()
        async with store.session() as session:
            await session.accounts.grant_credits(user, 300, "burst")
            await enqueue_many(
                session, user_id=user, jobs=[JobSpec("sentiment_analysis", {"text": "x"})] * 300
            )

        async def burst_sampled() -> bool:
            row = await fetch_one(db_url, "select coalesce(max(pending), 0) as n from aijobs.queue_samples")
            return int(row["n"]) >= 300

        await wait_until(burst_sampled, timeout=10, what="a sample of the burst")
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=10)


async def _is_leader(maintenance: object) -> bool:
    return bool(getattr(maintenance, "is_leader", False))


def test_the_workers_metrics_port_takes_the_same_token() -> None:
    port = serve_metrics(0, Metrics(), host="127.0.0.1", token=METRICS_TOKEN)
    url = f"http://127.0.0.1:{port}/metrics"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = httpx.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert ok.status_code == 200 and "aijobs_jobs_created" in ok.text
    open_port = serve_metrics(0, Metrics(), host="127.0.0.1")
    assert httpx.get(f"http://127.0.0.1:{open_port}/metrics").status_code == 200
