"""The database out of reach is a 503 with Retry-After, never a 500; a request that is safe to
run again is run again once first.

Safe to run again: a read (GET, HEAD), and a POST with an Idempotency-Key to a route marked
`replays_with_idempotency_key`, one that claims its key in the same transaction as its write
(the creations), so a second run either writes (the first was rolled back) or replays what the
first committed. Any other POST ignores the key, so it is never run again. A write that is not
run again and whose statement may have reached the database cannot be told apart from one that
took effect, so it is answered 503 saying so (a creation may be resent with a key); one that
never got a connection (the pool's wait ran out) provably wrote nothing, and says that instead.

It sits inside the body limit, so a body it keeps to replay is already bounded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

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
MAYBE_WRITTEN_KEYED = (
    "the connection to the database was lost while this job was being created, so it may or may"
    " not have been created; send it again with the same Idempotency-Key, which creates it once"
)
MAYBE_TOOK_EFFECT = (
    "the connection to the database was lost during this request, so it may or may not have"
    " taken effect; check before sending it again"
)

_REPLAYS = "_aijobs_replays_with_idempotency_key"
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def replays_with_idempotency_key(endpoint: Endpoint) -> Endpoint:
    """Mark a route that claims its Idempotency-Key in the same transaction as its write, so a
    keyed request to it may be run again after a lost connection. Put it under the route's
    decorator: Starlette's router puts the marked function in `scope["endpoint"]`."""
    setattr(endpoint, _REPLAYS, True)
    return endpoint


def honours_idempotency_key(endpoint: object) -> bool:
    return getattr(endpoint, _REPLAYS, False) is True


class DatabaseUnavailableMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        keyed = method == "POST" and "idempotency-key" in Headers(scope=scope)
        body = b""
        if keyed:
            # Kept before the first run: only routing tells whether the route honours the key.
            read = await _read_body(receive)
            if read is None:
                return  # the client left
            body = read
            receive = _replay(body, receive)
        started = False
        # Whether any run's statements may have reached the database: a second run that never
        # got a connection does not undo what the first may have written.
        reached = False

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
                reached = reached or not _never_sent(exc)
                # Set by the router: a request that never matched a route has none.
                creation = honours_idempotency_key(scope.get("endpoint"))
                replayable = method in ("GET", "HEAD") or (keyed and creation)
                if attempt == 1 and replayable and _connection_lost(exc):
                    log.info(
                        "%s %s: database connection lost (%s); running it again", method, scope["path"], exc
                    )
                    if keyed:
                        receive = _replay(body, receive)
                    continue
                log.warning("%s %s: database unavailable: %s", method, scope["path"], _first_line(exc))
                response = problem_response(
                    503,
                    _detail(method, keyed=keyed, creation=creation, reached=reached),
                    instance=scope["path"],
                    code="database_unavailable",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
                await response(scope, receive, send)
                return


def _detail(method: str, *, keyed: bool, creation: bool, reached: bool) -> str:
    """What the client is told of a request the database failed under."""
    if method in ("GET", "HEAD"):
        return "the database is out of reach; try again"
    if not reached:
        return NOT_WRITTEN
    if not creation:
        return MAYBE_TOOK_EFFECT
    return MAYBE_WRITTEN_KEYED if keyed else MAYBE_WRITTEN


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
