"""Which event loop the long-lived processes (worker, API) run on: EVENT_LOOP.

`asyncio` is the default. `uvloop` does the per-job and per-request event-loop work in C
(about +9% worker throughput and +17% API requests/s in `make bench`, which sets it), but
the fault suite once saw a worker stall after a database restart followed by killed
connections while running on it, not yet reproduced (16 further runs of that scenario on
uvloop, 12 of them beside a CPU-bound process, all passed) or explained; until it is, the
conservative loop is the default and uvloop an explicit choice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], loop: str = "asyncio") -> T:
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard] on Linux/macOS
            return asyncio.run(main)
        return uvloop.run(main)
    return asyncio.run(main)
