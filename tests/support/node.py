"""Run the TypeScript client's and examples' npm projects from tests.

Their dependencies come from `make client-deps` (`npm ci` with the committed lockfiles);
a test never installs anything itself, it says what to run instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "typescript"
NEXTJS = ROOT / "examples" / "nextjs"
EXTENSION = ROOT / "examples" / "chrome-extension"


def require_npm_project(project: Path) -> None:
    """Fail (not skip: CI must run these) when node or the project's packages are missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed (Node 20): install them, then `make client-deps`")
    if not (project / "node_modules").is_dir():
        pytest.fail(f"{project.relative_to(ROOT)}/node_modules is missing: run `make client-deps`")


async def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> tuple[int, str]:
    """Run a command to its end; its exit code and its output (stdout and stderr together)."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")
