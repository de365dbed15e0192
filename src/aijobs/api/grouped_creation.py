"""Group commit for the API's creations: the requests that arrive while the database is busy
go to it together, in one statement and one commit.

Under load an API process has several `POST /api/jobs` without an Idempotency-Key waiting on
PostgreSQL at once, each paying for a round trip and a commit (a WAL flush) of its own. Here at
most `MAX_STATEMENTS` creation statements run at a time per process; a request that arrives
while they are all busy waits for the next one, which takes every request waiting by then (up
to `MAX_GROUP`) through aijobs.create_jobs_grouped (docs/benchmarks.md has the figures).

What a request gets is unchanged: each element runs as its own user, in a subtransaction of
its own, with the same checks; a refusal (402, 429, 422) is raised for that request only and
undoes only its own job and debit. A lone request is sent at once, alone (its only extra cost
is the subtransaction); a request waits for a group only while `MAX_STATEMENTS` statements are
already in flight, about one statement's time. The price of sharing: a creation that waits on
a lock (its user's account row held by another transaction) holds up the rest of its group
until it gets it. If the statement itself fails (the connection is lost, the server
restarts), every request of the group gets that error, as each would have alone; none of
them was committed unless the commit was, which is the same uncertainty a single request has.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from aijobs.db.rows import CreatedJob, GroupedCreation
from aijobs.db.store import Store

#: Creation statements in flight at once per API process. Two keeps the database busy while
#: one group's answer travels back, and makes the rest of the waiting requests a group.
MAX_STATEMENTS = 2
#: Requests per statement: the SQL function's own limit (its subtransactions, see schema.sql).
MAX_GROUP = 32


@dataclass
class _Waiting:
    request: GroupedCreation
    answer: asyncio.Future[CreatedJob] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class CreationGroups:
    """The API process's creations without an Idempotency-Key, grouped (see the module)."""

    def __init__(
        self,
        store: Store,
        *,
        max_statements: int = MAX_STATEMENTS,
        max_group: int = MAX_GROUP,
    ) -> None:
        self._store = store
        self._max_statements = max_statements
        self._max_group = max_group
        self._waiting: deque[_Waiting] = deque()
        #: Senders that may still take a group. Counted apart from their tasks: a task that
        #: has returned stays in `_tasks` until its done-callback runs, a loop turn later, and
        #: a request that counted it then would wait for a sender that will never look again.
        self._sending = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def create(self, request: GroupedCreation) -> CreatedJob:
        """The job made for `request`, or the error its creation alone would have raised."""
        waiting = _Waiting(request)
        self._waiting.append(waiting)
        if self._sending < self._max_statements:
            self._sending += 1
            sender = asyncio.create_task(self._send())
            self._tasks.add(sender)
            sender.add_done_callback(self._tasks.discard)
        # A request cancelled before its group is sent is left out of it; one cancelled after
        # is created all the same (as a single statement already sent would be).
        return await waiting.answer

    async def aclose(self) -> None:
        """Wait for the statements in flight (their requests are owed an answer)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _send(self) -> None:
        """Send groups until nobody is waiting: each takes everyone waiting when it starts.

        Finding the queue empty and leaving `_sending` happen with no await between them, so a
        request queued after that check starts a sender of its own."""
        try:
            await self._send_groups()
        finally:
            self._sending -= 1

    async def _send_groups(self) -> None:
        while group := self._next_group():
            try:
                async with self._store.session() as session:
                    outcomes = await session.jobs.create_grouped([w.request for w in group])
            except asyncio.CancelledError:  # the loop is going away: nobody will be answered
                for w in group:
                    w.answer.cancel()
                raise
            except Exception as exc:  # the statement failed: each request gets the error
                for w in group:
                    if not w.answer.done():
                        w.answer.set_exception(exc)
                continue
            for w, outcome in zip(group, outcomes, strict=True):
                if w.answer.done():
                    continue
                if isinstance(outcome, Exception):
                    w.answer.set_exception(outcome)
                else:
                    w.answer.set_result(outcome)

    def _next_group(self) -> list[_Waiting]:
        group: list[_Waiting] = []
        while self._waiting and len(group) < self._max_group:
            w = self._waiting.popleft()
            if not w.answer.done():  # cancelled while it waited
                group.append(w)
        return group
