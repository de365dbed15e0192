"""Run the long-lived processes (worker, API) on uvloop where it is installed.

The worker's hot path is mostly event-loop work — a task per job, futures, socket readiness
— and the API's is the same per request; uvloop does that work in C. asyncio stays the
fallback (Windows, or a build without it), with identical behaviour.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard] on Linux/macOS
        return asyncio.run(main)
    return uvloop.run(main)
