"""Scenario 9: credit races over the real HTTP API.

The credit function locks the account row, so concurrent creations for one user serialize
in the database. These tests make that visible from the outside: a balance that pays for
exactly one job, hit by many requests at once, buys exactly one job; an Idempotency-Key hit
by many identical (or conflicting) requests at once makes one job and one debit.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import httpx

from tests.reliability.api_support import make_user
from tests.support.api_server import ApiServer
from tests.support.invariants import assert_invariants
from tests.support.snapshots import snapshot

REVIEW_COST = 3


def review(text: str) -> dict[str, Any]:
    return {"type": "review_processing", "payload": {"review_text": text}}


async def burst(api: ApiServer, requests: list[tuple[str, str, dict[str, Any] | None, dict[str, str]]]):
    """Send every request at once, each on its own connection, and return the responses.

    A start barrier holds every coroutine until all are ready, so they reach the server
    together rather than one connection after another.
    """
    gate = asyncio.Event()
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=api.url, timeout=60, limits=limits) as http:

        async def one(method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]):
            await gate.wait()
            return await http.request(method, path, json=body, headers=headers)

        tasks = [asyncio.create_task(one(*r)) for r in requests]
        await asyncio.sleep(0)  # let every task reach the gate
        gate.set()
        return await asyncio.gather(*tasks)


async def test_ten_concurrent_creations_on_a_balance_for_one(api, store, db_url) -> None:
    user = await make_user(store, REVIEW_COST)
    headers = api.auth(user)
    responses = await burst(
        api, [("POST", "/api/jobs", review(f"Cold food, visit {i}."), headers) for i in range(10)]
    )
    codes = Counter(r.status_code for r in responses)
    assert codes == {201: 1, 402: 9}, [(r.status_code, r.text) for r in responses]
    for refused in (r for r in responses if r.status_code == 402):
        problem = refused.json()
        assert refused.headers["content-type"] == "application/problem+json"
        assert (problem["code"], problem["balance"], problem["cost"]) == ("insufficient_credits", 0, 3)
    state = await snapshot(db_url, user)
    assert (state.jobs, state.balance, state.ledger_sum, state.ledger_rows) == (1, 0, 0, 2)
    me = (await api_get(api, "/api/me", headers)).json()
    assert me["balance"] == 0
    await assert_invariants(db_url)


async def test_twenty_concurrent_identical_keyed_requests_charge_once(api, store, db_url) -> None:
    """With a balance for one job, a double charge would show as a 402 among the replays."""
    user = await make_user(store, REVIEW_COST)
    headers = api.auth(user) | {"Idempotency-Key": f"race-{uuid.uuid4()}"}
    body = review("The waiter forgot us twice.")
    responses = await burst(api, [("POST", "/api/jobs", body, headers)] * 20)
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 19
    state = await snapshot(db_url, user)
    assert (state.jobs, state.balance, state.ledger_rows, state.idempotency_keys) == (1, 0, 2, 1)
    await assert_invariants(db_url)


async def test_one_key_two_bodies_at_once_makes_one_job(api, store, db_url) -> None:
    """Ten requests of body A and ten of body B race on one key: whichever commits first owns
    the key; the same body replays it, the other body is a 409 — never a second job."""
    user = await make_user(store, 100)
    headers = api.auth(user) | {"Idempotency-Key": "mixed-race"}
    a, b = review("Body A: rude staff."), review("Body B: lovely staff.")
    requests = [("POST", "/api/jobs", a if i % 2 else b, headers) for i in range(20)]
    responses = await burst(api, requests)
    created = [r for r in responses if r.status_code == 201]
    assert {r.status_code for r in responses} <= {201, 409}, [r.text for r in responses]
    assert len({r.json()["id"] for r in created}) == 1
    winner_text = created[0].json()["payload"]["review_text"]
    for (_, _, body, _), response in zip(requests, responses, strict=True):
        if body is not None and body["payload"]["review_text"] == winner_text:
            assert response.status_code == 201, response.text
        else:
            assert response.status_code == 409
            assert response.json()["code"] in ("idempotency_key_reused", "idempotency_busy")
    state = await snapshot(db_url, user)
    assert (state.jobs, state.balance, state.idempotency_keys) == (1, 100 - REVIEW_COST, 1)
    await assert_invariants(db_url)


async def test_concurrent_cancels_refund_once_and_retries_charge_within_balance(api, store, db_url) -> None:
    """Ten cancels of one pending job: one refund. Then ten retries of the cancelled job with a
    balance for one: one new job, nine 402 — each retry is a new charged job, raced safely."""
    user = await make_user(store, REVIEW_COST)
    headers = api.auth(user)
    job = (await api_post(api, "/api/jobs", review("Refund race."), headers)).json()
    cancels = await burst(api, [("POST", f"/api/jobs/{job['id']}/cancel", None, headers)] * 10)
    assert {r.status_code for r in cancels} == {200}, [r.text for r in cancels]
    assert {r.json()["status"] for r in cancels} == {"cancelled"}
    state = await snapshot(db_url, user)
    assert (state.balance, state.ledger_rows) == (REVIEW_COST, 3)  # grant, debit, one refund

    retries = await burst(api, [("POST", f"/api/jobs/{job['id']}/retry", None, headers)] * 10)
    assert Counter(r.status_code for r in retries) == {201: 1, 402: 9}, [r.text for r in retries]
    new = next(r for r in retries if r.status_code == 201).json()
    assert new["retry_of"] == job["id"]
    state = await snapshot(db_url, user)
    assert (state.jobs, state.balance, state.ledger_rows) == (2, 0, 4)
    await assert_invariants(db_url)


async def api_get(api: ApiServer, path: str, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        return await http.get(path, headers=headers)


async def api_post(
    api: ApiServer, path: str, body: dict[str, Any] | None, headers: dict[str, str]
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        return await http.post(path, json=body, headers=headers)
