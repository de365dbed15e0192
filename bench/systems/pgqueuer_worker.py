"""pgqueuer side of the benchmark; runs inside ``bench/.peers-venv`` (pgqueuer 1.6.0, asyncpg driver).

Usage: ``bench/.peers-venv/bin/python bench/systems/pgqueuer_worker.py {install,enqueue,work,produce} ...``
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from datetime import timedelta

import asyncpg
from peer_common import HANDLER_LOG_INSERT, SLEEP_SECONDS, emit, paced, parser, ready
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager


async def install(args: argparse.Namespace) -> None:
    conn = await asyncpg.connect(args.db)
    try:
        await Queries(AsyncpgDriver(conn)).install()
    finally:
        await conn.close()
    emit({"ok": True})


def enqueue_sync(args: argparse.Namespace) -> None:
    """Enqueue ``n`` jobs one by one through pgqueuer's synchronous client (SyncQueries over
    psycopg 3, the driver pgqueuer ships for it; autocommit, as it requires)."""
    import psycopg
    from pgqueuer.db import SyncPsycopgDriver
    from pgqueuer.queries import SyncQueries

    with psycopg.connect(args.db, autocommit=True) as conn:
        q = SyncQueries(SyncPsycopgDriver(conn))
        t0 = time.perf_counter()
        for _ in range(args.n):
            q.enqueue(args.handler, None)
        seconds = time.perf_counter() - t0
    emit({"seconds": seconds, "n": args.n})


async def enqueue(args: argparse.Namespace) -> None:
    """Enqueue ``n`` jobs of entrypoint ``handler`` over one asyncpg connection, ``batch`` per call."""
    conn = await asyncpg.connect(args.db)
    q = Queries(AsyncpgDriver(conn))
    ep: str = args.handler
    n: int = args.n
    batch: int = args.batch
    t0 = time.perf_counter()
    if batch == 1:
        for _ in range(n):
            await q.enqueue(ep, None)
    else:
        for start in range(0, n, batch):
            k = min(batch, n - start)
            await q.enqueue([ep] * k, [None] * k, [0] * k)
    seconds = time.perf_counter() - t0
    await conn.close()
    emit({"seconds": seconds, "n": n})


async def produce(args: argparse.Namespace) -> None:
    conn = await asyncpg.connect(args.db)
    q = Queries(AsyncpgDriver(conn))

    async def one(key: str) -> None:
        await q.enqueue("latency", key.encode())

    commits = await paced(args.count, args.interval, one)
    await conn.close()
    emit({"commits": commits})


async def work(args: argparse.Namespace) -> None:
    conn = await asyncpg.connect(args.db)
    side = await asyncpg.connect(args.db)  # for the latency handler's side-table insert
    side_lock = asyncio.Lock()
    qm = QueueManager(Queries(AsyncpgDriver(conn)))

    @qm.entrypoint("noop")
    async def noop(job: Job) -> None:
        return None

    @qm.entrypoint("sleep")
    async def sleep(job: Job) -> None:
        await asyncio.sleep(SLEEP_SECONDS)

    @qm.entrypoint("latency")
    async def latency(job: Job) -> None:
        started = time.time_ns()
        key = (job.payload or b"").decode()
        async with side_lock:
            await side.execute(HANDLER_LOG_INSERT, key, started)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, qm.shutdown.set)
    ready()
    batch_size: int = args.batch_size
    concurrency: int = args.concurrency
    await qm.run(
        batch_size=batch_size,
        # 0 = unlimited; otherwise a hard cap on in-flight jobs (must be >= 2 * batch_size).
        max_concurrent_tasks=concurrency,
        # Keep pgqueuer_log rows un-aggregated during the run (only marks rows; cheap either way).
        log_aggregation_interval=timedelta(0),
    )
    await side.close()
    await conn.close()


def main() -> None:
    args = parser().parse_args()
    commands = {"install": install, "enqueue": enqueue, "work": work, "produce": produce}
    if args.cmd == "enqueue" and args.sync:
        enqueue_sync(args)  # no event loop at all, as a synchronous caller has none
        return
    asyncio.run(commands[args.cmd](args))


if __name__ == "__main__":
    main()
