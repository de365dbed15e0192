"""Shared machinery for the fault-injection scenarios (1-8): jobs in bulk, worker fleets,
CPU burners, a loopback TCP proxy that can black-hole its connections, and the summary table.

Every scenario records one row (scenario, faults injected, jobs, lost, double effects,
recovery time) with `record`; `make chaos` prints the table at the end and writes it to
test-artifacts/chaos-summary.md. "Lost" and "double effects" come from the invariant check,
not from the scenario's own bookkeeping, so a scenario cannot grade itself generously.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aijobs.providers.fake_openai import FakeOpenAI, Step
from aijobs.queue.invariants import Report
from tests.conftest import ARTIFACTS, worker_env
from tests.support.fake_openai_fixtures import TEST_KEY
from tests.support.invariants import assert_invariants
from tests.support.workers import WorkerProcess, fetch_all, fetch_one, status_counts, wait_until

SUMMARY_PATH = ARTIFACTS / "chaos-summary.md"


# -- the summary table ----------------------------------------------------------------------
@dataclass
class Row:
    scenario: str
    faults: str
    jobs: int
    lost: int
    double_effects: int
    recovery: str
    notes: str = ""


RESULTS: list[Row] = []
_printed = 0


def tally(report: Report, *, unfinished_ok: bool = False) -> tuple[int, int]:
    """(lost, double effects) from an invariant report: lost counts jobs the checker calls lost
    plus, unless the scenario leaves work behind on purpose, jobs not yet terminal."""
    t, s = report.totals, report.summary
    lost = t.get("job_lost", 0) + (0 if unfinished_ok else s["pending"] + s["processing"])
    double = t.get("completed_once", 0) + t.get("debit", 0) + t.get("refund", 0) + t.get("attempt_budget", 0)
    return lost, double


def record(row: Row) -> None:
    RESULTS.append(row)
    print(f"\n[chaos] {row}", flush=True)


def table(rows: list[Row]) -> str:
    lines = [
        "| scenario | faults injected | jobs | lost | double effects | recovery time | notes |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    lines += [
        f"| {r.scenario} | {r.faults} | {r.jobs} | {r.lost} | {r.double_effects} | {r.recovery} | {r.notes} |"
        for r in rows
    ]
    return "\n".join(lines)


@pytest.fixture(scope="session", autouse=True)
def chaos_summary() -> Iterator[None]:
    """At the end of the session: print the table and write it to test-artifacts (once, even
    though several modules import this fixture)."""
    yield
    global _printed
    if not RESULTS or _printed == len(RESULTS):
        return
    _printed = len(RESULTS)
    text = table(RESULTS)
    print("\n\nchaos summary\n" + text, flush=True)
    # Under xdist (make test) each process has its own rows: only a serial run writes the file.
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        SUMMARY_PATH.parent.mkdir(exist_ok=True)
        SUMMARY_PATH.write_text(
            "# Chaos summary\n\n"
            f"`{' '.join(['pytest', *sys.argv[1:]])}` on {time.strftime('%Y-%m-%d %H:%M:%S')}, "
            f"{os.cpu_count()} CPUs\n\n{text}\n"
        )


def seconds(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f} s"
    return f"median {statistics.median(values):.2f} s, max {max(values):.2f} s (n={len(values)})"


async def finish_scenario(db_url: str, row: Row, *, unfinished_ok: bool = False) -> Report:
    """The invariant check every scenario ends with; fills lost/double effects and records."""
    report = await assert_invariants(db_url)
    row.lost, row.double_effects = tally(report, unfinished_ok=unfinished_ok)
    record(row)
    return report


# -- jobs -----------------------------------------------------------------------------------
async def bulk_create(
    db_url: str,
    user: uuid.UUID,
    n: int,
    text: str = "Lovely staff.",
    *,
    job_type: str = "sentiment_analysis",
    max_attempts: int = 4,
) -> None:
    """n jobs through the credit function (charged like any other), in one statement."""
    field_name = {"sentiment_analysis": "text", "prompt_analysis": "prompt"}.get(job_type, "review_text")
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cost = await (
            await conn.execute("select cost from aijobs.job_types where name = %s", (job_type,))
        ).fetchone()
        assert cost is not None
        await conn.execute("select aijobs.grant_credits(%s, %s, 'chaos')", (user, max(n * cost[0], 1)))
        await conn.execute(
            "select aijobs.create_jobs(%s, array[%s::text], array[jsonb_build_object(%s::text, %s::text)],"
            " array[0::smallint], null, array[%s::integer]) from generate_series(1, %s)",
            (user, job_type, field_name, text, max_attempts, n),
        )


async def completed(db_url: str) -> int:
    return (await status_counts(db_url)).get("completed", 0)


async def terminal(db_url: str) -> int:
    c = await status_counts(db_url)
    return c.get("completed", 0) + c.get("failed", 0) + c.get("cancelled", 0)


async def lease_holders(db_url: str, pid: int) -> list[uuid.UUID]:
    """Jobs currently leased by the worker process `pid` (its id is host-pid-suffix)."""
    rows = await fetch_all(
        db_url, "select id from aijobs.jobs where status = 'processing' and lease_owner like %s", f"%-{pid}-%"
    )
    return [r["id"] for r in rows]


async def all_terminal(db_url: str, ids: list[uuid.UUID]) -> bool:
    if not ids:
        return True
    row = await fetch_one(
        db_url,
        "select count(*) as n from aijobs.jobs"
        " where id = any(%s) and status in ('completed', 'failed', 'cancelled')",
        ids,
    )
    return int(row["n"]) == len(ids)


def openai_env(db_url: str, fake: FakeOpenAI, **extra: str) -> dict[str, str]:
    """Worker env aimed at the fake OpenAI server on loopback."""
    return worker_env(
        db_url,
        LLM_PROVIDER="openai",
        OPENAI_BASE_URL=fake.base_url,
        OPENAI_API_KEY=TEST_KEY,
        **extra,
    )


# -- fleets of worker processes -------------------------------------------------------------
class Fleet:
    """Worker subprocesses, each logging to its own file; replaced on demand, all stopped at exit."""

    def __init__(self, env: dict[str, str], log_dir: Path, *, module: str = "aijobs") -> None:
        self.env = env
        self.log_dir = log_dir
        self.module = module
        self.workers: list[WorkerProcess] = []
        self.started = 0

    def start(self, n: int = 1, **env: str) -> list[WorkerProcess]:
        new = []
        for _ in range(n):
            self.started += 1
            w = WorkerProcess(
                {**self.env, **env}, self.log_dir / f"worker-{self.started}.log", module=self.module
            )
            self.workers.append(w)
            new.append(w)
        return new

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.proc.poll() is None]

    def logs(self) -> str:
        return "\n".join(w.output() for w in self.workers)

    async def stop(self, timeout: float = 30.0) -> list[int]:
        """SIGTERM the live workers; their exit codes (0 is a clean drain). Dead ones are reaped."""
        live = self.alive()
        for w in live:
            # A worker still importing has no SIGTERM handler yet; once it has registered
            # (after installing them) SIGTERM means a graceful drain.
            await wait_until(lambda w=w: self._registered(w), timeout=30, what=f"worker {w.pid} registered")
            w.send(signal.SIGTERM)
        codes = []
        for w in live:
            try:
                codes.append(await w.wait(timeout))
            except AssertionError:
                codes.append(-9)
        for w in self.workers:
            if w not in live:
                w.kill()
        return codes

    async def _registered(self, w: WorkerProcess) -> bool:
        if w.proc.poll() is not None:
            return True
        rows = await fetch_all(self.env["DATABASE_URL"], "select 1 from aijobs.workers where pid = %s", w.pid)
        return bool(rows)

    def kill_all(self) -> None:
        for w in self.workers:
            w.kill()


@contextlib.asynccontextmanager
async def fleet(
    env: dict[str, str], log_dir: Path, n: int, *, module: str = "aijobs"
) -> AsyncIterator[Fleet]:
    f = Fleet(env, log_dir, module=module)
    f.start(n)
    try:
        yield f
    finally:
        f.kill_all()


# -- CPU saturation -------------------------------------------------------------------------
@contextlib.contextmanager
def cpu_burners(n: int, seconds: float) -> Iterator[list[subprocess.Popen[bytes]]]:
    """n busy-looping processes that stop by themselves after `seconds` (and are killed at exit)."""
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


# -- a fake OpenAI whose outage is switched on and off by time, not by a script ------------------
class OutageFake(FakeOpenAI):
    """FakeOpenAI plus `mode`: None (normal), "500", "429" or "hang" for every request while set."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.mode: str | None = None
        self.retry_after_ms = 1000

    def _next_step(self) -> tuple[Step, float | None]:
        mode = self.mode
        if mode == "500":
            return Step.error(500), None
        if mode == "429":
            return Step.rate_limited(self.retry_after_ms), None
        if mode == "hang":
            return Step.hanging(), None
        return super()._next_step()


