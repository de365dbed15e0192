"""`POST /api/jobs/batch` over real HTTP against real PostgreSQL: all or nothing."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.integration.api.conftest import StartApi
from tests.support.api_server import ApiServer
from tests.support.invariants import assert_invariants
from tests.support.snapshots import snapshot

PROBLEM = "application/problem+json"


def sentiment(i: int) -> dict:
    return {"type": "sentiment_analysis", "payload": {"text": f"Review number {i}."}}


REVIEW = {"type": "review_processing", "payload": {"review_text": "Cold food."}, "priority": 9}


async def batch(client: httpx.AsyncClient, api: ApiServer, user: uuid.UUID, jobs: list, **headers: str):
    return await client.post("/api/jobs/batch", json={"jobs": jobs}, headers=api.auth(user) | headers)


async def test_a_batch_creates_and_charges_every_job_in_order(client, api, funded_user, db_url) -> None:
    response = await batch(client, api, funded_user, [sentiment(0), REVIEW, sentiment(2)])
    assert response.status_code == 201, response.text
    items = response.json()["items"]
    assert [(j["type"], j["priority"], j["cost"], j["status"]) for j in items] == [
        ("sentiment_analysis", 0, 1, "pending"),
        ("review_processing", 9, 3, "pending"),
        ("sentiment_analysis", 0, 1, "pending"),
    ]
    assert items[2]["payload"] == {"text": "Review number 2."}
    for job in items:  # the answer is what the job reads back as
        got = await client.get(f"/api/jobs/{job['id']}", headers=api.auth(funded_user))
        assert got.json() == job
    ledger = (await client.get("/api/me/ledger", headers=api.auth(funded_user))).json()
    debits = sorted(e["amount"] for e in ledger["items"] if e["kind"] == "debit")
    assert debits == [-3, -1, -1]
    state = await snapshot(db_url, funded_user)
    assert (state.jobs, state.balance) == (3, 995)
    await assert_invariants(db_url)


async def test_one_bad_element_refuses_the_batch_and_names_it(client, api, funded_user, db_url) -> None:
    before = await snapshot(db_url, funded_user)
    cases = [
        (
            [sentiment(0), {"type": "ai_generation", "payload": {"tone": "rude"}}],
            {"body.jobs.1.payload.review_text", "body.jobs.1.payload.tone"},
        ),
        ([sentiment(0), sentiment(1), {"type": "translate", "payload": {}}], {"body.jobs.2.type"}),
        ([{**sentiment(0), "priority": 1000}], {"body.jobs.0.priority"}),
        (
            [sentiment(0), {"type": "sentiment_analysis", "payload": {"text": "nul \u0000"}}],
            {"body.jobs.1.payload"},
        ),
        ([], {"body.jobs"}),
        ([sentiment(i) for i in range(101)], {"body.jobs"}),
    ]
    for jobs, fields in cases:
        response = await batch(client, api, funded_user, jobs)
        assert response.status_code == 422, (jobs, response.text)
        assert response.headers["content-type"] == PROBLEM
        assert {e["field"] for e in response.json()["errors"]} == fields, response.json()
    assert await snapshot(db_url, funded_user) == before


async def test_a_batch_the_balance_cannot_cover_is_402_and_writes_nothing(client, api, store, db_url) -> None:
    poor = uuid.uuid4()
    async with store.session() as session:
        await session.accounts.grant_credits(poor, 4)
    before = await snapshot(db_url, poor)
    response = await batch(
        client, api, poor, [REVIEW, sentiment(1), sentiment(2)], **{"Idempotency-Key": "b1"}
    )
    assert response.status_code == 402 and response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert (problem["balance"], problem["cost"], problem["code"]) == (4, 5, "insufficient_credits")
    assert "together" in problem["detail"]
    assert await snapshot(db_url, poor) == before  # no job, no debit, no idempotency key


async def test_the_in_flight_cap_admits_a_batch_whole_or_not_at_all(
    start_api: StartApi, funded_user, db_url
) -> None:
    api = start_api(max_jobs_in_flight_per_user=5)
    async with httpx.AsyncClient(base_url=api.url) as client:
        first = await batch(client, api, funded_user, [sentiment(i) for i in range(3)])
        over = await batch(client, api, funded_user, [sentiment(i) for i in range(3)])
        fits = await batch(client, api, funded_user, [sentiment(i) for i in range(2)])
    assert (first.status_code, over.status_code, fits.status_code) == (201, 429, 201)
    assert (over.json()["in_flight"], over.json()["limit"]) == (3, 5)
    state = await snapshot(db_url, funded_user)
    assert (state.jobs, state.balance) == (5, 995)


async def test_an_idempotency_key_replays_the_batch_without_a_second_charge(
    client, api, funded_user, db_url
) -> None:
    jobs = [sentiment(0), REVIEW]
    key = {"Idempotency-Key": "batch-1"}
    responses = await asyncio.gather(*(batch(client, api, funded_user, jobs, **key) for _ in range(6)))
    ok = [r for r in responses if r.status_code == 201]
    assert ok and all(r.status_code in (201, 409) for r in responses)
    assert len({tuple(j["id"] for j in r.json()["items"]) for r in ok}) == 1
    assert [r.headers.get("idempotent-replayed") for r in ok].count(None) == 1
    replay = await batch(client, api, funded_user, jobs, **key)
    assert replay.status_code == 201 and replay.json() == ok[0].json()
    reused = await batch(client, api, funded_user, [sentiment(9)], **key)
    assert reused.status_code == 409 and reused.json()["code"] == "idempotency_key_reused"
    single = await client.post("/api/jobs", json=sentiment(0), headers=api.auth(funded_user) | key)
    assert single.status_code == 409  # the key was used for another path
    state = await snapshot(db_url, funded_user)
    assert (state.jobs, state.balance) == (2, 996)


async def test_another_users_batch_is_not_visible(client, api, funded_user, other_user) -> None:
    created = (await batch(client, api, funded_user, [sentiment(0)])).json()["items"][0]
    got = await client.get(f"/api/jobs/{created['id']}", headers=api.auth(other_user))
    assert got.status_code == 404
    anonymous = await client.post("/api/jobs/batch", json={"jobs": [sentiment(0)]})
    assert anonymous.status_code == 401
