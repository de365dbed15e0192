"""The README's quick start, run from a fresh clone as a newcomer would: `make run`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_make_run_from_a_fresh_clone_starts_everything_on_the_embedded_database(tmp_path: Path) -> None:
    clone = tmp_path / "aijobs"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "VIRTUAL_ENV")
        and not k.startswith(("OPENAI_", "LLM_", "PYTEST", "JWT_"))
    }
    env.update(API_PORT=str(port), PIP_DISABLE_PIP_VERSION_CHECK="1")
    env["PATH"] = ":".join(p for p in env.get("PATH", "").split(":") if "/.venv/" not in p)
    log_path = tmp_path / "make-run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["make", "run"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 420
            ready = False
            while time.monotonic() < deadline and proc.poll() is None:
                text = log_path.read_text(errors="replace")
                if "No pending jobs found" in text:
                    ready = True
                    break
                time.sleep(1)
            output = log_path.read_text(errors="replace")
            assert ready, f"make run did not reach the waiting worker:\n{output[-4000:]}"
            assert "Starting Job Processor Worker" in output
            assert "demo account" in output
            assert (clone / ".aijobs" / "pgdata" / "PG_VERSION").exists(), (
                "embedded database inside the project"
            )
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert health.status_code == 200
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    output = log_path.read_text(errors="replace")
    assert "Worker" in output and "stopped" in output, output[-2000:]
    assert not (clone / ".aijobs" / "pgdata" / "postmaster.pid").exists(), "the embedded server was stopped"
