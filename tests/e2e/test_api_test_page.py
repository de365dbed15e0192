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
    # The reply is shown as text, with its line breaks, not as JSON with "\n" escapes.
    reply = await page.text_content("#result dl dd .text")
    assert reply and "\\n" not in reply and len(reply) > 20, reply
    assert await page.text_content("#result .provenance") == "by offline · rules-v1"
    assert '"provider": "offline"' in (await page.text_content("#result details pre") or "")
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


@pytest.fixture
async def lan_browser() -> AsyncIterator[Any]:
    """Chromium that resolves lan.test to 127.0.0.1: a plain-http origin that is not
    loopback by name, so not a secure context (as a LAN address like 192.168.1.20 is not)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (scripts/install-chromium.sh installs it)")
    from playwright.async_api import async_playwright

    args = [*CHROMIUM_ARGS, "--host-resolver-rules=MAP lan.test 127.0.0.1"]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


async def test_works_on_a_non_secure_origin_and_tells_ids_apart(
    lan_browser, start_page_server, funded_user: uuid.UUID, artifacts_dir: Path
) -> None:
    server = start_page_server(dev_user=funded_user)
    page = await lan_browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(server.url.replace("127.0.0.1", "lan.test") + "/api-test")
    assert await page.evaluate("window.isSecureContext") is False
    assert await page.evaluate("typeof crypto.randomUUID") == "undefined"

    await page.click("#dev-token")
    await page.wait_for_selector("#balance:has-text('1000')")
    await page.select_option("#job-type", "sentiment_analysis")
    for _ in range(2):
        await page.click("#create")
        await page.wait_for_selector("#error", state="hidden")
    await page.wait_for_function("document.querySelectorAll('#recent tr[data-job]').length === 2")
    ids = await page.eval_on_selector_all("#recent tr[data-job]", "rows => rows.map(r => r.dataset.job)")
    shown = await page.eval_on_selector_all("#recent tr[data-job] code", "els => els.map(e => e.textContent)")
    assert ids[0][:8] == ids[1][:8]  # time-ordered ids share their start...
    assert shown[0] != shown[1]  # ...so the page shows their end
    assert all(ids[i].endswith(shown[i].lstrip("…")) for i in range(2)), (ids, shown)
    await page.wait_for_selector("#balance:has-text('998')")  # two jobs of 1 credit
    await page.screenshot(path=str(artifacts_dir / "api-test-lan.png"), full_page=True)
    assert errors == []
