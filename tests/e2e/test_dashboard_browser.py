"""The dashboard in headless Chromium: sign in, watch live numbers move while a worker runs,
requeue a failed job from the page, inspect a job, and save a full-page screenshot."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import pytest

from aijobs.config import Settings
from aijobs.db.store import Store
from tests.conftest import worker_env
from tests.support.api_server import SERVICE_KEY, ApiServer, api_settings
from tests.support.jobs import create_job
from tests.support.workers import WorkerProcess, fetch_all, wait_until

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium"),
]


async def enqueue(store: Store, user: uuid.UUID, texts: list[str], max_attempts: int = 2) -> list[uuid.UUID]:
    async with store.session() as s:
        return [
            (
                await create_job(
                    s, user_id=user, type="sentiment_analysis", payload={"text": t}, max_attempts=max_attempts
                )
            ).id
            for t in texts
        ]


async def test_dashboard_live_requeue_and_screenshot(
    settings: Settings, db_url: str, store: Store, funded_user: uuid.UUID, tmp_path: Path, artifacts_dir: Path
) -> None:
    from playwright.async_api import async_playwright

    api = ApiServer(api_settings(settings)).start()
    env = worker_env(db_url, MAINTENANCE_INTERVAL_SECONDS="1", WORKER_CONCURRENCY="3")
    # One job that fails for good (to requeue), a few retries, and a backlog to watch drain.
    [failing] = await enqueue(store, funded_user, ["fatal"], max_attempts=1)
    await enqueue(store, funded_user, ["flaky:1", "flaky:2"], max_attempts=4)
    await enqueue(store, funded_user, ["sleep:0.4"] * 40)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = await browser.new_page(viewport={"width": 1440, "height": 900})
            await page.goto(f"{api.url}/dashboard")
            assert page.url.endswith("/dashboard/login")
            await page.fill("input[name=key]", SERVICE_KEY)
            await page.click("button[type=submit]")
            await page.wait_for_selector('[data-testid="completed-60"]')
            await page.evaluate("window.__noReload = true")

            first = int(await page.inner_text('[data-testid="completed-60"]'))
            await page.wait_for_function(
                "n => Number(document.querySelector('[data-testid=\"completed-60\"]').textContent) > n + 5",
                arg=first,
                timeout=30_000,
            )
            # The worker shows up as alive, holding jobs, while it works.
            await page.wait_for_selector('[data-testid="workers"] .badge.alive', timeout=10_000)
            assert await page.evaluate("window.__noReload") is True, "the page must update without reloading"

            # The failed job is listed with a Requeue button; pressing it makes a new charged job.
            button = page.locator(f'button.requeue[data-job="{failing}"]')
            await button.wait_for(timeout=20_000)
            await button.click()
            await page.wait_for_selector("#toast:not([hidden])", timeout=10_000)
            assert "Requeued as job" in await page.inner_text("#toast")
            rows = await fetch_all(db_url, "select id, cost from aijobs.jobs where retry_of = %s", failing)
            assert len(rows) == 1
            debit = await fetch_all(
                db_url,
                "select amount from aijobs.credit_ledger where job_id = %s and kind = 'debit'",
                rows[0]["id"],
            )
            assert [d["amount"] for d in debit] == [-rows[0]["cost"]]

            # The job inspector opens with the attempts of the failed job.
            await page.locator(f'a.inspect[data-job="{failing}"]').first.click()
            await page.wait_for_selector('[data-testid="job-inspector"]')
            assert "scripted fatal error" in await page.inner_text("#inspector")
            await page.click("#close-inspector")

            async def drained() -> bool:
                left = await fetch_all(
                    db_url, "select 1 from aijobs.jobs where status in ('pending', 'processing')"
                )
                return not left

            await wait_until(drained, timeout=60, interval=0.25, what="backlog drained")
            await asyncio.sleep(2.5)  # one more live refresh and a queue sample
            assert int(await page.inner_text('[data-testid="completed-60"]')) >= 42
            await page.screenshot(path=str(artifacts_dir / "dashboard.png"), full_page=True)
            await browser.close()
    finally:
        worker.send(signal.SIGTERM)
        await worker.wait()
        api.stop()
