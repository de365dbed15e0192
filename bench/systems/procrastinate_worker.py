"""procrastinate side of the benchmark; runs inside ``bench/.peers-venv`` (procrastinate 3.10.0, psycopg 3).

Usage: ``bench/.peers-venv/bin/python bench/systems/procrastinate_worker.py CMD ...``
with CMD one of install, enqueue, work, produce.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

import psycopg
from peer_common import SLEEP_SECONDS, emit, paced, parser, ready
from procrastinate import App, PsycopgConnector, SyncPsycopgConnector

# Silence the "App is instantiated in the main Python module" warning; errors still show.
logging.getLogger("procrastinate").setLevel(logging.ERROR)

SIDE_INSERT = "INSERT INTO bench_handler_log (job_key, started_ns) VALUES (%s, %s)"


def make_app(db_url: str, pool_size: int) -> tuple[App, dict[str, object]]:
    """The app with its three tasks; ``state`` receives the latency handler's side connection."""
    app = App(connector=PsycopgConnector(conninfo=db_url, min_size=pool_size, max_size=pool_size))
    state: dict[str, object] = {}

    @app.task(name="noop")
    async def noop() -> None:
        return None

    @app.task(name="sleep")
    async def sleep() -> None:
        await asyncio.sleep(SLEEP_SECONDS)

    @app.task(name="latency")
    async def latency(key: str) -> None:
        started = time.time_ns()
        side = state["side"]
        lock = state["lock"]
        assert isinstance(side, psycopg.AsyncConnection)
        assert isinstance(lock, asyncio.Lock)
        async with lock:
            await side.execute(SIDE_INSERT, (key, started))

    return app, state


async def install(args: argparse.Namespace) -> None:
    app, _ = make_app(args.db, 1)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
    emit({"ok": True})


def enqueue_sync(args: argparse.Namespace) -> None:
    """Enqueue ``n`` jobs one by one through procrastinate's synchronous client: ``defer()``
    on an app with its SyncPsycopgConnector (a one-connection psycopg pool)."""
    app = App(connector=SyncPsycopgConnector(conninfo=args.db, min_size=1, max_size=1))

    @app.task(name=args.handler)
    def task() -> None:  # only deferred here, never run
        return None

    with app.open():
        app.check_connection()  # open the pool's connection before timing
        t0 = time.perf_counter()
        for _ in range(args.n):
            task.defer()
        seconds = time.perf_counter() - t0
    emit({"seconds": seconds, "n": args.n})


async def enqueue(args: argparse.Namespace) -> None:
    """Enqueue ``n`` jobs of task ``handler`` over a one-connection pool, ``batch`` per call."""
    app, _ = make_app(args.db, 1)
    n: int = args.n
    batch: int = args.batch
    async with app.open_async():
        task = app.tasks[args.handler]
        await app.check_connection_async()  # open the pool's connection before timing
        t0 = time.perf_counter()
        if batch == 1:
            for _ in range(n):
                await task.defer_async()
        else:
            for start in range(0, n, batch):
                await task.batch_defer_async(*([{}] * min(batch, n - start)))
        seconds = time.perf_counter() - t0
    emit({"seconds": seconds, "n": n})


async def produce(args: argparse.Namespace) -> None:
    app, _ = make_app(args.db, 1)
    async with app.open_async():
        task = app.tasks["latency"]
        await app.check_connection_async()

        async def one(key: str) -> None:
            await task.defer_async(key=key)

        commits = await paced(args.count, args.interval, one)
    emit({"commits": commits})


async def work(args: argparse.Namespace) -> None:
    concurrency: int = args.concurrency
    # Connections are only held while fetching / finishing a job, never while it runs.
    app, state = make_app(args.db, min(concurrency + 1, 16))
    state["side"] = await psycopg.AsyncConnection.connect(args.db, autocommit=True)
    state["lock"] = asyncio.Lock()
    async with app.open_async():
        await app.check_connection_async()
        ready()
        # install_signal_handlers=True: SIGTERM/SIGINT stop the worker gracefully.
        await app.run_worker_async(concurrency=concurrency, install_signal_handlers=True)
    side = state["side"]
    assert isinstance(side, psycopg.AsyncConnection)
    await side.close()


def main() -> None:
    args = parser().parse_args()
    commands = {"install": install, "enqueue": enqueue, "work": work, "produce": produce}
    if args.cmd == "enqueue" and args.sync:
        enqueue_sync(args)  # no event loop at all, as a synchronous caller has none
        return
    asyncio.run(commands[args.cmd](args))


if __name__ == "__main__":
    main()
