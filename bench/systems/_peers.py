"""Helpers for adapters whose library lives in ``bench/.peers-venv`` (pgqueuer, procrastinate).

The harness process only spawns ``bench/.peers-venv/bin/python bench/systems/<peer>_worker.py``
and reads the JSON line each command prints last.
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

from systems.base import SystemUnavailable

BENCH_DIR = Path(__file__).resolve().parent.parent
SYSTEMS_DIR = BENCH_DIR / "systems"
PEERS_VENV = BENCH_DIR / ".peers-venv"
PEERS_PYTHON = PEERS_VENV / "bin" / "python"


@functools.cache
def ensure_peers_venv() -> None:
    """Create/refresh the peers venv once per harness run (``bench/setup_peers.sh`` is idempotent)."""
    proc = subprocess.run([str(BENCH_DIR / "setup_peers.sh")], check=False)
    if proc.returncode != 0 or not PEERS_PYTHON.exists():
        raise SystemUnavailable("bench/setup_peers.sh failed")


def peer_cmd(script: str, *args: str) -> list[str]:
    return [str(PEERS_PYTHON), str(SYSTEMS_DIR / script), *args]


def run_peer(script: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    """Run one peer command to completion and return the JSON object on its last stdout line."""
    proc = subprocess.run(peer_cmd(script, *args), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{script} {args[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if not lines:
        return {}
    result = json.loads(lines[-1])
    assert isinstance(result, dict)
    return result


def spawn_peer(script: str, *args: str) -> subprocess.Popen[bytes]:
    """Start a long-running peer process; stdout is a pipe (for ``READY``), stderr inherited."""
    return subprocess.Popen(peer_cmd(script, *args), stdout=subprocess.PIPE)


@functools.cache
def peer_version(dist: str) -> str:
    out = subprocess.run(
        [str(PEERS_PYTHON), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "unknown"
