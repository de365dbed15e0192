"""Jobs over real HTTP against real PostgreSQL: create, get, list, cancel, retry, long poll."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import psycopg

from tests.integration.api.conftest import StartApi
from tests.support.api_server import ApiServer
from tests.support.snapshots import snapshot

SENTIMENT = {"type": "sentiment_analysis", "payload": {"text": "Lovely staff, quick service."}}
PROBLEM = "application/problem+json"


async def create(client: httpx.AsyncClient, api: ApiServer, user: uuid.UUID, body: dict | None = None, **kw):
    return await client.post("/api/jobs", json=body or SENTIMENT, headers=api.auth(user), **kw)


async def fail_job(db_url: str, job_id: str) -> None:
    """Make a job `failed` the way the worker's final failure does (refund via the trigger)."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(
            "update aijobs.jobs set status = 'failed', error = 'boom', finished_at = now() where id = %s",
            (job_id,),
        )


async def test_create_get_and_charge(client, api, funded_user, db_url) -> None:
    response = await create(client, api, funded_user, {**SENTIMENT, "priority": 5})
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "pending" and job["user_id"] == str(funded_user)
    assert job["type"] == "sentiment_analysis" and job["priority"] == 5 and job["cost"] == 1
    assert job["max_attempts"] == 4  # MAX_RETRIES + 1
    assert response.headers["location"] == f"/api/jobs/{job['id']}"

    got = await client.get(f"/api/jobs/{job['id']}", headers=api.auth(funded_user))
    assert got.status_code == 200 and got.json()["id"] == job["id"]

    me = (await client.get("/api/me", headers=api.auth(funded_user))).json()
    assert me == {
        "user_id": str(funded_user),
        "balance": 999,
        "has_account": True,
        "jobs_in_flight": 1,
        "max_jobs_in_flight": 100,
    }
    ledger = (await client.get("/api/me/ledger", headers=api.auth(funded_user))).json()
    assert [(e["kind"], e["amount"]) for e in ledger["items"]] == [("debit", -1), ("grant", 1000)]
    assert (await snapshot(db_url, funded_user)).balance == 999


async def test_list_filters_and_cursor_pagination(client, api, funded_user) -> None:
    ids = []
    for i in range(7):
        body = SENTIMENT if i % 2 else {"type": "prompt_analysis", "payload": {"prompt": f"Write {i}"}}
        ids.append((await create(client, api, funded_user, body)).json()["id"])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/jobs", params=params, headers=api.auth(funded_user))).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))

    typed = await client.get("/api/jobs", params={"type": "prompt_analysis"}, headers=api.auth(funded_user))
    assert {j["type"] for j in typed.json()["items"]} == {"prompt_analysis"} and len(
        typed.json()["items"]
    ) == 4
    done = await client.get("/api/jobs", params={"status": "completed"}, headers=api.auth(funded_user))
    assert done.json() == {"items": [], "next_cursor": None}

    bad = await client.get("/api/jobs", params={"cursor": "not-a-cursor"}, headers=api.auth(funded_user))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.cursor"


async def test_cancel_refunds_and_retry_charges_a_new_job(client, api, funded_user, db_url) -> None:
    job = (await create(client, api, funded_user)).json()
    cancelled = await client.post(f"/api/jobs/{job['id']}/cancel", headers=api.auth(funded_user))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert (await snapshot(db_url, funded_user)).balance == 1000  # refunded

    again = await client.post(f"/api/jobs/{job['id']}/cancel", headers=api.auth(funded_user))
    assert again.status_code == 200 and again.json()["status"] == "cancelled"

    retried = await client.post(f"/api/jobs/{job['id']}/retry", headers=api.auth(funded_user))
    assert retried.status_code == 201, retried.text
    new = retried.json()
    assert new["id"] != job["id"] and new["retry_of"] == job["id"] and new["status"] == "pending"
    state = await snapshot(db_url, funded_user)
    assert (state.balance, state.ledger_sum, state.jobs) == (999, 999, 2)

    # Only failed or cancelled jobs are retried.
    refused = await client.post(f"/api/jobs/{new['id']}/retry", headers=api.auth(funded_user))
    assert refused.status_code == 409 and refused.headers["content-type"] == PROBLEM

    await fail_job(db_url, new["id"])
    refused = await client.post(f"/api/jobs/{new['id']}/cancel", headers=api.auth(funded_user))
    assert refused.status_code == 409 and refused.json()["code"] == "job_finished"
    retried = await client.post(f"/api/jobs/{new['id']}/retry", headers=api.auth(funded_user))
    assert retried.status_code == 201 and retried.json()["retry_of"] == new["id"]
    state = await snapshot(db_url, funded_user)
    assert (state.balance, state.ledger_sum, state.jobs) == (999, 999, 3)


async def test_insufficient_credits_is_402_and_writes_nothing(client, api, store, db_url) -> None:
    poor = uuid.uuid4()
    async with store.session() as session:
        await session.accounts.grant_credits(poor, 2)
    before = await snapshot(db_url, poor)
    body = {"type": "review_processing", "payload": {"review_text": "Cold food."}}
    response = await client.post("/api/jobs", json=body, headers=api.auth(poor) | {"Idempotency-Key": "k1"})
    assert response.status_code == 402
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert (problem["status"], problem["balance"], problem["cost"], problem["code"]) == (
        402,
        2,
        3,
        "insufficient_credits",
    )
    assert await snapshot(db_url, poor) == before  # no job, no debit, no idempotency key

    nobody = uuid.uuid4()  # a valid token, but no account at all
    response = await client.post("/api/jobs", json=SENTIMENT, headers=api.auth(nobody))
    assert response.status_code == 402 and response.json()["balance"] == 0


