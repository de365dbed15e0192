"""Scenario 11: secrets and customer text stay out of logs, stored errors and error responses.

A real `aijobs api` and a real `aijobs worker` run as subprocesses (their output captured,
JSON and text log formats, DEBUG level so nothing is filtered by level) with a canary
OPENAI_API_KEY, against the fake OpenAI server on loopback. Jobs carry a canary review text
and meet every error path the provider has: a 401 whose message echoes the key (as OpenAI's
does), 5xx and 400 errors that quote the request, rate limits, timeouts, truncated and
unparsable answers; the API meets invalid payloads and bad tokens that embed the canaries.

Afterwards neither canary may appear in any log line, in any error stored on a job or an
attempt, or in any API error response. The canary text may appear only where it belongs:
the job's own payload (and result) returned to its owner.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aijobs.providers.fake_openai import FakeOpenAI, Step
from tests.conftest import ROOT
from tests.support.api_server import JWT_SECRET
from tests.support.invariants import assert_invariants
from tests.support.net import free_port
from tests.support.workers import fetch_all, wait_until

CANARY_KEY = (
    "canarykey-" + "7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c1e"
)  # not sk- shaped: only exact redaction catches it
CANARY_TEXT = "CANARYREVIEW-d41d8cd98f00b204"


class Proc:
    """An aijobs subprocess with stdout+stderr captured to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aijobs", *args], env=env, stdout=self._out, stderr=subprocess.STDOUT
        )

    def text(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def env_for(db_url: str, fake: FakeOpenAI, log_format: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_", "JWT_"))}
    env.update(
        DATABASE_URL=db_url,
        JWT_SECRET=JWT_SECRET,
        LOG_FORMAT=log_format,
        LOG_LEVEL="DEBUG",
        LLM_PROVIDER="openai",
        OPENAI_API_KEY=CANARY_KEY,
        OPENAI_BASE_URL=fake.base_url,
        OPENAI_TIMEOUT_SECONDS="1.5",
        # The 401 pauses the provider: probe soon, so the rest of the script runs.
        PROVIDER_PROBE_SECONDS="0.3",
        POLLING_INTERVAL="200",
        LEASE_SECONDS="5",
        HEARTBEAT_SECONDS="0.5",
        RETRY_BASE_SECONDS="0.05",
        RETRY_MAX_SECONDS="0.2",
        MAX_RETRIES="2",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def provider_script() -> list[Step]:
    """Every error path once or more, with messages that echo the key and the review text."""
    echo = f"request was: {CANARY_TEXT} (key {CANARY_KEY})"
    return [
        Step.error(401, code="invalid_api_key", message=f"Incorrect API key provided: {CANARY_KEY}."),
        Step.error(500, message=echo),
        Step.error(503, message=echo),
        Step.error(400, code="invalid_request_error", message=echo),
        Step.rate_limited(100),
        Step.hanging(),
        Step.truncated(),
        Step.ok(text=f"not json at all: {CANARY_TEXT}"),
        Step.ok(text='{"sentiment": "' + CANARY_TEXT + '"}'),
        Step.refused(f"I won't repeat {CANARY_TEXT}"),
        Step.error(502, message=echo),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_canaries_never_leak(
    db_url: str, store: Any, fake: FakeOpenAI, tmp_path: Path, log_format: str
) -> None:
    user = uuid.uuid4()
    async with store.session() as session:
        await session.accounts.grant_credits(user, 500)
    env = env_for(db_url, fake, log_format)
    port = free_port()
    fake.script(*provider_script())
    api = Proc(["api", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path / "api.log")
    worker = Proc(["worker", "--log-format", log_format, "--concurrency", "4"], env, tmp_path / "worker.log")
    responses: list[httpx.Response] = []
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:

            async def up() -> bool:
                assert api.proc.poll() is None, api.text()
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(up, timeout=30, what="the API answering /readyz")
            from aijobs.api.tokens import mint_token

            auth = {"Authorization": f"Bearer {mint_token(JWT_SECRET, user)}"}
            bodies = [
                {"type": "review_processing", "payload": {"review_text": f"{CANARY_TEXT} cold food"}},
                {"type": "sentiment_analysis", "payload": {"text": CANARY_TEXT}},
                {
                    "type": "ai_generation",
                    "payload": {"review_text": CANARY_TEXT, "business_name": CANARY_TEXT},
                },
                {"type": "prompt_analysis", "payload": {"prompt": CANARY_TEXT, "goal": CANARY_TEXT}},
            ]
            ids = []
            for i in range(12):
                created = await http.post("/api/jobs", json=bodies[i % len(bodies)], headers=auth)
                assert created.status_code == 201, created.text
                ids.append(created.json()["id"])
            # Refusals that embed the canaries: invalid payloads, unknown fields, bad tokens.
            for body in (
                {"type": "review_processing", "payload": {"review_text": CANARY_TEXT * 400}},
                {"type": "ai_generation", "payload": {"review_text": "x", "tone": CANARY_TEXT}},
                {"type": "ai_generation", "payload": {"review_text": "x", "language": CANARY_TEXT}},
                # Unknown fields carry canary values; their *names* are echoed by design (a 422
                # names each offending field), so the names are plain.
                {"type": "sentiment_analysis", "payload": {"text": "x", "extra": CANARY_KEY}},
                {"type": "sentiment_analysis", "payload": {"text": 5}, "extra": CANARY_TEXT},
                {"type": CANARY_TEXT.lower(), "payload": {"text": CANARY_TEXT}},
                {"type": "sentiment_analysis", "payload": {"text": f"{CANARY_TEXT}\u0000"}},
            ):
                responses.append(await http.post("/api/jobs", json=body, headers=auth))
            for token in (CANARY_KEY, f"{CANARY_TEXT}.{CANARY_KEY}.x", mint_token(CANARY_KEY, user)):
                responses.append(await http.get("/api/me", headers={"Authorization": f"Bearer {token}"}))
            responses.append(await http.post("/api/jobs", content=CANARY_TEXT.encode(), headers=auth))
            assert all(400 <= r.status_code < 500 for r in responses), [
                (r.status_code, r.text) for r in responses
            ]

            async def all_finished() -> bool:
                assert worker.proc.poll() is None, worker.text()
                rows = await fetch_all(db_url, "select status::text from aijobs.jobs")
                return all(r["status"] in ("completed", "failed", "cancelled") for r in rows)

            await wait_until(all_finished, timeout=90, interval=0.2, what="every job finished")
            # The owner may read their own jobs, canary included; those are not error responses.
            for job_id in ids:
                own = await http.get(f"/api/jobs/{job_id}", headers=auth)
                assert own.status_code == 200
                assert CANARY_KEY not in own.text
                assert CANARY_TEXT not in (own.json()["error"] or "")
    finally:
        worker.stop()
        api.stop()

    statuses = {r["status"] for r in await fetch_all(db_url, "select status::text from aijobs.jobs")}
    assert "failed" in statuses, statuses  # the error paths were really taken
    assert any(r.status == 401 for r in fake.requests), "the 401 path was not exercised"
    assert any(CANARY_KEY in (r.headers.get("authorization") or "") for r in fake.requests)

    problems: list[str] = []
    for proc in (api, worker):
        for n, line in enumerate(proc.text().splitlines(), 1):
            for canary in (CANARY_KEY, CANARY_TEXT):
                if canary in line:
                    problems.append(f"{proc.log.name}:{n}: {line[:300]}")
    stored = await fetch_all(
        db_url,
        """select 'job ' || id as what, error from aijobs.jobs where error is not null
           union all select 'attempt ' || job_id || '/' || lease_token, error from aijobs.job_attempts
            where error is not null""",
    )
    for row in stored:
        if CANARY_KEY in row["error"] or CANARY_TEXT in row["error"]:
            problems.append(f"{row['what']}: {row['error'][:300]}")
    # The key appears nowhere in the database at all.
    everything = await fetch_all(
        db_url,
        """select (select coalesce(string_agg(j::text, ' '), '') from aijobs.jobs j)
               || (select coalesce(string_agg(a::text, ' '), '') from aijobs.job_attempts a)
               || (select coalesce(string_agg(w::text, ' '), '') from aijobs.workers w)
               || (select coalesce(string_agg(p::text, ' '), '') from aijobs.provider_limits p) as dump""",
    )
    if CANARY_KEY in everything[0]["dump"]:
        problems.append("the API key is stored in the database")
    for response in responses:
        for canary in (CANARY_KEY, CANARY_TEXT, CANARY_TEXT.lower()):
            if canary in response.text:
                problems.append(
                    f"{response.request.method} {response.request.url.path} -> {response.text[:300]}"
                )
    log_lines = len(api.text().splitlines()) + len(worker.text().splitlines())
    assert log_lines > 20, "the processes logged almost nothing: the check would prove nothing"
    assert not problems, "\n".join(problems)
    await assert_invariants(db_url)
