"""Creations from synchronous code, on the caller's own psycopg connection.

A web application written with Django, Flask or plain scripts has a synchronous psycopg 3
connection and often an open transaction on it. `SyncSession` runs the same creation
statement as the async `Session` (aijobs.create_jobs), on that connection and inside whatever
transaction it holds, so a job is created atomically with the caller's own writes: rolled
back with them, charged only if they commit, announced to workers only at that commit.
It is also the cheapest way to create one job at a time: psycopg's synchronous wait is a
poll in C, where the async one goes through the event loop at every statement.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import args_row

from aijobs.db import creation
from aijobs.db.queries import query
from aijobs.db.refusals import refusals
from aijobs.db.repos.jobs import PREPARED_STATEMENTS_CAP
from aijobs.db.rows import CreatedJob, JobSpec
from aijobs.errors import AijobsError


class SyncSession:
    """`JobsRepo.create` on a synchronous connection the caller owns.

    The caller opens, commits and closes the connection; a creation in an open transaction
    holds the user's account row locked until that transaction ends, as any charge does.
    A refusal (InsufficientCredits, ...) is a failed statement like any other: inside the
    caller's transaction it aborts that transaction, so a caller that wants to go on after
    one creates inside a savepoint (`with conn.transaction():` nested in its own).
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

    def create(
        self,
        *,
        user_id: UUID | None,
        jobs: Sequence[JobSpec],
        quota: bool = False,
        tenant: UUID | None = None,
    ) -> list[CreatedJob]:
        """Charge and insert jobs for one user, all or nothing; rows in input order. The jobs
        take `tenant`'s turns (None: the user's)."""
        if self._creator is None or self._creator.closed:
            self._creator = self.conn.cursor(row_factory=args_row(CreatedJob))
        cur = self._creator
        try:
            with refusals():
                # psycopg prepares nothing on a connection made with prepare_threshold=None
                # (PgBouncer in transaction mode), whatever `prepare` says.
                name, params = creation.statement(user_id=user_id, jobs=jobs, quota=quota, tenant=tenant)
                cur.execute(query(name), params, prepare=True)
                return cur.fetchall()
        except AijobsError:
            self._bound_prepared()
            raise

    def _bound_prepared(self) -> None:
        """As `JobsRepo._bound_prepared`, on this connection."""
        if not self.committed:
            return
        with contextlib.suppress(psycopg.Error):  # the refusal is the caller's answer, not this
            row = self.conn.execute(query("conn_prepared_count")).fetchone()
            if row is not None and row[0] > PREPARED_STATEMENTS_CAP:
                self.conn.execute(query("conn_deallocate_all"))
