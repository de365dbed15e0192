"""The dashboard's routes and the API's /metrics over real HTTP: who may look, what parses."""

from __future__ import annotations

import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aijobs.config import Settings
from aijobs.db.store import Store
from aijobs.monitoring.view import short_id
from tests.support.api_server import SERVICE_KEY, ApiServer, api_settings
from tests.support.database import drop_database
from tests.support.jobs import create_job
from tests.support.workers import fetch_all


@pytest.fixture
def api(settings: Settings) -> ApiServer:
    server = ApiServer(api_settings(settings)).start()
    yield server
    server.stop()


async def test_metrics_parse_and_carry_queue_gauges(
    api: ApiServer, store: Store, funded_user: uuid.UUID
) -> None:
    async with store.session() as s:
        await create_job(s, user_id=funded_user, type="sentiment_analysis", payload={"text": "hi"})
    async with httpx.AsyncClient(base_url=api.url) as c:
        res = await c.get("/metrics")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(res.text)}
    depth = {(s.labels["type"], s.labels["status"]): s.value for s in families["aijobs_queue_depth"].samples}
    assert depth[("sentiment_analysis", "pending")] == 1.0
    assert sum(depth.values()) == 1.0  # every other type and status reads 0
    assert families["aijobs_queue_oldest_pending_age_seconds"].samples[0].value >= 0
    for family in families.values():
        for sample in family.samples:
            assert not {"user_id", "job_id", "id", "user"} & set(sample.labels)


async def test_dashboard_is_admin_only(api: ApiServer, funded_user: uuid.UUID) -> None:
    async with httpx.AsyncClient(base_url=api.url) as c:
        anonymous = await c.get("/dashboard")
        assert anonymous.status_code == 303 and anonymous.headers["location"] == "/dashboard/login"
        assert (await c.get("/dashboard/live")).status_code == 401
        user = await c.get("/dashboard/live", headers=api.auth(funded_user))
        assert user.status_code == 403
        admin = api.auth(funded_user, admin=True)
        assert (await c.get("/dashboard/live", headers=admin)).status_code == 200
        assert (await c.get("/dashboard/live", headers={"apikey": SERVICE_KEY})).status_code == 200
        bad = await c.post("/dashboard/login", content="key=wrong")
        assert bad.status_code == 401 and "sign in" in bad.text.lower()
        good = await c.post("/dashboard/login", content=f"key={SERVICE_KEY}")
        assert good.status_code == 303
        cookie = good.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
        page = await c.get("/dashboard")
        assert page.status_code == 200 and 'data-testid="pending"' in page.text
        assert "NO AUTH CONFIGURED" not in page.text
        # State changes need the X-Dashboard header (a cross-site form cannot send it).
        refused = await c.post(f"/dashboard/jobs/{uuid.uuid4()}/requeue")
        assert refused.status_code == 403


async def test_open_without_auth_only_on_loopback_and_loudly(settings: Settings) -> None:
    server = ApiServer(settings).start()  # no JWT secret, no service key
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            page = await c.get("/dashboard")
        assert page.status_code == 200
        assert 'data-testid="no-auth-warning"' in page.text and "NO AUTH CONFIGURED" in page.text
    finally:
        server.stop()


async def test_without_auth_a_page_under_another_name_cannot_drive_the_dashboard(settings: Settings) -> None:
    """DNS rebinding: a site re-points its own name at 127.0.0.1, so its requests come from a
    loopback address and are same-origin for it. They name its host: refused, read or write."""
    server = ApiServer(settings).start()  # no JWT secret, no service key
    port = server.url.rsplit(":", 1)[1]
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            for host in (
                f"attacker.example:{port}",
                "attacker.example",
                f"127.0.0.1.attacker.example:{port}",
            ):
                read = await c.get("/dashboard/live", headers={"Host": host})
                assert read.status_code == 403, (host, read.text)
                pause = await c.post(
                    "/dashboard/job-types/sentiment_analysis/pause",
                    headers={"Host": host, "X-Dashboard": "1"},
                )
                assert pause.status_code == 403, (host, pause.text)
            for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost"):
                assert (await c.get("/dashboard/live", headers={"Host": host})).status_code == 200, host
    finally:
        server.stop()


