"""Which event loop the long-lived processes (worker, API) run on: EVENT_LOOP.

`uvloop` is the default: it does the per-job and per-request event-loop work in C, for more
worker and API throughput (docs/benchmarks.md). A worker stall once seen on it after database
faults was the connection pool's reconnect backoff, on either loop alike (docs/reliability.md).
`asyncio` remains a choice, and the fallback where uvloop is not installed (Windows).

Before the loop starts, `freeze_heap` moves everything alive so far (the imported modules,
FastAPI's routes and pydantic's schemas, the settings) out of the garbage collector's reach.
Those objects live as long as the process, yet every full collection walked them all again,
which showed in the API's tail latency (docs/benchmarks.md, W5).
A frozen object that is dropped later is still freed by reference counting; only a cycle of
them would stay, and start-up objects are not dropped.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def freeze_heap() -> None:
    """Collect what startup left behind, then exempt the survivors from later collections."""
    gc.collect()
    gc.freeze()


def run(main: Coroutine[Any, Any, T], loop: str = "uvloop") -> T:
    """Run a long-lived process's main coroutine on the chosen loop, its startup heap frozen."""
    freeze_heap()
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard] on Linux/macOS
            return asyncio.run(main)
        return uvloop.run(main)
    return asyncio.run(main)
