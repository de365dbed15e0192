"""The dashboard in headless Chromium: pause a job type with its button, see it paused (its
pending jobs wait, counted), and resume it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from aijobs.config import Settings
from aijobs.db.store import Store
from tests.e2e.test_dashboard_browser import ARGS, CHROMIUM, enqueue
from tests.support.api_server import SERVICE_KEY, ApiServer, api_settings
from tests.support.workers import fetch_all

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium"),
]


async def paused(db_url: str) -> bool:
    rows = await fetch_all(db_url, "select paused from aijobs.job_types where name = 'sentiment_analysis'")
    return bool(rows[0]["paused"])


async def test_pause_and_resume_a_job_type_with_its_button(
    settings: Settings, db_url: str, store: Store, funded_user: uuid.UUID, artifacts_dir: Path
) -> None:
    from playwright.async_api import async_playwright

    await enqueue(store, funded_user, ["waits 1", "waits 2"])
    async with store.session() as s:  # shown in the table, beside the switches
        await s.job_types.switch("sentiment_analysis", max_running_per_tenant=2)
    api = ApiServer(api_settings(settings)).start()
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = await browser.new_page(viewport={"width": 1440, "height": 900})
            await page.goto(f"{api.url}/dashboard/login")
            await page.fill("input[name=key]", SERVICE_KEY)
            await page.click("button[type=submit]")
            row = page.locator('[data-testid="job-types"] tr[data-type="sentiment_analysis"]')
            await row.wait_for()
            assert "active" in await row.inner_text()
            assert (await row.locator("td").all_inner_texts())[3] == "2"

            await row.locator("button.pause-type").click()
            await page.wait_for_selector("#toast:not([hidden])")
            assert "sentiment_analysis paused" in await page.inner_text("#toast")
            await row.locator(".badge.paused").wait_for()
            banner = page.locator('[data-testid="types-paused"]')
            await banner.wait_for()
            assert "sentiment_analysis (2 waiting)" in await banner.inner_text()
            assert await paused(db_url)
            await page.screenshot(path=str(artifacts_dir / "dashboard-type-paused.png"), full_page=True)

            await row.locator("button.resume-type").click()
            await row.locator("button.pause-type").wait_for()
            assert "active" in await row.inner_text()
            assert await banner.count() == 0
            assert not await paused(db_url)
            await browser.close()
    finally:
        api.stop()
