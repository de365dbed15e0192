"""Creations from synchronous code, on the caller's own psycopg connection.

A web application written with Django, Flask or plain scripts has a synchronous psycopg 3
connection and often an open transaction on it. `SyncSession` runs the same credit-charging
named queries as the async `Session`, on that connection and inside whatever transaction it
holds, so a job can be created atomically with the caller's own writes: rolled back with
them, charged only if they commit, and announced to workers (NOTIFY) only at that commit.

It is also the cheapest way to create one job at a time: psycopg's synchronous wait is a
poll in C, where the async one registers the socket with the event loop, arms a timer and
unregisters both at every statement (docs/benchmarks.md, W1).

The session keeps one cursor for its creations, as `Session` does, and never changes the
connection's configuration (payloads carry their own JSON encoder). One exception, for the
server's sake: after a refusal outside a transaction, a connection holding more than
PREPARED_STATEMENTS_CAP prepared statements has them all dropped (see `db/store.py`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import args_row

from aijobs.db import creation_params
from aijobs.db.queries import query
from aijobs.db.rows import CreatedJob, JobSpec
from aijobs.db.store import PREPARED_STATEMENTS_CAP, refusals
from aijobs.errors import AijobsError


class SyncSession:
    """The creation calls of `Session`, on a synchronous connection the caller owns.

    Without the API's in-flight cap: that limit belongs to the HTTP API's signed-in users.

    The caller opens, commits and closes the connection; a creation in an open transaction
    holds the user's account row locked until that transaction ends, as any charge does.
    A refusal (InsufficientCredits, ...) is a failed statement like any other: inside the
    caller's transaction it leaves that transaction aborted, so a caller that wants to go on
    after one creates inside a savepoint (`with conn.transaction():` nested in its own).
    One session per thread: its cursor, like any psycopg cursor, is not to be shared.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._creator: psycopg.Cursor[CreatedJob] | None = None

    @property
    def committed(self) -> bool:
        """Whether what this connection last ran is committed: no transaction is open (an
        autocommit connection). Inside the caller's transaction it may yet roll back."""
        return self.conn.info.transaction_status == TransactionStatus.IDLE

    def create_job(
        self,
        *,
        user_id: UUID | None,
        type: str,
        payload: dict[str, Any],
        priority: int = 0,
        run_at: datetime | None = None,
        max_attempts: int = 4,
        idempotency_key: str | None = None,
        retry_of: UUID | None = None,
    ) -> CreatedJob:
        """Charge and insert through the credit-consuming function, or raise its typed error."""
        params = creation_params.single(
            user_id=user_id,
            type=type,
            payload=payload,
            priority=priority,
            run_at=run_at,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
            retry_of=retry_of,
            max_in_flight=None,
        )
        if self._creator is None or self._creator.closed:
            self._creator = self.conn.cursor(row_factory=args_row(CreatedJob))
        cur = self._creator
        try:
            with refusals():
                # Prepared at once, as the async store does; psycopg still prepares nothing on
                # a connection made with prepare_threshold=None (PgBouncer in transaction mode).
                cur.execute(query(creation_params.single_statement(None)), params, prepare=True)
                row = cur.fetchone()
        except AijobsError:
            self.bound_prepared()
            raise
        assert row is not None
        return row

    def create_jobs(self, *, user_id: UUID | None, jobs: Sequence[JobSpec]) -> list[CreatedJob]:
        """Charge and insert a batch for one user in one statement, all or nothing; rows in
        input order."""
        params = creation_params.batch(user_id=user_id, jobs=jobs, max_in_flight=None)
        try:
            with refusals(), self.conn.cursor(row_factory=args_row(CreatedJob)) as cur:
                cur.execute(query(creation_params.batch_statement(None)), params)
                return cur.fetchall()
        except AijobsError:
            self.bound_prepared()
            raise

    def bound_prepared(self) -> None:
        """`Session.bound_prepared` on this connection: after a refusal outside a transaction,
        drop its prepared statements if refusals have left more than the cap of them."""
        if not self.committed:
            return
        with contextlib.suppress(psycopg.Error):  # the refusal is the caller's answer, not this
            row = self.conn.execute(query("conn_prepared_count")).fetchone()
            if row is not None and row[0] > PREPARED_STATEMENTS_CAP:
                self.conn.execute(query("conn_deallocate_all"))
