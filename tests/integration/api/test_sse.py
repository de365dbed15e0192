"""SSE: each status transition of a job processed by a real worker (in-process, same database)."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from aijobs.providers.offline import OfflineProvider
from aijobs.worker.runner import Worker
from tests.support.providers import ScriptedProvider
from tests.support.sse import sse_events


async def follow_while_worker_runs(api, user, settings, store, body, provider) -> list[dict]:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        job = (await client.post("/api/jobs", json=body, headers=api.auth(user))).json()
        events: list[dict] = []
        worker = Worker(settings, store, provider, settings.database_url)
        task: asyncio.Task[None] | None = None
        try:
            async with client.stream(
                "GET", f"/api/jobs/{job['id']}/events", headers=api.auth(user)
            ) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                async with asyncio.timeout(20):
                    async for event in sse_events(response.aiter_lines()):
                        events.append(event)
                        if task is None:  # the stream is live: now let the worker start
                            task = asyncio.create_task(worker.run())
        finally:
            worker.request_stop()
            if task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 15)
    assert all(e["event"] == "status" and e["data"]["job_id"] == job["id"] for e in events)
    return events


async def test_sse_streams_pending_processing_completed(api, funded_user, settings, store) -> None:
    body = {"type": "sentiment_analysis", "payload": {"text": "Lovely staff, quick service."}}
    events = await follow_while_worker_runs(api, funded_user, settings, store, body, OfflineProvider())
    assert [e["data"]["status"] for e in events] == ["pending", "processing", "completed"]
    # No ids on status events: a client's Last-Event-ID stays on the last piece of a reply.
    assert [e["id"] for e in events] == [None, None, None]
    final = events[-1]["data"]["job"]
    assert final["status"] == "completed" and final["result"]["provider"] == "offline"


async def test_sse_shows_a_retry_as_its_own_transitions(api, funded_user, settings, store) -> None:
    body = {"type": "sentiment_analysis", "payload": {"text": "flaky:1"}}
    events = await follow_while_worker_runs(api, funded_user, settings, store, body, ScriptedProvider())
    assert [e["data"]["status"] for e in events] == [
        "pending",
        "processing",
        "pending",
        "processing",
        "completed",
    ]
    assert events[-1]["data"]["job"]["attempts"] == 2


@pytest.mark.parametrize("final", ["cancelled"])
async def test_sse_ends_at_once_for_a_finished_job(api, client, funded_user, final) -> None:
    body = {"type": "sentiment_analysis", "payload": {"text": "ok"}}
    job = (await client.post("/api/jobs", json=body, headers=api.auth(funded_user))).json()
    await client.post(f"/api/jobs/{job['id']}/cancel", headers=api.auth(funded_user))
    async with client.stream(
        "GET", f"/api/jobs/{job['id']}/events", headers=api.auth(funded_user)
    ) as response:
        events = [e async for e in sse_events(response.aiter_lines())]
    assert [e["data"]["status"] for e in events] == [final]
