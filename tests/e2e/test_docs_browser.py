"""/docs renders in Chromium from this server alone: no request leaves its origin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aijobs.config import Settings
from tests.support.api_server import ApiServer, api_settings

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


async def test_docs_render_with_no_outside_request(settings: Settings, artifacts_dir: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (scripts/install-chromium.sh installs it)")
    from playwright.async_api import async_playwright

    server = ApiServer(api_settings(settings)).start()
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 1000})
                requested: list[str] = []
                page.on("request", lambda r: requested.append(r.url))
                await page.goto(f"{server.url}/docs")
                # Swagger UI drew every operation from the spec, and offers the schemes to sign in.
                await page.wait_for_selector("#operations-jobs-create_job")
                await page.wait_for_selector("button.authorize")
                await page.screenshot(path=str(artifacts_dir / "docs.png"))
                await page.click("button.authorize")
                await page.wait_for_selector("text=BearerJWT")
                await page.screenshot(path=str(artifacts_dir / "docs-authorize.png"))
            finally:
                await browser.close()
    finally:
        server.stop()
    outside = [url for url in requested if not url.startswith((server.url, "data:"))]
    assert requested and outside == [], outside
