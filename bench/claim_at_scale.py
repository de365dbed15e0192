"""The claim's plan and time with 1,000,000 finished jobs and 10,000 tenants waiting.

    DATABASE_URL=postgresql://root@127.0.0.1:5432/postgres .venv/bin/python bench/claim_at_scale.py

Creates a scratch database from the migrated template, fills it with 1,000,000 finished jobs
(with their attempts), then 10,000 tenants with one pending job each beside one tenant with a
backlog of 20,000 and 50,000 jobs scheduled for tomorrow, and reads the plan the claim's
function makes (auto_explain of the statement inside `aijobs.claim_jobs`: the generic plan a
worker's connection keeps). It prints which index each scan of `jobs` uses (a sequential
scan or a sort of the queue is a regression) and the median time of claims of 10 and of
1,000, and of the creation of one job, each rolled back. `--jobs N`, `--tenants N` and
`--scheduled N` change the sizes; `--keep` keeps the database.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.test_hot_path_plans import inner_plans, one_tenants_backlog  # noqa: E402
from tests.support.database import create_test_database, drop_database, ensure_template  # noqa: E402
from tests.support.history import fill_history  # noqa: E402

from aijobs.db.queries import query  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--scheduled", type=int, default=50_000)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    admin = os.environ["DATABASE_URL"]
    url = create_test_database(admin, ensure_template(admin))
    try:
        started = time.perf_counter()
        fill_history(url, jobs=args.jobs, days=7, pending=0)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "select aijobs.grant_credits(u, 5), aijobs.create_jobs(u, array['sentiment_analysis'],"
                ' array[\'{"text": "x"}\'::jsonb])'
                " from (select gen_random_uuid() as u from generate_series(1, %s)) t",
                (args.tenants,),
            )
            one_tenants_backlog(conn)
            later = uuid.uuid4()
            conn.execute("select aijobs.grant_credits(%s, %s)", (later, max(args.scheduled, 1)))
            for start in range(0, args.scheduled, 10_000):
                n = min(10_000, args.scheduled - start)
                conn.execute(
                    "select count(*) from aijobs.create_jobs("
                    "%s, array_fill('sentiment_analysis'::text, array[%s]),"
                    ' array_fill(\'{"text": "later"}\'::jsonb, array[%s]), null,'
                    " array_fill(now() + interval '1 day', array[%s]))",
                    (later, n, n, n),
                )
            conn.execute("vacuum (analyze) aijobs.jobs")
        seconds = time.perf_counter() - started
        print(
            f"seeded {args.jobs:,} finished jobs, {args.tenants:,} + 1 tenants and {args.scheduled:,}"
            f" jobs for tomorrow in {seconds:.0f} s"
        )
        for limit in (10, 1000):
            params = {"worker_id": "scale", "limit": limit, "lease_seconds": 30}
            plan = "\n".join(inner_plans(url, "job_claim", params))
            scans = sorted(
                set(re.findall(r"((?:Seq|Index|Index Only|Bitmap Heap) Scan(?: using \w+)? on jobs)", plan))
            )
            sorts = [line.strip() for line in plan.splitlines() if "Sort Key" in line]
            print(f"claim of {limit}: scans of jobs: {'; '.join(scans)}")
            print(f"  sorts: {'; '.join(sorts)}")
            times = []
            with psycopg.connect(url) as conn:
                for _ in range(7):
                    t0 = time.perf_counter()
                    conn.execute(query("job_claim"), params).fetchall()
                    times.append((time.perf_counter() - t0) * 1000)
                    conn.rollback()
            median, worst = statistics.median(times[1:]), max(times[1:])
            print(
                f"  median {median:.1f} ms, worst {worst:.1f} ms (the first, which plans: {times[0]:.1f} ms)"
            )
        creation = []
        with psycopg.connect(url) as conn:
            user = uuid.uuid4()
            conn.execute("select aijobs.grant_credits(%s, 100)", (user,))
            conn.commit()
            for _ in range(21):
                t0 = time.perf_counter()
                conn.execute(
                    "select * from aijobs.create_jobs(%s, array['sentiment_analysis'],"
                    ' array[\'{"text": "now"}\'::jsonb])',
                    (user,),
                ).fetchall()
                creation.append((time.perf_counter() - t0) * 1000)
                conn.rollback()
        print(f"creation of one job: median {statistics.median(creation[1:]):.2f} ms")
    finally:
        if not args.keep:
            drop_database(admin, url)


if __name__ == "__main__":
    main()
