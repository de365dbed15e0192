"""The store: a psycopg connection pool lent out as `Session`s.

`Store.session()` lends a pooled connection as the owner role (worker, CLI, admin);
`Store.as_user(claims)` opens a transaction as Supabase's `authenticated` role with the JWT
claims set locally, so row-level security decides what the request may see. A `Session`
holds one repository per aggregate (aijobs.db.repos), whose methods are the only SQL the rest
of aijobs runs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.json import set_json_dumps
from psycopg_pool import AsyncConnectionPool

from aijobs.db.jsonb import json_dumps
from aijobs.db.queries import query
from aijobs.db.repos.accounts import AccountsRepo
from aijobs.db.repos.idempotency import IdempotencyRepo
from aijobs.db.repos.invariants import InvariantsRepo
from aijobs.db.repos.jobs import JobsRepo
from aijobs.db.repos.monitoring import MonitoringRepo
from aijobs.db.repos.providers import ProvidersRepo
from aijobs.db.repos.workers import WorkersRepo


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    set_json_dumps(json_dumps, conn)


class Session:
    """One connection (inside whatever transaction the caller holds), by aggregate."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.jobs = JobsRepo(conn)
        self.accounts = AccountsRepo(conn)
        self.workers = WorkersRepo(conn)
        self.idempotency = IdempotencyRepo(conn)
        self.providers = ProvidersRepo(conn)
        self.monitoring = MonitoringRepo(conn)
        self.invariants = InvariantsRepo(conn)

    async def applied_migrations(self) -> set[int]:
        """Versions applied (/readyz asks on a pooled connection, not one of its own)."""
        cur = await self.conn.execute(query("api_applied_migrations"))
        return {row[0] for row in await cur.fetchall()}

    async def sync_settings(self, *, max_jobs_in_flight_per_user: int | None) -> None:
        """Write the deployment's limits where the creation function reads them."""
        await self.conn.execute(query("settings_sync"), {"max_in_flight": max_jobs_in_flight_per_user})


class Store:
    """A pool of connections to one database, lent out as Sessions."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    @classmethod
    async def open(
        cls, conninfo: str, *, min_size: int = 1, max_size: int = 4, name: str = "aijobs"
    ) -> Store:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True, "application_name": name},
            open=False,
            # No `check=` round trip before each loan: it doubled the statements on the hot
            # path. A connection broken by a restart fails its query instead; every caller
            # retries, and the pool discards connections returned in a broken state.
            reconnect_timeout=3600,
            configure=_configure,
        )
        await pool.open(wait=True, timeout=30)
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection whose prepared statements are dropped after a 0A000.

        A migration that changes the type of a column a prepared statement returns (014 made
        six of jobs' columns domains) makes PostgreSQL refuse that statement with 0A000,
        "cached plan must not change result type", at every execution on every connection
        that prepared it before: a process of the previous release kept failing until it was
        restarted. After such an error (any 0A000: dropping is harmless, psycopg prepares again
        on use) the connection forgets its statements, so the caller's retry finds it healed.
        Any transaction of the borrower has been rolled back by then (it is the inner block).
        """
        async with self.pool.connection() as conn:
            try:
                yield conn
            except psycopg.errors.FeatureNotSupported:
                if conn.info.transaction_status == TransactionStatus.IDLE:
                    await conn.execute(query("conn_deallocate_all"))
                raise

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
