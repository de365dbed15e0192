"""Webhooks: how soon after a job ends its first delivery attempt arrives, and what the outbox
trigger costs the finish path.

Usage (from the repo root, with the project venv)::

    .venv/bin/python bench/webhook_latency.py [--jobs 200] [--drain 3000] [--admin-url URL]

`--admin-url` defaults to BENCH_DATABASE_URL, then to the harness's default, as `run.py`.
Each phase runs a real worker (offline provider) in this process against a fresh, migrated
database, with a receiver on loopback answering 204:

* latency: jobs created one at a time; for each, the time from the job's `finished_at` (the
  finishing transaction's clock) to the arrival of its delivery at the receiver. The worker
  polls every 5 s (the default), so what arrives sooner came by NOTIFY. Target: ≤ 1 s.
* drain: `--drain` jobs created up front and drained by one worker (concurrency 10): with no
  endpoint; with one deployment endpoint whose outbox rows are written but not sent (the
  trigger's cost alone); and with that endpoint delivered by the same worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import psycopg

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR)]

from run import DEFAULT_ADMIN_URL, fresh_database  # noqa: E402

from aijobs.config import Settings, load_settings  # noqa: E402
from aijobs.db.migrate import migrate  # noqa: E402
from aijobs.db.rows import JobSpec  # noqa: E402
from aijobs.db.store import Store  # noqa: E402
from aijobs.jobs import registry  # noqa: E402
from aijobs.providers.offline import OfflineProvider  # noqa: E402
from aijobs.queue.enqueue import enqueue, enqueue_many  # noqa: E402
from aijobs.worker.runner import Worker  # noqa: E402

SECRET = "whsec_" + "B" * 43 + "="


class Receiver:
    """Answers 204 to every POST and notes when each job's delivery arrived (wall clock)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.url = ""
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                del line
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = json.loads(await reader.readexactly(length))
                job = body["data"]["id"]
                self.arrived.setdefault(job, time.time())
                self.finished[job] = datetime.fromisoformat(body["data"]["finished_at"]).timestamp()
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def settings_for(db_url: str) -> Settings:
    return load_settings(
        database_url=db_url,
        worker_concurrency=10,
        webhook_allow_private=True,
        llm_provider="offline",
        log_level="WARNING",
        _env_file=None,
    )


async def prepare(db_url: str, receiver: Receiver | None) -> tuple[Store, uuid.UUID]:
    migrate(db_url, job_types=[(t.name, t.cost, t.timeout_seconds) for t in registry().values()])
    store = await Store.open(db_url, min_size=2, max_size=8, name="aijobs-bench")
    user = uuid.uuid4()
    async with store.session() as session:
        await session.accounts.grant_credits(user, 10_000_000, "bench")
        if receiver is not None:
            await session.conn.execute(
                "insert into aijobs.webhook_endpoints (url, secret, events) values (%s, %s, %s)",
                (receiver.url, SECRET, ["job.completed", "job.failed", "job.cancelled"]),
            )
    return store, user


async def latency(admin_url: str, jobs: int) -> list[float]:
    with fresh_database(admin_url, "bench_webhook_latency") as db_url:
        receiver = Receiver()
        await receiver.start()
        store, user = await prepare(db_url, receiver)
        worker = Worker(settings_for(db_url), store, OfflineProvider(), db_url)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(worker.listener.connected.wait(), 10)
        try:
            for _ in range(jobs):
                async with store.session() as session:
                    await enqueue(
                        session, user_id=user, job_type="sentiment_analysis", payload={"text": "Fine."}
                    )
                await asyncio.sleep(0.02)
            deadline = time.monotonic() + 60
            while len(receiver.arrived) < jobs and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            worker.request_stop()
            await task
            await store.close()
            assert receiver.server is not None
            receiver.server.close()
        return [receiver.arrived[j] - receiver.finished[j] for j in receiver.arrived]


async def drain(admin_url: str, n: int, *, with_endpoint: bool, deliver: bool = True) -> float:
    name = f"bench_webhook_drain_{'hook' if with_endpoint else 'none'}_{int(deliver)}"
    with fresh_database(admin_url, name) as db_url:
        receiver = Receiver()
        await receiver.start()
        store, user = await prepare(db_url, receiver if with_endpoint else None)
        async with store.session() as session:
            for i in range(0, n, 1000):
                batch = [JobSpec("sentiment_analysis", {"text": "Fine."}) for _ in range(min(1000, n - i))]
                await enqueue_many(session, user_id=user, jobs=batch)
        worker = Worker(settings_for(db_url), store, OfflineProvider(), db_url)
        if not deliver:
            # The outbox rows are written, none is sent: the trigger's share of the cost alone.
            worker.webhooks.run = lambda stop: stop.wait()  # type: ignore[method-assign]
        started = time.monotonic()
        task = asyncio.create_task(worker.run())
        try:
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
                while True:
                    cur = await conn.execute("select count(*) from aijobs.jobs where finished_at is null")
                    row = await cur.fetchone()
                    if row is not None and row[0] == 0:
                        break
                    await asyncio.sleep(0.05)
            seconds = time.monotonic() - started
        finally:
            worker.request_stop()
            await task
            await store.close()
            assert receiver.server is not None
            receiver.server.close()
        return n / seconds


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--drain", type=int, default=3000)
    args = parser.parse_args()

    delays = await latency(args.admin_url, args.jobs)
    ms = [d * 1000 for d in delays]
    print(f"first delivery attempt after the job ended, {len(ms)} of {args.jobs} jobs (target <= 1000 ms):")
    print(
        f"  p50 {statistics.median(ms):.1f} ms  p95 {pct(ms, 0.95):.1f} ms  "
        f"p99 {pct(ms, 0.99):.1f} ms  max {max(ms):.1f} ms"
    )
    if args.drain:
        bare = await drain(args.admin_url, args.drain, with_endpoint=False)
        written = await drain(args.admin_url, args.drain, with_endpoint=True, deliver=False)
        hooked = await drain(args.admin_url, args.drain, with_endpoint=True)
        print(f"drain of {args.drain} jobs, one worker, concurrency 10:")
        print(f"  no endpoint                 {bare:.0f} jobs/s")
        print(f"  one endpoint, not sent      {written:.0f} jobs/s (an outbox row per job)")
        print(f"  one endpoint, delivered     {hooked:.0f} jobs/s (and a signed POST per job, same process)")


if __name__ == "__main__":
    asyncio.run(main())