async def test_metrics_serve_the_last_snapshot_when_the_database_is_gone(
    api: ApiServer, store: Store, funded_user: uuid.UUID, admin_url: str, db_url: str
) -> None:
    async with store.session() as s:
        await create_job(s, user_id=funded_user, type="sentiment_analysis", payload={"text": "hi"})
    async with httpx.AsyncClient(base_url=api.url) as c:
        assert (await c.get("/metrics")).status_code == 200
        # The next scrape must try the database again instead of serving the fresh cache.
        assert api.app is not None
        api.app.state.monitoring_refresher.max_age = 0
        drop_database(admin_url, db_url)
        res = await c.get("/metrics")
    assert res.status_code == 200, res.text
    families = {f.name: f for f in text_string_to_metric_families(res.text)}
    depth = families["aijobs_queue_depth"].samples
    pending = {s.labels["type"]: s.value for s in depth if s.labels["status"] == "pending"}
    assert pending["sentiment_analysis"] == 1.0, "the last snapshot is served"
    assert families["aijobs_queue_snapshot_age_seconds"].samples[0].value > 0
    assert "aijobs_jobs_created" in families, "the process's own counters are served too"


async def test_pause_and_resume_a_job_type_from_the_dashboard_and_the_api(
    api: ApiServer, store: Store, funded_user: uuid.UUID, db_url: str
) -> None:
    async with store.session() as s:
        waiting = await create_job(s, user_id=funded_user, type="sentiment_analysis", payload={"text": "hi"})
    admin = api.auth(funded_user, admin=True)
    user = api.auth(funded_user)
    pause = "/dashboard/job-types/sentiment_analysis/pause"
    async with httpx.AsyncClient(base_url=api.url) as c:
        live = await c.get("/dashboard/live", headers=admin)
        assert 'data-testid="job-types"' in live.text
        assert 'class="pause-type" type="button" data-type="sentiment_analysis"' in live.text
        # Who may press it: an admin, with the header a cross-site form cannot send.
        assert (await c.post(pause, headers=admin)).status_code == 403
        assert (await c.post(pause, headers={**user, "X-Dashboard": "1"})).status_code == 403
        assert (await c.post(pause)).status_code == 401
        pressed = await c.post(pause, headers={**admin, "X-Dashboard": "1"})
        assert pressed.status_code == 200, pressed.text
        assert pressed.json() == {
            "name": "sentiment_analysis",
            "enabled": True,
            "paused": True,
            "max_running_per_tenant": None,
        }
        live = await c.get("/dashboard/live", headers=admin)
        row = live.text.split('data-type="sentiment_analysis"')[1]
        assert '<span class="badge paused">paused</span>' in row
        assert 'class="resume-type"' in live.text and 'data-testid="types-paused"' in live.text
        assert "<code>sentiment_analysis</code> (1 waiting)" in live.text
        inspector = await c.get(f"/dashboard/jobs/{waiting.id}", headers=admin)
        assert '<span class="badge paused"' in inspector.text

        unknown = await c.post(
            "/dashboard/job-types/no_such_type/pause", headers={**admin, "X-Dashboard": "1"}
        )
        assert unknown.status_code == 404 and unknown.json()["detail"] == "no such job type"
        odd = await c.post(
            "/dashboard/job-types/sentiment_analysis/halt", headers={**admin, "X-Dashboard": "1"}
        )
        assert odd.status_code == 422

        # The admin API: the same switch; a user may not touch it; creations are still accepted.
        refused = await c.put("/api/admin/job-types/sentiment_analysis", json={"paused": False}, headers=user)
        assert refused.status_code == 403
        created = await c.post(
            "/api/jobs", json={"type": "sentiment_analysis", "payload": {"text": "x"}}, headers=user
        )
        assert created.status_code == 201, created.text
        typo = await c.put("/api/admin/job-types/sentiment_analysis", json={"pause": False}, headers=admin)
        assert typo.status_code == 422 and "pause" in typo.text
        resumed = await c.put(
            "/api/admin/job-types/sentiment_analysis", json={"paused": False}, headers=admin
        )
        assert resumed.json() == {
            "name": "sentiment_analysis",
            "enabled": True,
            "paused": False,
            "max_running_per_tenant": None,
        }
        live = await c.get("/dashboard/live", headers=admin)
        assert 'data-testid="types-paused"' not in live.text
        inspector = await c.get(f"/dashboard/jobs/{waiting.id}", headers=admin)
        assert "badge paused" not in inspector.text
    rows = await fetch_all(db_url, "select paused from aijobs.job_types where name = 'sentiment_analysis'")
    assert rows == [{"paused": False}]


