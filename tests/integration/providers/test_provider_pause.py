"""A misconfigured provider (a wrong key, an unknown model, nothing at its base URL) is the
deployment's fault, not the customer's: every worker pauses it, jobs wait pending with no
attempt spent and nothing refunded, /readyz, `aijobs stats`, the dashboard and the log say so,
and a probe resumes the work once the configuration is fixed. A bad request stays the job's."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from aijobs.config import Settings
from aijobs.db.store import Store
from aijobs.jobs import get_job_type
from aijobs.monitoring.stats import collect
from aijobs.monitoring.view import render
from aijobs.providers.fake_openai import FakeOpenAI, Step
from tests.integration.providers.helpers import attempts, create, ledger, openai_workers, wait_for_status
from tests.support.api_server import SERVICE_KEY, ApiServer, api_settings
from tests.support.fake_openai_fixtures import TEST_KEY, openai_settings_for
from tests.support.workers import fetch_all, fetch_one, job, wait_until

#: Probes this often in these tests (the default is 30 s).
PROBE = 0.2


async def pause_row(db_url: str) -> dict[str, Any] | None:
    rows = await fetch_all(
        db_url,
        "select paused_since, paused_reason from aijobs.provider_limits"
        " where provider = 'openai' and paused_since is not null",
    )
    return rows[0] if rows else None


async def wait_paused(db_url: str) -> dict[str, Any]:
    async def paused() -> bool:
        return await pause_row(db_url) is not None

    await wait_until(paused, what="the provider paused")
    row = await pause_row(db_url)
    assert row is not None
    return row


async def wait_all_waiting(db_url: str, ids: list[uuid.UUID]) -> None:
    """Every job back to pending with no attempt counted (each was tried or never claimed)."""

    async def waiting() -> bool:
        rows = [await job(db_url, i) for i in ids]
        return all(r["status"] == "pending" and r["attempts"] == 0 for r in rows)

    await wait_until(waiting, what="the jobs pending with no attempt spent")


async def assert_nothing_charged_back(db_url: str, user: uuid.UUID, ids: list[uuid.UUID]) -> None:
    for job_id in ids:
        assert [r["kind"] for r in await ledger(db_url, job_id)] == ["debit"]
        assert {a["outcome"] for a in await attempts(db_url, job_id)} <= {"handed_back"}
    costs = sum([get_job_type((await job(db_url, i))["type"]).cost for i in ids])
    account = await fetch_one(db_url, "select balance from aijobs.accounts where user_id = %s", user)
    assert account["balance"] == 1000 - costs
    assert not await fetch_all(db_url, "select 1 from aijobs.jobs where status = 'failed'")


def log_lines(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(start)]


async def test_a_wrong_key_pauses_every_worker_and_is_shown_until_the_key_is_fixed(
    settings: Settings,
    store: Store,
    db_url: str,
    funded_user: uuid.UUID,
    fake_openai: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_openai.api_key = "sk-the-right-key-0123456789"  # the workers send TEST_KEY: 401
    cfg = openai_settings_for(settings, fake_openai, provider_probe_seconds=PROBE)
    ids = [await create(store, funded_user, "sentiment_analysis") for _ in range(3)]
    ids.append(await create(store, funded_user, "ai_generation"))
    api = ApiServer(api_settings(settings)).start()
    try:
        with caplog.at_level(logging.INFO, logger="aijobs.worker"):
            async with openai_workers(cfg, store, n=2):
                paused = await wait_paused(db_url)
                assert paused["paused_reason"].startswith("OpenAI API error: 401 Unauthorized")
                await wait_all_waiting(db_url, ids)
                # Probes keep meeting the wrong key: the jobs keep waiting, charged once, never refunded.
                await wait_until(_probed(fake_openai, 2), what="two probes answered 401 while paused")
                await wait_all_waiting(db_url, ids)
                await assert_nothing_charged_back(db_url, funded_user, ids)

                async with httpx.AsyncClient(base_url=api.url) as http:
                    ready = await http.get("/readyz")
                    live = await http.get("/dashboard/live", headers={"apikey": SERVICE_KEY})
                assert ready.status_code == 200
                body = ready.json()
                assert body["status"] == "degraded"
                [shown] = body["providers_paused"]
                assert shown["provider"] == "openai" and shown["reason"].startswith("OpenAI API error: 401")
                assert live.status_code == 200 and 'data-testid="provider-paused"' in live.text
                assert "401 Unauthorized" in live.text

                async with store.session() as session:
                    stats = await collect(session)
                [pause] = stats.as_json()["provider_pauses"]
                assert pause["provider"] == "openai" and pause["reason"].startswith("OpenAI API error: 401")
                assert "PROVIDER PAUSED: openai" in render(stats)
                assert stats.pending == len(ids)

                fake_openai.api_key = TEST_KEY  # the operator fixes the key
                await wait_for_status(db_url, ids, "completed")
            assert await pause_row(db_url) is None
            async with httpx.AsyncClient(base_url=api.url) as http:
                ready = await http.get("/readyz")
            assert ready.json() == {"status": "ready", "migrations_pending": [], "providers_paused": []}
    finally:
        api.stop()
    for job_id in ids:
        row = await job(db_url, job_id)
        assert row["attempts"] == 1 and row["error"] is None
    # Said once each, however many jobs and workers met the wrong key.
    assert len(log_lines(caplog, "⛔ openai paused for every worker")) == 1
    assert len(log_lines(caplog, "▶️ openai answers again")) == 1
    assert not log_lines(caplog, "❌")


def _probed(fake: FakeOpenAI, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return sum(1 for r in fake.requests if r.body.get("input") == "ping" and r.status == 401) >= n

    return check


@pytest.mark.parametrize(
    ("status", "code"), [(401, "invalid_api_key"), (403, "unsupported_country_region_territory")]
)
async def test_a_refused_key_pauses_without_storing_the_key_and_a_probe_resumes(
    settings: Settings,
    store: Store,
    db_url: str,
    funded_user: uuid.UUID,
    fake_openai: FakeOpenAI,
    status: int,
    code: str,
) -> None:
    # A server that echoes the key back must not get it into our rows. The next request (the
    # probe) is answered: the configuration works again.
    fake_openai.script(Step.error(status, code=code, message=f"Incorrect API key provided: {TEST_KEY}."))
    cfg = openai_settings_for(settings, fake_openai, provider_probe_seconds=PROBE)
    job_id = await create(store, funded_user, "ai_generation")
    async with openai_workers(cfg, store):
        await wait_for_status(db_url, [job_id], "completed")
    row = await job(db_url, job_id)
    assert row["attempts"] == 1  # the refused attempt was given back
    tries = await attempts(db_url, job_id)
    assert [a["outcome"] for a in tries] == ["handed_back", "completed"]
    assert tries[0]["error"].startswith(f"OpenAI API error: {status} ")
    assert TEST_KEY not in tries[0]["error"] and "SECRET" not in tries[0]["error"]
    assert await ledger(db_url, job_id) == [{"kind": "debit", "amount": -2}]
    limits = await fetch_one(db_url, "select * from aijobs.provider_limits where provider = 'openai'")
    assert limits["paused_since"] is None and limits["paused_reason"] is None
    probes = [r for r in fake_openai.requests if r.body.get("input") == "ping"]
    assert [r.status for r in probes] == [200]


async def test_an_unknown_model_pauses_until_the_model_is_served(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID, fake_openai: FakeOpenAI
) -> None:
    fake_openai.models = {"gpt-5-nano"}
    cfg = openai_settings_for(settings, fake_openai, openai_model="gpt-9", provider_probe_seconds=PROBE)
    ids = [await create(store, funded_user, "review_processing") for _ in range(2)]
    async with openai_workers(cfg, store):
        paused = await wait_paused(db_url)
        assert paused["paused_reason"].startswith("OpenAI API error: 404 Not Found (model_not_found)")
        await wait_all_waiting(db_url, ids)
        await wait_until(_probed_status(fake_openai, 404), what="a probe answered 404")
        await wait_all_waiting(db_url, ids)
        await assert_nothing_charged_back(db_url, funded_user, ids)
        fake_openai.models = {"gpt-5-nano", "gpt-9"}  # the model exists now
        await wait_for_status(db_url, ids, "completed")
    assert [(await job(db_url, i))["attempts"] for i in ids] == [1, 1]


def _probed_status(fake: FakeOpenAI, status: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return any(r.body.get("input") == "ping" and r.status == status for r in fake.requests)

    return check


async def test_a_base_url_where_nothing_listens_pauses_until_a_server_answers(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID
) -> None:
    with socket.socket() as s:  # a port nothing listens on (until the fake starts on it)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = settings.model_copy(
        update={
            "llm_provider": "openai",
            "openai_api_key": None,
            "openai_base_url": f"http://127.0.0.1:{port}/v1",
            "openai_timeout_seconds": 5.0,
            "provider_probe_seconds": PROBE,
        }
    )
    ids = [await create(store, funded_user, "sentiment_analysis") for _ in range(2)]
    async with openai_workers(cfg, store):
        paused = await wait_paused(db_url)
        assert paused["paused_reason"].startswith("could not connect to the OpenAI API")
        await wait_all_waiting(db_url, ids)
        await assert_nothing_charged_back(db_url, funded_user, ids)
        with FakeOpenAI(port=port):  # the server comes up
            await wait_for_status(db_url, ids, "completed")
    assert await pause_row(db_url) is None


async def test_a_bad_request_still_fails_its_own_job_and_pauses_nothing(
    settings: Settings, store: Store, db_url: str, funded_user: uuid.UUID, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(Step.error(400, code="invalid_value", message="Invalid value for 'input'."))
    cfg = openai_settings_for(settings, fake_openai, provider_probe_seconds=PROBE)
    bad = await create(store, funded_user, "sentiment_analysis")
    async with openai_workers(cfg, store):
        await wait_for_status(db_url, [bad], "failed")
        good = await create(store, funded_user, "sentiment_analysis")
        await wait_for_status(db_url, [good], "completed")
    row = await job(db_url, bad)
    assert row["attempts"] == 1 and row["error"].startswith("OpenAI API error: 400 Bad Request")
    assert [r["kind"] for r in await ledger(db_url, bad)] == ["debit", "refund"]
    assert await pause_row(db_url) is None
    async with store.session() as session:
        assert (await collect(session)).as_json()["provider_pauses"] == []
    assert not [r for r in fake_openai.requests if r.body.get("input") == "ping"]  # never probed
