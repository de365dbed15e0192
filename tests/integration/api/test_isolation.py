"""Row-level security is the enforcement: user A cannot read, list, cancel, retry or stream
user B's jobs through the API (404, as if absent), nor see them through SQL as `authenticated`."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.support.snapshots import snapshot

SENTIMENT = {"type": "sentiment_analysis", "payload": {"text": "Lovely staff, quick service."}}


async def test_a_cannot_touch_bs_jobs_over_the_api(client, api, funded_user, other_user, db_url) -> None:
    a, b = funded_user, other_user
    theirs = (await client.post("/api/jobs", json=SENTIMENT, headers=api.auth(b))).json()
    before_b = await snapshot(db_url, b)

    missing = "00000000-0000-4000-8000-00000000dead"
    for method, path in (
        ("GET", f"/api/jobs/{theirs['id']}"),
        ("GET", f"/api/jobs/{theirs['id']}?wait=1"),
        ("POST", f"/api/jobs/{theirs['id']}/cancel"),
        ("POST", f"/api/jobs/{theirs['id']}/retry"),
        ("GET", f"/api/jobs/{theirs['id']}/events"),
    ):
        response = await client.request(method, path, headers=api.auth(a))
        absent = await client.request(method, path.replace(theirs["id"], missing), headers=api.auth(a))
        assert response.status_code == 404, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        # Indistinguishable from a job that does not exist: no details leak.
        assert {k: v for k, v in response.json().items() if k != "instance"} == {
            k: v for k, v in absent.json().items() if k != "instance"
        }

    listed = await client.get("/api/jobs", headers=api.auth(a))
    assert listed.json()["items"] == []
    ledger = await client.get("/api/me/ledger", headers=api.auth(a))
    assert {e["job_id"] for e in ledger.json()["items"]} == {None}
    assert await snapshot(db_url, b) == before_b  # not cancelled, no retry charged
    mine = await client.get(f"/api/jobs/{theirs['id']}", headers=api.auth(b))
    assert mine.status_code == 200 and mine.json()["status"] == "pending"


async def as_authenticated(conn: psycopg.AsyncConnection, user) -> None:
    """What Store.as_user does: the role and the claims, local to the transaction."""
    await conn.execute(
        "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
        (json.dumps({"sub": str(user), "role": "authenticated"}),),
    )


async def test_sql_as_authenticated_sees_only_its_own_rows(
    client, api, funded_user, other_user, db_url
) -> None:
    a, b = funded_user, other_user
    theirs = (
        await client.post("/api/jobs", json=SENTIMENT, headers=api.auth(b) | {"Idempotency-Key": "b-key"})
    ).json()
    ours = (await client.post("/api/jobs", json=SENTIMENT, headers=api.auth(a))).json()
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        async with conn.transaction():
            await as_authenticated(conn, a)
            jobs = await (await conn.execute("select id::text from aijobs.jobs")).fetchall()
            assert jobs == [(ours["id"],)]
            ledger = await (
                await conn.execute("select distinct user_id from aijobs.credit_ledger")
            ).fetchall()
            assert ledger == [(a,)]
            accounts = await (await conn.execute("select user_id from aijobs.accounts")).fetchall()
            assert accounts == [(a,)]
            # The cancel function acts only for the caller: B's job is not found, not cancelled.
            cancelled = await (
                await conn.execute("select * from aijobs.cancel_job(%s)", (theirs["id"],))
            ).fetchall()
            assert cancelled == []
        async with conn.transaction():
            await as_authenticated(conn, a)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute("update aijobs.jobs set status = 'cancelled'")
        # The idempotency keys are the API's own (it writes them as the owner role): a user
        # reads none, B's included, and writes none, another user's or their own.
        async with conn.transaction():
            await as_authenticated(conn, a)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute("select count(*) from aijobs.api_idempotency_keys")
        for owner in (b, a):
            async with conn.transaction():
                await as_authenticated(conn, a)
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    await conn.execute(
                        "insert into aijobs.api_idempotency_keys (user_id, key, request_hash)"
                        " values (%s, 'x', 'h')",
                        (owner,),
                    )
    got = await client.get(f"/api/jobs/{theirs['id']}", headers=api.auth(b))
    assert got.json()["status"] == "pending"
