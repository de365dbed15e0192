"""The adapter interface every benchmarked job system implements.

The harness (``bench/run.py``) never imports a job system's library directly. It
talks to one :class:`System` object per system, loaded from
``bench/systems/<name>_system.py``; that module must define::

    def create_system() -> System: ...

A module that is missing or raises :class:`ImportError` (or whose
:meth:`System.setup` raises :class:`SystemUnavailable`) is skipped with a printed
note, so adding a system is a single new module.

How the harness drives an adapter, per (system, workload case, round):

1. it creates a fresh, empty database ``bench_<system>_<case>_<round>`` and in it
   the side table :data:`HANDLER_LOG_DDL` (``bench_handler_log``);
2. it calls :meth:`System.prepare` (install the system's schema);
3. it runs the workload through the methods below;
4. it stops every worker process it was given (:meth:`System.stop_workers`) and
   drops the database.

Conventions:

* ``db_url`` is a libpq URL (``postgresql://user@host:port/dbname``), usable by
  psycopg 3 and asyncpg alike.
* Wall-clock instants are Unix epoch seconds (``float``) or nanoseconds
  (``int``, ``time.time_ns()``). Everything runs on one machine, so the
  harness's clock, the workers' clock and PostgreSQL's ``now()`` are the same
  clock.
* Timed methods time only the measured loop, not interpreter start-up, imports
  or connecting.
* Jobs have these handler kinds (:data:`HandlerKind`):

  - ``"noop"``: return immediately (W2, W6);
  - ``"sleep"``: ``await asyncio.sleep(0.2)`` (W4, I/O-bound);
  - ``"latency"``: first read ``time.time_ns()``, then insert
    ``(job_key, started_ns)`` into ``bench_handler_log`` (W3). ``job_key`` is the
    string the producer returned for that job from :meth:`System.produce_paced`;
  - ``"llm"``: ``await asyncio.sleep(1.0)``, an LLM call's shape (W7). Optional: an
    adapter lists the kinds it runs in :attr:`System.handler_kinds`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import psycopg

HandlerKind = Literal["noop", "sleep", "latency", "llm"]

HANDLER_LOG_DDL = """
CREATE TABLE bench_handler_log (
    job_key    text   NOT NULL,
    started_ns bigint NOT NULL,
    ended_ns   bigint
)
"""
"""Side table the harness creates in every benchmark database (see module doc)."""


class SystemUnavailable(RuntimeError):
    """Raised by :meth:`System.setup` when the system cannot run here (skipped)."""


@dataclass(frozen=True)
class WorkerSpec:
    """What worker processes to start.

    Attributes:
        processes: number of OS processes.
        concurrency: jobs in flight per process ("slots"). ``None`` means "use
            the adapter's tuned value for this handler kind" (W2, W3, W6); W4
            passes 100 explicitly.
        handler: which handler the jobs run (see :data:`HandlerKind`).
    """

    processes: int
    concurrency: int | None
    handler: HandlerKind


@dataclass(frozen=True)
class DrainTimings:
    """When a drain really ran, read back from the database.

    Attributes:
        first_start: epoch seconds at which the first job started (was claimed).
        last_end: epoch seconds at which the last job's completion was recorded.
        done: number of jobs recorded as successfully completed.
    """

    first_start: float
    last_end: float
    done: int


class System(ABC):
    """One job system under test. Subclass it and return an instance from ``create_system()``.

    Required: :attr:`name`, :meth:`prepare`, :meth:`enqueue_single`,
    :meth:`enqueue_batch`, :meth:`enqueue_for_drain`, :meth:`start_workers`,
    :meth:`count_done`, :meth:`drain_timings`, :meth:`produce_paced`.
    Optional (defaults given): :meth:`setup`, :meth:`version`,
    :meth:`handler_starts`, :meth:`stop_workers`, :meth:`seed_finished` (W6),
    :meth:`http_api` (W5).
    """

    #: Short lowercase identifier, used in database names and result tables.
    name: str = ""
    #: How W2/W4/W6 start and end instants are counted (printed with the results).
    timing_method: str = ""
    #: Human-readable tuning notes (driver, batch size, concurrency, what was tried).
    tuning: str = ""
    #: The handler kinds its workers run; a workload needing another is skipped with a note.
    handler_kinds: frozenset[str] = frozenset({"noop", "sleep", "latency"})

    # -- lifecycle --------------------------------------------------------------------

    def setup(self) -> None:  # noqa: B027 - deliberately optional hook
        """Called once before any workload: install dependencies, check binaries.

        Raise :class:`SystemUnavailable` to have the system skipped with a note.
        """

    def version(self) -> str:
        """Version string of the system under test (shown in the results)."""
        return "unknown"

    @abstractmethod
    def prepare(self, db_url: str) -> None:
        """Install the system's schema into the fresh, empty database ``db_url``."""

    # -- W1: enqueue ------------------------------------------------------------------

    @abstractmethod
    def enqueue_single(self, db_url: str, n: int) -> float:
        """Enqueue ``n`` no-op jobs sequentially over one connection, one transaction each.

        Returns the elapsed seconds of the enqueue loop only.
        """

    def enqueue_single_sync(self, db_url: str, n: int) -> float:
        """:meth:`enqueue_single` through the system's synchronous client (no event loop).

        Raise :class:`NotImplementedError` (the default) to skip this case for this system.
        """
        raise NotImplementedError

    @abstractmethod
    def enqueue_batch(self, db_url: str, n: int, batch_size: int) -> float:
        """Enqueue ``n`` no-op jobs over one connection, ``batch_size`` jobs per call/transaction.

        Returns the elapsed seconds of the enqueue loop only.
        """

    # -- W2/W4/W6: drain --------------------------------------------------------------

    @abstractmethod
    def enqueue_for_drain(self, db_url: str, n: int, handler: HandlerKind) -> None:
        """Pre-enqueue ``n`` jobs running ``handler`` as fast as possible (not timed)."""

    @abstractmethod
    def start_workers(self, db_url: str, spec: WorkerSpec) -> list[subprocess.Popen[bytes]]:
        """Spawn ``spec.processes`` worker processes and return at once.

        Each process must print the line ``READY`` on its stdout once it is
        connected and able to pick up jobs (the harness waits for it in W3), and
        must exit cleanly on SIGTERM. Workers run until stopped; the harness polls
        :meth:`count_done` to know when a drain is over. ``stdout`` must be a pipe.
        """

    @abstractmethod
    def count_done(self, db_url: str) -> int:
        """Number of jobs recorded in the database as completed.

        Polled every 0.2 s during drains, so keep it cheap (W6 has 1M finished
        jobs in the tables); jobs planted by :meth:`seed_finished` may be
        included (the harness subtracts a baseline taken before the workers start).
        """

    @abstractmethod
    def drain_timings(self, db_url: str, since: float) -> DrainTimings:
        """First-start / last-completion instants of jobs that ran after ``since``, from the database.

        ``since`` (epoch seconds) is taken just before the workers were spawned; it
        excludes rows planted by :meth:`seed_finished` (W6).
        """

    def steady_rate(self, db_url: str, since: float, job_seconds: float) -> float:
        """Jobs/s once every worker is running and until the queue runs dry (W7): completions
        from ``job_seconds`` after the last worker's first claim to the last claim. The whole
        drain's rate also counts the workers' staggered start and the last, partly filled wave."""
        raise NotImplementedError

    # -- W3: latency ------------------------------------------------------------------

    @abstractmethod
    def produce_paced(self, db_url: str, interval_s: float, count: int) -> dict[str, int]:
        """Enqueue ``count`` ``"latency"`` jobs, one every ``interval_s`` seconds, one per transaction.

        Returns ``{job_key: commit_time_ns}``, where ``commit_time_ns`` is
        ``time.time_ns()`` taken right after the enqueue transaction committed.
        Pacing should be against absolute deadlines (no drift).
        """

    def handler_starts(self, db_url: str) -> dict[str, int]:
        """``{job_key: started_ns}`` written by the ``"latency"`` handler (default: the side table)."""
        with psycopg.connect(db_url, autocommit=True) as conn:
            rows = conn.execute("SELECT job_key, started_ns FROM bench_handler_log").fetchall()
        return {str(k): int(v) for k, v in rows}

    def stop_workers(self, procs: list[subprocess.Popen[bytes]]) -> None:
        """Stop workers: SIGTERM, up to 5 s grace, then SIGKILL."""
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    # -- optional, system-specific workloads ------------------------------------------

    def seed_finished(self, db_url: str, n: int) -> None:
        """W6: leave ``n`` finished jobs in the tables, as if ``n`` jobs had already run.

        Raise :class:`NotImplementedError` (the default) to skip W6 for this system.
        """
        raise NotImplementedError

    def tenant_backlog(self, db_url: str, n: int) -> None:
        """FAIR: one tenant creates ``n`` ``"sleep"`` jobs at once (a bulk import).

        Raise :class:`NotImplementedError` (the default) to skip FAIR for this system.
        """
        raise NotImplementedError

    def paced_tenants(
        self, db_url: str, tenants: int, seconds: float, wait_s: float
    ) -> tuple[list[float], int]:
        """FAIR: ``tenants`` new tenants each create one ``"sleep"`` job per second for
        ``seconds``; then wait up to ``wait_s`` for all of them to start. Returns each started
        job's wait from creation to its claim in ms (the system's own clock), and how many had
        not started by then."""
        raise NotImplementedError

    def http_api(self, db_url: str, quick: bool) -> dict[str, float]:
        """W5: benchmark the system's HTTP API against ``db_url``; return metrics.

        The first key of the returned dict is the headline metric. Raise
        :class:`NotImplementedError` (the default) to skip W5.
        """
        raise NotImplementedError
