"""The reply streamed as the model writes it: the real `openai` SDK streaming from the fake
OpenAI server over HTTP, the worker's coalesced pieces in PostgreSQL, and a real SSE client
on the API's `GET /api/jobs/{id}/events`."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from aijobs.config import Settings
from aijobs.db.store import Store
from aijobs.providers.fake_openai import FakeOpenAI, Step
from aijobs.providers.openai import OpenAIProvider
from aijobs.queue.enqueue import enqueue
from tests.conftest import worker_env
from tests.integration.api.conftest import StartApi
from tests.support.api_server import ApiServer
from tests.support.sse import sse_events
from tests.support.workers import WorkerProcess, fetch_all, fetch_one, running_worker, wait_until

REPLY = " ".join(
    f"Thank you{'!' if i % 7 == 0 else ','} dear guest number {i}, for the kind words about our pasta."
    for i in range(12)
)
TERMINAL = {"completed", "failed", "cancelled"}


@pytest.fixture
async def user(store: Store) -> uuid.UUID:
    user = uuid.uuid4()
    async with store.session() as session:
        await session.accounts.grant_credits(user, 1000, "test credits")
    return user


@pytest.fixture
def fake() -> Any:
    with FakeOpenAI() as server:
        yield server


async def create_reply_job(store: Store, user: uuid.UUID) -> uuid.UUID:
    async with store.session() as session:
        created = await enqueue(
            session, user_id=user, job_type="ai_generation", payload={"review_text": "Great pasta!"}
        )
    return created.id


async def follow(
    api: ApiServer, user: uuid.UUID, job_id: uuid.UUID, *, first: int | None = None, **headers: str
) -> list[dict[str, Any]]:
    """Every event of the job's stream until its terminal status, or only its `first` ones."""
    events: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=api.url, timeout=60) as client,
        client.stream("GET", f"/api/jobs/{job_id}/events", headers={**api.auth(user), **headers}) as response,
    ):
        assert response.status_code == 200
        async for event in sse_events(response.aiter_lines()):
            events.append(event)
            if len(events) == first or (event["event"] == "status" and event["data"]["status"] in TERMINAL):
                break
    return events


async def chunks(db_url: str, job_id: uuid.UUID) -> list[dict[str, Any]]:
    return await fetch_all(
        db_url,
        "select lease_token, seq, text from aijobs.job_stream_chunks where job_id = %s"
        " order by lease_token, seq",
        job_id,
    )


async def stored_reply(db_url: str, job_id: uuid.UUID) -> str:
    row = await fetch_one(db_url, "select result from aijobs.jobs where id = %s", job_id)
    return str(row["result"]["output"]["reply"])


@asynccontextmanager
async def worker_on(settings: Settings, store: Store, fake: FakeOpenAI, api: str) -> AsyncIterator[None]:
    """A worker whose provider is the real SDK aimed at the fake server."""
    provider = OpenAIProvider(api_key="sk-test", model="gpt-5-nano", base_url=fake.base_url, api=api)  # type: ignore[arg-type]
    try:
        async with running_worker(settings, store, provider):
            yield
    finally:
        await provider.aclose()


@pytest.mark.parametrize("wire", ["responses", "chat"])
async def test_a_subscriber_gets_ordered_deltas_that_join_to_the_stored_reply(
    settings: Settings,
    store: Store,
    db_url: str,
    user: uuid.UUID,
    start_api: StartApi,
    fake: FakeOpenAI,
    wire: str,
) -> None:
    fake.script(Step.ok(text=REPLY, stream_interval=0.02))
    api = start_api()
    job_id = await create_reply_job(store, user)
    reader = asyncio.create_task(follow(api, user, job_id))
    await wait_until(lambda: _subscribed(api), timeout=10, what="the subscriber")
    async with worker_on(settings, store, fake, wire):
        events = await asyncio.wait_for(reader, 60)

    kinds = [e["event"] if e["event"] != "status" else e["data"]["status"] for e in events]
    assert kinds[:2] == ["pending", "processing"]
    assert kinds[-1] == "completed"
    assert set(kinds[2:-1]) == {"delta"}, kinds
    deltas = [e["data"] for e in events if e["event"] == "delta"]
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    assert len({d["attempt_token"] for d in deltas}) == 1
    assert [e["id"] for e in events if e["event"] == "delta"] == [
        f"{d['attempt_token']}:{d['seq']}" for d in deltas
    ]
    reply = await stored_reply(db_url, job_id)
    assert reply == REPLY
    assert "".join(d["text"] for d in deltas) == reply
    # Coalesced: the model sent a piece per word, the worker wrote far fewer rows.
    words = len(REPLY.split())
    assert len(deltas) < words
    assert fake.requests[0].body["stream"] is True


