"""An aijobs worker for the benchmark (runs in the project's venv): prints READY, stops on SIGTERM.

It is `aijobs worker` with the benchmark provider, logging at WARNING (the per-job INFO lines
of a real worker would be measured otherwise).
"""

from __future__ import annotations

import asyncio
import sys

from aijobs_bench_provider import BenchProvider

from aijobs import eventloop
from aijobs.config import load_settings
from aijobs.db.store import Store
from aijobs.logs import setup_logging
from aijobs.worker.runner import Worker


async def main() -> None:
    settings = load_settings(_env_file=None)
    setup_logging(settings.log_format, settings.log_level)
    assert settings.database_url
    store = await Store.open(settings.database_url, min_size=3, max_size=4, name="aijobs-bench-worker")
    provider = BenchProvider()
    worker = Worker(settings, store, provider, settings.database_url)
    worker.install_signal_handlers()
    task = asyncio.create_task(worker.run())
    if worker.listener is not None:
        await asyncio.wait_for(worker.listener.connected.wait(), timeout=30)
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    try:
        await task
    finally:
        await provider.aclose()
        await store.close()


if __name__ == "__main__":
    eventloop.run(main(), load_settings(_env_file=None).event_loop)
