"""The benchmark's provider for aijobs: the three handler kinds of bench/systems/base.py.

Jobs are `sentiment_analysis` jobs whose text names the kind: "noop", "sleep", "llm" or
"latency:<key>". Everything else in aijobs' per-job path runs as in production: payload
validation, the job type's handler, output validation, the attempt row, the result write.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import psycopg

from aijobs.providers.base import Completion, LLMTask, M, Usage

SLEEP_SECONDS = 0.2
#: W7's job: an LLM call's shape, a second of waiting on the network.
LLM_SECONDS = 1.0
ANSWER = {"label": "neutral", "score": 0.0, "reasons": []}
USAGE = Usage(provider="bench", model="none")


class BenchProvider:
    name = "bench"
    model = "none"

    def __init__(self) -> None:
        self._side: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    async def run(self, task: LLMTask[M]) -> Completion[M]:
        text: str = getattr(task.payload, "text", "")
        if text == "sleep":
            await asyncio.sleep(SLEEP_SECONDS)
        elif text == "llm":
            await asyncio.sleep(LLM_SECONDS)
        elif text.startswith("latency:"):
            started = time.time_ns()
            async with self._lock:
                if self._side is None:
                    self._side = await psycopg.AsyncConnection.connect(
                        os.environ["DATABASE_URL"], autocommit=True
                    )
                await self._side.execute(
                    "INSERT INTO bench_handler_log (job_key, started_ns) VALUES (%s, %s)",
                    (text.split(":", 1)[1], started),
                )
        return Completion(output=task.output.model_validate(ANSWER), usage=USAGE)

    async def aclose(self) -> None:
        if self._side is not None:
            await self._side.close()


def bench(_settings: object = None) -> BenchProvider:
    return BenchProvider()
