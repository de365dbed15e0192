"""aijobs adapter: every job goes through the credit-consuming function, as the API does.

The harness runs in the project's venv, so this module imports aijobs directly; workers are
`bench/systems/aijobs_worker.py` processes (the real `Worker` with the benchmark provider).
Jobs are `sentiment_analysis` jobs (cost 1) charged to one funded account; W5 spreads load
over many accounts, as real users are many.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from aijobs import eventloop
from aijobs.db.migrate import migrate
from aijobs.db.store import Store
from aijobs.db.sync_session import SyncSession
from aijobs.jobs import registry
from aijobs.queue.enqueue import JobSpec, enqueue, enqueue_many, enqueue_sync
from systems.base import DrainTimings, HandlerKind, System, WorkerSpec

HERE = Path(__file__).resolve().parent
USER = uuid.UUID("00000000-0000-4000-8000-0000000be7c4")
#: Slots per worker process when the harness leaves concurrency to us (see `tuning`).
CONCURRENCY: dict[HandlerKind, int] = {"noop": 1000, "sleep": 100, "latency": 10, "llm": 1000}
TEXT: dict[HandlerKind, str] = {"noop": "noop", "sleep": "sleep", "latency": "latency", "llm": "llm"}
#: The event loop of every aijobs process in the benchmark: workers, API, and the enqueuers
#: of W1 and W3 (the product default too; see aijobs/eventloop.py).
LOOP = "uvloop"


def _job_types() -> list[tuple[str, int, float]]:
    return [(jt.name, jt.cost, jt.timeout_seconds) for jt in registry().values()]


def _fund(db_url: str, user: uuid.UUID, credits: int) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("select aijobs.grant_credits(%s, %s, 'bench')", (user, credits))


class AijobsSystem(System):
    name = "aijobs"
    timing_method = (
        "aijobs' own jobs table: min(started_at) (set by the claim statement) to "
        "max(finished_at) (set by the batched finish statement) of the jobs completed in the run"
    )
    tuning = (
        "EVENT_LOOP=uvloop (workers, API, W1/W3 enqueuers); psycopg 3 async pool (3-4 connections: "
        "claims, batched finishes, heartbeat); orjson; "
        "W1 sync client: enqueue_sync on a SyncSession over one autocommit psycopg connection; "
        "W1 batched: enqueue_many, 100 jobs per call (one statement, one transaction); "
        "no-op drain: WORKER_CONCURRENCY=1000, i.e. claims of up to 1000 (tried 250/500/1000/2000: "
        "14.0k/14.3k/17.5k/17.0k jobs/s); W4: 100 slots; W3: 10 slots; W7: 4 processes x 1000 slots; "
        "LOG_LEVEL=WARNING; "
        "each job validated, run through the sentiment_analysis handler and its output model; "
        "W5: 2 uvicorn processes, DB_POOL_SIZE=10, wrk -t1 -c16 over 100 users' tokens, "
        "after 2 s of unmeasured warm-up"
    )

    handler_kinds = frozenset({"noop", "sleep", "latency", "llm"})

    def version(self) -> str:
        from aijobs import __version__

        return __version__

    def prepare(self, db_url: str) -> None:
        migrate(db_url, job_types=_job_types())

    # -- W1 -------------------------------------------------------------------------
    def enqueue_single(self, db_url: str, n: int) -> float:
        _fund(db_url, USER, n)

        async def go() -> float:
            store = await Store.open(db_url, min_size=1, max_size=1, name="aijobs-bench-enqueue")
            try:
                async with store.session() as session:
                    t0 = time.perf_counter()
                    for _ in range(n):
                        await enqueue(
                            session, user_id=USER, job_type="sentiment_analysis", payload={"text": "noop"}
                        )
                    return time.perf_counter() - t0
            finally:
                await store.close()

        return eventloop.run(go(), LOOP)

    def enqueue_single_sync(self, db_url: str, n: int) -> float:
        """`enqueue_sync` on a `SyncSession` over one autocommit psycopg connection."""
        _fund(db_url, USER, n)
        with psycopg.connect(db_url, autocommit=True) as conn:
            session = SyncSession(conn)
            t0 = time.perf_counter()
            for _ in range(n):
                enqueue_sync(session, user_id=USER, job_type="sentiment_analysis", payload={"text": "noop"})
            return time.perf_counter() - t0

    def enqueue_batch(self, db_url: str, n: int, batch_size: int) -> float:
        """`enqueue_many`: `batch_size` jobs per call, one statement and one transaction each."""
        _fund(db_url, USER, n)
        spec = JobSpec("sentiment_analysis", {"text": "noop"})

        async def go() -> float:
            store = await Store.open(db_url, min_size=1, max_size=1, name="aijobs-bench-enqueue")
            try:
                async with store.session() as session:
                    t0 = time.perf_counter()
                    for start in range(0, n, batch_size):
                        await enqueue_many(session, user_id=USER, jobs=[spec] * min(batch_size, n - start))
                    return time.perf_counter() - t0
            finally:
                await store.close()

        return eventloop.run(go(), LOOP)

    # -- W2 / W4 / W6 ---------------------------------------------------------------
    def enqueue_for_drain(self, db_url: str, n: int, handler: HandlerKind) -> None:
        _fund(db_url, USER, n)
        with psycopg.connect(db_url, autocommit=True) as conn:
            for start in range(0, n, 200):
                k = min(200, n - start)
                with conn.transaction():
                    conn.execute(
                        "select count(*) from aijobs.create_jobs(%s,"
                        " array_fill('sentiment_analysis'::text, array[%s]),"
                        " array_fill(jsonb_build_object('text', %s::text), array[%s]))",
                        (USER, k, TEXT[handler], k),
                    )

    def start_workers(self, db_url: str, spec: WorkerSpec) -> list[subprocess.Popen[bytes]]:
        concurrency = CONCURRENCY[spec.handler] if spec.concurrency is None else spec.concurrency
        if spec.handler == "noop" and os.environ.get("BENCH_AIJOBS_CONCURRENCY"):  # for re-tuning
            concurrency = int(os.environ["BENCH_AIJOBS_CONCURRENCY"])
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_"))}
        env.update(
            DATABASE_URL=db_url,
            WORKER_CONCURRENCY=str(concurrency),
            LOG_LEVEL="WARNING",
            EVENT_LOOP=LOOP,
            PYTHONPATH=str(HERE),
            PYTHONUNBUFFERED="1",
        )
        return [
            subprocess.Popen(
                [sys.executable, str(HERE / "aijobs_worker.py")], env=env, stdout=subprocess.PIPE
            )
            for _ in range(spec.processes)
        ]

    def count_done(self, db_url: str) -> int:
        """Completed in the last 6 hours: an index-only scan of this run's rows.

        W6's seeded rows are a day old, so they are not counted.
        """
        with psycopg.connect(db_url, autocommit=True) as conn:
            row = conn.execute(
                "select count(*) from aijobs.jobs where finished_at > now() - interval '6 hours'"
                " and status = 'completed'"
            ).fetchone()
        return int(row[0]) if row else 0

    def drain_timings(self, db_url: str, since: float) -> DrainTimings:
        with psycopg.connect(db_url, autocommit=True) as conn:
            row = conn.execute(
                "select extract(epoch from min(started_at))::float8,"
                " extract(epoch from max(finished_at))::float8, count(*)"
                " from aijobs.jobs where status = 'completed' and finished_at >= to_timestamp(%s)",
                (since,),
            ).fetchone()
        if row is None or row[0] is None or row[1] is None:
            raise RuntimeError("no finished jobs recorded since the workers started")
        return DrainTimings(first_start=float(row[0]), last_end=float(row[1]), done=int(row[2]))

    def steady_rate(self, db_url: str, since: float, job_seconds: float) -> float:
        with psycopg.connect(db_url, autocommit=True) as conn:
            row = conn.execute(
                """with runs as (select worker_id, started_at, finished_at from aijobs.job_attempts
                                 where outcome = 'completed' and started_at >= to_timestamp(%s)),
                        bounds as (select (select max(first) from (select min(started_at) as first
                                           from runs group by worker_id) f)
                                          + make_interval(secs => %s) as t0,
                                          (select max(started_at) from runs) as t1)
                   select count(*) filter (where finished_at between t0 and t1),
                          extract(epoch from t1 - t0)::float8
                   from runs, bounds group by t0, t1""",
                (since, job_seconds),
            ).fetchone()
        if row is None or not row[1] or row[1] <= 0:
            raise RuntimeError("W7: no steady window (too few jobs for the slots)")
        return float(row[0]) / float(row[1])

    def seed_finished(self, db_url: str, n: int) -> None:
        """n completed jobs a day old, each with its attempt row, as a real history leaves them."""
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("insert into aijobs.accounts (user_id) values (%s) on conflict do nothing", (USER,))
            conn.execute(
                """insert into aijobs.jobs (user_id, tenant, type, payload, status, attempts, cost, result,
                                     created_at, started_at, finished_at, updated_at, lease_token)
                   select %s, %s, 'sentiment_analysis', '{"text": "noop"}', 'completed', 1, 1,
                          '{"provider": "bench"}', t, t, t, t, nextval('aijobs.job_lease_seq')
                   from generate_series(1, %s) as i,
                        lateral (select now() - interval '1 day'
                                        - make_interval(secs => i / 100.0)) as s(t)""",
                (USER, USER, n),
            )
            conn.execute(
                """insert into aijobs.job_attempts (lease_token, job_id, attempt, worker_id, started_at,
                                                    finished_at, outcome, provider)
                   select lease_token, id, 1, 'history', started_at, finished_at, 'completed', 'bench'
                   from aijobs.jobs where user_id = %s""",
                (USER,),
            )
            conn.execute("vacuum analyze aijobs.jobs")
            conn.execute("vacuum analyze aijobs.job_attempts")

    # -- W3 -------------------------------------------------------------------------
    def produce_paced(self, db_url: str, interval_s: float, count: int) -> dict[str, int]:
        _fund(db_url, USER, count)

        async def go() -> dict[str, int]:
            store = await Store.open(db_url, min_size=1, max_size=1, name="aijobs-bench-producer")
            commits: dict[str, int] = {}
            try:
                async with store.session() as session:
                    t0 = time.monotonic()
                    for i in range(count):
                        delay = t0 + i * interval_s - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                        key = f"k{i}"
                        await enqueue(
                            session,
                            user_id=USER,
                            job_type="sentiment_analysis",
                            payload={"text": f"latency:{key}"},
                        )
                        commits[key] = time.time_ns()
            finally:
                await store.close()
            return commits

        return eventloop.run(go(), LOOP)

    # -- FAIR -----------------------------------------------------------------------
    def tenant_backlog(self, db_url: str, n: int) -> None:
        bulk = uuid.uuid4()
        _fund(db_url, bulk, n)
        with psycopg.connect(db_url, autocommit=True) as conn:
            for start in range(0, n, 10_000):  # the most one creation takes
                k = min(10_000, n - start)
                conn.execute(
                    "select count(*) from aijobs.create_jobs(%s, array_fill('sentiment_analysis'::text,"
                    ' array[%s]), array_fill(\'{"text": "sleep"}\'::jsonb, array[%s]))',
                    (bulk, k, k),
                )

    def paced_tenants(
        self, db_url: str, tenants: int, seconds: float, wait_s: float
    ) -> tuple[list[float], int]:
        users = [uuid.uuid4() for _ in range(tenants)]
        for user in users:
            _fund(db_url, user, int(seconds) + 1)
        ids: list[uuid.UUID] = []
        with psycopg.connect(db_url, autocommit=True) as conn:
            session = SyncSession(conn)
            t0 = time.monotonic()
            for i in range(int(seconds * tenants)):
                # One job per tenant per second, the tenants spread evenly over each second.
                delay = t0 + i / tenants - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                job = enqueue_sync(
                    session,
                    user_id=users[i % tenants],
                    job_type="sentiment_analysis",
                    payload={"text": "sleep"},
                )
                ids.append(job.id)
            deadline = time.monotonic() + wait_s
            while True:
                row = conn.execute(
                    "select count(*) from aijobs.jobs where id = any(%s) and started_at is null", (ids,)
                ).fetchone()
                waiting = int(row[0]) if row else len(ids)
                if waiting == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            rows = conn.execute(
                "select extract(epoch from started_at - created_at)::float8 * 1000 from aijobs.jobs"
                " where id = any(%s) and started_at is not null",
                (ids,),
            ).fetchall()
        return [float(r[0]) for r in rows], waiting

    # -- W5 -------------------------------------------------------------------------
    def http_api(self, db_url: str, quick: bool) -> dict[str, float]:
        """POST /api/jobs with auth, RLS and credits, from a separate load-generator process."""
        migrate(db_url, job_types=_job_types())
        secret = "bench-secret-" + uuid.uuid4().hex
        users = [uuid.uuid4() for _ in range(100)]
        with psycopg.connect(db_url, autocommit=True) as conn:
            for user in users:
                conn.execute("select aijobs.grant_credits(%s, 1000000, 'bench')", (user,))
        from aijobs.api.tokens import mint_token

        tokens = [mint_token(secret, u, ttl_seconds=3600) for u in users]
        direct = self.enqueue_single(db_url, 1000 if quick else 3000)
        direct_rate = (1000 if quick else 3000) / direct
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_"))}
        env.update(
            DATABASE_URL=db_url,
            JWT_SECRET=secret,
            LOG_LEVEL="WARNING",
            MAX_JOBS_IN_FLIGHT_PER_USER="100000000",
            DB_POOL_SIZE="10",
            EVENT_LOOP=LOOP,
        )
        # Two uvicorn processes (the machine has two cores; PostgreSQL shares them).
        workers = os.environ.get("BENCH_AIJOBS_API_WORKERS", "2")
        api = subprocess.Popen(
            [sys.executable, "-m", "aijobs", "api", "--port", str(port), "--workers", workers],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_http(port)
            # An unmeasured warm-up first, as wrk is usually run: the pools open their
            # connections and each backend prepares its statements before the clock starts.
            warmup = int(os.environ.get("BENCH_W5_WARMUP_S", "2"))
            if warmup:
                _load(port, tokens, seconds=warmup, connections=W5_CONNECTIONS)
            seconds = 5 if quick else 15
            result = _load(port, tokens, seconds=seconds, connections=W5_CONNECTIONS)
        finally:
            api.send_signal(signal.SIGTERM)
            try:
                api.wait(timeout=15)
            except subprocess.TimeoutExpired:
                api.kill()
        with psycopg.connect(db_url, autocommit=True) as conn:
            bad = conn.execute(
                "select count(*) from aijobs.accounts a where a.balance <>"
                " (select sum(amount) from aijobs.credit_ledger l where l.user_id = a.user_id)"
            ).fetchone()
        if bad and bad[0]:
            raise RuntimeError("W5 left balances that disagree with the ledger")
        result["ratio_to_w1_direct"] = result["requests_per_s"] / direct_rate
        result["w1_direct_jobs_per_s"] = direct_rate
        return result


#: wrk's connections in W5 (one thread): enough to keep both API processes' groups full.
W5_CONNECTIONS = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(port: int, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the API did not come up")


WRK_SCRIPT = """
local tokens = {%s}
local body = '{"type": "sentiment_analysis", "payload": {"text": "Lovely staff, quick service."}}'
local i = 0
request = function()
  i = i + 1
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = "Bearer " .. tokens[(i %% #tokens) + 1]
  return wrk.format("POST", "/api/jobs", headers, body)
end
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format(
    "JSON {\\"requests\\": %%d, \\"errors\\": %%d, \\"non2xx\\": %%d, \\"seconds\\": %%f, ",
    summary.requests, errors, summary.errors.status, summary.duration / 1e6))
  io.write(string.format("\\"p50_ms\\": %%f, \\"p99_ms\\": %%f}\\n", latency:percentile(50) / 1000,
    latency:percentile(99) / 1000))
end
"""


def _load(port: int, tokens: list[str], *, seconds: int, connections: int) -> dict[str, float]:
    """wrk (Debian's package) when present: C, one thread, so the server keeps most of the CPU."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("W5 needs wrk (apt-get install wrk; `make bench` runs scripts/install-wrk.sh)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT % ", ".join(json.dumps(t) for t in tokens))
        script = f.name
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script, f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    os.unlink(script)
    line = next(x for x in out.splitlines() if x.startswith("JSON "))
    data: dict[str, Any] = json.loads(line[5:])
    if data["non2xx"] or data["errors"]:
        raise RuntimeError(f"W5: {data['non2xx']} non-2xx answers and {data['errors']} socket errors")
    return {
        "requests_per_s": data["requests"] / data["seconds"],
        "p50_ms": data["p50_ms"],
        "p99_ms": data["p99_ms"],
        "requests": float(data["requests"]),
    }


def create_system() -> System:
    return AijobsSystem()
