"""Idempotency-Key with Stripe's semantics, under concurrency, on a real database."""

from __future__ import annotations

import asyncio

import httpx
import psycopg

from tests.support.locks import waiting_on_locks
from tests.support.snapshots import snapshot

SENTIMENT = {"type": "sentiment_analysis", "payload": {"text": "Lovely staff, quick service."}}


async def test_twenty_concurrent_identical_requests_make_one_job_and_one_debit(
    api, funded_user, db_url
) -> None:
    headers = api.auth(funded_user) | {"Idempotency-Key": "order-42"}
    async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
        responses = await asyncio.gather(
            *(client.post("/api/jobs", json=SENTIMENT, headers=headers) for _ in range(20))
        )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert len({r.text for r in responses}) == 1  # the first response, replayed byte for byte
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 19
    state = await snapshot(db_url, funded_user)
    assert (state.jobs, state.balance, state.ledger_sum, state.idempotency_keys) == (1, 999, 999, 1)


async def test_same_key_other_body_is_409_and_keys_are_per_user(
    client, api, funded_user, other_user, db_url
) -> None:
    key = {"Idempotency-Key": "shared-key"}
    first = await client.post("/api/jobs", json=SENTIMENT, headers=api.auth(funded_user) | key)
    assert first.status_code == 201

    other_body = {"type": "sentiment_analysis", "payload": {"text": "Something else entirely."}}
    reused = await client.post("/api/jobs", json=other_body, headers=api.auth(funded_user) | key)
    assert reused.status_code == 409
    assert reused.headers["content-type"] == "application/problem+json"
    assert reused.json()["code"] == "idempotency_key_reused"

    # The same key belongs to nobody else: user B gets a job of their own.
    theirs = await client.post("/api/jobs", json=SENTIMENT, headers=api.auth(other_user) | key)
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    assert theirs.headers.get("idempotent-replayed") is None

    # An equivalent body (other key order, whitespace) is the same request.
    again = await client.post(
        "/api/jobs",
        content=b'{ "payload": {"text": "Lovely staff, quick service."},  "type": "sentiment_analysis" }',
        headers=api.auth(funded_user) | key | {"Content-Type": "application/json"},
    )
    assert again.status_code == 201 and again.json() == first.json()
    assert (await snapshot(db_url, funded_user)).jobs == 1


async def test_a_refused_request_keeps_no_key(client, api, store, db_url) -> None:
    import uuid

    user = uuid.uuid4()
    async with store.session() as session:
        await session.accounts.grant_credits(user, 2)
    body = {"type": "review_processing", "payload": {"review_text": "Cold food."}}
    headers = api.auth(user) | {"Idempotency-Key": "top-up-then-retry"}
    assert (await client.post("/api/jobs", json=body, headers=headers)).status_code == 402
    async with store.session() as session:
        await session.accounts.grant_credits(user, 5)
    retried = await client.post("/api/jobs", json=body, headers=headers)
    assert retried.status_code == 201 and retried.headers.get("idempotent-replayed") is None
    state = await snapshot(db_url, user)
    assert (state.jobs, state.balance, state.idempotency_keys) == (1, 4, 1)


async def test_a_key_whose_stored_response_was_purged_still_refuses_another_request(
    client, api, funded_user, db_url
) -> None:
    """Responses are purged after 24 hours, but the job keeps its key. The same request then
    gets that job back; a different one must get the 409, not the old job as if created."""
    key = {"Idempotency-Key": "purged-key"}
    first = await client.post("/api/jobs", json=SENTIMENT, headers=api.auth(funded_user) | key)
    assert first.status_code == 201
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute("delete from aijobs.api_idempotency_keys")  # what the 24-hour purge does

    other_type = {"type": "review_processing", "payload": {"review_text": "Cold food."}}
    other_text = {"type": "sentiment_analysis", "payload": {"text": "Something else entirely."}}
    for body in (other_type, other_text, SENTIMENT | {"priority": 5}):
        reused = await client.post("/api/jobs", json=body, headers=api.auth(funded_user) | key)
        assert reused.status_code == 409, (body, reused.text)
        assert reused.json()["code"] == "idempotency_key_reused"
    same = await client.post("/api/jobs", json=SENTIMENT, headers=api.auth(funded_user) | key)
    assert same.status_code == 201 and same.json()["id"] == first.json()["id"]
    assert same.headers.get("idempotent-replayed") == "true"
    state = await snapshot(db_url, funded_user)
    assert (state.jobs, state.balance, state.ledger_sum) == (1, 999, 999)


async def test_a_request_rolled_back_by_a_deadlock_is_a_503_that_charged_nothing(
    api, funded_user, db_url
) -> None:
    """Another transaction holds the user's account row, the request (with a key) waits for
    it holding its key's row, and that transaction then waits for the key: PostgreSQL breaks
    the cycle by rolling back the request, which waited first. The answer is a retryable
    503, not a 500, and nothing of the request was written."""
    key = "deadlock-key"
    async with await psycopg.AsyncConnection.connect(db_url) as other:
        await other.execute("select 1 from aijobs.accounts where user_id = %s for update", (funded_user,))
        async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
            post = asyncio.create_task(
                client.post(
                    "/api/jobs", json=SENTIMENT, headers=api.auth(funded_user) | {"Idempotency-Key": key}
                )
            )
            await waiting_on_locks(db_url, 1, "aijobs-api")  # for the account row
            await other.execute(
                "insert into aijobs.api_idempotency_keys (user_id, key, request_hash) values (%s, %s, 'x')",
                (funded_user, key),
            )
            answer = await post
        await other.rollback()
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["code"] == "transient_conflict"
    state = await snapshot(db_url, funded_user)
    assert (state.jobs, state.balance, state.idempotency_keys) == (0, 1000, 0)
