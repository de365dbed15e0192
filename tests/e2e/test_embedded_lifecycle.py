"""The embedded server stops when the last process using it exits, however the others ended.

Real `aijobs` processes on an embedded server of the test's own (DATABASE_URL unset): a
holder ended by SIGTERM lets go of the server itself, and one killed outright is forgotten
by the next clean run, which then stops the server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def postmaster_pid(pgdata: Path) -> int | None:
    """The running server's pid, or None when it is stopped."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A migrated embedded data directory and the environment that uses it; any server left
    running at the end (the failure this file tests for) is stopped."""
    pgdata = tmp_path / "pgdata"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "XDG_RUNTIME_DIR") and not k.startswith(("OPENAI_", "LLM_", "JWT_"))
    }
    env.update(
        EMBEDDED_DATA_DIR=str(pgdata),
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        LOG_LEVEL="WARNING",
    )
    try:
        aijobs(env, "migrate")
        assert postmaster_pid(pgdata) is None, "a lone clean run stops the server"
        yield pgdata, env
    finally:
        pid = postmaster_pid(pgdata)
        if pid is not None:
            os.kill(pid, signal.SIGQUIT)


def aijobs(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aijobs", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def start_holder(env: dict[str, str], pgdata: Path, args: list[str], ready: str) -> subprocess.Popen[str]:
    """Start a command that holds the server until it is signalled; wait for `ready` on its output."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "aijobs", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    seen = ""
    while ready not in seen:
        line = proc.stdout.readline()
        assert line and time.monotonic() < deadline, f"{args} did not start:\n{seen}"
        seen += line
    assert postmaster_pid(pgdata) is not None
    return proc


HOLDERS = {
    "stats-watch": (["stats", "--watch", "1"], "queue:"),
    "api": (["api", "--port", str(free_port())], "aijobs API on"),
}


@pytest.mark.parametrize("holder", sorted(HOLDERS))
def test_sigterm_to_the_last_holder_stops_the_server(
    embedded: tuple[Path, dict[str, str]], holder: str
) -> None:
    pgdata, env = embedded
    args, ready = HOLDERS[holder]
    proc = start_holder(env, pgdata, args, ready)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert postmaster_pid(pgdata) is None, f"`aijobs {' '.join(args)}` left the server running after SIGTERM"


def test_a_clean_run_after_a_killed_holder_stops_the_server(embedded: tuple[Path, dict[str, str]]) -> None:
    pgdata, env = embedded
    proc = start_holder(env, pgdata, ["stats", "--watch", "1"], "queue:")
    proc.kill()
    proc.communicate(timeout=60)
    assert postmaster_pid(pgdata) is not None, "SIGKILL leaves no chance to stop it"
    aijobs(env, "stats")
    assert postmaster_pid(pgdata) is None, "the next clean run forgot the dead holder and stopped the server"
