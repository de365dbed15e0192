"""Benchmark aijobs against its Python peers (pgqueuer, procrastinate) on the same PostgreSQL.

Usage (from the repo root, with the project venv)::

    .venv/bin/python bench/run.py [--quick] [--rounds N] [--only W1,W2,...] [--systems a,b]

Workloads (``--only`` ids): W1 enqueue, W2 drain (1 and 2 processes), W3 latency,
W4 I/O-bound, W5 HTTP API (adapter hook), W6 drain with 1M finished jobs,
W7 scale (4 processes x 1,000 slots, jobs of 1 s; adapters with the "llm" handler),
FLOOR (pgbench plain-SQL queue), FAIR (small tenants' wait beside a bulk
tenant's backlog; aijobs only). Rounds are interleaved: every round runs every
workload for every system (system order rotated per round), each in a fresh
database ``bench_<system>_<case>_<round>`` that is dropped afterwards. Results
are medians over rounds.

Writes ``bench/results/latest.json`` and the tables in ``docs/benchmarks.md``
between ``<!-- bench:start -->`` and ``<!-- bench:end -->``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import importlib
import json
import os
import platform
import selectors
import statistics
import subprocess
import sys
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import pgbench_floor  # noqa: E402
from systems.base import (  # noqa: E402
    HANDLER_LOG_DDL,
    HandlerKind,
    System,
    SystemUnavailable,
    WorkerSpec,
)

DEFAULT_ADMIN_URL = "postgresql://root@127.0.0.1:5432/test"
DEFAULT_SYSTEMS = ("aijobs", "pgqueuer", "procrastinate")
WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "FLOOR", "W6", "W7", "FAIR")
DOCS = REPO / "docs" / "benchmarks.md"
RESULTS = BENCH_DIR / "results" / "latest.json"
START_MARK, END_MARK = "<!-- bench:start -->", "<!-- bench:end -->"
SLEEP_S = 0.2
W4_SLOTS = 100
#: W7: the shape of a deployment calling an LLM: several worker processes, many slots each,
#: jobs that wait a second. Ideal: every slot busy all the time.
W7_PROCESSES, W7_SLOTS, W7_JOB_S = 4, 1000, 1.0
#: FAIR: the issue's setting, a worker of 10 slots running 0.2 s jobs.
FAIR_SLOTS = 10

Metrics = dict[str, float]


@dataclass(frozen=True)
class Sizes:
    """Job counts and durations; ``--quick`` uses smaller ones."""

    w1_single: int
    w1_batch: int
    w1_batch_size: int
    w2_jobs: int
    w3_seconds: float
    w3_interval: float
    w4_jobs: int
    w6_finished: int
    floor_seconds: int
    w7_jobs: int
    #: FAIR: the bulk tenant's pending jobs, the small tenants, and how long each creates one
    #: job per second.
    fair_backlog: int
    fair_tenants: int
    fair_seconds: float
    # A no-op drain (W2, W6) stops this many seconds after its workers were started, and its
    # rate is taken over the jobs finished by then (0: always drain every job). Only a
    # system slower than w2_jobs / budget (1,333 jobs/s at full sizes) reaches it:
    # procrastinate, at 300-700 jobs/s, whose three drains per round took about 3 minutes of
    # the run. The queue is as deep at the start.
    drain_budget_s: float

    @staticmethod
    def full() -> Sizes:
        return Sizes(
            10_000, 10_000, 100, 20_000, 10.0, 0.02, 2_000, 1_000_000, 5, 40_000, 10_000, 10, 10.0, 15.0
        )

    @staticmethod
    def quick() -> Sizes:
        return Sizes(3_000, 10_000, 100, 10_000, 5.0, 0.02, 2_000, 1_000_000, 3, 20_000, 10_000, 10, 5.0, 5.0)


@dataclass(frozen=True)
class Case:
    """One measured thing; a workload may have several (W2 with 1 and 2 processes)."""

    id: str
    workload: str
    title: str
    primary: str
    unit: str
    higher_is_better: bool = True


CASES = (
    Case("w1_single", "W1", "W1 enqueue, one transaction per job", "jobs_per_s", "jobs/s"),
    Case("w1_single_sync", "W1", "W1 enqueue, one per transaction, sync client", "jobs_per_s", "jobs/s"),
    Case("w1_batch", "W1", "W1 enqueue, batched", "jobs_per_s", "jobs/s"),
    Case("w2_1p", "W2", "W2 drain no-op jobs, 1 worker process", "jobs_per_s", "jobs/s"),
    Case("w2_2p", "W2", "W2 drain no-op jobs, 2 worker processes", "jobs_per_s", "jobs/s"),
    Case("w3", "W3", "W3 latency enqueue-commit to handler start", "p50_ms", "ms", False),
    Case("w4", "W4", "W4 I/O-bound (0.2 s sleep, 100 slots, 1 process)", "jobs_per_s", "jobs/s"),
    Case("w5", "W5", "W5 HTTP API", "", ""),
    Case("floor_single", "FLOOR", "pgbench floor, claim 1 + complete, 1 client", "jobs_per_s", "jobs/s"),
    Case("floor_batch", "FLOOR", "pgbench floor, claim 100 + complete, 1 client", "jobs_per_s", "jobs/s"),
    Case("w6", "W6", "W6 drain (1 process) with finished jobs in the tables", "jobs_per_s", "jobs/s"),
    Case(
        "w7",
        "W7",
        "W7 scale: 4 worker processes x 1,000 slots, I/O-bound jobs of 1 s",
        "ratio_to_ideal",
        "x ideal",
    ),
    Case(
        "fair",
        "FAIR",
        "FAIR small tenants' wait, creation to claim, beside a bulk tenant's backlog (10 slots, 0.2 s jobs)",
        "p99_ms",
        "ms",
        False,
    ),
)


class Skip(Exception):
    """This (system, case) does not apply; the message is printed once as a note."""


@dataclass
class Results:
    rounds: dict[str, dict[str, list[Metrics]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: set[tuple[str, str]] = field(default_factory=set)

    def add(self, case: str, system: str, metrics: Metrics) -> None:
        self.rounds.setdefault(case, {}).setdefault(system, []).append(metrics)

    def note(self, text: str) -> None:
        print(f"  note: {text}", flush=True)
        self.notes.append(text)


# -- environment ----------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": round(os.getloadavg()[0], 2),
        # CPU busy over one second before starting: other work on the box skews everything.
        "cpu_busy_pct_at_start": psutil.cpu_percent(interval=1.0),
    }


def postgres_info(admin_url: str) -> dict[str, str]:
    info: dict[str, str] = {}
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SELECT version()").fetchone()
        info["version"] = str(row[0]) if row else "?"
        for name in ("shared_buffers", "synchronous_commit", "fsync", "max_connections", "work_mem"):
            r = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
            info[name] = str(r[0]) if r else "?"
    return info


def db_url_for(admin_url: str, dbname: str) -> str:
    """``admin_url`` (a ``postgresql://`` URL) pointed at database ``dbname``; stays a URL for asyncpg."""
    parts = urllib.parse.urlsplit(admin_url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{dbname}"))


def checkpoint(url: str) -> None:
    """Write every dirty buffer out now, so a case does not pay for earlier writes
    (a role without the privilege skips it)."""
    with (
        psycopg.connect(url, autocommit=True) as conn,
        contextlib.suppress(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("CHECKPOINT")


def drop_database(admin_url: str, dbname: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def create_database(admin_url: str, dbname: str, template: str | None = None) -> str:
    """Create ``dbname`` (dropping a leftover) and return its URL; empty, with the side table,
    or a copy of ``template`` (which has it already).

    A CHECKPOINT first, so that the previous case's writes (W6 seeds millions of rows)
    are not flushed during this one. A copy is made file by file (STRATEGY FILE_COPY, where
    the server has the choice): PostgreSQL 15's default would write the whole template,
    a gigabyte for W6, through the WAL.
    """
    drop_database(admin_url, dbname)
    checkpoint(admin_url)
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            if conn.info.server_version >= 150000:
                statement += sql.SQL(" STRATEGY FILE_COPY")
        conn.execute(statement)
    url = db_url_for(admin_url, dbname)
    if template is None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(HANDLER_LOG_DDL)  # type: ignore[arg-type]
    return url


@contextlib.contextmanager
def fresh_database(admin_url: str, dbname: str, template: str | None = None) -> Iterator[str]:
    """A database made by :func:`create_database` for one case, dropped afterwards."""
    try:
        yield create_database(admin_url, dbname, template)
    finally:
        drop_database(admin_url, dbname)


@dataclass
class Seeded:
    """W6's seeded database of one system: made once per run, copied for every round.

    Seeding 1,000,000 finished jobs took 20-38 s per system and round, a fifth of a full
    run; a file copy of the result takes a few seconds and starts every round's drain from
    the same tables.
    """

    dbname: str
    seed_s: float


def seeded_template(admin_url: str, system: System, sizes: Sizes, made: dict[str, Seeded]) -> Seeded:
    """The system's seeded W6 template, made (schema, seed, CHECKPOINT) on first use."""
    if system.name in made:
        return made[system.name]
    dbname = f"bench_{system.name}_w6_template"
    url = create_database(admin_url, dbname)
    try:
        system.prepare(url)
        t0 = time.perf_counter()
        system.seed_finished(url, sizes.w6_finished)
        seed_s = time.perf_counter() - t0
        # The seed writes more WAL than max_wal_size (1 GB by default: 1.0 GB for aijobs, 1.2 GB
        # for pgqueuer). Without a CHECKPOINT here, the checkpoint it brought on ran during the
        # drain of some rounds and not others (2026-11-28 22:58: W6 rounds of 20.4k, 12.3k and
        # 13.1k jobs/s for aijobs, 15.9k, 10.3k and 9.0k for pgqueuer). (`create_database` makes
        # another before each copy, which then finds little to write.)
        checkpoint(url)
    except BaseException:
        drop_database(admin_url, dbname)
        raise
    made[system.name] = Seeded(dbname, seed_s)
    return made[system.name]


# -- worker process helpers -----------------------------------------------------------


def wait_ready(procs: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    """Wait for the ``READY`` line on every worker's stdout."""
    deadline = time.monotonic() + timeout
    for p in procs:
        assert p.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(p.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("worker not READY in time")
            if not sel.select(timeout=left):
                continue
            line = p.stdout.readline()
            if not line:
                raise RuntimeError(f"worker {p.pid} exited before READY (rc={p.wait()})")
            if line.strip() == b"READY":
                break
        sel.close()


def peak_rss_mb(procs: list[subprocess.Popen[bytes]]) -> float:
    """Largest VmHWM (peak resident set) among the workers and their children, in MiB."""
    peak_kb = 0
    for p in procs:
        pids = [p.pid]
        with contextlib.suppress(psutil.Error):
            pids += [c.pid for c in psutil.Process(p.pid).children(recursive=True)]
        for pid in pids:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak_kb = max(peak_kb, int(line.split()[1]))
    return peak_kb / 1024


def wait_done(
    system: System,
    db_url: str,
    target: int,
    procs: list[subprocess.Popen[bytes]],
    timeout: float,
    on_poll: Callable[[], None] | None = None,
    budget: float | None = None,
) -> bool:
    """Poll :meth:`System.count_done` until it reaches ``target`` (True), or until ``budget``
    seconds have passed (False); past ``timeout`` seconds it raises."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if on_poll:
            on_poll()
        if system.count_done(db_url) >= target:
            return True
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"worker {p.pid} exited early (rc={p.returncode})")
        if budget is not None and time.monotonic() - start >= budget:
            return False
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out: {system.count_done(db_url)}/{target} done after {timeout}s")
        time.sleep(0.2)


class ConnectionSampler:
    """The most server connections open to one database at once, sampled while a drain runs
    (the sampler's own left out)."""

    def __init__(self, db_url: str) -> None:
        self.conn = psycopg.connect(db_url, autocommit=True)
        self.peak = 0

    def sample(self) -> None:
        row = self.conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
        self.peak = max(self.peak, int(row[0]) if row else 0)

    def close(self) -> None:
        self.conn.close()


def drain(
    system: System,
    db_url: str,
    n: int,
    processes: int,
    concurrency: int | None,
    handler: HandlerKind,
    budget_s: float = 0.0,
    connections: ConnectionSampler | None = None,
) -> Metrics:
    """Pre-enqueue ``n`` jobs, start workers, wait until all are done (or ``budget_s`` seconds
    have passed, when it is not 0); rates from DB timestamps, over the jobs done."""
    system.enqueue_for_drain(db_url, n, handler)
    # Planner statistics for the freshly filled tables, as autovacuum would have them in
    # steady state (same for every system; without it some dequeue plans are 2x slower).
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ANALYZE")
    baseline = system.count_done(db_url)
    since = time.time()
    procs = system.start_workers(db_url, WorkerSpec(processes, concurrency, handler))
    try:
        whole = wait_done(
            system,
            db_url,
            baseline + n,
            procs,
            timeout=max(120.0, n / 50),
            on_poll=connections.sample if connections else None,
            budget=budget_s or None,
        )
        rss = peak_rss_mb(procs)
    finally:
        system.stop_workers(procs)
    t = system.drain_timings(db_url, since)
    if whole and t.done < n:
        raise RuntimeError(f"only {t.done}/{n} jobs recorded as done")
    # Cut by the budget, the rate is over the jobs finished until the workers stopped
    # (those finished in the stop's grace included: `last_end` is the last of them).
    done = min(t.done, n)
    return {
        "jobs_per_s": done / (t.last_end - t.first_start),
        "jobs_per_s_from_spawn": done / (t.last_end - since),
        "startup_s": t.first_start - since,
        "jobs_done": float(done),
        "peak_rss_mb": rss,
    }


# -- the cases ------------------------------------------------------------------------


def run_case(case: Case, system: System, db_url: str, sizes: Sizes) -> Metrics:
    if case.id == "w5":
        try:
            return system.http_api(db_url, sizes.w2_jobs < Sizes.full().w2_jobs)
        except NotImplementedError:
            raise Skip(f"{system.name}: W5 (HTTP API) not implemented by the adapter") from None
    if case.id == "w6":
        # `db_url` is a copy of the system's seeded template (`seeded_template`): schema,
        # finished jobs and the CHECKPOINT after the seed are behind it already.
        m = drain(system, db_url, sizes.w2_jobs, 1, None, "noop", sizes.drain_budget_s)
        del m["peak_rss_mb"]
        return {**m, "finished_rows": float(sizes.w6_finished)}
    system.prepare(db_url)
    if case.id == "w1_single":
        n = sizes.w1_single
        return {"jobs_per_s": n / system.enqueue_single(db_url, n)}
    if case.id == "w1_single_sync":
        n = sizes.w1_single
        try:
            return {"jobs_per_s": n / system.enqueue_single_sync(db_url, n)}
        except NotImplementedError:
            raise Skip(f"{system.name}: W1 through a sync client not implemented by the adapter") from None
    if case.id == "w1_batch":
        n = sizes.w1_batch
        return {"jobs_per_s": n / system.enqueue_batch(db_url, n, sizes.w1_batch_size)}
    if case.id in ("w2_1p", "w2_2p"):
        m = drain(
            system, db_url, sizes.w2_jobs, 1 if case.id == "w2_1p" else 2, None, "noop", sizes.drain_budget_s
        )
        del m["peak_rss_mb"]
        return m
    if case.id == "w3":
        return latency(system, db_url, sizes)
    if case.id == "w4":
        m = drain(system, db_url, sizes.w4_jobs, 1, W4_SLOTS, "sleep")
        m["ratio_to_ideal"] = m["jobs_per_s"] / (W4_SLOTS / SLEEP_S)
        return m
    if case.id == "w7":
        return scale(system, db_url, sizes)
    if case.id == "fair":
        return fair_share(system, db_url, sizes)
    raise AssertionError(case.id)


def scale(system: System, db_url: str, sizes: Sizes) -> Metrics:
    """W7: ``W7_PROCESSES`` workers of ``W7_SLOTS`` slots drain jobs of ``W7_JOB_S``: the steady
    rate (:meth:`System.steady_rate`) and the whole drain's, against every slot busy all the
    time; the database connections they held at most; the largest worker's peak resident set."""
    if "llm" not in system.handler_kinds:
        raise Skip(f"{system.name}: W7 (jobs of 1 s, the 'llm' handler) not implemented by the adapter")
    sampler = ConnectionSampler(db_url)
    since = time.time()
    try:
        m = drain(system, db_url, sizes.w7_jobs, W7_PROCESSES, W7_SLOTS, "llm", connections=sampler)
    finally:
        sampler.close()
    ideal = W7_PROCESSES * W7_SLOTS / W7_JOB_S
    try:
        steady = system.steady_rate(db_url, since, W7_JOB_S)
    except NotImplementedError:
        steady = m["jobs_per_s"]
    return {
        "ratio_to_ideal": steady / ideal,
        "jobs_per_s": steady,
        "ideal_jobs_per_s": ideal,
        "ratio_whole_run": m["jobs_per_s"] / ideal,
        "connections": float(sampler.peak),
        "connections_per_worker": sampler.peak / W7_PROCESSES,
        "peak_rss_mb_per_worker": m["peak_rss_mb"],
        "jobs_done": m["jobs_done"],
        "startup_s": m["startup_s"],
    }


def fair_share(system: System, db_url: str, sizes: Sizes) -> Metrics:
    """FAIR: ten small tenants each create one job per second, first on an empty queue, then
    beside one tenant's backlog of 10,000 jobs; their wait from creation to claim, in ms. The
    target: the p99 beside the backlog at most twice the empty queue's plus one job's length."""
    procs = system.start_workers(db_url, WorkerSpec(1, FAIR_SLOTS, "sleep"))
    wait_s = 30.0
    try:
        wait_ready(procs)
        empty, _ = system.paced_tenants(db_url, sizes.fair_tenants, sizes.fair_seconds, wait_s)
        system.tenant_backlog(db_url, sizes.fair_backlog)
        loaded, unstarted = system.paced_tenants(db_url, sizes.fair_tenants, sizes.fair_seconds, wait_s)
    except NotImplementedError:
        raise Skip(f"{system.name}: FAIR (tenants) not implemented by the adapter") from None
    finally:
        system.stop_workers(procs)
    if not loaded:
        raise RuntimeError(f"none of the small tenants' jobs started within {wait_s:g} s of the last")

    def pct(values: list[float], p: int) -> float:
        return statistics.quantiles(sorted(values), n=100, method="inclusive")[p - 1]

    target = 2 * pct(empty, 99) + SLEEP_S * 1000
    return {
        "p99_ms": pct(loaded, 99),
        "p50_ms": pct(loaded, 50),
        "max_ms": max(loaded),
        "p99_empty_ms": pct(empty, 99),
        "p50_empty_ms": pct(empty, 50),
        "target_ms": target,
        "p99_to_target": pct(loaded, 99) / target,
        # Jobs still waiting `wait_s` after the last was created: then p99_ms leaves them out.
        "unstarted": float(unstarted),
        "samples": float(len(loaded)),
    }


def measure(
    case: Case, system: System, admin_url: str, dbname: str, sizes: Sizes, w6_templates: dict[str, Seeded]
) -> Metrics:
    """One (system, case, round) in a fresh database named ``dbname``; W6's is a copy of the
    system's seeded template, made on the first round."""
    seeded = None
    if case.id == "w6":
        try:
            seeded = seeded_template(admin_url, system, sizes, w6_templates)
        except NotImplementedError:
            raise Skip(f"{system.name}: W6 (seeding finished jobs) not implemented by the adapter") from None
    with fresh_database(admin_url, dbname, seeded.dbname if seeded else None) as url:
        m = run_case(case, system, url, sizes)
    if seeded is not None:
        m["seed_s"] = seeded.seed_s  # once per run, not per round
    return m


def latency(system: System, db_url: str, sizes: Sizes) -> Metrics:
    """W3: idle worker, one job every ``w3_interval`` s; commit -> handler start, in ms."""
    count = round(sizes.w3_seconds / sizes.w3_interval)
    procs = system.start_workers(db_url, WorkerSpec(1, None, "latency"))
    try:
        wait_ready(procs)
        time.sleep(1.0)  # let the worker settle into its idle wait
        commits = system.produce_paced(db_url, sizes.w3_interval, count)
        wait_done(system, db_url, count, procs, timeout=60)
    finally:
        system.stop_workers(procs)
    starts = system.handler_starts(db_url)
    lat = sorted((starts[k] - c) / 1e6 for k, c in commits.items() if k in starts)
    if len(lat) < count:
        raise RuntimeError(f"only {len(lat)}/{count} latency samples")
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {"p50_ms": q[49], "p95_ms": q[94], "p99_ms": q[98], "max_ms": lat[-1], "samples": float(len(lat))}


def run_floor_case(case: Case, db_url: str, sizes: Sizes) -> Metrics:
    secs = sizes.floor_seconds
    if case.id == "floor_single":
        return pgbench_floor.run_floor(db_url, 1, secs, rows=20_000 * secs)
    return pgbench_floor.run_floor(db_url, 100, secs, rows=150_000 * secs)


# -- loading systems ------------------------------------------------------------------


def load_systems(names: list[str], results: Results) -> list[System]:
    systems: list[System] = []
    for name in names:
        try:
            module = importlib.import_module(f"systems.{name}_system")
            system: System = module.create_system()
            system.setup()
        except ImportError as exc:
            results.note(f"{name}: skipped, adapter bench/systems/{name}_system.py not importable ({exc})")
            continue
        except SystemUnavailable as exc:
            results.note(f"{name}: skipped, unavailable ({exc})")
            continue
        print(f"system {system.name} {system.version()}: {system.tuning}", flush=True)
        systems.append(system)
    return systems


# -- reporting ------------------------------------------------------------------------


def fmt(v: float) -> str:
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def summarize(results: Results) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for case_id, by_system in results.rounds.items():
        for system, rounds in by_system.items():
            keys = list(rounds[0])
            out.setdefault(case_id, {})[system] = {
                "median": {k: statistics.median(r[k] for r in rounds) for k in keys},
                "rounds": rounds,
            }
    return out


def case_rows(case: Case, summary: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one case's table (primary metric first, then other medians)."""
    any_sys = next(iter(summary.values()))
    primary = case.primary or next(iter(any_sys["median"]))
    others = [k for k in any_sys["median"] if k != primary]
    header = ["system", f"{primary} (median)", "rounds", *others]
    rows = []
    ordered = sorted(summary.items(), key=lambda kv: kv[1]["median"][primary], reverse=case.higher_is_better)
    for system, s in ordered:
        rounds = ", ".join(fmt(r[primary]) for r in s["rounds"])
        rows.append([system, fmt(s["median"][primary]), rounds, *(fmt(s["median"][k]) for k in others)])
    return header, rows


def print_tables(summary: dict[str, dict[str, dict[str, Any]]]) -> None:
    for case in CASES:
        if case.id not in summary:
            continue
        header, rows = case_rows(case, summary[case.id])
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        print(f"\n{case.title}" + (f" [{case.unit}]" if case.unit else ""))
        print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def markdown(report: dict[str, Any], summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    m, pg = report["machine"], report["postgres"]
    lines = [
        f"Run {report['finished_at']} with `{report['command']}` "
        f"({report['rounds']} round(s), {'quick' if report['quick'] else 'full'} sizes).",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gb']} GiB RAM, "
        f"Linux {m['kernel']}, Python {m['python']}; CPU {m['cpu_busy_pct_at_start']:.0f}% busy "
        f"just before the run.",
        f"PostgreSQL: {pg['version'].split(' on ')[0]}; shared_buffers={pg['shared_buffers']}, "
        f"synchronous_commit={pg['synchronous_commit']}, fsync={pg['fsync']}, "
        f"max_connections={pg['max_connections']}.",
        "",
    ]
    if budget := report["sizes"].get("drain_budget_s"):
        lines += [
            f"No-op drains (W2, W6) stop {budget:g} s after their workers start and are rated over "
            "the jobs done by then (`jobs_done`); W4 always runs every job.",
            "",
        ]
    for case in CASES:
        if case.id not in summary:
            continue
        header, rows = case_rows(case, summary[case.id])
        lines += [f"**{case.title}**" + (f" ({case.unit})" if case.unit else ""), ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
    lines += ["Systems and tuning:", ""]
    for name, s in report["systems"].items():
        lines.append(f"- **{name}** {s['version']}: {s['tuning']}. Drain timing: {s['timing_method']}.")
    if report["notes"]:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines)


DOCS_SKELETON = f"""# Benchmarks

aijobs compared with the strongest Python PostgreSQL job queues, pgqueuer and
procrastinate, on the same PostgreSQL server in one interleaved run (every
round runs every workload for every system, each in a fresh database), plus a
pgbench "floor": a plain-SQL `FOR UPDATE SKIP LOCKED` queue driven by pgbench,
the most this server can do with no client library at all.

Reproduce with `make bench` (or `.venv/bin/python bench/run.py [--quick]`); the
peers are installed into `bench/.peers-venv` by `bench/setup_peers.sh`. Raw
numbers land in `bench/results/latest.json`. The harness and the workload
definitions are in `bench/`; each system is one adapter module in
`bench/systems/` implementing `bench/systems/base.py`.

Workloads: W1 enqueue (one transaction per job, through each system's async client
and through its synchronous one, and batches of 100); W2 drain
of pre-enqueued no-op jobs with 1 and 2 worker processes (rate from the first
job start to the last completion, as recorded in the database; "from spawn"
includes worker start-up); W3 latency from enqueue commit to handler start with
an idle worker, one job every 20 ms; W4 2,000 jobs of `asyncio.sleep(0.2)`
with 100 slots in one process (ideal 500 jobs/s); W5 HTTP API (aijobs only);
W6 W2 with 1,000,000 finished jobs already in the tables; W7 (aijobs only) 40,000 jobs
of `asyncio.sleep(1.0)`, an LLM call's shape, drained by 4 worker processes of 1,000
slots each (ideal 4,000 jobs/s), with the database connections they held and each
worker's peak RSS. Drains run `ANALYZE`
after pre-enqueueing (as autovacuum would in steady state) and before the
workers start. Throughput counted in the database uses each system's own
timestamps (see "Drain timing" below); latency uses `time.time_ns()` taken
right after the producer's commit and at the start of the handler.

{START_MARK}
{END_MARK}
"""


def write_docs(md: str) -> None:
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    text = DOCS.read_text() if DOCS.exists() else DOCS_SKELETON
    if START_MARK not in text or END_MARK not in text:
        text = text.rstrip("\n") + f"\n\n{START_MARK}\n{END_MARK}\n"
    head, rest = text.split(START_MARK, 1)
    _, tail = rest.split(END_MARK, 1)
    DOCS.write_text(f"{head}{START_MARK}\n{md}\n{END_MARK}{tail}")


# -- main -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 round, smaller job counts")
    p.add_argument("--rounds", type=int, help="rounds (default 3, or 1 with --quick)")
    p.add_argument("--only", help=f"comma-separated workloads out of {','.join(WORKLOADS)}")
    p.add_argument("--systems", help=f"comma-separated systems (default {','.join(DEFAULT_SYSTEMS)})")
    p.add_argument(
        "--drain-budget",
        type=float,
        help="seconds after which a no-op drain (W2, W6) stops and is rated over the jobs done "
        "(default 15, or 5 with --quick; 0 drains every job)",
    )
    p.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    admin_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_ADMIN_URL)
    sizes = Sizes.quick() if args.quick else Sizes.full()
    if args.drain_budget is not None:
        sizes = dataclasses.replace(sizes, drain_budget_s=args.drain_budget)
    rounds = args.rounds or (1 if args.quick else 3)
    only = {w.strip().upper() for w in args.only.split(",")} if args.only else set(WORKLOADS)
    if unknown := only - set(WORKLOADS):
        sys.exit(f"unknown workload(s): {', '.join(sorted(unknown))}")
    names = [s.strip().lower() for s in args.systems.split(",")] if args.systems else list(DEFAULT_SYSTEMS)
    results = Results()

    machine, pg = machine_info(), postgres_info(admin_url)
    print(
        f"machine: {machine['nproc']} CPUs, {machine['memory_gb']} GiB, {machine['cpu_model']}, "
        f"{machine['cpu_busy_pct_at_start']:.0f}% busy"
    )
    print(f"postgres: {pg['version']}")
    print("  " + ", ".join(f"{k}={v}" for k, v in pg.items() if k != "version"))
    systems = load_systems([n for n in names if n != "pgbench"], results)
    cases = [c for c in CASES if c.workload in only]
    floor_exe = pgbench_floor.pgbench_path() if "FLOOR" in only else None
    if "FLOOR" in only:
        print(f"pgbench: {floor_exe or 'not found, FLOOR skipped'}")

    started = time.monotonic()
    w6_templates: dict[str, Seeded] = {}  # W6: each system's seeded database, copied per round
    try:
        for rnd in range(1, rounds + 1):
            print(f"\n=== round {rnd}/{rounds} ===", flush=True)
            order = systems[rnd % len(systems) :] + systems[: rnd % len(systems)] if systems else []
            for case in cases:
                if case.workload == "FLOOR":
                    if floor_exe is None:
                        continue
                    with fresh_database(admin_url, f"bench_pgbench_{case.id}_{rnd}") as url:
                        m = run_floor_case(case, url, sizes)
                    results.add(case.id, "pgbench", m)
                    print(f"  {case.id:13} pgbench        {fmt(m[case.primary])} {case.unit}", flush=True)
                    continue
                for system in order:
                    if (system.name, case.id) in results.skipped:
                        continue
                    t0 = time.monotonic()
                    try:
                        m = measure(
                            case,
                            system,
                            admin_url,
                            f"bench_{system.name}_{case.id}_{rnd}",
                            sizes,
                            w6_templates,
                        )
                    except Skip as exc:
                        results.skipped.add((system.name, case.id))
                        results.note(str(exc))
                        continue
                    except Exception as exc:
                        traceback.print_exc()
                        results.note(f"{system.name} {case.id} round {rnd} failed: {exc}")
                        continue
                    results.add(case.id, system.name, m)
                    key = case.primary or next(iter(m))
                    extra = ", ".join(f"{k}={fmt(v)}" for k, v in m.items() if k != key)
                    print(
                        f"  {case.id:13} {system.name:14} {fmt(m[key])} {case.unit}  ({extra})"
                        f"  [{time.monotonic() - t0:.0f}s]",
                        flush=True,
                    )
    finally:
        for seeded in w6_templates.values():
            drop_database(admin_url, seeded.dbname)

    machine["loadavg_at_end"] = round(os.getloadavg()[0], 2)
    if machine["cpu_busy_pct_at_start"] > 25:
        results.note(f"machine was busy at start ({machine['cpu_busy_pct_at_start']:.0f}% CPU)")
    summary = summarize(results)
    print_tables(summary)
    report: dict[str, Any] = {
        "finished_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "rounds": rounds,
        "elapsed_s": round(time.monotonic() - started, 1),
        "sizes": sizes.__dict__,
        "machine": machine,
        "postgres": pg,
        "systems": {
            s.name: {"version": s.version(), "tuning": s.tuning, "timing_method": s.timing_method}
            for s in systems
        },
        "notes": results.notes,
        "results": summary,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(REPO)}", end="")
    if not args.no_docs and summary:
        write_docs(markdown(report, summary))
        print(f" and {DOCS.relative_to(REPO)}", end="")
    print(f" in {report['elapsed_s']:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
