"""The store: a psycopg connection pool lent out as `Session`s.

`Store.session()` lends a pooled connection as the owner role (worker, CLI, admin);
`Store.as_user(claims)` opens a transaction as Supabase's `authenticated` role with the JWT
claims set locally, so row-level security decides what the request may see. A `Session`
holds one repository per aggregate (aijobs.db.repos), whose methods are the only SQL the rest
of aijobs runs.
"""

from __future__ import annotations

import json
import random
import select
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.json import set_json_dumps
from psycopg_pool import AsyncConnectionPool
from psycopg_pool.base import AttemptWithBackoff

from aijobs.db.jsonb import json_dumps
from aijobs.db.queries import query
from aijobs.db.repos.accounts import AccountsRepo
from aijobs.db.repos.idempotency import IdempotencyRepo
from aijobs.db.repos.invariants import InvariantsRepo
from aijobs.db.repos.job_types import JobTypesRepo
from aijobs.db.repos.jobs import JobsRepo
from aijobs.db.repos.monitoring import MonitoringRepo
from aijobs.db.repos.providers import ProvidersRepo
from aijobs.db.repos.streams import StreamsRepo
from aijobs.db.repos.webhooks import WebhooksRepo
from aijobs.db.repos.workers import WorkersRepo


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    set_json_dumps(json_dumps, conn)


class Session:
    """One connection (inside whatever transaction the caller holds), by aggregate."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.jobs = JobsRepo(conn)
        self.job_types = JobTypesRepo(conn)
        self.accounts = AccountsRepo(conn)
        self.workers = WorkersRepo(conn)
        self.idempotency = IdempotencyRepo(conn)
        self.providers = ProvidersRepo(conn)
        self.monitoring = MonitoringRepo(conn)
        self.invariants = InvariantsRepo(conn)
        self.webhooks = WebhooksRepo(conn)
        self.streams = StreamsRepo(conn)

    async def applied_migrations(self) -> set[int]:
        """Versions applied (/readyz asks on a pooled connection, not one of its own); none on
        a database no migration has run on yet."""
        try:
            cur = await self.conn.execute(query("api_applied_migrations"))
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            return set()
        return {row[0] for row in await cur.fetchall()}

    async def sync_settings(self, *, max_jobs_in_flight_per_user: int | None) -> None:
        """Write the deployment's limits where the creation function reads them."""
        await self.conn.execute(query("settings_sync"), {"max_in_flight": max_jobs_in_flight_per_user})


