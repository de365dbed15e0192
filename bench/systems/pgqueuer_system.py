"""pgqueuer 1.6.0 adapter: asyncpg driver, work done by ``pgqueuer_worker.py`` in the peers venv."""

from __future__ import annotations

import os
import subprocess

import psycopg

from systems import _peers
from systems.base import DrainTimings, HandlerKind, System, WorkerSpec

SCRIPT = "pgqueuer_worker.py"

#: Tuned ``QueueManager.run(batch_size=...)`` per handler kind (see ``tuning``).
BATCH_SIZE: dict[HandlerKind, int] = {"noop": 250, "sleep": 50, "latency": 10}
#: Tuned ``max_concurrent_tasks`` (0 = unlimited) when the harness leaves concurrency to us.
CONCURRENCY: dict[HandlerKind, int] = {"noop": 0, "sleep": 100, "latency": 0}


class PgqueuerSystem(System):
    name = "pgqueuer"
    timing_method = (
        "pgqueuer's own pgqueuer_log table: first 'picked' row to last 'successful' row "
        "(created = now() of the dequeue / of the batched status-flush transaction)"
    )
    tuning = (
        "asyncpg driver (AsyncpgDriver, one connection per worker process); "
        "W1 sync client: SyncQueries over SyncPsycopgDriver (one autocommit psycopg connection); "
        "no-op drain: batch_size=250, max_concurrent_tasks unlimited "
        "(tried batch_size 10/100/250/500/1000: 8k/16-19k/20k/19-20k/20k jobs/s, plateau from 250); "
        "W4: batch_size=50, max_concurrent_tasks=100 "
        "(the cap must be >= 2*batch_size); W3: batch_size=10 (default)"
    )

    def setup(self) -> None:
        _peers.ensure_peers_venv()

    def version(self) -> str:
        return _peers.peer_version("pgqueuer")

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
        batch = BATCH_SIZE[spec.handler]
        if spec.handler == "noop" and os.environ.get("BENCH_PGQUEUER_BATCH_SIZE"):  # for re-tuning
            batch = int(os.environ["BENCH_PGQUEUER_BATCH_SIZE"])
        if concurrency:
            batch = min(batch, concurrency // 2)
        args = ["work", "--db", db_url, "--concurrency", str(concurrency), "--batch-size", str(batch)]
        return [_peers.spawn_peer(SCRIPT, *args) for _ in range(spec.processes)]

    def count_done(self, db_url: str) -> int:
        """Jobs ever inserted (id sequence) minus rows still in ``pgqueuer``.

        pgqueuer deletes a job and logs it 'successful' in one statement, so this is
        exact, and cheap even with 1M log rows (W6).
        """
        with psycopg.connect(db_url, autocommit=True) as conn:
            row = conn.execute(
                """
                SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM pgqueuer_id_seq)
                     - (SELECT count(*) FROM pgqueuer)
                """
            ).fetchone()
        return int(row[0]) if row else 0

    def drain_timings(self, db_url: str, since: float) -> DrainTimings:
        with psycopg.connect(db_url, autocommit=True) as conn:
            row = conn.execute(
                """
                SELECT extract(epoch FROM min(created) FILTER (WHERE status = 'picked'))::float8,
                       extract(epoch FROM max(created) FILTER (WHERE status = 'successful'))::float8,
                       count(*) FILTER (WHERE status = 'successful')
                FROM pgqueuer_log
                WHERE created >= to_timestamp(%s)
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
        """pgqueuer deletes finished jobs from ``pgqueuer``; what stays is their ``pgqueuer_log`` rows.

        A finished job leaves a 'queued', a 'picked' and a 'successful' log row.
        """
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                """
                INSERT INTO pgqueuer_log (created, job_id, status, priority, entrypoint, aggregated)
                SELECT now() - interval '1 day', g, s::pgqueuer_status, 0, 'noop', true
                FROM generate_series(1, %s) AS g,
                     unnest(ARRAY['queued', 'picked', 'successful']) AS s
                """,
                (n,),
            )
            # Keep new job ids clear of the seeded ones, as after a real history.
            conn.execute("SELECT setval(pg_get_serial_sequence('pgqueuer', 'id'), %s)", (n,))
            conn.execute("VACUUM ANALYZE pgqueuer_log")


def create_system() -> System:
    return PgqueuerSystem()
