"""What only the service may do to tenants: move a job ahead of every other tenant's
(expedite), and set a tenant's weight and limit on running jobs. A user's own priority orders
only that user's jobs; a user asking for more is refused by the API and by the database."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from aijobs.db.queries import query
from tests.support.api_server import SERVICE_KEY

SERVICE = {"Authorization": f"Bearer {SERVICE_KEY}"}


def job(text: str, priority: int = 0) -> dict[str, Any]:
    return {"type": "sentiment_analysis", "payload": {"text": text}, "priority": priority}


def claim_one(db_url: str) -> uuid.UUID:
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            query("job_claim"), {"worker_id": "t", "limit": 1, "lease_seconds": 60}
        ).fetchall()
    assert len(rows) == 1
    return uuid.UUID(str(rows[0][0]))


async def test_the_service_moves_a_job_ahead_of_other_tenants(
    client, api, funded_user, other_user, db_url
) -> None:
    ahead = [
        (await client.post("/api/jobs", json=job(f"a{i}"), headers=api.auth(funded_user))).json()["id"]
        for i in range(3)
    ]
    batch = {"jobs": [job("b0"), job("b1", priority=100), job("b2")]}
    created = await client.post("/api/jobs/batch", json=batch, headers=api.auth(other_user))
    assert created.status_code == 201, created.text
    b_ids = [j["id"] for j in created.json()["items"]]
    # The user's own top priority does not go ahead of the other tenant's earlier job.
    moved = await client.post(f"/api/admin/jobs/{b_ids[2]}/expedite", headers=SERVICE)
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert (body["id"], body["status"], body["priority"]) == (b_ids[2], "pending", 100)
    # First the expedited job (ahead of A's first and of B's own priority-100 job), then turns.
    order = [str(claim_one(db_url)) for _ in range(3)]
    assert order == [b_ids[2], ahead[0], b_ids[1]]

    again = await client.post(f"/api/admin/jobs/{b_ids[2]}/expedite", headers=SERVICE)
    assert again.status_code == 409 and again.json()["code"] == "job_not_pending"
    missing = await client.post(f"/api/admin/jobs/{uuid.uuid4()}/expedite", headers=SERVICE)
    assert missing.status_code == 404
    bad = await client.post("/api/admin/jobs/not-a-uuid/expedite", headers=SERVICE)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "path.job_id"


async def test_a_user_cannot_expedite_even_their_own_job(client, api, funded_user, db_url) -> None:
    mine = (await client.post("/api/jobs", json=job("mine"), headers=api.auth(funded_user))).json()["id"]
    refused = await client.post(f"/api/admin/jobs/{mine}/expedite", headers=api.auth(funded_user))
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    # As PostgREST would call it: not granted to `authenticated` at all.
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
            (json.dumps({"sub": str(funded_user), "role": "authenticated"}),),
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select * from aijobs.expedite_job(%s)", (mine,))
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "select priority, fair_tag <> tenant_seq from aijobs.jobs where id = %s", (mine,)
        ).fetchone()
    assert row == (0, False)  # untouched


async def test_service_role_may_expedite_directly(client, api, funded_user, db_url) -> None:
    mine = (await client.post("/api/jobs", json=job("mine"), headers=api.auth(funded_user))).json()["id"]
    with psycopg.connect(db_url) as conn:
        conn.execute("set local role service_role")
        rows = conn.execute("select id from aijobs.expedite_job(%s)", (mine,)).fetchall()
        conn.commit()
    assert [str(r[0]) for r in rows] == [mine]


async def test_the_service_sets_a_tenants_weight_and_limit(client, api, funded_user, db_url) -> None:
    put = await client.put(
        f"/api/admin/tenants/{funded_user}", json={"weight": 3, "max_running": 2}, headers=SERVICE
    )
    assert put.status_code == 200, put.text
    assert put.json() == {"weight": 3, "max_running": 2}
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "select weight, max_running from aijobs.tenants where tenant = %s", (funded_user,)
        ).fetchone()
    assert row == (3, 2)
    reset = await client.put(f"/api/admin/tenants/{funded_user}", json={}, headers=SERVICE)
    assert reset.json() == {"weight": 1, "max_running": None}
    for body, field in (
        ({"max_running": 0}, "body.max_running"),
        ({"max_running": True}, "body.max_running"),
        ({"weight": 1001}, "body.weight"),
        ({"limit": 3}, "body.limit"),
    ):
        refused = await client.put(f"/api/admin/tenants/{funded_user}", json=body, headers=SERVICE)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["errors"][0]["field"] == field, refused.json()
    as_user = await client.put(
        f"/api/admin/tenants/{funded_user}", json={"max_running": 1000}, headers=api.auth(funded_user)
    )
    assert as_user.status_code == 403
