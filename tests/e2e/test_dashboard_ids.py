"""The dashboard in headless Chromium: ids of jobs created together can be told apart, a job
is found by its id or the part of it the page shows, and cancelled from the inspector."""

from __future__ import annotations

import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aijobs.config import Settings
from aijobs.db.store import Store
from aijobs.monitoring.view import short_id
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

            # As the page shows an id (first4…last8), or only its end: that one job opens.
            target = failing[2]
            for text in (short_id(target), target.hex[-8:]):
                await page.click("#close-inspector")
                await page.fill("#find-job input[name=id]", text)
                await page.press("#find-job input[name=id]", "Enter")
                await page.wait_for_selector(f'[data-testid="job-inspector"][data-job="{target}"]')
            # The start the failed jobs share (made together: UUIDv7) lists them to pick from.
            await page.click("#close-inspector")
            await page.fill("#find-job input[name=id]", failing[0].hex[:8])
            await page.press("#find-job input[name=id]", "Enter")
            results = page.locator('[data-testid="find-results"] a.inspect')
            await results.first.wait_for()
            listed = {await results.nth(i).get_attribute("data-job") for i in range(await results.count())}
            assert {str(i) for i in failing} <= listed, listed
            await page.screenshot(path=str(artifacts_dir / "dashboard-find-several.png"))
            await page.locator(f'[data-testid="find-results"] a.inspect[data-job="{failing[3]}"]').click()
            await page.wait_for_selector(f'[data-testid="job-inspector"][data-job="{failing[3]}"]')

            await page.fill("#find-job input[name=id]", "not an id!")
            await page.press("#find-job input[name=id]", "Enter")
            await page.wait_for_selector('[data-testid="find-error"]')
            assert "cannot be in a job id" in await page.inner_text('[data-testid="find-error"]')

            await page.click("#close-inspector")
            await page.fill("#find-job input[name=id]", str(uuid.uuid4()))
            await page.press("#find-job input[name=id]", "Enter")
            await page.wait_for_selector("#inspector-body .error")
            assert "no job" in await page.inner_text("#inspector-body")
            await browser.close()
    finally:
        api.stop()
    assert (await job(db_url, later.id))["status"] == "cancelled"
