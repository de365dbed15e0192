"""procrastinate 3.10.0 adapter: psycopg 3 connector, work done by ``procrastinate_worker.py``."""

from __future__ import annotations

import os
import subprocess

import psycopg

from systems import _peers
from systems.base import DrainTimings, HandlerKind, System, WorkerSpec

SCRIPT = "procrastinate_worker.py"

#: Tuned worker ``concurrency`` per handler kind when the harness leaves it to us.
CONCURRENCY: dict[HandlerKind, int] = {"noop": 10, "sleep": 100, "latency": 1}


class ProcrastinateSystem(System):
    name = "procrastinate"
    timing_method = (
        "procrastinate's own procrastinate_events table: first 'started' event to last "
        "'succeeded' event (at = now() of the fetch / finish transaction)"
    )
    tuning = (
        "PsycopgConnector (psycopg 3 AsyncConnectionPool, size min(concurrency+1, 16)), async tasks, "
        "LISTEN/NOTIFY on; W1 sync client: defer() with SyncPsycopgConnector (a one-connection pool); "
        "no-op drain: concurrency=10 (tried 1/3/10/20 on 10k jobs: "
        "417/434/537/381 jobs/s; 1/2/4/6/10/30 on 4k jobs were flat at 380-440); "
        "W4: concurrency=100; W3: concurrency=1; finished jobs kept (delete_jobs=never, the default)"
    )

    def setup(self) -> None:
        _peers.ensure_peers_venv()

    def version(self) -> str:
        return _peers.peer_version("procrastinate")

    def prepare(self, db_url: str) -> None:
        _peers.run_peer(SCRIPT, "install", "--db", db_url)

    def enqueue_single(self, db_url: str, n: int) -> float:
        out = _peers.run_peer(SCRIPT, "enqueue", "--db", db_url, "--n", str(n), "--batch", "1")
        return float(out["seconds"])

    def enqueue_single_sync(self, db_url: str, n: int) -> float:
        out = _peers.run_peer(SCRIPT, "enqueue", "--db", db_url, "--n", str(n), "--sync")
        return float(out["seconds"])

    def enqueue_batch(self, db_url: str, n: int, batch_size: int) -> float:
        out = _peers.run_peer(SCRIPT, "enqueue", "--db", db_url, "--n", str(n), "--batch", str(batch_size))
        return float(out["seconds"])

    def enqueue_for_drain(self, db_url: str, n: int, handler: HandlerKind) -> None:
        _peers.run_peer(
            SCRIPT, "enqueue", "--db", db_url, "--n", str(n), "--batch", "1000", "--handler", handler
        )

    def start_workers(self, db_url: str, spec: WorkerSpec) -> list[subprocess.Popen[bytes]]:
        concurrency = CONCURRENCY[spec.handler] if spec.concurrency is None else spec.concurrency
        if spec.handler == "noop" and os.environ.get("BENCH_PROCRASTINATE_CONCURRENCY"):  # for re-tuning
            concurrency = int(os.environ["BENCH_PROCRASTINATE_CONCURRENCY"])
        args = ["work", "--db", db_url, "--concurrency", str(concurrency)]
        return [_peers.spawn_peer(SCRIPT, *args) for _ in range(spec.processes)]

    def count_done(self, db_url: str) -> int:
        """Jobs ever inserted (id sequence) minus those still todo/doing (small partial index).

        Cheap even with 1M finished rows (W6), unlike ``count(*) ... WHERE status = 'succeeded'``.
        """
        with psycopg.connect(db_url, autocommit=True) as conn:
            row = conn.execute(
                """
                SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM procrastinate_jobs_id_seq)
                     - (SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing'))
                """
            ).fetchone()
        return int(row[0]) if row else 0

    def drain_timings(self, db_url: str, since: float) -> DrainTimings:
        with psycopg.connect(db_url, autocommit=True) as conn:
            row = conn.execute(
                """
                SELECT extract(epoch FROM min(at) FILTER (WHERE type = 'started'))::float8,
                       extract(epoch FROM max(at) FILTER (WHERE type = 'succeeded'))::float8,
                       count(*) FILTER (WHERE type = 'succeeded')
                FROM procrastinate_events
                WHERE at >= to_timestamp(%s)
                """,
                (since,),
            ).fetchone()
        if row is None or row[0] is None or row[1] is None:
            raise RuntimeError("no finished jobs recorded since the workers started")
        return DrainTimings(first_start=float(row[0]), last_end=float(row[1]), done=int(row[2]))

    def produce_paced(self, db_url: str, interval_s: float, count: int) -> dict[str, int]:
        out = _peers.run_peer(
            SCRIPT, "produce", "--db", db_url, "--interval", str(interval_s), "--count", str(count)
        )
        return {str(k): int(v) for k, v in out["commits"].items()}

    def seed_finished(self, db_url: str, n: int) -> None:
        """procrastinate keeps finished jobs (status 'succeeded') and their events.

        Inserted directly with status 'succeeded' (the insert triggers only fire
        for 'todo'), plus the 'deferred', 'started' and 'succeeded' events a real
        run leaves, dated one day ago.
        """
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                """
                INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, attempts)
                SELECT 'default', 'noop', '{}', 'succeeded', 1 FROM generate_series(1, %s)
                """,
                (n,),
            )
            conn.execute(
                """
                INSERT INTO procrastinate_events (job_id, type, at)
                SELECT j.id, e.type::procrastinate_job_event_type, now() - interval '1 day'
                FROM procrastinate_jobs j,
                     unnest(ARRAY['deferred', 'started', 'succeeded']) AS e(type)
                """
            )
            conn.execute("VACUUM ANALYZE procrastinate_jobs")
            conn.execute("VACUUM ANALYZE procrastinate_events")


def create_system() -> System:
    return ProcrastinateSystem()
