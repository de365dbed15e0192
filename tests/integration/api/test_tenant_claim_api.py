"""The API reads the tenant from the verified token: with TENANT_CLAIM set, the jobs a user
creates on any path (single, keyed, batch, import, retry) take its organisation's turns; a
claim that is not a uuid is a 422 naming it; without the claim (or TENANT_CLAIM) the user is
its own tenant."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import jwt
import psycopg

from tests.integration.api.conftest import StartApi
from tests.support.api_server import JWT_SECRET, ApiServer
from tests.support.snapshots import snapshot

ORG = uuid.UUID("0c0c0c0c-0000-4000-8000-00000000000c")
CLAIM = "app_metadata.org_id"
NDJSON = {"Content-Type": "application/x-ndjson"}
JOB = {"type": "sentiment_analysis", "payload": {"text": "Lovely staff."}}


def auth(user: uuid.UUID, org: Any = None) -> dict[str, str]:
    """A user's token, with `app_metadata.org_id` when `org` is given."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(user),
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + 600,
        "app_metadata": {}
        if org is None
        else {"org_id": org if not isinstance(org, uuid.UUID) else str(org)},
    }
    return {"Authorization": f"Bearer {jwt.encode(claims, JWT_SECRET, algorithm='HS256')}"}


def tenants(db_url: str, user: uuid.UUID) -> list[uuid.UUID]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "select tenant from aijobs.jobs where user_id = %s order by id", (user,)
        ).fetchall()
    return [r[0] for r in rows]


async def create_on_every_path(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    """One job without a key (grouped), one with a key, a batch of two, an import of two and
    a retry of a cancelled job: the answers' jobs."""
    jobs: list[dict[str, Any]] = []
    single = await client.post("/api/jobs", json=JOB, headers=headers)
    assert single.status_code == 201, single.text
    jobs.append(single.json())
    keyed = await client.post("/api/jobs", json=JOB, headers=headers | {"Idempotency-Key": str(uuid.uuid4())})
    assert keyed.status_code == 201, keyed.text
    jobs.append(keyed.json())
    batch = await client.post("/api/jobs/batch", json={"jobs": [JOB, JOB]}, headers=headers)
    assert batch.status_code == 201, batch.text
    jobs.extend(batch.json()["items"])
    body = "\n".join(json.dumps(JOB) for _ in range(2)) + "\n"
    imported = await client.post("/api/jobs/import", content=body, headers=headers | NDJSON)
    assert imported.status_code == 201, imported.text
    jobs.extend(imported.json()["items"])
    cancelled = await client.post(f"/api/jobs/{single.json()['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200, cancelled.text
    retried = await client.post(f"/api/jobs/{single.json()['id']}/retry", headers=headers)
    assert retried.status_code == 201, retried.text
    jobs.append(retried.json())
    return jobs


async def test_with_tenant_claim_every_creation_takes_the_organisation(
    start_api: StartApi, funded_user: uuid.UUID, db_url: str
) -> None:
    api: ApiServer = start_api(tenant_claim=CLAIM)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        jobs = await create_on_every_path(client, auth(funded_user, ORG))
        assert {j["tenant"] for j in jobs} == {str(ORG)}
        assert {j["user_id"] for j in jobs} == {str(funded_user)}
        assert tenants(db_url, funded_user) == [ORG] * 7
        # Reads show it too.
        listed = await client.get("/api/jobs", headers=auth(funded_user, ORG))
        assert {j["tenant"] for j in listed.json()["items"]} == {str(ORG)}
        # The same user without the claim in its token is its own tenant.
        alone = await client.post("/api/jobs", json=JOB, headers=auth(funded_user))
        assert alone.status_code == 201 and alone.json()["tenant"] == str(funded_user)


async def test_a_tenant_claim_that_is_not_a_uuid_is_refused_on_every_path(
    start_api: StartApi, funded_user: uuid.UUID, db_url: str
) -> None:
    api: ApiServer = start_api(tenant_claim=CLAIM)
    before = await snapshot(db_url, funded_user)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        for org in ("acme", 42, ORG.hex, {"id": str(ORG)}):
            headers = auth(funded_user, org)
            answers = [
                await client.post("/api/jobs", json=JOB, headers=headers),
                await client.post("/api/jobs", json=JOB, headers=headers | {"Idempotency-Key": "k1"}),
                await client.post("/api/jobs/batch", json={"jobs": [JOB]}, headers=headers),
                await client.post("/api/jobs/import", content=json.dumps(JOB), headers=headers | NDJSON),
            ]
            for answer in answers:
                assert answer.status_code == 422, answer.text
                (error,) = answer.json()["errors"]
                assert error["field"] == f"token.{CLAIM}"
                assert CLAIM in error["reason"] and "uuid" in error["reason"]
            # Reading is not creating: the token still reads its own jobs.
            assert (await client.get("/api/jobs", headers=headers)).status_code == 200
    assert await snapshot(db_url, funded_user) == before


async def test_without_tenant_claim_the_user_is_the_tenant(
    client: httpx.AsyncClient, funded_user: uuid.UUID, db_url: str
) -> None:
    jobs = await create_on_every_path(client, auth(funded_user, ORG))
    assert {j["tenant"] for j in jobs} == {str(funded_user)}
    assert tenants(db_url, funded_user) == [funded_user] * 7
    # Nor does a claim that is not a uuid matter then.
    created = await client.post("/api/jobs", json=JOB, headers=auth(funded_user, "acme"))
    assert created.status_code == 201 and created.json()["tenant"] == str(funded_user)
