"""docs/job-types.md, step by step: install the example package `examples/reviewkit`, run
`aijobs migrate`, `aijobs api` and `aijobs worker` as processes, and create jobs of its two
types over HTTP — `post_webhook` (plain Python, posting to a receiver on loopback that fails
once) and `translate_review` (an LLM type, answered by the fake OpenAI server)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from aijobs.api.tokens import mint_token
from aijobs.db.store import Store
from aijobs.providers.fake_openai import FakeOpenAI
from tests.support.net import free_port
from tests.support.workers import WorkerProcess, fetch_all

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "reviewkit"
JWT_SECRET = "test-jwt-secret-that-is-long-enough-for-hs256"

pytestmark = pytest.mark.slow


class Receiver:
    """A webhook receiver on 127.0.0.1: answers 503 to the first post, 200 after."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(503 if len(received) == 1 else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/reviews"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def install_example(tmp_path: Path) -> Path:
    """Step 2, `pip install ./examples/reviewkit`, into a directory of its own (`--target`), so
    the test leaves the shared environment as it was; PYTHONPATH then puts it beside aijobs.
    From a copy (the build writes beside the sources), with no index and no build isolation:
    nothing is fetched, the test extras carry setuptools and wheel."""
    source = tmp_path / "reviewkit"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-build-isolation",
            "--no-deps",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def aijobs(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aijobs", *args], env=env, capture_output=True, text=True, timeout=120
    )


def wait_for_terminal(base: str, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        body: dict[str, Any] = httpx.get(
            f"{base}/api/jobs/{job_id}", params={"wait": 10}, headers=headers, timeout=20
        ).json()
        if body["status"] in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
            return body


async def test_the_tutorial_works_as_written(
    db_url: str, store: Store, funded_user: uuid.UUID, tmp_path: Path, receiver: Receiver
) -> None:
    site = install_example(tmp_path)
    with FakeOpenAI() as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_", "AIJOBS_"))}
        env.update(
            DATABASE_URL=db_url,
            JWT_SECRET=JWT_SECRET,
            PYTHONPATH=str(site),
            POLLING_INTERVAL="200",
            OPENAI_API_KEY="sk-fake",
            OPENAI_BASE_URL=fake.base_url,
            PYTHONUNBUFFERED="1",
        )
        # Step 2 (end): `aijobs types` shows them found.
        listed = aijobs(env, "types", "--json")
        assert listed.returncode == 0, listed.stderr
        found = {t["name"]: (t["cost"], t["max_attempts"]) for t in json.loads(listed.stdout)}
        assert found["post_webhook"] == (1, 5) and found["translate_review"] == (2, 4)

        # Step 3: `aijobs migrate` copies the new types' names, costs and time limits.
        migrated = aijobs(env, "migrate")
        assert migrated.returncode == 0, migrated.stderr
        rows = await fetch_all(
            db_url,
            "select name, cost from aijobs.job_types where name = any(%s) order by name",
            ["post_webhook", "translate_review"],
        )
        assert [(r["name"], r["cost"]) for r in rows] == [("post_webhook", 1), ("translate_review", 2)]

        # Step 4: the API and a worker.
        port = free_port()
        api_log = open(tmp_path / "api.log", "wb")  # noqa: SIM115
        api = subprocess.Popen(
            [sys.executable, "-m", "aijobs", "api", "--port", str(port)],
            env=env,
            stdout=api_log,
            stderr=api_log,
        )
        worker = WorkerProcess(env, tmp_path / "worker.log")
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {mint_token(JWT_SECRET, funded_user)}"}
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert api.poll() is None and time.monotonic() < deadline, (tmp_path / "api.log").read_text()
                time.sleep(0.2)
            await worker.wait_for_output("Worker", timeout=30)

            # Step 5: the API describes the new types, with their schemas.
            types = {t["name"]: t for t in httpx.get(f"{base}/api/job-types", timeout=10).json()}
            assert types["post_webhook"]["cost"] == 1 and types["post_webhook"]["max_attempts"] == 5
            assert set(types["translate_review"]["result_schema"]["properties"]) >= {"output", "provider"}
            spec = httpx.get(f"{base}/openapi.json", timeout=10).json()
            schemas = spec["components"]["schemas"]
            mapping = schemas["JobCreate"]["discriminator"]["mapping"]
            assert mapping["post_webhook"] == "#/components/schemas/PostWebhookJobCreate"
            assert schemas["PostWebhookJobCreate"]["properties"]["payload"]["$ref"].endswith(
                "/WebhookPayload"
            )
            assert "TranslateReviewJobResult" in schemas

            # Step 6: a webhook job; the receiver fails once, the retry delivers it.
            balance = httpx.get(f"{base}/api/me", headers=headers, timeout=10).json()["balance"]
            created = httpx.post(
                f"{base}/api/jobs",
                headers=headers,
                json={
                    "type": "post_webhook",
                    "payload": {"url": receiver.url, "event": "review.received", "data": {"id": 42}},
                },
                timeout=10,
            )
            assert created.status_code == 201, created.text
            done = wait_for_terminal(base, headers, created.json()["id"])
            assert done["status"] == "completed", done
            assert done["result"] == {"output": {"status": 200, "response_bytes": 2}}
            assert done["attempts"] == 2 and done["max_attempts"] == 5
            assert [b["event"] for b in receiver.bodies] == ["review.received"] * 2
            assert receiver.bodies[1] == {
                "event": "review.received",
                "data": {"id": 42},
                "job_id": done["id"],
            }

            # Step 7: an LLM job, with its structured answer.
            created = httpx.post(
                f"{base}/api/jobs",
                headers=headers,
                json={
                    "type": "translate_review",
                    "payload": {"review_text": "Le service était excellent !", "target_language": "en"},
                },
                timeout=10,
            )
            assert created.status_code == 201, created.text
            done = wait_for_terminal(base, headers, created.json()["id"])
            assert done["status"] == "completed", done
            assert done["result"]["provider"] == "openai"
            assert set(done["result"]["output"]) == {"source_language", "translation"}
            (request,) = [r for r in fake.requests if r.status == 200]
            assert request.body["input"][0]["content"].endswith("Le service était excellent !")
            assert request.body["text"]["format"]["strict"] is True

            # Step 8: bad input is a 422 naming the field, and costs nothing.
            refused = httpx.post(
                f"{base}/api/jobs",
                headers=headers,
                json={"type": "post_webhook", "payload": {"url": "not a url", "event": "x"}},
                timeout=10,
            )
            assert refused.status_code == 422
            assert "body.payload.url" in refused.text
            after = httpx.get(f"{base}/api/me", headers=headers, timeout=10).json()["balance"]
            assert after == balance - 1 - 2
        finally:
            api.terminate()
            api.wait(timeout=30)
            api_log.close()
            worker.send(15)
            await worker.wait()

        # Step 9: a type that cannot be loaded stops the process at start, saying which and why.
        broken = aijobs({**env, "AIJOBS_JOB_TYPES": "reviewkit.missing"}, "worker")
        assert broken.returncode == 2
        assert (
            "AIJOBS_JOB_TYPES: job type 'reviewkit.missing': cannot import 'reviewkit.missing'"
            in broken.stderr
        )
