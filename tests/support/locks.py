"""Lock waits in tests: wait until connections block on a lock, or end the ones that do.

Tests that stage a lock conflict (a creation held up by another transaction's row lock)
need to know the blocked statement has reached the lock before they make the next move.
"""

from __future__ import annotations

import asyncio

import psycopg

WAITING = (
    "select count(*) from pg_stat_activity where datname = current_database()"
    " and application_name = %s and wait_event_type = 'Lock'"
)
TERMINATE_WAITING = (
    "select count(pg_terminate_backend(pid)) from pg_stat_activity where datname = current_database()"
    " and application_name = %s and wait_event_type = 'Lock'"
)


async def waiting_on_locks(db_url: str, count: int, application_name: str) -> None:
    """Until `count` backends of `application_name` wait on a lock (fails after 5 s)."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        for _ in range(500):
            row = await (await conn.execute(WAITING, (application_name,))).fetchone()
            if row is not None and row[0] >= count:
                return
            await asyncio.sleep(0.01)
    raise AssertionError(f"{count} {application_name} statements never waited on a lock")


async def terminate_lock_waiters(db_url: str, application_name: str) -> None:
    """End every backend of `application_name` that waits on a lock (its client gets an
    OperationalError, as if the server had gone)."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(TERMINATE_WAITING, (application_name,))
