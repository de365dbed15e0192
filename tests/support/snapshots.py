"""What a user has in the database, read as the owner: to prove a refusal wrote nothing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class Snapshot:
    balance: int
    ledger_sum: int
    ledger_rows: int
    jobs: int
    idempotency_keys: int


async def snapshot(db_url: str, user: uuid.UUID) -> Snapshot:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cur = await conn.execute(
            """select coalesce((select balance from aijobs.accounts where user_id = %(u)s), 0),
                      (select coalesce(sum(amount), 0) from aijobs.credit_ledger where user_id = %(u)s),
                      (select count(*) from aijobs.credit_ledger where user_id = %(u)s),
                      (select count(*) from aijobs.jobs where user_id = %(u)s),
                      (select count(*) from aijobs.api_idempotency_keys where user_id = %(u)s)""",
            {"u": user},
        )
        row = await cur.fetchone()
    assert row is not None
    return Snapshot(*(int(v) for v in row))


async def total_rows(db_url: str) -> tuple[int, int, int]:
    """(jobs, ledger rows, idempotency keys) across all users."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cur = await conn.execute(
            "select (select count(*) from aijobs.jobs), (select count(*) from aijobs.credit_ledger),"
            " (select count(*) from aijobs.api_idempotency_keys)"
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])