async def _subscribed(api: ApiServer) -> bool:
    assert api.app is not None
    hub = api.app.state.aijobs.hub
    return bool(hub._subscribers)


async def test_a_late_subscriber_gets_what_was_written_so_far_and_last_event_id_resumes(
    settings: Settings, store: Store, db_url: str, user: uuid.UUID, start_api: StartApi, fake: FakeOpenAI
) -> None:
    fake.script(Step.ok(text=REPLY, stream_interval=0.04))
    api = start_api()
    job_id = await create_reply_job(store, user)
    async with worker_on(settings, store, fake, "chat"):

        async def written(n: int) -> bool:
            return len(await chunks(db_url, job_id)) >= n

        await wait_until(lambda: written(3), timeout=30, what="three pieces written")
        so_far = await chunks(db_url, job_id)
        lease = so_far[0]["lease_token"]
        late, resumed = await asyncio.gather(
            follow(api, user, job_id), follow(api, user, job_id, **{"Last-Event-ID": f"{lease}:2"})
        )
    reply = await stored_reply(db_url, job_id)
    all_pieces = await chunks(db_url, job_id)
    assert "".join(c["text"] for c in all_pieces) == reply

    late_deltas = [e["data"] for e in late if e["event"] == "delta"]
    assert late[0]["data"]["status"] == "processing"
    assert late_deltas[0]["seq"] == 1, "a late subscriber starts from the attempt's first piece"
    assert "".join(d["text"] for d in late_deltas) == reply

    resumed_deltas = [e["data"] for e in resumed if e["event"] == "delta"]
    assert resumed_deltas[0]["seq"] == 3, "Last-Event-ID resumes after the piece it names"
    head = "".join(c["text"] for c in all_pieces[:2])
    assert head + "".join(d["text"] for d in resumed_deltas) == reply
    assert not any(e["event"] == "reset" for e in late + resumed)


async def test_a_worker_killed_mid_stream_makes_subscribers_reset_and_the_retry_streams_afresh(
    settings: Settings,
    store: Store,
    db_url: str,
    user: uuid.UUID,
    start_api: StartApi,
    fake: FakeOpenAI,
    tmp_path: Path,
) -> None:
    # The first attempt streams slowly (it is killed half-way), the retry at once.
    fake.script(Step.ok(text=REPLY, stream_interval=0.1), Step.ok(text=REPLY))
    api = start_api()
    job_id = await create_reply_job(store, user)
    reader = asyncio.create_task(follow(api, user, job_id))
    await wait_until(lambda: _subscribed(api), timeout=10, what="the subscriber")
    env = worker_env(
        db_url,
        LLM_PROVIDER="openai",
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=fake.base_url,
        LLM_API="chat",
    )
    doomed = WorkerProcess(env, tmp_path / "doomed.log")
    try:

        async def written(n: int) -> bool:
            return len(await chunks(db_url, job_id)) >= n

        await wait_until(lambda: written(3), timeout=30, what="the first attempt streaming")
        doomed.send(signal.SIGKILL)
    finally:
        doomed.kill()
    first = await chunks(db_url, job_id)
    async with worker_on(settings, store, fake, "chat"):
        events = await asyncio.wait_for(reader, 60)

    reply = await stored_reply(db_url, job_id)
    kinds = [e["event"] for e in events]
    assert "reset" in kinds
    cut = kinds.index("reset")
    before = [e["data"] for e in events[:cut] if e["event"] == "delta"]
    after = [e["data"] for e in events[cut:] if e["event"] == "delta"]
    reset = events[cut]["data"]
    assert {d["attempt_token"] for d in before} == {first[0]["lease_token"]}
    assert before and "".join(d["text"] for d in before) != reply, "the first attempt was cut off"
    assert reset["attempt_token"] != first[0]["lease_token"]
    assert {d["attempt_token"] for d in after} == {reset["attempt_token"]}
    assert [d["seq"] for d in after] == list(range(1, len(after) + 1))
    assert "".join(d["text"] for d in after) == reply == REPLY
    job = await fetch_one(
        db_url, "select attempts, status::text as status from aijobs.jobs where id = %s", job_id
    )
    assert job == {"attempts": 2, "status": "completed"}
    outcomes = await fetch_all(
        db_url, "select outcome from aijobs.job_attempts where job_id = %s order by attempt", job_id
    )
    assert [o["outcome"] for o in outcomes] == ["lost", "completed"]