# -- a loopback TCP proxy that can silently drop everything ------------------------------------
@dataclass
class _Pipe:
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    dead: bool = False


class BlackHoleProxy:
    """Forwards 127.0.0.1:<port> to a PostgreSQL server (TCP or Unix socket).

    `black_hole()` makes every *existing* connection silently swallow all bytes in both
    directions while its sockets stay open — what a dropped NAT entry or a dead peer behind
    a firewall looks like: no FIN, no RST, just silence. New connections work normally.
    """

    def __init__(self, target_conninfo: str) -> None:
        params = conninfo_to_dict(target_conninfo)
        self.host = str(params.get("host") or "127.0.0.1")
        self.target_port = int(params.get("port") or 5432)
        self.target_conninfo = target_conninfo
        self.port = 0
        self.pipes: list[_Pipe] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def conninfo(self) -> str:
        return make_conninfo(self.target_conninfo, host="127.0.0.1", port=str(self.port))

    async def __aenter__(self) -> BlackHoleProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for pipe in self.pipes:
            for w in pipe.writers:
                w.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def black_hole(self) -> int:
        """Silence every open connection; returns how many were silenced."""
        n = 0
        for pipe in self.pipes:
            if not pipe.dead:
                pipe.dead = True
                n += 1
        return n

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.host.startswith("/"):
            return await asyncio.open_unix_connection(f"{self.host}/.s.PGSQL.{self.target_port}")
        return await asyncio.open_connection(self.host, self.target_port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await self._connect_upstream()
        except OSError:
            writer.close()
            return
        pipe = _Pipe(writers=[writer, up_writer])
        self.pipes.append(pipe)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(pipe, src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, pipe: _Pipe, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                if pipe.dead:
                    continue  # swallowed: neither delivered nor refused
                dst.write(data)
                await dst.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            if not pipe.dead:
                dst.close()


# -- small helpers --------------------------------------------------------------------------
async def wait_for(check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1) -> float:
    """`wait_until`, returning how long it took."""
    start = time.monotonic()
    await wait_until(check, timeout=timeout, interval=interval, what=what)
    return time.monotonic() - start
