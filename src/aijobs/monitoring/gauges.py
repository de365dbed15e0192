"""Keep the queue-depth gauges fresh without a query per scrape.

`refresh_if_stale` reads the live queue (two index-only reads of pending/processing jobs)
at most once per `max_age` seconds; concurrent scrapes share one refresh. The worker's
maintenance loop refreshes on its own tick, so its `/metrics` thread never touches the DB.
"""

from __future__ import annotations

import asyncio
import time

from aijobs.db.store import Store
from aijobs.monitoring.metrics import QueueGauges, snapshot_from_rows

DEFAULT_MAX_AGE = 5.0


async def refresh(store: Store, gauges: QueueGauges) -> None:
    async with store.session() as session:
        depth = await session.monitoring.queue_depth()
        oldest = await session.monitoring.oldest_pending_seconds()
    gauges.update(snapshot_from_rows(depth, oldest))


class GaugeRefresher:
    """Refreshes `gauges` from `store` when older than `max_age`; one refresh at a time."""

    def __init__(self, store: Store, gauges: QueueGauges, max_age: float = DEFAULT_MAX_AGE) -> None:
        self.store = store
        self.gauges = gauges
        self.max_age = max_age
        self._lock = asyncio.Lock()
        self.refreshes = 0
        self._refreshed_at = float("-inf")

    def _stale(self) -> bool:
        # Judged by this refresher's own last read, not the shared snapshot's age: the gauges
        # are per process, and another reader (an app on another database, in tests) may have
        # filled them a moment ago with numbers that are not this store's.
        return time.monotonic() - self._refreshed_at >= self.max_age

    async def refresh_if_stale(self) -> None:
        if not self._stale():
            return
        async with self._lock:
            if not self._stale():
                return
            await refresh(self.store, self.gauges)
            self._refreshed_at = time.monotonic()
            self.refreshes += 1
