"""The webhook deliverer: sends the outbox rows that ending jobs leave, at least once.

Every worker runs one. Woken by NOTIFY on `aijobs_webhooks` (the outbox trigger sends it
when the job's transaction commits) or by its poll, it claims due deliveries with
`FOR UPDATE SKIP LOCKED`, as many as it has free slots, and POSTs each one signed the
Standard Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature`: HMAC-SHA256
of id, timestamp and body). The id is the delivery's, the same on every attempt and replay,
so a receiver drops repeats. A 2xx answer delivers it; anything else (an error status, a
redirect, which is never followed, a timeout, a refused address, any error the attempt
raises) is retried with backoff until the retry window closes, then the delivery is failed.
Each attempt is bounded: one deadline for the whole exchange and at most `MAX_ANSWER_BYTES`
of the answer read, kept as a hint of why it failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import UTC, datetime

import httpx
import psycopg
from standardwebhooks.webhooks import Webhook

from aijobs.config import Settings
from aijobs.db.repos.webhooks import ClaimedDelivery
from aijobs.db.store import Store
from aijobs.providers.base import storable_text
from aijobs.worker.webhook_targets import delivery_client

log = logging.getLogger("aijobs.webhooks")

WEBHOOKS_CHANNEL = "aijobs_webhooks"
#: How much of a receiver's answer is read; the rest is never downloaded.
MAX_ANSWER_BYTES = 1024
MAX_ERROR_CHARS = 500
#: No retry waits longer than this, so the last ones still fall inside the window.
MAX_RETRY_SECONDS = 4 * 3600.0


def retry_delay(attempt: int, base: float) -> float:
    """Seconds before the next try after `attempt` failed: 4 times longer each time, jittered."""
    delay = min(base * 4.0 ** min(attempt - 1, 20), MAX_RETRY_SECONDS)
    return delay * random.uniform(0.8, 1.2)


class Deliverer:
    def __init__(self, store: Store, worker_id: str, settings: Settings) -> None:
        self.store = store
        self.worker_id = worker_id
        self.timeout = settings.webhook_timeout_seconds
        self.retry_base = settings.webhook_retry_base_seconds
        self.window = settings.webhook_retry_window_seconds
        self.concurrency = settings.webhook_concurrency
        self.poll = settings.polling_seconds
        # A claim outlives the attempt it starts, so no other worker sends the same attempt.
        self.lease_seconds = self.timeout * 2 + 5.0
        self.client = delivery_client(allow_private=settings.webhook_allow_private, timeout=self.timeout)
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.1
        try:
            while not stop.is_set():
                free = self.concurrency - len(self._tasks)
                claimed: list[ClaimedDelivery] = []
                if free > 0:
                    self._wake.clear()
                    try:
                        async with self.store.session() as session:
                            claimed = await session.webhooks.claim(free, self.lease_seconds)
                        backoff = 0.1
                    except (psycopg.Error, OSError) as exc:
                        log.warning(
                            "📮 Could not claim webhook deliveries (%s); retrying", type(exc).__name__
                        )
                        await self._pause(stop, backoff + random.uniform(0, backoff))
                        backoff = min(backoff * 2, 5.0)
                        continue
                    for delivery in claimed:
                        task = asyncio.create_task(self._attempt(delivery))
                        self._tasks.add(task)
                        task.add_done_callback(self._done)
                if claimed and len(claimed) == free:
                    continue  # maybe more are due: claim again as soon as a slot frees
                await self._pause(stop, self.poll * random.uniform(0.9, 1.1))
        finally:
            # Attempts under way end within their deadline; one cut short stays claimed and is
            # tried again when its claim runs out.
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=self.timeout + 1.0)
            for task in set(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.client.aclose()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waits:
            waiter.cancel()

    async def _attempt(self, delivery: ClaimedDelivery) -> None:
        started = time.perf_counter()
        try:
            status_code, error = await self.send(delivery)
        except Exception as exc:
            # Anything one attempt raises (an unsendable URL, a bad secret) is a failed attempt:
            # unrecorded, the retry window would never end the delivery and it is claimed forever.
            log.warning("📮 Webhook %s attempt raised", delivery.id, exc_info=True)
            status_code, error = None, _clip(f"{type(exc).__name__}: {exc}")
        ok = error is None
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        retry_in = 0.0 if ok else retry_delay(delivery.attempt, self.retry_base)
        try:
            async with self.store.session() as session:
                status = await session.webhooks.record(
                    delivery,
                    ok=ok,
                    status_code=status_code,
                    error=error,
                    duration_ms=duration_ms,
                    retry_in=retry_in,
                    window_seconds=self.window,
                    worker_id=self.worker_id,
                )
        except (psycopg.Error, OSError) as exc:
            # Unrecorded, the delivery is tried again when its claim runs out: at least once.
            log.warning("📮 Could not record webhook delivery %s (%s)", delivery.id, type(exc).__name__)
            return
        extra = {"delivery_id": str(delivery.id), "event": delivery.event, "attempt": delivery.attempt}
        if ok:
            log.info(
                "📮 Webhook %s delivered (%s, attempt %d)",
                delivery.id,
                delivery.event,
                delivery.attempt,
                extra=extra,
            )
        elif status == "failed":
            log.warning(
                "📮 Webhook %s failed for good after %d attempts: %s",
                delivery.id,
                delivery.attempt,
                error,
                extra=extra,
            )
        else:
            log.info(
                "📮 Webhook %s attempt %d failed (%s); next in %.0fs",
                delivery.id,
                delivery.attempt,
                error,
                retry_in,
                extra=extra,
            )

    async def send(self, delivery: ClaimedDelivery) -> tuple[int | None, str | None]:
        """POST one delivery; its status code, and None or why it did not count as delivered."""
        msg_id = str(delivery.id)
        now = datetime.now(UTC)
        body = delivery.body.encode()
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(delivery.secret).sign(msg_id, now, body),
        }
        status_code: int | None = None
        answer = bytearray()
        try:
            async with asyncio.timeout(self.timeout):
                async with self.client.stream(
                    "POST", delivery.url, content=body, headers=headers
                ) as response:
                    status_code = response.status_code
                    # Raw bytes, not decoded: a compressed answer is not inflated either.
                    async for chunk in response.aiter_raw():
                        answer += chunk[: MAX_ANSWER_BYTES - len(answer)]
                        if len(answer) >= MAX_ANSWER_BYTES:
                            break
                    location = response.headers.get("location")
        except TimeoutError:
            return status_code, f"no complete answer within {self.timeout:g}s"
        except httpx.HTTPError as exc:
            return status_code, _clip(f"{type(exc).__name__}: {exc}")
        if 200 <= status_code < 300:
            return status_code, None
        if 300 <= status_code < 400:
            return status_code, _clip(f"answered {status_code}, a redirect (not followed) to {location}")
        text = answer.decode("utf-8", errors="replace").strip()
        return status_code, _clip(f"answered {status_code}" + (f": {text}" if text else ""))


def _clip(text: str) -> str:
    return storable_text(text)[:MAX_ERROR_CHARS]
