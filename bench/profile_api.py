"""Where W5's CPU goes: the API under wrk, with each side's CPU per request.

    .venv/bin/python bench/profile_api.py [--admin-dsn postgresql://root@127.0.0.1:5432/test]
        [--seconds 10] [--workers 2] [--rounds 1] [--py-spy DIR]

Runs W5 as `make bench` does (a fresh database, 100 funded users, `aijobs api --workers 2`,
`wrk -t1 -c16` posting `sentiment_analysis` jobs; see bench/systems/aijobs_system.py) after a
2 s warm-up, and prints, besides the rate and latency, the CPU per request of:

* the API's processes (uvicorn's supervisor and its workers), from /proc;
* the PostgreSQL backends connected to the run's database (the API's pool), from /proc.

On a 2-core machine the two plus wrk's share of a core are what the rate is bound by. With
`--py-spy DIR`, each API worker is sampled by py-spy (installed separately: `pip install
py-spy`) during the load, as collapsed stacks in DIR. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
from systems import aijobs_system as w5  # bench/ is the script's directory, first on sys.path

from aijobs.api.tokens import mint_token
from aijobs.db.migrate import migrate

DB = "bench_profile_api"


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def backends(db_url: str) -> list[int]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()"
        ).fetchall()
    return [int(r[0]) for r in rows]


def one_round(db_url: str, tokens: list[str], args: argparse.Namespace) -> None:
    port = w5._free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_"))}
    env.update(
        DATABASE_URL=db_url,
        JWT_SECRET=args.secret,
        LOG_LEVEL="WARNING",
        MAX_JOBS_IN_FLIGHT_PER_USER="100000000",
        DB_POOL_SIZE="10",
        EVENT_LOOP="uvloop",
    )
    api = subprocess.Popen(
        [sys.executable, "-m", "aijobs", "api", "--port", str(port), "--workers", str(args.workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        w5._wait_http(port)
        w5._load(port, tokens, seconds=2, connections=16)  # warm-up: pools full, code paths hot
        api_pids = [api.pid, *children(api.pid)]
        pg_pids = backends(db_url)
        spies = []
        if args.py_spy:
            Path(args.py_spy).mkdir(parents=True, exist_ok=True)
            for pid in children(api.pid):
                out = Path(args.py_spy) / f"api-{pid}.txt"
                spies.append(
                    subprocess.Popen(
                        [
                            *("py-spy", "record", "-p", str(pid), "-d", str(max(1, args.seconds - 2))),
                            *("-r", "200", "-f", "raw", "-o", str(out), "--nonblocking"),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
        hz = os.sysconf("SC_CLK_TCK")
        api0, pg0, t0 = cpu_ticks(api_pids), cpu_ticks(pg_pids), time.monotonic()
        result = w5._load(port, tokens, seconds=args.seconds, connections=16)
        api1, pg1, elapsed = cpu_ticks(api_pids), cpu_ticks(pg_pids), time.monotonic() - t0
        for spy in spies:
            spy.wait()
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=15)
    n = result["requests"]
    print(
        f"{result['requests_per_s']:,.0f} req/s, p50 {result['p50_ms']:.1f} ms,"
        f" p99 {result['p99_ms']:.1f} ms;"
        f" CPU per request: API {(api1 - api0) / hz / n * 1e6:,.0f} µs, PostgreSQL backends"
        f" {(pg1 - pg0) / hz / n * 1e6:,.0f} µs (cores busy: API {(api1 - api0) / hz / elapsed:.2f},"
        f" PostgreSQL {(pg1 - pg0) / hz / elapsed:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--admin-dsn", default=os.environ.get("BENCH_ADMIN_DSN", "postgresql://root@127.0.0.1:5432/test")
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--py-spy", metavar="DIR")
    args = parser.parse_args()
    args.secret = "bench-secret-" + uuid.uuid4().hex
    db_url = psycopg.conninfo.make_conninfo(args.admin_dsn, dbname=DB)
    with psycopg.connect(args.admin_dsn, autocommit=True) as conn:
        conn.execute(f"drop database if exists {DB} with (force)")
        conn.execute(f"create database {DB}")
    try:
        migrate(db_url, job_types=w5._job_types())
        users = [uuid.uuid4() for _ in range(100)]
        with psycopg.connect(db_url, autocommit=True) as conn:
            for user in users:
                conn.execute("select aijobs.grant_credits(%s, 1000000, 'bench')", (user,))
        tokens = [mint_token(args.secret, u, ttl_seconds=3600) for u in users]
        for _ in range(args.rounds):
            one_round(db_url, tokens, args)
    finally:
        with psycopg.connect(args.admin_dsn, autocommit=True) as conn:
            conn.execute(f"drop database if exists {DB} with (force)")


if __name__ == "__main__":
    main()
