"""Webhook endpoints, the outbox of deliveries and its log (queries/webhooks.sql).

Written as the owner role for the user the API serves (or None: the deployment's own
endpoints); `authenticated` is granted nothing on these tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from aijobs.db.queries import query
from aijobs.db.read_rows import (
    RecentWebhookDeliveryRow,
    WebhookAttemptRow,
    WebhookDeliveryRow,
    WebhookEndpointRow,
)


@dataclass(frozen=True)
class ClaimedDelivery:
    """One attempt to make: the body is the stored payload's text, sent and signed as is."""

    id: UUID
    event: str
    body: str
    attempt: int
    url: str
    secret: str


class WebhooksRepo:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def create_endpoint(
        self,
        user_id: UUID | None,
        *,
        url: str,
        secret: str,
        events: list[str],
        description: str | None,
        max_endpoints: int,
    ) -> WebhookEndpointRow | None:
        """The new endpoint, or None when the owner already has `max_endpoints`. One owner's
        creations take turns (a lock held to the end of the transaction), so two at once cannot
        both pass the count."""
        params = {
            "user_id": user_id,
            "url": url,
            "secret": secret,
            "events": events,
            "description": description,
            "max": max_endpoints,
        }
        async with self.conn.transaction(), self.conn.cursor(row_factory=dict_row) as cur:
            # Its own statement: the count below must read with a snapshot taken after the wait.
            await cur.execute(query("webhook_endpoint_lock_owner"), {"user_id": user_id})
            await cur.execute(query("webhook_endpoint_create"), params)
            return cast("WebhookEndpointRow | None", await cur.fetchone())

    async def endpoints(self, user_id: UUID | None) -> list[WebhookEndpointRow]:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("webhook_endpoint_list"), {"user_id": user_id})
            return cast("list[WebhookEndpointRow]", await cur.fetchall())

    async def endpoint(self, user_id: UUID | None, endpoint_id: UUID) -> WebhookEndpointRow | None:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("webhook_endpoint_get"), {"user_id": user_id, "id": endpoint_id})
            return cast("WebhookEndpointRow | None", await cur.fetchone())

    async def delete_endpoint(self, user_id: UUID | None, endpoint_id: UUID) -> bool:
        cur = await self.conn.execute(
            query("webhook_endpoint_delete"), {"user_id": user_id, "id": endpoint_id}
        )
        return await cur.fetchone() is not None

    async def deliveries(
        self, user_id: UUID | None, endpoint_id: UUID, *, before: UUID | None, limit: int
    ) -> list[WebhookDeliveryRow]:
        """A page of the endpoint's deliveries, newest first, each with its attempt log."""
        params = {"user_id": user_id, "endpoint_id": endpoint_id, "before": before, "limit": limit}
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("webhook_delivery_page"), params)
            rows = cast("list[WebhookDeliveryRow]", await cur.fetchall())
            if not rows:
                return rows
            await cur.execute(query("webhook_delivery_attempts"), {"ids": [r["id"] for r in rows]})
            attempts = cast("list[WebhookAttemptRow]", await cur.fetchall())
        by_delivery: dict[UUID, list[WebhookAttemptRow]] = {}
        for attempt in attempts:
            by_delivery.setdefault(attempt["delivery_id"], []).append(attempt)
        for row in rows:
            row["log"] = by_delivery.get(row["id"], [])
        return rows

    async def replay(self, user_id: UUID | None, endpoint_id: UUID, delivery_id: UUID) -> bool:
        cur = await self.conn.execute(
            query("webhook_delivery_replay"),
            {"user_id": user_id, "endpoint_id": endpoint_id, "id": delivery_id},
        )
        return await cur.fetchone() is not None

    async def recent(self, limit: int) -> list[RecentWebhookDeliveryRow]:
        """The latest deliveries of every endpoint (the dashboard)."""
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("webhook_delivery_recent"), {"limit": limit})
            return cast("list[RecentWebhookDeliveryRow]", await cur.fetchall())

    async def replay_any(self, delivery_id: UUID) -> bool:
        """Replay any endpoint's delivery (admins, from the dashboard)."""
        cur = await self.conn.execute(query("webhook_delivery_replay_any"), {"id": delivery_id})
        return await cur.fetchone() is not None

    async def claim(self, n: int, lease_seconds: float) -> list[ClaimedDelivery]:
        cur = await self.conn.execute(
            query("webhook_delivery_claim"), {"n": n, "lease_seconds": lease_seconds}
        )
        return [ClaimedDelivery(*row) for row in await cur.fetchall()]

    async def record(
        self,
        delivery: ClaimedDelivery,
        *,
        ok: bool,
        status_code: int | None,
        error: str | None,
        duration_ms: float,
        retry_in: float,
        window_seconds: float,
        worker_id: str,
    ) -> str | None:
        """Store an attempt's end; the delivery's status now, or None if a later claim owns it."""
        cur = await self.conn.execute(
            query("webhook_delivery_record"),
            {
                "id": delivery.id,
                "attempt": delivery.attempt,
                "ok": ok,
                "status_code": status_code,
                "error": error,
                "duration_ms": duration_ms,
                "retry_in": retry_in,
                "window_seconds": window_seconds,
                "worker_id": worker_id,
            },
        )
        row = await cur.fetchone()
        return str(row[0]) if row else None

    async def prune(self, age_seconds: float, batch: int) -> int:
        cur = await self.conn.execute(
            query("webhook_delivery_prune"), {"age_seconds": age_seconds, "batch": batch}
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0
