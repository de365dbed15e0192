"""A process works again within seconds of the database coming back, however long it was gone.

psycopg_pool waits twice as long before each new attempt to replace a lost connection, without
bound: cut off for 16 s, a stock pool tries again at about 15 s and 31 s, so it stays without
connections 15 s after the database is back (after a minute's outage, a minute). One pooled
connection, so that one series of attempts starts with the outage, as every connection's does
when a restart kills them all. The store
caps that wait, so its pool reconnects within a couple of seconds of the database, here behind
a loopback proxy that refuses connections while the database is "gone".
"""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aijobs.db.store import Store
from tests.support.net import TcpProxy

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 16.0
# The stock backoff would need about 15 s here; the cap (2 s, jittered) and a connection.
RECOVERY_BOUND_SECONDS = 6.0


def _through(proxy: TcpProxy, db_url: str) -> str:
    params = conninfo_to_dict(db_url)
    params.update(host="127.0.0.1", port=str(proxy.port))
    return make_conninfo(**params)


def _target(db_url: str) -> str | tuple[str, int]:
    params = conninfo_to_dict(db_url)
    host, port = str(params.get("host") or "/var/run/postgresql"), int(params.get("port") or 5432)
    return f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)


async def _answers(store: Store) -> bool:
    try:
        async with store.session() as session:
            await session.conn.execute("select 1")
        return True
    except (psycopg.Error, TimeoutError, OSError):
        return False


async def test_pool_reconnects_within_seconds_after_a_long_outage(db_url: str) -> None:
    proxy = TcpProxy(_target(db_url))
    await proxy.restore()
    store = await Store.open(_through(proxy, db_url), min_size=1, max_size=1, acquire_timeout=1.0)
    try:
        assert await _answers(store)
        await proxy.cut()
        # The borrower finds the pooled connection dead and the pool starts replacing it.
        assert not await _answers(store)
        await asyncio.sleep(OUTAGE_SECONDS)
        assert not await _answers(store)

        await proxy.restore()
        back = time.monotonic()
        while not await _answers(store):
            assert time.monotonic() - back < RECOVERY_BOUND_SECONDS, "the pool did not reconnect in time"
            await asyncio.sleep(0.1)
    finally:
        await store.close()
        await proxy.cut()
