"""Run workers in tests: in-process (fast, inspectable) or as real `aijobs worker` processes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from aijobs.config import Settings
from aijobs.db.store import Store
from aijobs.providers.base import Provider
from aijobs.worker.runner import Worker
from tests.support.providers import ScriptedProvider


@asynccontextmanager
async def running_worker(
    settings: Settings,
    store: Store,
    provider: Provider | None = None,
    *,
    listener_conninfo: str | None = None,
) -> AsyncIterator[Worker]:
    """A worker running in this event loop until the block ends (then a graceful stop).

    `listener_conninfo` sends its LISTEN connection elsewhere (e.g. through a fault proxy);
    by default it goes where the settings say (none at all: a transaction-mode pooler)."""
    assert settings.database_url
    worker = Worker(
        settings,
        store,
        provider or ScriptedProvider(),
        listener_conninfo or settings.listen_url(settings.database_url),
    )
    task = asyncio.create_task(worker.run())
    if worker.listener is not None:
        await asyncio.wait_for(worker.listener.connected.wait(), timeout=10)
    try:
        yield worker
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, timeout=30)


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> None:
    """Poll `check` until true; fail with `what` after `timeout` seconds (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")


async def fetch_all(db_url: str, query: str, *params: Any) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(query, params)
        return await cur.fetchall()


async def fetch_one(db_url: str, query: str, *params: Any) -> dict[str, Any]:
    rows = await fetch_all(db_url, query, *params)
    assert rows, f"no row for {query}"
    return rows[0]


async def job(db_url: str, job_id: UUID) -> dict[str, Any]:
    return await fetch_one(db_url, "select * from aijobs.jobs where id = %s", job_id)


async def status_counts(db_url: str) -> dict[str, int]:
    rows = await fetch_all(db_url, "select status::text as s, count(*) as n from aijobs.jobs group by 1")
    return {r["s"]: int(r["n"]) for r in rows}


class WorkerProcess:
    """An `aijobs worker` subprocess whose output goes to a log file."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *args: str,
        module: str = "aijobs",
        prefix: Sequence[str] = (),
    ) -> None:
        """`module` runs instead of `aijobs` (e.g. tests.support.fault_worker, which arms faults);
        `prefix` is a command that execs it (e.g. `ip netns exec NS`: the pid stays the worker's)."""
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", module, "worker", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    async def wait_for_output(self, text: str, timeout: float = 20.0) -> None:
        async def seen() -> bool:
            if self.proc.poll() is not None and text not in self.output():
                raise AssertionError(
                    f"worker exited ({self.proc.returncode}) before {text!r}:\n{self.output()}"
                )
            return text in self.output()

        await wait_until(seen, timeout=timeout, what=f"{text!r} in worker output")

    def send(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig == signal.SIGKILL:
                # Reaped at once: until then poll() says it runs, and a fleet stopped just
                # after a kill would count it among the live workers it asks to drain.
                self.proc.wait()

    async def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"worker did not exit within {timeout}s:\n{self.output()}")
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
