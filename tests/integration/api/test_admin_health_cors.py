"""Admin endpoints, health checks, CORS for a Chrome extension, and the published OpenAPI."""

from __future__ import annotations

import uuid

import psycopg

from aijobs.db.migrate import not_applied
from aijobs.db.store import Store
from tests.support.api_server import SERVICE_KEY
from tests.support.database import create_test_database, drop_database
from tests.support.snapshots import snapshot

SERVICE = {"Authorization": f"Bearer {SERVICE_KEY}"}
SENTIMENT = {"type": "sentiment_analysis", "payload": {"text": "Lovely staff, quick service."}}
EXTENSION = "chrome-extension://abcdefghijklmnopabcdefghijklmnop"


async def test_admin_lists_all_jobs_and_requeues_as_a_new_charged_job(
    client, api, funded_user, other_user, db_url
) -> None:
    a = (await client.post("/api/jobs", json=SENTIMENT, headers=api.auth(funded_user))).json()
    b = (await client.post("/api/jobs", json=SENTIMENT, headers=api.auth(other_user))).json()
    everything = (await client.get("/api/admin/jobs", headers=SERVICE)).json()
    assert {j["id"] for j in everything["items"]} == {a["id"], b["id"]}
    only_b = (
        await client.get("/api/admin/jobs", params={"user_id": str(other_user)}, headers=SERVICE)
    ).json()
    assert [j["id"] for j in only_b["items"]] == [b["id"]]

    pending = await client.post(f"/api/admin/jobs/{b['id']}/requeue", headers=SERVICE)
    assert pending.status_code == 409
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(
            "update aijobs.jobs set status = 'failed', error = 'boom', finished_at = now() where id = %s",
            (b["id"],),
        )
    assert (await snapshot(db_url, other_user)).balance == 1000  # the failure refunded it
    requeued = await client.post(f"/api/admin/jobs/{b['id']}/requeue", headers=SERVICE)
    assert requeued.status_code == 201, requeued.text
    new = requeued.json()
    assert new["retry_of"] == b["id"] and new["user_id"] == str(other_user) and new["status"] == "pending"
    state = await snapshot(db_url, other_user)
    assert (state.balance, state.ledger_sum, state.jobs) == (999, 999, 2)  # old keeps its refund
    assert (await client.post(f"/api/admin/jobs/{uuid.uuid4()}/requeue", headers=SERVICE)).status_code == 404

    grant = await client.post(
        "/api/admin/credits", json={"user_id": str(uuid.uuid4()), "amount": 0}, headers=SERVICE
    )
    assert grant.status_code == 422 and grant.json()["errors"][0]["field"] == "body.amount"
    nul = {"user_id": str(uuid.uuid4()), "amount": 5, "note": "a\u0000b"}
    grant = await client.post("/api/admin/credits", json=nul, headers=SERVICE)
    assert grant.status_code == 422 and grant.json()["errors"][0]["field"] == "body.note"


async def test_an_admin_requeue_sent_again_with_its_key_charges_once(
    client, api, funded_user, db_url
) -> None:
    """A client that times out and sends the requeue again with the same Idempotency-Key gets
    the job the first one made; the owner is charged once. A key the owner already used for
    another job is refused, not answered with that job."""
    own = await client.post(
        "/api/jobs", json=SENTIMENT, headers={**api.auth(funded_user), "Idempotency-Key": "mine"}
    )
    failed = (await client.post("/api/jobs", json=SENTIMENT, headers=api.auth(funded_user))).json()
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(
            "update aijobs.jobs set status = 'failed', error = 'boom', finished_at = now() where id = %s",
            (failed["id"],),
        )
    before = await snapshot(db_url, funded_user)
    keyed = {**SERVICE, "Idempotency-Key": "requeue-1"}
    first = await client.post(f"/api/admin/jobs/{failed['id']}/requeue", headers=keyed)
    again = await client.post(f"/api/admin/jobs/{failed['id']}/requeue", headers=keyed)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json()["id"] == first.json()["id"] and first.json()["retry_of"] == failed["id"]
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    after = await snapshot(db_url, funded_user)
    assert (after.balance, after.jobs) == (before.balance - 1, before.jobs + 1)
    reused = await client.post(
        f"/api/admin/jobs/{failed['id']}/requeue", headers={**SERVICE, "Idempotency-Key": "mine"}
    )
    assert own.status_code == 201 and reused.status_code == 409, reused.text
    assert reused.json()["code"] == "idempotency_key_reused"
    bad = await client.post(
        f"/api/admin/jobs/{failed['id']}/requeue", headers={**SERVICE, "Idempotency-Key": ""}
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "header.Idempotency-Key"
    assert (await snapshot(db_url, funded_user)).balance == before.balance - 1


async def test_a_grant_sent_again_with_its_key_is_made_once(client, db_url) -> None:
    """A payment webhook delivered twice grants once; the key with another amount is a 409."""
    user = str(uuid.uuid4())
    keyed = {**SERVICE, "Idempotency-Key": "evt_3MtwBwLkdIwHu7ix28a3tqPa"}
    first = await client.post("/api/admin/credits", json={"user_id": user, "amount": 50}, headers=keyed)
    again = await client.post("/api/admin/credits", json={"user_id": user, "amount": 50}, headers=keyed)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json() == again.json() == {"user_id": user, "balance": 50}
    other = await client.post("/api/admin/credits", json={"user_id": user, "amount": 60}, headers=keyed)
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused", other.text
    plain = await client.post("/api/admin/credits", json={"user_id": user, "amount": 5}, headers=SERVICE)
    assert plain.json()["balance"] == 55
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        rows = await (
            await conn.execute(
                "select amount from aijobs.credit_ledger where user_id = %s order by id", (user,)
            )
        ).fetchall()
    assert rows == [(50,), (5,)]


async def test_health_and_readiness(client) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "migrations_pending": [], "providers_paused": []}


