"""The /api-test page in headless Chromium: sign in, create a job, watch it complete live."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from aijobs.config import Settings
from aijobs.db.store import Store
from aijobs.providers.offline import OfflineProvider
from aijobs.worker.runner import Worker
from tests.support.api_server import ApiServer, api_settings

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (scripts/install-chromium.sh installs it)")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
def start_page_server(settings: Settings) -> Iterator[Any]:
    started: list[ApiServer] = []

    def start(**kwargs: Any) -> ApiServer:
        dev_user = kwargs.pop("dev_user", None)
        server = ApiServer(api_settings(settings, **kwargs), dev_user=dev_user).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


async def test_create_a_job_and_watch_it_complete(
    browser, start_page_server, settings, store: Store, funded_user: uuid.UUID, artifacts_dir: Path
) -> None:
    server = start_page_server(dev_user=funded_user)
    page = await browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{server.url}/api-test")

    await page.click("#dev-token")
    await page.wait_for_selector(f"#whoami:has-text('{funded_user}')")
    await page.wait_for_selector("#balance:has-text('1000')")

    await page.select_option("#job-type", "ai_generation")
    assert "review_text" in await page.input_value("#payload")  # prefilled with the type's example
    await page.click("#create")
    await page.wait_for_selector("#timeline li[data-status='pending']")

    worker = Worker(settings, store, OfflineProvider(), settings.database_url)
    task = asyncio.create_task(worker.run())
    try:
        await page.wait_for_selector("#live-status.completed", timeout=20_000)
        await page.wait_for_selector("#recent .badge.completed", timeout=10_000)
    finally:
        worker.request_stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 15)

    timeline = await page.eval_on_selector_all("#timeline li", "els => els.map(e => e.dataset.status)")
    assert timeline == ["pending", "processing", "completed"]
    result = await page.text_content("#result")
    assert result is not None and '"provider": "offline"' in result
    await page.wait_for_selector("#balance:has-text('998')")  # ai_generation costs 2
    await page.screenshot(path=str(artifacts_dir / "api-test.png"), full_page=True)
    assert errors == []


async def test_paste_a_token_and_see_field_errors(
    browser, start_page_server, funded_user: uuid.UUID, artifacts_dir: Path
) -> None:
    server = start_page_server()  # not dev mode: no mint button
    page = await browser.new_page()
    await page.goto(f"{server.url}/api-test")
    assert await page.query_selector("#dev-token") is None

    await page.fill("#token", "not-a-token")
    await page.click("#sign-in")
    await page.wait_for_selector("#error:has-text('401')")

    await page.fill("#token", server.token(funded_user))
    await page.click("#sign-in")
    await page.wait_for_selector("#balance:has-text('1000')")
    await page.select_option("#job-type", "ai_generation")
    await page.fill("#payload", '{"tone": "rude"}')
    await page.click("#create")
    await page.wait_for_selector("#error:has-text('body.payload.review_text')")
    text = await page.text_content("#error")
    assert text is not None and "body.payload.tone" in text and "422" in text
    await page.screenshot(path=str(artifacts_dir / "api-test-errors.png"), full_page=True)
