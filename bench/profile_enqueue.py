"""Where W1's time goes: one credit-charged creation per transaction, profiled on both sides.

    .venv/bin/python bench/profile_enqueue.py --dsn postgresql://.../db [--jobs 3000] [--batch 100]

Runs W1's aijobs path (`aijobs.queue.enqueue`, one job per transaction, as the benchmark
does; with `--batch N`, W1 batched's: `enqueue_many` of N jobs per call) against a database
that has `pg_stat_statements` loaded, then prints per job:

* the wall time and this process's CPU time (psycopg, validation, the event loop);
* the server's own execution time of every statement, including the ones inside the
  credit function (`pg_stat_statements.track = all`), top-level and nested apart.

What is neither client CPU nor server execution is commit (WAL flush), planning, the
protocol and the wake-ups between the two processes. With `--drivers`, the same SQL call
without any aijobs code is timed through psycopg (this venv) and through asyncpg
(pgqueuer's driver, from `bench/.peers-venv`), to show what the driver itself costs.

The database must be a scratch one: the script migrates it and resets its statistics.
docs/benchmarks.md ("Where a W1 job's time goes") starts such a server with the same
binaries as the benchmark's.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg

from aijobs import eventloop
from aijobs.db.migrate import migrate
from aijobs.db.store import Session, Store
from aijobs.jobs import registry
from aijobs.queue.enqueue import JobSpec, enqueue, enqueue_many

USER = uuid.UUID("00000000-0000-4000-8000-00000000f11e")
PEERS_PYTHON = Path(__file__).resolve().parent / ".peers-venv" / "bin" / "python"

#: One creation per call, the SQL W1 runs, timed in a fresh process per driver.
DRIVER_LOOP = {
    "psycopg": """
import sys, time, uuid, psycopg, uvloop
from psycopg.types.json import Jsonb
async def main(dsn, n):
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    args = (uuid.UUID(USER), ["sentiment_analysis"], [Jsonb({"text": "x"})], [0], None, [4], None, None,
            False)
    sql = ("select * from aijobs.create_jobs(%s, %s::text[], %s::jsonb[], %s::smallint[], %s::timestamptz[],"
           " %s::integer[], %s::text[], %s::uuid[], %s)")
    for i in range(n + 100):
        if i == 100:
            wall, cpu = time.perf_counter(), time.process_time()
        await (await conn.execute(sql, args, prepare=True)).fetchone()
    print(time.perf_counter() - wall, time.process_time() - cpu)
uvloop.run(main(sys.argv[1], int(sys.argv[2])))
""",
    "asyncpg": """
import sys, time, uuid, asyncpg, uvloop
async def main(dsn, n):
    conn = await asyncpg.connect(dsn)
    st = await conn.prepare(
        "select * from aijobs.create_jobs($1, $2::text[], $3::jsonb[], $4::smallint[], $5::timestamptz[],"
        " $6::integer[], $7::text[], $8::uuid[], $9)")
    for i in range(n + 100):
        if i == 100:
            wall, cpu = time.perf_counter(), time.process_time()
        await st.fetchrow(
            uuid.UUID(USER), ["sentiment_analysis"], ['{"text": "x"}'], [0], None, [4], None, None, False)
    print(time.perf_counter() - wall, time.process_time() - cpu)
uvloop.run(main(sys.argv[1], int(sys.argv[2])))
""",
}

TOP = """
select toplevel, calls, total_exec_time / %(jobs)s * 1000 as us_per_job,
       mean_exec_time * 1000 as us_per_call, regexp_replace(left(query, 90), '\\s+', ' ', 'g')
from pg_stat_statements
where dbid = (select oid from pg_database where datname = current_database())
  and calls >= %(calls)s
order by toplevel desc, total_exec_time desc
limit 20
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True, help="a scratch database with pg_stat_statements loaded")
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--loop", default="uvloop", choices=["asyncio", "uvloop"])
    parser.add_argument("--drivers", action="store_true", help="also time the bare call per driver")
    parser.add_argument("--batch", type=int, default=0, help="enqueue_many, this many jobs per call")
    args = parser.parse_args()
    if args.batch and args.jobs % args.batch:
        raise SystemExit("--jobs must be a multiple of --batch")
    if args.batch and args.drivers:
        raise SystemExit("--drivers times the single creation; leave out --batch")
    calls = args.jobs // args.batch if args.batch else args.jobs

    with psycopg.connect(args.dsn, autocommit=True) as conn:
        loaded = conn.execute("select current_setting('shared_preload_libraries')").fetchone()
        if not loaded or "pg_stat_statements" not in loaded[0]:
            raise SystemExit("the server needs shared_preload_libraries = 'pg_stat_statements'")
        conn.execute("create extension if not exists pg_stat_statements")
    migrate(args.dsn, job_types=[(jt.name, jt.cost, jt.timeout_seconds) for jt in registry().values()])
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute("select aijobs.grant_credits(%s, %s, 'profile')", (USER, 3 * args.jobs + 300))

    async def create(session: Session) -> None:
        if args.batch:
            await enqueue_many(
                session, user_id=USER, jobs=[JobSpec("sentiment_analysis", {"text": "x"})] * args.batch
            )
        else:
            await enqueue(session, user_id=USER, job_type="sentiment_analysis", payload={"text": "x"})

    async def run() -> tuple[float, float]:
        store = await Store.open(args.dsn, min_size=1, max_size=1, name="aijobs-profile-enqueue")
        try:
            async with store.session() as session:
                for _ in range(min(calls, 100)):  # warm: prepared statements, plans, caches
                    await create(session)
                # Nested statements too: the ones the credit function runs (superuser only).
                await session.conn.execute("set pg_stat_statements.track = 'all'")
                await session.conn.execute("select pg_stat_statements_reset()")
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(calls):
                    await create(session)
                return time.perf_counter() - wall, time.process_time() - cpu
        finally:
            await store.close()

    wall, cpu = eventloop.run(run(), args.loop)
    per_job = 1e6 / args.jobs
    per_call = f"{args.batch} per call" if args.batch else "one transaction each"
    print(f"{args.jobs} jobs, {per_call}: {args.jobs / wall:,.0f} jobs/s")
    print(f"  wall per job        {wall * per_job:7.0f} us")
    print(f"  client CPU per job  {cpu * per_job:7.0f} us  (this process: validation, psycopg, event loop)")
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        rows = conn.execute(TOP, {"jobs": args.jobs, "calls": calls}).fetchall()
    print("  server execution per job, by statement (pg_stat_statements, track = all):")
    print(f"  {'level':6} {'calls':>7} {'us/job':>8} {'us/call':>8}  statement")
    for toplevel, calls, us_job, us_call, text in rows:
        print(f"  {'top' if toplevel else 'nested':6} {calls:7d} {us_job:8.0f} {us_call:8.1f}  {text}")
    if args.drivers:
        print("  the same call with no aijobs code, per driver (uvloop, prepared, autocommit):")
        for driver, python in (("psycopg", Path(sys.executable)), ("asyncpg", PEERS_PYTHON)):
            code = f"USER = {str(USER)!r}\n" + DRIVER_LOOP[driver]
            command = [str(python), "-c", code, args.dsn, str(args.jobs)]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
            d_wall, d_cpu = float(out[0]) * per_job, float(out[1]) * per_job
            print(f"  {driver:8} wall {d_wall:6.0f} us, client CPU {d_cpu:5.0f} us per job")


if __name__ == "__main__":
    main()
