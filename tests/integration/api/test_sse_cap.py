"""The per-user cap on open SSE streams (MAX_STREAMS_PER_USER), over real HTTP.

One stream over the cap is a 429 problem; every way a stream ends gives its slot back: the
client closing it, the job finishing, a refusal before streaming (404). A long poll counts
as a stream, and gives its slot back when it answers or when its client leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx

from tests.support.api_server import ApiServer
from tests.support.sse import sse_events

SENTIMENT = {"type": "sentiment_analysis", "payload": {"text": "Lovely staff, quick service."}}


async def pending_job(client: httpx.AsyncClient, api: ApiServer, user: uuid.UUID) -> str:
    """A job nobody runs (no worker here): its stream stays open until the client leaves."""
    created = await client.post("/api/jobs", json=SENTIMENT, headers=api.auth(user))
    assert created.status_code == 201, created.text
    job_id: str = created.json()["id"]
    return job_id


@asynccontextmanager
async def live_stream(
    client: httpx.AsyncClient, api: ApiServer, user: uuid.UUID, job_id: str
) -> AsyncIterator[httpx.Response]:
    """An accepted stream, open (its first event read) until the context exits and closes it."""
    async with client.stream("GET", f"/api/jobs/{job_id}/events", headers=api.auth(user)) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        # Held while the stream is open: a partly read iterator that is garbage-collected
        # closes the response (httpcore closes its connection on GeneratorExit).
        events = sse_events(response.aiter_lines())
        first = await anext(events)
        assert first["data"]["status"] == "pending"
        yield response


def open_streams(api: ApiServer, user: uuid.UUID) -> int:
    assert api.app is not None
    count: int = api.app.state.aijobs.streams.open_streams(user)
    return count


async def until_released(api: ApiServer, user: uuid.UUID, expected: int = 0) -> None:
    """The server sees a client leave asynchronously: wait (bounded) for its count to drop."""
    deadline = time.monotonic() + 10
    while open_streams(api, user) != expected:
        assert time.monotonic() < deadline, f"{open_streams(api, user)} streams still counted, not {expected}"
        await asyncio.sleep(0.02)


async def test_a_stream_over_the_cap_is_a_429_and_a_closed_one_frees_its_slot(
    start_api, funded_user, other_user
) -> None:
    api = start_api(max_streams_per_user=2)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        job_id = await pending_job(client, api, funded_user)
        async with AsyncExitStack() as first, AsyncExitStack() as second:
            await first.enter_async_context(live_stream(client, api, funded_user, job_id))
            await second.enter_async_context(live_stream(client, api, funded_user, job_id))

            events_url = f"/api/jobs/{job_id}/events"
            async with client.stream("GET", events_url, headers=api.auth(funded_user)) as refused:
                assert refused.status_code == 429  # not a third stream left open
                await refused.aread()
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert int(refused.headers["Retry-After"]) > 0
            problem = refused.json()
            assert problem["status"] == 429
            assert problem["code"] == "too_many_streams"
            assert problem["limit"] == 2 and problem["open_streams"] == 2
            assert "MAX_STREAMS_PER_USER" in problem["detail"]
            assert problem["instance"] == events_url
            assert open_streams(api, funded_user) == 2, "a refused stream takes no slot"

            # The cap is per user: another user's stream is not counted against this one's.
            theirs = await pending_job(client, api, other_user)
            async with live_stream(client, api, other_user, theirs):
                assert open_streams(api, other_user) == 1
            await until_released(api, other_user)

            await first.aclose()  # the client goes away: its slot is given back
            await until_released(api, funded_user, expected=1)
            async with live_stream(client, api, funded_user, job_id):
                assert open_streams(api, funded_user) == 2
            await until_released(api, funded_user, expected=1)

        await until_released(api, funded_user)
        # Every slot came back: the whole cap can be used again at once.
        async with AsyncExitStack() as stack:
            for _ in range(2):
                await stack.enter_async_context(live_stream(client, api, funded_user, job_id))
            assert open_streams(api, funded_user) == 2
        await until_released(api, funded_user)


async def test_streams_that_end_on_their_own_give_their_slot_back(start_api, funded_user) -> None:
    api = start_api(max_streams_per_user=1)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        job_id = await pending_job(client, api, funded_user)
        cancelled = await client.post(f"/api/jobs/{job_id}/cancel", headers=api.auth(funded_user))
        assert cancelled.json()["status"] == "cancelled"
        events_url = f"/api/jobs/{job_id}/events"
        for _ in range(3):  # a finished job's stream ends after its one event
            async with client.stream("GET", events_url, headers=api.auth(funded_user)) as response:
                assert response.status_code == 200, (await response.aread()).decode()
                events = [e async for e in sse_events(response.aiter_lines())]
            assert [e["data"]["status"] for e in events] == ["cancelled"]
            await until_released(api, funded_user)
        for _ in range(3):  # refused before streaming: absent job
            absent = await client.get(f"/api/jobs/{uuid.uuid4()}/events", headers=api.auth(funded_user))
            assert absent.status_code == 404
            assert open_streams(api, funded_user) == 0
        pending = await pending_job(client, api, funded_user)
        async with live_stream(client, api, funded_user, pending):
            assert open_streams(api, funded_user) == 1
        await until_released(api, funded_user)


async def test_a_long_poll_holds_a_slot_while_it_waits(start_api, funded_user) -> None:
    """`GET /api/jobs/{id}?wait=N` subscribes to the same events as a stream, for up to a
    minute: it counts against the same cap, and gives its slot back when it answers."""
    api = start_api(max_streams_per_user=1)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        job_id = await pending_job(client, api, funded_user)
        waiting = asyncio.create_task(
            client.get(f"/api/jobs/{job_id}", params={"wait": 4}, headers=api.auth(funded_user))
        )
        await until_released(api, funded_user, expected=1)  # the long poll is waiting
        async with client.stream(
            "GET", f"/api/jobs/{job_id}/events", headers=api.auth(funded_user)
        ) as refused:
            assert refused.status_code == 429
            await refused.aread()
        assert refused.json()["code"] == "too_many_streams"
        second = await client.get(f"/api/jobs/{job_id}", params={"wait": 1}, headers=api.auth(funded_user))
        assert second.status_code == 429
        plain = await client.get(f"/api/jobs/{job_id}", headers=api.auth(funded_user))
        assert plain.status_code == 200, "a read without wait is not counted"
        answered = await waiting
        assert answered.status_code == 200 and answered.json()["status"] == "pending"
        await until_released(api, funded_user)
        absent = await client.get(
            f"/api/jobs/{uuid.uuid4()}", params={"wait": 1}, headers=api.auth(funded_user)
        )
        assert absent.status_code == 404
        assert open_streams(api, funded_user) == 0
        async with live_stream(client, api, funded_user, job_id):
            assert open_streams(api, funded_user) == 1
        await until_released(api, funded_user)


async def test_a_long_poll_whose_client_leaves_gives_its_slot_back_at_once(start_api, funded_user) -> None:
    """uvicorn does not cancel a handler whose client has gone: without watching for the
    disconnect, an abandoned `?wait=60` kept its slot (and its subscription) for a minute."""
    api = start_api(max_streams_per_user=1)
    async with httpx.AsyncClient(base_url=api.url, timeout=90) as client:
        job_id = await pending_job(client, api, funded_user)
        for _ in range(2):  # the second time, on the slot the first abandoned poll gave back
            waiting = asyncio.create_task(
                client.get(f"/api/jobs/{job_id}", params={"wait": 60}, headers=api.auth(funded_user))
            )
            await until_released(api, funded_user, expected=1)  # the long poll is waiting
            waiting.cancel()  # the client gives up: httpx closes the connection mid-response
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            await until_released(api, funded_user)  # within 10 s, not after the 60 s wait
        async with live_stream(client, api, funded_user, job_id):
            assert open_streams(api, funded_user) == 1
        await until_released(api, funded_user)
        # A poll whose client stays is still answered when the status changes.
        waiting = asyncio.create_task(
            client.get(f"/api/jobs/{job_id}", params={"wait": 30}, headers=api.auth(funded_user))
        )
        await until_released(api, funded_user, expected=1)
        cancelled = await client.post(f"/api/jobs/{job_id}/cancel", headers=api.auth(funded_user))
        assert cancelled.json()["status"] == "cancelled"
        answered = await asyncio.wait_for(waiting, timeout=20)
        assert answered.status_code == 200 and answered.json()["status"] == "cancelled"
        await until_released(api, funded_user)
