"""A provider whose behaviour a test writes into the job's text, for worker tests.

Directives (the whole text of `review_text` / `text` / `prompt`):
  sleep:<seconds>   answer (offline rules) after a delay      fail     retryable error, always
  flaky:<n>         fail the first n calls in this process     fatal    non-retryable error
  hang              never answer (the type's time limit ends it)
  crash             kill the worker process (a poison job)
  slow-once:<path>  sleep 60 s the first time (creating <path>), answer at once after that:
                    a job that hangs in the first worker and runs quickly in the next
  block:<seconds>   block the whole event loop (time.sleep), then answer: a CPU-bound or
                    misbehaving handler; heartbeats cannot run meanwhile
  block-once:<path>:<seconds>  block the first time (creating <path>), answer at once after
Anything else is answered by the offline provider. Selected in worker subprocesses with
LLM_PROVIDER=tests.support.providers:scripted.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aijobs.providers.base import Completion, FatalProviderError, LLMTask, M, RetryableProviderError
from aijobs.providers.offline import OfflineProvider


def directive(task: LLMTask[Any]) -> str:
    payload = task.payload
    for field in ("review_text", "text", "prompt"):
        value = getattr(payload, field, None)
        if isinstance(value, str):
            return value
    return ""


class ScriptedProvider:
    name = "scripted"
    model = "scripted-v1"

    def __init__(self) -> None:
        self.offline = OfflineProvider()
        self.calls: Counter[str] = Counter()

    async def run(self, task: LLMTask[M]) -> Completion[M]:
        text = directive(task)
        self.calls[text] += 1
        if text.startswith("sleep:"):
            await asyncio.sleep(float(text.split(":", 1)[1]))
        elif text == "fail":
            raise RetryableProviderError("scripted failure")
        elif text == "fatal":
            raise FatalProviderError("scripted fatal error")
        elif text.startswith("flaky:") and self.calls[text] <= int(text.split(":")[1]):
            raise RetryableProviderError(f"scripted flaky failure {self.calls[text]}")
        elif text == "hang":
            await asyncio.Event().wait()
        elif text.startswith("slow-once:"):
            marker = Path(text.split(":", 1)[1])
            if not marker.exists():
                marker.touch()
                await asyncio.sleep(60)
        elif text.startswith("block:"):
            time.sleep(float(text.split(":", 1)[1]))  # deliberately blocks the event loop
        elif text.startswith("block-once:"):
            path, seconds = text.split(":", 1)[1].rsplit(":", 1)
            if not Path(path).exists():
                Path(path).touch()
                time.sleep(float(seconds))  # deliberately blocks the event loop
        elif text == "crash":
            os._exit(137)
        return await self.offline.run(task)

    async def aclose(self) -> None:
        await self.offline.aclose()


def scripted(_settings: object = None) -> ScriptedProvider:
    return ScriptedProvider()
