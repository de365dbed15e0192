"""A minimal Server-Sent Events reader for tests (what the /api-test page does in JavaScript)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    """Yield {"event", "id", "data"} per event; `data` is parsed JSON. Comments (pings) are skipped."""
    event: dict[str, str] = {}
    async for line in lines:
        if line == "":
            if "data" in event:
                yield {
                    "event": event.get("event", "message"),
                    "id": event.get("id"),
                    "data": json.loads(event["data"]),
                }
            event = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        event[name] = f"{event[name]}\n{value}" if name == "data" and name in event else value
