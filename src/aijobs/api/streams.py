"""The per-user cap on open SSE streams and long polls (`MAX_STREAMS_PER_USER`), counted in
this API process.

Each stream holds a queue on the job events hub and a task for as long as the client keeps
it open, and a long poll (`GET /api/jobs/{id}?wait=N`) the same for up to a minute, so
without a cap one user could grow the process's memory and its fan-out work at will. Both
take a slot before they are answered; one over the cap is refused with a 429.
The slot is given back when the stream ends for any reason: the job finished, the client
went away, the server shut down, or the response ended before its generator ever ran (a
client gone, or a shutdown, before the first event). `StreamSlot.release` is therefore
called from more than one place, and counts once.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any
from uuid import UUID

from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

from aijobs.api.problems import ProblemError

#: Seconds a refused client is told to wait: a slot frees as soon as one of its streams ends.
RETRY_AFTER_SECONDS = 5


class StreamSlot:
    """One open stream of one user; `release` gives it back (once, however often it is called)."""

    def __init__(self, cap: StreamCap, user: UUID) -> None:
        self._cap = cap
        self._user = user
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._cap._release(self._user)


class StreamCap:
    """How many streams each user has open in this process, and the most one may have."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[UUID, int] = {}

    def open_streams(self, user: UUID) -> int:
        return self._open.get(user, 0)

    def acquire(self, user: UUID) -> StreamSlot:
        """A slot for one more stream, or a 429 problem when `user` already has `limit` open."""
        held = self._open.get(user, 0)
        if held >= self.limit:
            raise ProblemError(
                429,
                f"this user already has {held} event streams and long polls open, the most "
                f"allowed (MAX_STREAMS_PER_USER = {self.limit}); close one, or read "
                "GET /api/jobs/{id} without ?wait",
                code="too_many_streams",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                open_streams=held,
                limit=self.limit,
            )
        self._open[user] = held + 1
        return StreamSlot(self, user)

    def _release(self, user: UUID) -> None:
        held = self._open.get(user, 0) - 1
        if held > 0:
            self._open[user] = held
        else:
            self._open.pop(user, None)


class SlotEventSourceResponse(EventSourceResponse):
    """An EventSourceResponse that gives its stream's slot back when the response ends.

    The generator releases the slot in its own `finally` too, but a generator that never
    started never runs it: sse-starlette may cancel the response (the client is gone, the
    server is stopping) before it first iterates, or answer without iterating at all.
    """

    def __init__(self, content: AsyncIterable[Any], slot: StreamSlot, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()
