"""Which event loop the long-lived processes (worker, API) run on: EVENT_LOOP.

`asyncio` is the default. `uvloop` does the per-job and per-request event-loop work in C
(faster: docs/benchmarks.md), but the fault suite once saw a worker stall after a database
restart followed by killed connections while running on it, not yet reproduced or explained
(docs/reliability.md); until it is, the conservative loop is the default and uvloop an
explicit choice.

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


def run(main: Coroutine[Any, Any, T], loop: str = "asyncio") -> T:
    """Run a long-lived process's main coroutine on the chosen loop, its startup heap frozen."""
    freeze_heap()
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard] on Linux/macOS
            return asyncio.run(main)
        return uvloop.run(main)
    return asyncio.run(main)