async def test_readiness_reports_pending_migrations(client, db_url) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute("delete from aijobs.schema_migrations where version = 1")
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["pending"] == ["001_baseline"]


async def test_readiness_reads_a_database_never_migrated_as_every_migration_pending(admin_url) -> None:
    """Reachable but empty (a database restored from before aijobs, say): /readyz's reading is
    every migration pending, not "unreachable". (The API itself will not start on it.)"""
    url = create_test_database(admin_url, "template0", prefix="aj_unmigrated")
    try:
        store = await Store.open(url, min_size=1, max_size=1, name="readiness-test")
        try:
            async with store.session() as session:
                assert await session.applied_migrations() == set()
                # The same connection is fine afterwards (autocommit: nothing left aborted).
                assert await session.applied_migrations() == set()
        finally:
            await store.close()
    finally:
        drop_database(admin_url, url)
    assert not_applied(set())


async def test_cors_allows_the_configured_chrome_extension(client, api, funded_user) -> None:
    preflight = await client.options(
        "/api/jobs",
        headers={
            "Origin": EXTENSION,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == EXTENSION
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "idempotency-key" in allowed

    created = await client.post(
        "/api/jobs", json=SENTIMENT, headers=api.auth(funded_user) | {"Origin": EXTENSION}
    )
    assert created.headers["access-control-allow-origin"] == EXTENSION
    refused = await client.post("/api/jobs", json=SENTIMENT, headers={"Origin": EXTENSION})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == EXTENSION

    stranger = await client.options(
        "/api/jobs", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in stranger.headers


async def test_every_4xx_is_problem_json(client, api, funded_user) -> None:
    auth = api.auth(funded_user)
    cases = [
        ("GET", "/api/jobs/not-a-uuid", auth, None, 422),
        ("GET", "/no/such/route", auth, None, 404),
        ("DELETE", "/api/jobs", auth, None, 405),
        ("GET", "/api/jobs?limit=0", auth, None, 422),
        ("GET", "/api/jobs?status=done", auth, None, 422),
        ("GET", f"/api/jobs/{uuid.uuid4()}?wait=61", auth, None, 422),
        ("GET", f"/api/jobs/{uuid.uuid4()}", auth, None, 404),
        ("GET", "/api/me", {}, None, 401),
        ("GET", "/api/admin/jobs", auth, None, 403),
        ("POST", "/api/jobs", auth, [1, 2], 422),
    ]
    for method, path, headers, body, status in cases:
        response = await client.request(method, path, headers=headers, json=body)
        assert response.status_code == status, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json", path
        problem = response.json()
        assert problem["status"] == status and problem["title"] and problem["type"], problem


async def test_openapi_documents_models_and_problems(client) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert {"Job", "JobCreate", "JobPage", "Problem", "Me", "LedgerPage", "JobEvent"} <= set(
        spec["components"]["schemas"]
    )
    create = spec["paths"]["/api/jobs"]["post"]
    assert create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/Job")
    for status in ("401", "402", "409", "413", "422", "429"):
        assert "application/problem+json" in create["responses"][status]["content"], status
    page = await client.get("/api-test")
    assert page.status_code == 200 and "Create job" in page.text


async def test_readiness_opens_no_connection_of_its_own(client, admin_url, db_url) -> None:
    """An unauthenticated probe that connected anew per call could exhaust the server's
    connections; /readyz asks on the API's pool, so it answers while new connections are refused."""
    assert (await client.get("/readyz")).status_code == 200
    name = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(f'alter database "{name}" allow_connections false')
        try:
            for _ in range(3):
                response = await client.get("/readyz")
                assert response.status_code == 200, response.text
        finally:
            await conn.execute(f'alter database "{name}" allow_connections true')
