"""`aijobs dev` as a newcomer runs it: where to listen, a way into the dashboard, and a token
command that works beside it."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]
DEMO_USER = "00000000-0000-4000-8000-000000000001"

pytestmark = pytest.mark.slow


def dev_env(db_url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "LLM_", "JWT_", "SERVICE_", "API_", "PROMETHEUS_"))
    }
    env.update(DATABASE_URL=db_url, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    return env


@contextmanager
def running_dev(env: dict[str, str], cwd: Path, port: int) -> Iterator[str]:
    """`aijobs dev --port` in `cwd`; yields its output up to the dashboard line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "aijobs", "dev", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen = ""
    try:
        deadline = time.monotonic() + 60
        while "dashboard:" not in seen:
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, f"aijobs dev did not start:\n{seen}"
            seen += line
        yield seen
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def admin_token_in(output: str) -> str:
    found = re.search(r"admin token[^:]*: (\S+)", output)
    assert found, output
    return found.group(1)


@pytest.mark.parametrize("command", ["dev", "api"])
def test_a_busy_port_is_one_line_and_a_failure(db_url: str, tmp_path: Path, command: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "aijobs", command, "--host", "127.0.0.1", "--port", str(port)],
            env=dev_env(db_url),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    output = (done.stdout + done.stderr).strip()
    assert done.returncode != 0, output
    assert len(output.splitlines()) == 1, output
    assert str(port) in output and "in use" in output, output


def test_dev_prints_a_way_into_the_dashboard_and_token_admin_works(db_url: str, tmp_path: Path) -> None:
    env = dev_env(db_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running_dev(env, tmp_path, port) as output:
        printed = admin_token_in(output)
        assert (
            httpx.get(f"{base}/dashboard/live", headers={"Authorization": f"Bearer {printed}"}).status_code
            == 200
        )
        done = subprocess.run(
            [sys.executable, "-m", "aijobs", "token", "--user", DEMO_USER, "--admin"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        minted = done.stdout.strip()
        assert (
            httpx.get(f"{base}/dashboard/live", headers={"Authorization": f"Bearer {minted}"}).status_code
            == 200
        )
    secret_file = tmp_path / ".aijobs" / "dev-jwt-secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    # A restart reuses the secret: tokens minted before still work.
    with running_dev(env, tmp_path, port):
        assert (
            httpx.get(f"{base}/dashboard/live", headers={"Authorization": f"Bearer {minted}"}).status_code
            == 200
        )