async def test_invalid_input_names_each_field(client, api, funded_user, db_url) -> None:
    before = await snapshot(db_url, funded_user)
    cases = [
        (
            {"type": "ai_generation", "payload": {"tone": "rude"}},
            {"body.payload.review_text", "body.payload.tone"},
        ),
        ({"type": "translate", "payload": {}}, {"body.type"}),
        ({"type": "sentiment_analysis"}, {"body.payload"}),
        ({**SENTIMENT, "priority": 1000}, {"body.priority"}),
        ({**SENTIMENT, "max_attempts": 0}, {"body.max_attempts"}),
        ({**SENTIMENT, "run_at": "2030-01-01T00:00:00"}, {"body.run_at"}),  # no UTC offset
        ({**SENTIMENT, "run_at": "0"}, {"body.run_at"}),  # digits: pydantic took them as 1970
        ({**SENTIMENT, "surprise": True}, {"body.surprise"}),
        ({"type": "sentiment_analysis", "payload": {"text": "nul \u0000 byte"}}, {"body.payload.text"}),
    ]
    for body, fields in cases:
        response = await client.post("/api/jobs", json=body, headers=api.auth(funded_user))
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == PROBLEM
        problem = response.json()
        assert {e["field"] for e in problem["errors"]} == fields, problem
        assert all(e["reason"] for e in problem["errors"])
    not_json = await client.post(
        "/api/jobs", content=b"{nope", headers=api.auth(funded_user) | {"Content-Type": "application/json"}
    )
    assert not_json.status_code == 422 and not_json.json()["errors"][0]["field"].startswith("body")
    lone_surrogate = await client.post(
        "/api/jobs",
        content=b'{"type": "sentiment_analysis", "payload": {"text": "half \\ud800 a pair"}}',
        headers=api.auth(funded_user) | {"Content-Type": "application/json"},
    )
    assert lone_surrogate.status_code == 422, lone_surrogate.text
    assert lone_surrogate.json()["errors"][0]["field"].startswith("body.payload")
    bad_key = await client.post(
        "/api/jobs", json=SENTIMENT, headers=api.auth(funded_user) | {"Idempotency-Key": "x" * 256}
    )
    assert bad_key.status_code == 422 and bad_key.json()["errors"][0]["field"] == "header.Idempotency-Key"
    assert await snapshot(db_url, funded_user) == before


async def test_body_over_the_limit_is_413_before_parsing(start_api, funded_user, db_url) -> None:
    api = start_api(max_body_bytes=2048)
    big = {"type": "sentiment_analysis", "payload": {"text": "x" * 4000}}
    async with httpx.AsyncClient(base_url=api.url) as client:
        response = await client.post("/api/jobs", json=big, headers=api.auth(funded_user))
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM and response.json()["code"] == "body_too_large"

        async def chunks():
            for _ in range(10):
                yield b" " * 500  # no Content-Length: sent chunked

        chunked = await client.post(
            "/api/jobs",
            content=chunks(),
            headers=api.auth(funded_user) | {"Content-Type": "application/json"},
        )
        assert chunked.status_code == 413

        small = await client.post("/api/jobs", json=SENTIMENT, headers=api.auth(funded_user))
        assert small.status_code == 201
    assert (await snapshot(db_url, funded_user)).jobs == 1


async def test_in_flight_cap_is_429_and_charges_nothing(start_api: StartApi, funded_user, db_url) -> None:
    api = start_api(max_jobs_in_flight_per_user=3)
    async with httpx.AsyncClient(base_url=api.url) as client:
        results = await asyncio.gather(
            *(client.post("/api/jobs", json=SENTIMENT, headers=api.auth(funded_user)) for _ in range(8))
        )
    codes = sorted(r.status_code for r in results)
    assert codes == [201] * 3 + [429] * 5
    refused = next(r for r in results if r.status_code == 429)
    assert refused.headers["content-type"] == PROBLEM and refused.json()["limit"] == 3
    state = await snapshot(db_url, funded_user)
    assert (state.jobs, state.balance) == (3, 997)


async def test_long_poll_answers_when_the_status_changes(client, api, funded_user) -> None:
    job = (await create(client, api, funded_user)).json()
    started = asyncio.get_running_loop().time()
    poll = asyncio.create_task(
        client.get(f"/api/jobs/{job['id']}", params={"wait": 20}, headers=api.auth(funded_user))
    )
    await asyncio.sleep(0.5)
    assert not poll.done()
    await client.post(f"/api/jobs/{job['id']}/cancel", headers=api.auth(funded_user))
    answered = await poll
    assert answered.status_code == 200 and answered.json()["status"] == "cancelled"
    assert asyncio.get_running_loop().time() - started < 5

    # Without a change it answers after `wait` seconds with the job as it is.
    job = (await create(client, api, funded_user)).json()
    waited = await client.get(f"/api/jobs/{job['id']}", params={"wait": 1}, headers=api.auth(funded_user))
    assert waited.json()["status"] == "pending"