async def test_find_a_job_by_its_id_or_the_part_the_page_shows(
    api: ApiServer, store: Store, funded_user: uuid.UUID
) -> None:
    async with store.session() as s:
        ids = [
            (await create_job(s, user_id=funded_user, type="sentiment_analysis", payload={"text": "hi"})).id
            for _ in range(3)
        ]
    admin = api.auth(funded_user, admin=True)

    async def find(text: str, headers: dict[str, str] = admin) -> httpx.Response:
        async with httpx.AsyncClient(base_url=api.url) as c:
            return await c.get("/dashboard/find", params={"id": text}, headers=headers)

    job = ids[1]
    for text in (str(job), job.hex.upper(), short_id(job), f"…{job.hex[-8:]}", job.hex[-8:], job.hex[-12:]):
        one = await find(text)
        assert one.status_code == 200, (text, one.text)
        assert f'data-testid="job-inspector" data-job="{job}"' in one.text, text
    # Jobs made together share the start of their ids (UUIDv7): a start lists them to pick.
    several = await find(job.hex[:8])
    assert several.status_code == 200 and 'data-testid="find-results"' in several.text
    assert all(f'data-job="{i}"' in several.text for i in ids)
    assert "3 jobs match" in several.text

    none = await find("0000…deadbeef")
    assert none.status_code == 404 and "no job id matches" in none.text
    assert "no job with id" in (await find(str(uuid.uuid4()))).text
    for text, reason in [
        ("abc", "too few"),
        ("x" * 200, "too long"),
        ("1' or '1'='1", "cannot be in a job id"),
    ]:
        refused = await find(text)
        assert refused.status_code == 422 and reason in refused.text, refused.text
        assert 'data-testid="find-error"' in refused.text
    assert (await find(job.hex[-8:], api.auth(funded_user))).status_code == 403


async def test_top_tenants_on_the_dashboard_and_the_admin_api_never_in_metrics(
    api: ApiServer, store: Store, db_url: str
) -> None:
    """Per-tenant depth and running counts, most jobs waiting first, with each tenant's limit:
    on the dashboard and at /api/admin/tenants. /metrics keeps no per-user label or value."""
    busy, quiet = uuid.uuid4(), uuid.uuid4()
    async with store.session() as s:
        for user, n in ((busy, 4), (quiet, 1)):
            await s.accounts.grant_credits(user, n)
            for i in range(n):
                await create_job(s, user_id=user, type="sentiment_analysis", payload={"text": f"{i}"})
        await s.accounts.set_max_running(busy, 1)
        await s.jobs.claim("w", 5, 60)  # busy: 1 (its limit), quiet: 1
    service = {"Authorization": f"Bearer {SERVICE_KEY}"}
    async with httpx.AsyncClient(base_url=api.url) as c:
        listed = await c.get("/api/admin/tenants", params={"limit": 20}, headers=service)
        first = await c.get("/api/admin/tenants", params={"limit": 1}, headers=service)
        bad = await c.get("/api/admin/tenants", params={"limit": 0}, headers=service)
        as_user = await c.get("/api/admin/tenants", headers=api.auth(quiet))
        live = await c.get("/dashboard/live", headers=service)
        scraped = await c.get("/metrics")
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"] == [
        {"tenant": str(busy), "pending": 3, "processing": 1, "weight": 1, "max_running": 1},
        {"tenant": str(quiet), "pending": 0, "processing": 1, "weight": 1, "max_running": None},
    ]
    assert [t["tenant"] for t in first.json()["items"]] == [str(busy)]
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.limit"
    assert as_user.status_code == 403
    html = live.text
    assert "Top tenants" in html
    table = html[html.index('data-testid="tenants"') :].split("</table>")[0]
    assert table.index(str(busy)) < table.index(str(quiet))
    assert table.count("at limit") == 1
    for user in (busy, quiet):
        assert str(user) not in scraped.text
    for family in text_string_to_metric_families(scraped.text):
        for sample in family.samples:
            assert not {"tenant", "user_id", "user"} & set(sample.labels), sample
