"""How long a 429 asks us to wait, read from the response headers.

OpenAI sends `retry-after-ms` (milliseconds) and sometimes `Retry-After` (seconds, or an HTTP
date per RFC 9110), plus `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` as Go-style
durations ("1s", "6m0s", "20ms", "1h2m3.5s"). Compatible servers send any subset. The most
specific header wins; if none parses, the caller's default applies.

A value that is not a finite, non-negative number ("NaN", "inf", "-5", "1e400") counts as
absent, and a wait longer than MAX_WAIT_SECONDS (an HTTP date years ahead, "99999999h") is cut
to it: the wait becomes a hold shared by every worker and a timestamp in PostgreSQL, where NaN
would never end and an enormous interval would not fit. A job rate-limited past
RATE_LIMIT_MAX_WAIT_SECONDS still fails as it always does.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
#: The longest wait a header is taken at: one day. OpenAI's own waits are seconds to minutes.
MAX_WAIT_SECONDS = 86400.0


def sane_wait(seconds: float) -> float | None:
    """`seconds` capped at MAX_WAIT_SECONDS; None when it is NaN, infinite or negative."""
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_WAIT_SECONDS)


def _number(text: str) -> float | None:
    """A plain number ("1.5", "1e3"), or None when `text` is not one."""
    try:
        return float(text)
    except ValueError:
        return None


def parse_duration(text: str) -> float | None:
    """A Go duration ("6m0s", "20ms", "1.5s") or a bare number of seconds, in seconds."""
    text = text.strip().lower()
    if not text:
        return None
    if (number := _number(text)) is not None:
        return sane_wait(number)
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return sane_wait(total) if pos == len(text) else None


def parse_retry_after(value: str, *, now: float | None = None) -> float | None:
    """`Retry-After`: delta-seconds or an HTTP date, in seconds from now (a past date: 0)."""
    value = value.strip()
    if not value:
        return None
    if (number := _number(value)) is not None:
        return sane_wait(number)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return sane_wait(max(when.timestamp() - (time.time() if now is None else now), 0.0))


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """The wait a rate-limited response asks for, or None when its headers do not say.

    Header names are matched case-insensitively (httpx headers already are; plain dicts may not be).
    """
    lower = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lower:
        millis = _number(lower["retry-after-ms"].strip())
        seconds = sane_wait(millis / 1000.0) if millis is not None else None
        if seconds is not None:
            return seconds
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
