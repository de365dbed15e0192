"""The dashboard in headless Chromium: ids of jobs created together can be told apart, a job
is found by its id, and cancelled from the inspector."""

from __future__ import annotations

import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aijobs.config import Settings
from aijobs.db.store import Store
from aijobs.queue.enqueue import enqueue as enqueue_one
from tests.conftest import worker_env
from tests.e2e.test_dashboard_browser import ARGS, CHROMIUM
from tests.support.api_server import SERVICE_KEY, ApiServer, api_settings
from tests.support.workers import WorkerProcess, fetch_all, job, wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium"),
]


async def test_ids_are_distinct_findable_and_cancellable(
    settings: Settings, db_url: str, store: Store, funded_user: uuid.UUID, tmp_path: Path, artifacts_dir: Path
) -> None:
    from playwright.async_api import async_playwright

    async with store.session() as s:
        failing = [
            (
                await enqueue_one(
                    s,
                    user_id=funded_user,
                    job_type="sentiment_analysis",
                    payload={"text": "fatal"},
                    max_attempts=1,
                )
            ).id
            for _ in range(4)
        ]
    worker = WorkerProcess(worker_env(db_url), tmp_path / "worker.log")

    async def failed() -> bool:
        rows = await fetch_all(db_url, "select status from aijobs.jobs where id = any(%s)", failing)
        return [r["status"] for r in rows] == ["failed"] * len(failing)

    try:
        await wait_until(failed, timeout=30, what="the jobs to fail")
    finally:
        worker.send(signal.SIGTERM)
        await worker.wait()
    # Not due for an hour: it stays pending, for the inspector to cancel.
    async with store.session() as s:
        later = await enqueue_one(
            s,
            user_id=funded_user,
            job_type="sentiment_analysis",
            payload={"text": "later"},
            run_at=datetime.now(UTC) + timedelta(hours=1),
        )

    api = ApiServer(api_settings(settings)).start()
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = await browser.new_page(viewport={"width": 1440, "height": 900})
            await page.goto(f"{api.url}/dashboard/login")
            await page.fill("input[name=key]", SERVICE_KEY)
            await page.click("button[type=submit]")
            await page.wait_for_selector('[data-testid="failures"] a.inspect')

            links = page.locator('[data-testid="failures"] a.inspect:not(.requeued)')
            shown = await links.all_inner_texts()
            titles = [await links.nth(i).get_attribute("title") for i in range(await links.count())]
            assert len(shown) == len(failing) and len(set(shown)) == len(shown), shown
            assert sorted(titles) == sorted(str(i) for i in failing), titles
            await page.locator('[data-testid="failures"]').screenshot(
                path=str(artifacts_dir / "dashboard-ids.png")
            )

            await page.fill("#find-job input[name=id]", f"  {later.id} ")
            await page.click("#find-job button")
            inspector = page.locator('[data-testid="job-inspector"]')
            await inspector.wait_for()
            assert await inspector.get_attribute("data-job") == str(later.id)
            await page.screenshot(path=str(artifacts_dir / "dashboard-find-job.png"))
            await page.click('[data-testid="job-inspector"] button.cancel')
            await page.wait_for_selector('[data-testid="job-inspector"] .badge.cancelled')
            await page.screenshot(path=str(artifacts_dir / "dashboard-cancelled.png"))

            await page.click("#close-inspector")
            await page.fill("#find-job input[name=id]", str(uuid.uuid4()))
            await page.press("#find-job input[name=id]", "Enter")
            await page.wait_for_selector("#inspector-body .error")
            assert "no job" in await page.inner_text("#inspector-body")
            await browser.close()
    finally:
        api.stop()
    assert (await job(db_url, later.id))["status"] == "cancelled"