async def _looks_alive(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle pooled connection may be lent, without a round trip when it is quiet.

    An idle connection has nothing to read unless the server spoke first: a FATAL before it
    closed the socket (shutdown, terminated backend), the end of the stream, or, rarely, a
    notice. Only then is it asked for a round trip (one `poll` otherwise, no statement).
    """
    if conn.closed or conn.broken:
        return False
    # poll, not select: select refuses descriptors past FD_SETSIZE (1024).
    poller = select.poll()
    try:
        poller.register(conn.fileno(), select.POLLIN)
        events = poller.poll(0)
    except (OSError, ValueError):
        return False
    if not events:
        return True
    try:
        await conn.execute("")
    except psycopg.Error:
        return False
    return True


class _ReconnectBackoff(AttemptWithBackoff):
    """psycopg_pool's wait between attempts to replace a lost connection, capped.

    The pool doubles that wait without bound (1, 2, 4 ... s until reconnect_timeout), so after
    a database outage of a minute its next attempt could come a minute after the database was
    back: the API answered 503 and workers sat idle that long. Capped, a process is working
    again within a few seconds of the database, whatever the outage lasted; an attempt is one
    connection, cheap to repeat. The jitter keeps many processes from connecting in step.
    """

    MAX_DELAY = 2.0

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, self.MAX_DELAY * random.uniform(0.9, 1.1))


class _Pool(AsyncConnectionPool[Any]):
    # psycopg_pool has no setting for the cap: its own `_add_connection` is given the capped
    # attempt (tests/reliability/test_reconnect_backoff.py fails if that hook changes).
    async def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        await super()._add_connection(attempt or _ReconnectBackoff(timeout=self.reconnect_timeout), growing)


class Store:
    """A pool of connections to one database, lent out as Sessions."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    @classmethod
    async def open(
        cls,
        conninfo: str,
        *,
        min_size: int = 1,
        max_size: int = 4,
        name: str = "aijobs",
        acquire_timeout: float = 30.0,
        wait: bool = True,
        prepare: bool = True,
    ) -> Store:
        """`acquire_timeout`: how long a borrower waits for a connection before PoolTimeout
        (the API keeps it short, to answer 503 while the database is out of reach).
        `wait=False` returns before the first connection is made (the worker retries its
        own start).
        `prepare=False` behind a transaction-mode pooler (PgBouncer, Supavisor): psycopg's
        `prepare_threshold=None` then sends every statement unnamed, `prepare=True` included."""
        kwargs: dict[str, Any] = {"autocommit": True, "application_name": name}
        if not prepare:
            kwargs["prepare_threshold"] = None
        pool: AsyncConnectionPool[Any] = _Pool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs=kwargs,
            open=False,
            # No `check=` round trip before each loan: it doubled the statements on the hot
            # path. `_borrow` looks at the socket instead (see `_looks_alive`).
            reconnect_timeout=3600,
            timeout=acquire_timeout,
            configure=_configure,
        )
        if wait:
            await pool.open(wait=True, timeout=30)
        else:
            await pool.open()
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection whose prepared statements are dropped after a 0A000.

        A migration that changes the type of a column a prepared statement returns (a column
        becoming a domain, say) makes PostgreSQL refuse that statement with 0A000,
        "cached plan must not change result type", at every execution on every connection
        that prepared it before: a process of the previous release kept failing until it was
        restarted. After such an error (any 0A000: dropping is harmless, psycopg prepares again
        on use) the connection forgets its statements, so the caller's retry finds it healed.
        Any transaction of the borrower has been rolled back by then (it is the inner block).
        """
        conn = await self._borrow()
        try:
            yield conn
        except psycopg.errors.FeatureNotSupported:
            if conn.info.transaction_status == TransactionStatus.IDLE:
                await conn.execute(query("conn_deallocate_all"))
            raise
        finally:
            await self.pool.putconn(conn)

    # -- stale connections ----------------------------------------------------------------
    async def _borrow(self) -> psycopg.AsyncConnection[Any]:
        """A pooled connection that is not known to be dead.

        After a PostgreSQL restart or `pg_terminate_backend` every idle pooled connection is
        dead, and each failed its next borrower's first statement (a 500 per connection,
        though the database was back). A dead one is dropped here, before anything is sent
        on it, and the next is tried: the pool replaces what it loses.
        """
        for _ in range(self.pool.max_size):
            conn: psycopg.AsyncConnection[Any] = await self.pool.getconn()
            try:
                alive = await _looks_alive(conn)
            except BaseException:  # cancelled while checking: give the connection back
                await self.pool.putconn(conn)
                raise
            if alive:
                return conn
            await conn.close()
            await self.pool.putconn(conn)  # a closed connection is discarded and replaced
        last: psycopg.AsyncConnection[Any] = await self.pool.getconn()
        return last

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        """A connection as the owner role, in autocommit: each query is its own transaction."""
        async with self._connection() as conn:
            yield Session(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        """Several owner-role queries in one transaction."""
        async with self._connection() as conn, conn.transaction():
            yield Session(conn)

    @asynccontextmanager
    async def as_user(self, claims: dict[str, Any] | None) -> AsyncIterator[Session]:
        """A transaction as `authenticated` (or `anon` without claims), claims set locally.

        Both settings are always set, for anonymous requests too, and are local to the
        transaction, so nothing leaks to the next borrower of the pooled connection.
        """
        role = "authenticated" if claims else "anon"
        # No pipeline mode: psycopg's async pipeline flushes each queued command on its own,
        # which cost the API more CPU per request than it saved (docs/benchmarks.md).
        async with self._connection() as conn, conn.transaction():
            await conn.execute(
                "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
                (role, json.dumps(claims or {})),
                prepare=True,
            )
            yield Session(conn)
