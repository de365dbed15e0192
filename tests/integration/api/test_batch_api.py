"""`POST /api/jobs/batch` over real HTTP against real PostgreSQL: all or nothing."""

from __future__ import annotations

import asyncio
import json
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
            {"body.jobs.1.payload.text"},
        ),
        ([], {"body.jobs"}),
        ([sentiment(i) for i in range(10_001)], {"body.jobs"}),
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


NDJSON = {"Content-Type": "application/x-ndjson"}


def lines(*jobs: dict | str) -> str:
    return "".join((job if isinstance(job, str) else json.dumps(job)) + "\n" for job in jobs)


async def test_a_bulk_batch_of_thousands_is_created_and_charged_whole(
    start_api: StartApi, store, db_url
) -> None:
    """Well over MAX_BODY_BYTES (64 KiB): batches have MAX_BATCH_BODY_BYTES. The in-flight
    quota is the deployment's choice; without one, a bulk import is admitted whole."""
    user = uuid.uuid4()
    async with store.session() as session:
        await session.accounts.grant_credits(user, 5000)
    api = start_api(max_jobs_in_flight_per_user=0)
    jobs = [sentiment(i) for i in range(5000)]
    async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
        response = await batch(client, api, user, jobs)
        assert response.status_code == 201, response.text[:500]
        assert len(json.dumps({"jobs": jobs})) > 65536
        items = response.json()["items"]
        assert [j["payload"]["text"] for j in items] == [f"Review number {i}." for i in range(5000)]
        broke = await batch(client, api, user, [sentiment(0)])
        assert broke.status_code == 402  # all 5,000 credits were charged together
        single = await client.post(
            "/api/jobs",
            json={"type": "sentiment_analysis", "payload": {"text": "x" * 70_000}},
            headers=api.auth(user),
        )
        assert single.status_code == 413 and "MAX_BODY_BYTES" in single.json()["detail"]
    state = await snapshot(db_url, user)
    assert (state.jobs, state.balance) == (5000, 0)


async def test_a_batch_names_every_invalid_element(client, api, funded_user, db_url) -> None:
    before = await snapshot(db_url, funded_user)
    jobs = [sentiment(i) for i in range(10)]
    jobs[1] = {"type": "sentiment_analysis", "payload": {}}
    jobs[4] = {"type": "translate", "payload": {}}
    jobs[7] = {"type": "sentiment_analysis", "payload": {"text": "nul \u0000"}}
    response = await batch(client, api, funded_user, jobs)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert [e["field"] for e in problem["errors"]] == [
        "body.jobs.1.payload.text",
        "body.jobs.4.type",
        "body.jobs.7.payload.text",
    ]
    assert problem["detail"].startswith("3 of 10 jobs are invalid")
    assert await snapshot(db_url, funded_user) == before


async def test_a_jsonl_import_creates_every_line_in_order(client, api, funded_user, db_url) -> None:
    body = lines(sentiment(0), "", REVIEW, "   ", sentiment(2))
    response = await client.post("/api/jobs/import", content=body, headers=api.auth(funded_user) | NDJSON)
    assert response.status_code == 201, response.text
    items = response.json()["items"]
    assert [(j["type"], j["priority"]) for j in items] == [
        ("sentiment_analysis", 0),
        ("review_processing", 9),
        ("sentiment_analysis", 0),
    ]
    state = await snapshot(db_url, funded_user)
    assert (state.jobs, state.balance) == (3, 995)
    key = {"Idempotency-Key": "import-1"}
    first = await client.post("/api/jobs/import", content=body, headers=api.auth(funded_user) | NDJSON | key)
    replay = await client.post("/api/jobs/import", content=body, headers=api.auth(funded_user) | NDJSON | key)
    assert first.status_code == replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true" and replay.json() == first.json()
    other = await client.post(
        "/api/jobs/import", content=lines(sentiment(5)), headers=api.auth(funded_user) | NDJSON | key
    )
    assert other.status_code == 409


async def test_a_jsonl_import_names_every_invalid_line_and_creates_nothing(
    client, api, funded_user, db_url
) -> None:
    before = await snapshot(db_url, funded_user)
    body = lines(
        sentiment(0),
        '{"type": "sentiment_analysis", "payload": ',  # line 2: not JSON
        sentiment(2),
        "",
        {"type": "translate", "payload": {}},  # line 5
        {"type": "sentiment_analysis", "payload": {"txt": "typo"}},  # line 6
        sentiment(6),
        {**sentiment(7), "priority": 1000, "colour": "red"},  # line 8
        "[1, 2]",  # line 9
    )
    response = await client.post("/api/jobs/import", content=body, headers=api.auth(funded_user) | NDJSON)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    fields = [e["field"] for e in problem["errors"]]
    # Every invalid line in line order: its JSON, its fields, its job type and its payload.
    assert fields == [
        "body.line.2",
        "body.line.5.type",
        "body.line.6.payload.text",
        "body.line.6.payload.txt",
        "body.line.8.priority",
        "body.line.8.colour",
        "body.line.9",
    ], problem
    assert problem["invalid_count"] == len(fields)
    assert problem["detail"].startswith("5 of 8 lines are invalid")
    assert await snapshot(db_url, funded_user) == before


async def test_a_jsonl_import_is_bounded(start_api: StartApi, funded_user, db_url) -> None:
    api = start_api(max_batch_body_bytes=300_000)
    async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
        bad = lines(*({"type": "sentiment_analysis", "payload": {}} for _ in range(150)))
        response = await client.post("/api/jobs/import", content=bad, headers=api.auth(funded_user) | NDJSON)
        assert response.status_code == 422
        assert len(response.json()["errors"]) == 100 and response.json()["invalid_count"] == 150
        many = "{}\n" * 10_001
        response = await client.post("/api/jobs/import", content=many, headers=api.auth(funded_user) | NDJSON)
        assert response.status_code == 422
        assert response.json()["errors"] == [
            {"field": "body", "reason": "holds 10001 jobs; one import takes at most 10000"}
        ]
        huge = lines(*(sentiment(i) for i in range(6000)))
        response = await client.post("/api/jobs/import", content=huge, headers=api.auth(funded_user) | NDJSON)
        assert response.status_code == 413 and "MAX_BATCH_BODY_BYTES" in response.json()["detail"]
        for body, reason in ((b"", "holds no jobs"), (b"\xff\xfe\n", "is not UTF-8")):
            response = await client.post(
                "/api/jobs/import", content=body, headers=api.auth(funded_user) | NDJSON
            )
            assert response.status_code == 422 and reason in response.json()["errors"][0]["reason"]
        as_json = await client.post("/api/jobs/import", json=sentiment(0), headers=api.auth(funded_user))
        assert as_json.status_code == 415 and as_json.json()["code"] == "unsupported_media_type"
        anonymous = await client.post("/api/jobs/import", content=lines(sentiment(0)), headers=NDJSON)
        assert anonymous.status_code == 401
    assert (await snapshot(db_url, funded_user)).jobs == 0
