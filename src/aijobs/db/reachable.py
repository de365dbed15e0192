"""Waiting for a database that does not answer yet: a server restarting, a failover, a
container started before its database.

A running worker rides out such a fault (every loop retries); a starting one used to exit 1
at its first statement. `wait_until_reachable` (the CLI, before anything else) and
`retry_while_unreachable` (the worker's registration) retry with capped, jittered backoff
until the database answers or the time given passes, and log once when it stops answering and
once when it answers again, not once per try. A fault that waiting cannot fix (a wrong
password, a database or role that does not exist) is raised at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
from psycopg_pool import PoolTimeout

log = logging.getLogger("aijobs.db")

T = TypeVar("T")

#: Backoff between tries: from FIRST_DELAY, doubling, capped at MAX_DELAY (plus jitter).
FIRST_DELAY = 0.25
MAX_DELAY = 5.0
#: What libpq says when retrying cannot help (connection errors carry no SQLSTATE).
_PERMANENT = (
    "does not exist",
    "authentication failed",
    "no pg_hba.conf entry",
    "permission denied",
    "password must be",
    "invalid",
)
#: SQLSTATE classes of a server going away or not ready: connection exception, insufficient
#: resources (too many connections), operator intervention (shutdown, starting up).
_TRANSIENT_CLASSES = ("08", "53", "57")


def is_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database is out of reach for now (worth waiting for)."""
    if isinstance(exc, PoolTimeout | OSError):
        return True
    if isinstance(exc, psycopg.OperationalError):
        if exc.sqlstate is not None:
            return exc.sqlstate[:2] in _TRANSIENT_CLASSES
        text = str(exc).lower()
        return not any(word in text for word in _PERMANENT)
    return False


class _Outage:
    """Backoff and the two log lines of one wait."""

    def __init__(self, what: str, timeout: float) -> None:
        self.what = what
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.delay = FIRST_DELAY
        self.failing = False

    def failed(self, exc: BaseException) -> float:
        """The pause before the next try; re-raises `exc` when waiting cannot help or is over."""
        if not is_unreachable(exc) or time.monotonic() >= self.deadline:
            raise exc
        if not self.failing:
            self.failing = True
            log.warning(
                "🔌 PostgreSQL is not answering (%s); %s retries until it does (up to %.0fs)",
                _first_line(exc),
                self.what,
                self.timeout,
            )
        pause = min(self.delay, max(0.0, self.deadline - time.monotonic()))
        self.delay = min(self.delay * 2, MAX_DELAY)
        return pause * random.uniform(0.8, 1.2)

    def answered(self) -> None:
        if self.failing:
            log.info("🔗 PostgreSQL answers again; %s goes on", self.what)


def wait_until_reachable(conninfo: str, *, timeout: float, what: str = "start") -> None:
    """Return once a connection to `conninfo` answers a query (blocking)."""
    outage = _Outage(what, timeout)
    while True:
        try:
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
                conn.execute("select 1")
        except (psycopg.Error, OSError) as exc:
            time.sleep(outage.failed(exc))
            continue
        outage.answered()
        return


async def retry_while_unreachable(
    attempt: Callable[[], Awaitable[T]],
    *,
    give_up_after: float,
    what: str,
    stop: asyncio.Event | None = None,
) -> T | None:
    """`attempt()`'s result, retried while the database is out of reach; None when `stop` is
    set while waiting."""
    outage = _Outage(what, give_up_after)
    while True:
        try:
            result = await attempt()
        except (psycopg.Error, OSError) as exc:
            pause = outage.failed(exc)
            if stop is None:
                await asyncio.sleep(pause)
            else:
                try:
                    async with asyncio.timeout(pause):
                        await stop.wait()
                except TimeoutError:
                    continue
                return None
            continue
        outage.answered()
        return result


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
