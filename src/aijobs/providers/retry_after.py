"""How long a 429 asks us to wait, read from the response headers.

OpenAI sends `retry-after-ms` (milliseconds) and sometimes `Retry-After` (seconds, or an HTTP
date per RFC 9110), plus `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` as Go-style
durations ("1s", "6m0s", "20ms", "1h2m3.5s"). Compatible servers send any subset. The most
specific header wins; if none parses, the caller's default applies.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float | None:
    """A Go duration ("6m0s", "20ms", "1.5s") or a bare number of seconds, in seconds."""
    text = text.strip().lower()
    if not text:
        return None
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) else None


def parse_retry_after(value: str, *, now: float | None = None) -> float | None:
    """`Retry-After`: delta-seconds or an HTTP date, in seconds from now (never negative)."""
    value = value.strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """The wait a rate-limited response asks for, or None when its headers do not say.

    Header names are matched case-insensitively (httpx headers already are; plain dicts may not be).
    """
    lower = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lower:
        try:
            return max(float(lower["retry-after-ms"]) / 1000.0, 0.0)
        except ValueError:
            pass
    if "retry-after" in lower:
        seconds = parse_retry_after(lower["retry-after"], now=now)
        if seconds is not None:
            return seconds
    resets = [
        parse_duration(lower[name])
        for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
        if name in lower
    ]
    known = [r for r in resets if r is not None]
    return max(known) if known else None
