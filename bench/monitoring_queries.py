"""Dashboard/stats query times with a large history: every query should answer in < 100 ms.

    DATABASE_URL=postgresql://root@127.0.0.1:5432/postgres .venv/bin/python bench/monitoring_queries.py

Creates a scratch database from the migrated template, fills it with 1,000,000 finished jobs
over the last 7 days (each with one attempt row) plus a live queue, then runs every query
the dashboard and `aijobs stats` use through the same `Session` methods, and prints the
median and worst of several runs. `--jobs N` changes the size; `--keep` keeps the database.
The seed's all-time status query is shown too, for comparison: it scans the whole table,
which is why the dashboard does not use it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.database import create_test_database, drop_database, ensure_template  # noqa: E402
from tests.support.history import fill_history  # noqa: E402

from aijobs.db.store import Session, Store  # noqa: E402

WINDOWS = (1, 5, 15, 60)
QUERIES: dict[str, Callable[[Session], Awaitable[Any]]] = {
    "queue depth": lambda s: s.monitoring.queue_depth(),
    "oldest pending": lambda s: s.monitoring.oldest_pending_seconds(),
    "job windows 1/5/15/60": lambda s: s.monitoring.job_windows(WINDOWS),
    "attempt windows": lambda s: s.monitoring.attempt_windows(WINDOWS),
    "provider windows": lambda s: s.monitoring.provider_windows(WINDOWS),
    "job series 60m/1m": lambda s: s.monitoring.job_series(60, 60),
    "provider series 60m/1m": lambda s: s.monitoring.provider_series(60, 60),
    "queue series 60m": lambda s: s.monitoring.queue_series(60),
    "workers": lambda s: s.monitoring.workers(30.0),
    "latest failures": lambda s: s.monitoring.recent_failures(20),
    "queue sample (write)": lambda s: s.monitoring.queue_sample(),
    "prune batch (nothing due)": lambda s: s.monitoring.prune_jobs(30 * 86400.0, 1000),
}


async def measure(url: str, runs: int) -> list[tuple[str, float, float]]:
    store = await Store.open(url, min_size=1, max_size=2, name="bench-monitoring")
    results = []
    try:
        async with store.session() as session:
            for name, run in [*QUERIES.items(), ("seed status query (all time)", _seed)]:
                await run(session)  # warm the cache and the plan
                times = []
                for _ in range(runs):
                    started = time.perf_counter()
                    await run(session)
                    times.append((time.perf_counter() - started) * 1000)
                results.append((name, statistics.median(times), max(times)))
            # Retention at work: delete batches of 1,000 jobs that are past a 6-day cutoff.
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                await session.monitoring.prune_jobs(6 * 86400.0, 1000)
                times.append((time.perf_counter() - started) * 1000)
            results.append(("prune batch (1,000 due)", statistics.median(times), max(times)))
    finally:
        await store.close()
    return results


def _seed(session: Session) -> Awaitable[Any]:
    return session.jobs.status_summary()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    admin = os.environ.get("DATABASE_URL")
    if not admin:
        sys.exit("set DATABASE_URL to an admin connection (e.g. postgresql://root@127.0.0.1:5432/postgres)")
    url = create_test_database(admin, ensure_template(admin), prefix="aj_bench")
    try:
        started = time.perf_counter()
        fill_history(url, jobs=args.jobs, days=args.days)
        per_hour = args.jobs / (args.days * 24)
        print(
            f"filled {args.jobs:,} finished jobs over {args.days:g} days (~{per_hour:,.0f}/hour) "
            f"in {time.perf_counter() - started:.1f}s"
        )
        results = asyncio.run(measure(url, args.runs))
        print(f"\n{'query':<32}{'median ms':>11}{'max ms':>9}")
        for name, median, worst in results:
            flag = "" if median < 100 or name.startswith("seed") else "  <-- over 100 ms"
            print(f"{name:<32}{median:>11.1f}{worst:>9.1f}{flag}")
    finally:
        if args.keep:
            print(f"\nkept: {url}")
        else:
            drop_database(admin, url)


if __name__ == "__main__":
    main()
