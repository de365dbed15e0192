"""Keep the queue-depth gauges fresh without a query per scrape.

`refresh_if_stale` reads the live queue (two index-only reads of pending/processing jobs)
at most once per `max_age` seconds; concurrent scrapes share one refresh. The worker's
maintenance loop refreshes on its own tick, so its `/metrics` thread never touches the DB.
"""

from __future__ import annotations

import asyncio

from aijobs.db.store import Store
from aijobs.monitoring.metrics import QueueGauges, snapshot_from_rows

DEFAULT_MAX_AGE = 5.0


async def refresh(store: Store, gauges: QueueGauges) -> None:
    async with store.session() as session:
        depth = await session.mon_queue_depth()
        oldest = await session.mon_oldest_pending_seconds()
    gauges.update(snapshot_from_rows(depth, oldest))


class GaugeRefresher:
    """Refreshes `gauges` from `store` when older than `max_age`; one refresh at a time."""

    def __init__(self, store: Store, gauges: QueueGauges, max_age: float = DEFAULT_MAX_AGE) -> None:
        self.store = store
        self.gauges = gauges
        self.max_age = max_age
        self._lock = asyncio.Lock()
        self.refreshes = 0

    async def refresh_if_stale(self) -> None:
        if self.gauges.age() < self.max_age:
            return
        async with self._lock:
            if self.gauges.age() < self.max_age:
                return
            await refresh(self.store, self.gauges)
            self.refreshes += 1
