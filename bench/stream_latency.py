"""Streaming: how soon the first piece of a reply reaches an SSE client after the model sends
it, and how often the worker writes while a reply streams.

Usage (from the repo root, with the project venv)::

    .venv/bin/python bench/stream_latency.py [--jobs 30] [--api chat|responses] [--admin-url URL]

`--admin-url` defaults to BENCH_DATABASE_URL, then to the harness's default, as `run.py`.
Everything runs on this machine against a fresh, migrated database: the fake OpenAI server
streaming a 60-word reply a word every 20 ms, a real worker with the `openai` SDK aimed at it,
the HTTP API under uvicorn, and an SSE client. Jobs run one at a time; for each:

* first delta: from the fake server sending the reply's first piece (`FakeOpenAI.first_pieces`)
  to the SSE client reading the first `delta` event (target ≤ 50 ms);
* writes: the rows the worker wrote for the reply, and the shortest gap between two of one
  job's writes by the database clock (target: at most one write per job per 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import uvicorn
from pydantic import SecretStr

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR)]

from run import DEFAULT_ADMIN_URL, fresh_database  # noqa: E402

from aijobs.api import create_app  # noqa: E402
from aijobs.api.tokens import mint_token  # noqa: E402
from aijobs.config import load_settings  # noqa: E402
from aijobs.db.migrate import migrate  # noqa: E402
from aijobs.db.store import Store  # noqa: E402
from aijobs.jobs import registry  # noqa: E402
from aijobs.providers.fake_openai import FakeOpenAI, Step  # noqa: E402
from aijobs.providers.openai import OpenAIProvider  # noqa: E402
from aijobs.queue.enqueue import enqueue  # noqa: E402
from aijobs.worker.runner import Worker  # noqa: E402

SECRET = "bench-jwt-secret-that-is-long-enough-for-hs256"
REPLY = " ".join(f"word{i}" for i in range(60))


def serve_api(app: object) -> tuple[uvicorn.Server, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))  # type: ignore[arg-type]
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{port}"


async def first_delta(client: httpx.AsyncClient, job_id: uuid.UUID, token: str) -> float:
    """time.time() when the job's first `delta` event was read."""
    headers = {"Authorization": f"Bearer {token}"}
    async with client.stream("GET", f"/api/jobs/{job_id}/events", headers=headers) as response:
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:") and event == "delta":
                return time.time()
            elif (
                line.startswith("data:")
                and event == "status"
                and json.loads(line[5:])["status"] in ("completed", "failed", "cancelled")
            ):
                break
    raise RuntimeError(f"job {job_id} sent no delta")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--api", choices=["chat", "responses"], default="chat")
    args = parser.parse_args()

    with fresh_database(args.admin_url, "bench_stream_latency") as db_url, FakeOpenAI() as fake:
        migrate(db_url, job_types=[(t.name, t.cost, t.timeout_seconds) for t in registry().values()])
        settings = load_settings(
            database_url=db_url, jwt_secret=SecretStr(SECRET), log_level="WARNING", _env_file=None
        )
        server, url = serve_api(create_app(settings))
        store = await Store.open(db_url, min_size=2, max_size=8, name="aijobs-bench")
        user = uuid.uuid4()
        token = mint_token(SECRET, user)
        async with store.session() as session:
            await session.accounts.grant_credits(user, 10_000, "bench")
        provider = OpenAIProvider(
            api_key="sk-bench", model="gpt-5-nano", base_url=fake.base_url, api=args.api
        )
        worker = Worker(settings, store, provider, db_url)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(worker.listener.connected.wait(), 10)
        delays: list[float] = []
        jobs: list[uuid.UUID] = []
        try:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                for _ in range(args.jobs):
                    fake.script(Step.ok(text=REPLY, stream_interval=0.02))
                    async with store.session() as session:
                        job = await enqueue(
                            session, user_id=user, job_type="ai_generation", payload={"review_text": "Nice!"}
                        )
                    jobs.append(job.id)
                    received = await first_delta(client, job.id, token)
                    delays.append(received - fake.first_pieces[-1])
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
                while True:  # the last jobs are still streaming: count their writes once they end
                    cur = await conn.execute("select count(*) from aijobs.jobs where finished_at is null")
                    row = await cur.fetchone()
                    if row is not None and row[0] == 0:
                        break
                    await asyncio.sleep(0.05)
                cur = await conn.execute(
                    "select job_id, count(*), extract(epoch from min(gap)) from ("
                    "  select job_id,"
                    "         created_at - lag(created_at) over (partition by job_id order by seq) as gap"
                    "  from aijobs.job_stream_chunks) g group by job_id"
                )
                writes = await cur.fetchall()
        finally:
            worker.request_stop()
            await task
            await provider.aclose()
            await store.close()
            server.should_exit = True
    ms = sorted(d * 1000 for d in delays)
    print(f"first delta, model to SSE client, {len(ms)} jobs ({args.api} API; target <= 50 ms):")
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    print(f"  p50 {statistics.median(ms):.1f} ms  p95 {p95:.1f} ms  max {ms[-1]:.1f} ms")
    counts = [int(r[1]) for r in writes]
    gaps = [float(r[2]) * 1000 for r in writes if r[2] is not None]
    print(f"writes per job while streaming a 60-piece reply over about {60 * 0.02:.1f} s:")
    print(
        f"  mean {statistics.mean(counts):.1f} (min {min(counts)}, max {max(counts)}); "
        f"shortest gap between two writes of one job {min(gaps):.1f} ms (target >= 50 ms)"
    )


if __name__ == "__main__":
    asyncio.run(main())
