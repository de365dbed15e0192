"""Accounts and their credit ledger (queries/accounts.sql)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast
from uuid import UUID

import psycopg
from psycopg.rows import class_row, dict_row

from aijobs.db.queries import query
from aijobs.db.read_rows import AccountSettingsRow, LedgerEntryRow, LedgerRow
from aijobs.db.refusals import refusals
from aijobs.db.rows import Account


class AccountsRepo:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def create(self, user_id: UUID) -> bool:
        cur = await self.conn.execute(query("account_create"), {"user_id": user_id})
        return await cur.fetchone() is not None

    async def grant_credits(
        self, user_id: UUID, amount: int, note: str = "grant", *, key: str | None = None
    ) -> int:
        """The balance the grant left. With `key`, a repeat grants nothing and answers the
        first's; the key with another amount or note raises IdempotencyKeyReused."""
        with refusals():
            cur = await self.conn.execute(
                query("credit_grant"), {"user_id": user_id, "amount": amount, "note": note, "key": key}
            )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def set_weight(self, tenant: UUID, weight: int) -> int:
        """A tenant's share of the workers when several tenants have work waiting (1-1000)."""
        cur = await self.conn.execute(query("tenant_set_weight"), {"tenant": tenant, "weight": weight})
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def set_max_running(self, tenant: UUID, max_running: int | None) -> int | None:
        """The most of a tenant's jobs running at once (None: the deployment's default)."""
        cur = await self.conn.execute(
            query("tenant_set_max_running"), {"tenant": tenant, "max_running": max_running}
        )
        row = await cur.fetchone()
        assert row is not None
        return None if row[0] is None else int(row[0])

    async def set_tenant(self, tenant: UUID, weight: int, max_running: int | None) -> tuple[int, int | None]:
        """A tenant's weight and own limit on running jobs together (what the admin API puts)."""
        cur = await self.conn.execute(
            query("tenant_set"), {"tenant": tenant, "weight": weight, "max_running": max_running}
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0]), None if row[1] is None else int(row[1])

    async def get(self, user_id: UUID) -> Account | None:
        async with self.conn.cursor(row_factory=class_row(Account)) as cur:
            await cur.execute(query("account_get"), {"user_id": user_id})
            return await cur.fetchone()

    async def ledger(self, user_id: UUID, limit: int = 100) -> list[LedgerRow]:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("ledger_for_user"), {"user_id": user_id, "limit": limit})
            return cast("list[LedgerRow]", await cur.fetchall())

    async def balance(self, user_id: UUID) -> int | None:
        """The user's credit balance, or None when they have no account."""
        cur = await self.conn.execute(query("api_balance"), {"user_id": user_id})
        row = await cur.fetchone()
        return int(row[0]) if row else None

    async def ledger_page(self, user_id: UUID, *, before_id: int | None, limit: int) -> list[LedgerEntryRow]:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                query("api_ledger_page"), {"user_id": user_id, "before_id": before_id, "limit": limit}
            )
            return cast("list[LedgerEntryRow]", await cur.fetchall())

    async def settings(self, user_id: UUID) -> AccountSettingsRow | None:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("account_settings_get"), {"user_id": user_id})
            return cast("AccountSettingsRow | None", await cur.fetchone())

    async def put_settings(self, user_id: UUID, settings: Mapping[str, Any]) -> AccountSettingsRow:
        """Store every field of `settings` (a missing one is cleared)."""
        # An empty text (what whitespace strips to) is "not set": the table stores no empty strings.
        fields = {name: settings.get(name) or None for name in AccountSettingsRow.__annotations__}
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("account_settings_put"), {"user_id": user_id, **fields})
            row = await cur.fetchone()
        assert row is not None
        return cast("AccountSettingsRow", row)
