"""examples/chrome-extension in Chromium: select a review, "Draft a reply", the reply.

Debian's Chromium (new headless) loads the unpacked extension into a fresh profile; the API
(CORS_ORIGINS = the extension's origin, nothing else) and a worker (offline provider) are
real, and the review page is served on loopback. The review is selected with the mouse and
the toolbar button clicked through the DevTools protocol (headless Chromium has no toolbar).
The user's path runs through the refusals first (an API whose CORS_ORIGINS leaves the
extension out, signed out, an expired token, no credits, a review too long), each shown as
the API words it, with the selected text kept, then to the reply and its Copy button.
Screenshots: test-artifacts/extension-*.png.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import websockets

from aijobs.config import Settings
from aijobs.db.store import Store
from aijobs.providers.offline import OfflineProvider
from tests.support.api_server import ApiServer, api_settings
from tests.support.node import CLIENT, EXTENSION, require_npm_project, run
from tests.support.workers import running_worker

# The vendored client is compared with a fresh build of clients/typescript/dist.
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("typescript-client")]

CHROMIUM = "/usr/bin/chromium"
SHORT_REVIEW = "The pasta was cold and we waited forty minutes, but the staff were kind about it."
LONG_REVIEW = "The hotel was fine. " * 260  # 5200 characters: over ai_generation's 5000


def extension_id(manifest: dict[str, Any]) -> str:
    """Chrome's id for an extension with this public key: sha256, first 32 hex digits as a-p."""
    digest = hashlib.sha256(base64.b64decode(manifest["key"])).hexdigest()[:32]
    return "".join(chr(ord("a") + int(c, 16)) for c in digest)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def review_site(tmp_path: Path) -> Iterator[str]:
    """A page with two reviews on it, served on 127.0.0.1."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Reviews</title></head>"
        "<body style='font: 16px system-ui; max-width: 700px; margin: 40px auto'>"
        "<h1>Trattoria reviews</h1>"
        f"<p id='short'>{html.escape(SHORT_REVIEW)}</p>"
        f"<p id='long' style='font-size: 8px'>{html.escape(LONG_REVIEW.strip())}</p>"
        "</body></html>",
        encoding="utf-8",
    )
    handler = functools.partial(QuietHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


async def test_the_extension_ships_the_client_as_built() -> None:
    require_npm_project(CLIENT)
    code, output = await run("npm", "run", "build", cwd=CLIENT, timeout=180)
    assert code == 0, output
    built = (CLIENT / "dist" / "index.js").read_bytes()
    assert (EXTENSION / "lib" / "aijobs-client.js").read_bytes() == built, (
        "examples/chrome-extension/lib/aijobs-client.js is stale: "
        "run `npm --prefix clients/typescript run build:extension` and commit it"
    )


async def click_toolbar_button(profile: Path, ext_id: str, page: Any) -> None:
    """Click the extension's toolbar button on `page`'s tab, as the user does.

    Headless Chromium has no toolbar to click; the DevTools protocol's Extensions.triggerAction
    runs the same action (and grants activeTab for that tab, as a click does). Playwright's
    own connection is a pipe without the browser-level session this needs, so this speaks
    to the browser's debugging port (loopback) directly.
    """
    port, path = (profile / "DevToolsActivePort").read_text().split("\n")[:2]
    async with websockets.connect(f"ws://127.0.0.1:{port}{path}", max_size=None) as ws:

        async def call(id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
            await ws.send(json.dumps({"id": id, "method": method, "params": params}))
            while True:
                answer: dict[str, Any] = json.loads(await ws.recv())
                if answer.get("id") == id:
                    assert "error" not in answer, answer
                    return answer["result"]  # type: ignore[no-any-return]

        tabs = (await call(1, "Target.getTargets", {"filter": [{"type": "tab"}]}))["targetInfos"]
        [tab] = [t for t in tabs if t["url"] == page.url]
        await call(2, "Extensions.triggerAction", {"id": ext_id, "targetId": tab["targetId"]})


async def select_and_draft(
    context: Any, profile: Path, ext_id: str, page: Any, selector: str, screenshot: Path | None = None
) -> Any:
    """Select the element's text as a user does (triple click) and click the extension's
    "Draft a reply" toolbar button; the reply window it opens."""
    await page.bring_to_front()
    await page.click(selector, click_count=3)
    if screenshot is not None:
        await page.screenshot(path=str(screenshot))
    async with context.expect_page() as opened:
        await click_toolbar_button(profile, ext_id, page)
    reply = await opened.value
    await reply.wait_for_load_state()
    return reply


async def test_draft_a_reply_from_a_selected_review(
    settings: Settings, store: Store, review_site: str, artifacts_dir: Path, tmp_path: Path
) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (scripts/install-chromium.sh installs it)")
    from playwright.async_api import async_playwright

    ext_id = extension_id(json.loads((EXTENSION / "manifest.json").read_text()))
    broke, funded = uuid.uuid4(), uuid.uuid4()
    async with store.session() as session:
        await session.accounts.grant_credits(broke, 1, "test")
        await session.accounts.grant_credits(funded, 100, "test")
    server = ApiServer(api_settings(settings, cors_origins=f"chrome-extension://{ext_id}")).start()
    other_api = ApiServer(api_settings(settings, cors_origins="https://app.example.com")).start()
    try:
        async with running_worker(settings, store, OfflineProvider()), async_playwright() as p:
            profile = tmp_path / "profile"
            context = await p.chromium.launch_persistent_context(
                str(profile),
                executable_path=CHROMIUM,
                headless=False,  # --headless=new below: the old headless mode has no extensions
                viewport={"width": 1000, "height": 800},
                args=[
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    f"--disable-extensions-except={EXTENSION}",
                    f"--load-extension={EXTENSION}",
                    # For Extensions.triggerAction (the toolbar click), on loopback only.
                    "--enable-unsafe-extension-debugging",
                    "--remote-debugging-address=127.0.0.1",
                    "--remote-debugging-port=0",
                ],
            )
            try:
                toolbar = functools.partial(select_and_draft, context, profile, ext_id)
                await drive(
                    context, toolbar, ext_id, server, other_api, broke, funded, review_site, artifacts_dir
                )
            finally:
                await context.close()
    finally:
        server.stop()
        other_api.stop()


async def drive(
    context: Any,
    select_and_draft: Any,
    ext_id: str,
    server: ApiServer,
    other_api: ApiServer,
    broke: uuid.UUID,
    funded: uuid.UUID,
    review_site: str,
    artifacts: Path,
) -> None:
    worker = (
        context.service_workers[0]
        if context.service_workers
        else await context.wait_for_event("serviceworker")
    )
    assert worker.url == f"chrome-extension://{ext_id}/background.js"
    errors: list[str] = []
    context.on("weberror", lambda e: errors.append(str(e.error)))
    page = await context.new_page()
    await page.goto(review_site)

    # Signed out: no token yet. The text is there, and the way to settings.
    reply = await select_and_draft(page, "#short", artifacts / "extension-selection.png")
    await reply.wait_for_selector("#problem:has-text('Signed out')")
    assert await reply.input_value("#review") == SHORT_REVIEW
    await reply.screenshot(path=str(artifacts / "extension-signed-out.png"))

    async def sign_in(user: uuid.UUID, expect: str, api: ApiServer = server, ttl: int = 3600) -> None:
        options = await context.new_page()
        await options.goto(f"chrome-extension://{ext_id}/options.html")
        assert await options.text_content("#origin") == f"chrome-extension://{ext_id}"
        await options.fill("#api-url", api.url)
        await options.fill("#token", api.token(user, ttl_seconds=ttl))
        await options.click("#save")
        await options.wait_for_selector("#status.problem, #status:has-text('Signed in')")
        await options.wait_for_selector(f"#status:has-text('{expect}')")
        await options.close()

    # An API that does not list the extension's origin in CORS_ORIGINS: the browser refuses
    # to show its answers, and the extension says what to set.
    await sign_in(funded, "does its CORS_ORIGINS include", api=other_api)
    await reply.click("#draft")
    await reply.wait_for_selector(f"#problem:has-text('CORS_ORIGINS include chrome-extension://{ext_id}')")
    assert await reply.input_value("#review") == SHORT_REVIEW

    # Signed out by the API: the token has expired.
    await sign_in(funded, "Signed out: token has expired", ttl=-60)
    await reply.click("#draft")
    await reply.wait_for_selector("#problem:has-text('Signed out: token has expired')")
    assert await reply.input_value("#review") == SHORT_REVIEW

    # No credits: 1 left, a reply costs 2. The API's words, the balance and the cost.
    await sign_in(broke, "Balance: 1 credits")
    await reply.click("#draft")
    await reply.wait_for_selector("#problem:has-text('No credits left')")
    problem = await reply.text_content("#problem")
    assert problem is not None and "costs 2 credits and the balance is 1" in problem, problem
    assert await reply.input_value("#review") == SHORT_REVIEW
    await reply.screenshot(path=str(artifacts / "extension-no-credits.png"))
    await reply.close()

    # An invalid review (over 5000 characters): the field and why; the text is kept, and
    # after the user shortens it, the draft goes through.
    await sign_in(funded, "Balance: 100 credits")
    reply = await select_and_draft(page, "#long")
    await reply.wait_for_selector("#problem:has-text('cannot be sent')")
    problem = await reply.text_content("#problem")
    assert problem is not None and "• review_text: " in problem and "5000" in problem, problem
    assert await reply.input_value("#review") == LONG_REVIEW.strip()
    await reply.screenshot(path=str(artifacts / "extension-invalid-review.png"))
    await reply.fill("#review", SHORT_REVIEW)
    await reply.click("#draft")

    await reply.wait_for_selector("#status[data-status='completed']", timeout=30_000)
    text = await reply.input_value("#reply")
    assert len(text) > 20 and "\\n" not in text, text
    await reply.click("#copy")
    await reply.wait_for_selector("#copied", state="visible")
    assert not await reply.is_visible("#problem")
    await reply.screenshot(path=str(artifacts / "extension-reply.png"))
    # Pasted elsewhere: read back from the review page (the extension itself only writes).
    await context.grant_permissions(["clipboard-read"], origin=review_site.rsplit("/", 1)[0])
    await page.bring_to_front()
    assert await page.evaluate("navigator.clipboard.readText()") == text

    # Closing and reopening the window shows the same job, not a new charge.
    job_id = await reply.text_content("#job-id")
    await reply.close()
    async with context.expect_page() as opened:
        await worker.evaluate(
            "chrome.windows.create({url: chrome.runtime.getURL('reply.html'), type: 'popup'})"
        )
    again = await opened.value
    await again.wait_for_selector("#status[data-status='completed']")
    assert await again.text_content("#job-id") == job_id
    assert await again.input_value("#review") == SHORT_REVIEW
    assert errors == []
