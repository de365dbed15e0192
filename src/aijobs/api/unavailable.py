"""The database out of reach is a 503 with Retry-After, never a 500; a request that is safe to
run again is run again once first.

Safe to run again: a read (GET, HEAD), and a creation sent with an Idempotency-Key, whose key
is claimed in the same transaction as the job and its debit, so a second run either creates
(the first was rolled back) or replays what the first committed. A creation without a key
whose statement may have reached the database cannot be told apart from one that was made,
so it is answered 503 saying so (and the client may resend it with a key); one that never got
a connection (the pool's wait ran out) was provably not made, and says that instead.

It sits inside the body limit, so a body it keeps to replay is already bounded.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg_pool import PoolTimeout
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aijobs.api.problems import problem_response
from aijobs.db.reachable import is_unreachable

log = logging.getLogger("aijobs.api")

#: What a client is told to wait before sending again.
RETRY_AFTER_SECONDS = 2
NOT_WRITTEN = "the database is out of reach; nothing was written or charged, try again"
MAYBE_WRITTEN = (
    "the connection to the database was lost while this job was being created, so it may or may"
    " not have been created; send creations with an Idempotency-Key to resend them safely"
)


class DatabaseUnavailableMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        keyed = method == "POST" and "idempotency-key" in Headers(scope=scope)
        replayable = method in ("GET", "HEAD") or keyed
        body = b""
        if keyed:
            read = await _read_body(receive)
            if read is None:
                return  # the client left
            body = read
            receive = _replay(body, receive)
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        for attempt in (1, 2):
            try:
                await self.app(scope, receive, tracking)
                return
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if started:
                    raise
                if attempt == 1 and replayable and _connection_lost(exc):
                    log.info(
                        "%s %s: database connection lost (%s); running it again", method, scope["path"], exc
                    )
                    if keyed:
                        receive = _replay(body, receive)
                    continue
                log.warning("%s %s: database unavailable: %s", method, scope["path"], _first_line(exc))
                detail = (
                    MAYBE_WRITTEN if method == "POST" and not keyed and not _never_sent(exc) else NOT_WRITTEN
                )
                if method in ("GET", "HEAD"):
                    detail = "the database is out of reach; try again"
                response = problem_response(
                    503,
                    detail,
                    instance=scope["path"],
                    code="database_unavailable",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
                await response(scope, receive, send)
                return


def _connection_lost(exc: BaseException) -> bool:
    """A connection that broke under the request (worth one more try on another); not the
    pool's wait running out, which a second wait would only double."""
    return not isinstance(exc, PoolTimeout) and (
        isinstance(exc, psycopg.InterfaceError) or is_unreachable(exc)
    )


def _never_sent(exc: BaseException) -> bool:
    return isinstance(exc, PoolTimeout)


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives `body` once, then waits on the client (for its disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