DRAFT = 'We are truly sorry about the wait. "Cold" is not how we serve burgers.\nPlease call us: café 😀'


async def test_the_draft_of_a_structured_triage_streams_and_joins_to_the_stored_draft(
    settings: Settings, store: Store, db_url: str, user: uuid.UUID, start_api: StartApi, fake: FakeOpenAI
) -> None:
    answer = {
        "sentiment": "negative",
        "topics": ["wait time", "food"],
        "urgency": "high",
        "suggested_actions": ["Call the guest back"],
        "draft_reply": DRAFT,
    }
    fake.script(Step.ok(text=json.dumps(answer), stream_interval=0.02))
    api = start_api()
    async with store.session() as session:
        created = await enqueue(
            session, user_id=user, job_type="review_processing", payload={"review_text": "Cold burger."}
        )
    reader = asyncio.create_task(follow(api, user, created.id))
    await wait_until(lambda: _subscribed(api), timeout=10, what="the subscriber")
    async with worker_on(settings, store, fake, "responses"):
        events = await asyncio.wait_for(reader, 60)
    deltas = [e["data"] for e in events if e["event"] == "delta"]
    row = await fetch_one(db_url, "select result from aijobs.jobs where id = %s", created.id)
    assert row["result"]["output"] == answer
    assert "".join(d["text"] for d in deltas) == DRAFT
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    assert fake.requests[0].body["text"]["format"]["type"] == "json_schema"


async def test_a_provider_that_cannot_stream_answers_whole_and_nothing_is_streamed(
    settings: Settings, store: Store, db_url: str, user: uuid.UUID, start_api: StartApi
) -> None:
    """The offline provider has no `stream`: the job runs through `run`, as before."""
    api = start_api()
    job_id = await create_reply_job(store, user)
    reader = asyncio.create_task(follow(api, user, job_id))
    await wait_until(lambda: _subscribed(api), timeout=10, what="the subscriber")
    async with running_worker(settings, store):
        events = await asyncio.wait_for(reader, 60)
    assert [e["data"]["status"] for e in events] == ["pending", "processing", "completed"]
    assert await chunks(db_url, job_id) == []
    assert await stored_reply(db_url, job_id)


async def test_status_events_leave_a_clients_last_event_id_on_the_last_piece(
    store: Store, db_url: str, user: uuid.UUID, start_api: StartApi
) -> None:
    """An EventSource resumes from the id of the last event of any kind: a status event with an
    id of its own would make the next reconnect send that id, and get the reply again."""
    api = start_api()
    job_id = await create_reply_job(store, user)
    async with store.session() as session:
        [claimed] = await session.jobs.claim("worker-s", 1, lease_seconds=60)
    token = claimed.lease_token
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        for seq, text in ((1, "Thank "), (2, "you")):
            await conn.execute(
                "insert into aijobs.job_stream_chunks (job_id, lease_token, seq, text)"
                " values (%s, %s, %s, %s)",
                (job_id, token, seq, text),
            )
    fresh = await follow(api, user, job_id, first=3)
    assert [(e["event"], e["id"]) for e in fresh] == [
        ("status", None),
        ("delta", f"{token}:1"),
        ("delta", f"{token}:2"),
    ]
    # Reconnected after the last piece: the status event alone, which leaves the id as it was,
    # so a second reconnect resumes from the same piece and nothing is sent twice.
    for _ in range(2):
        [again] = await follow(api, user, job_id, first=1, **{"Last-Event-ID": f"{token}:2"})
        assert (again["event"], again["id"]) == ("status", None)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(
            "insert into aijobs.job_stream_chunks (job_id, lease_token, seq, text) values (%s, %s, 3, '!')",
            (job_id, token),
        )
    resumed = await follow(api, user, job_id, first=2, **{"Last-Event-ID": f"{token}:2"})
    assert [(e["event"], e["id"]) for e in resumed] == [("status", None), ("delta", f"{token}:3")]
