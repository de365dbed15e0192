"""Stdlib-only helpers shared by the ``*_worker.py`` scripts that run inside ``bench/.peers-venv``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

HANDLER_LOG_INSERT = "INSERT INTO bench_handler_log (job_key, started_ns) VALUES ($1, $2)"
SLEEP_SECONDS = 0.2


def emit(obj: dict[str, Any]) -> None:
    """Print the command's result as one JSON line (the adapter reads the last line)."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def ready() -> None:
    """Tell the harness this worker is connected and about to pick up jobs."""
    sys.stdout.write("READY\n")
    sys.stdout.flush()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("install")
    s.add_argument("--db", required=True)
    s = sub.add_parser("enqueue", help="timed or fill enqueue")
    s.add_argument("--db", required=True)
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--batch", type=int, default=1, help="jobs per call/transaction")
    s.add_argument("--handler", default="noop", choices=["noop", "sleep", "latency"])
    s.add_argument("--sync", action="store_true", help="through the synchronous client (batch 1 only)")
    s = sub.add_parser("work")
    s.add_argument("--db", required=True)
    s.add_argument("--concurrency", type=int, required=True)
    s.add_argument("--batch-size", type=int, default=10)
    s = sub.add_parser("produce")
    s.add_argument("--db", required=True)
    s.add_argument("--interval", type=float, required=True)
    s.add_argument("--count", type=int, required=True)
    return p


async def paced(count: int, interval: float, enqueue_one: Callable[[str], Awaitable[None]]) -> dict[str, int]:
    """Call ``enqueue_one(key)`` every ``interval`` s (absolute deadlines); return key -> commit ns."""
    import asyncio

    commits: dict[str, int] = {}
    t0 = time.monotonic()
    for i in range(count):
        delay = t0 + i * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        key = f"k{i}"
        await enqueue_one(key)
        commits[key] = time.time_ns()
    return commits
