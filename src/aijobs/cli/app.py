"""The Typer app and what every command shares: settings, the database, JSON output."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import psycopg
import typer

from aijobs.config import ConfigError, Settings, load_settings
from aijobs.db.embedded import database_url
from aijobs.db.migrate import pending
from aijobs.db.store import Session, Store
from aijobs.errors import AijobsError, MissingExtra
from aijobs.jobs import ENV_VAR, JobTypeError
from aijobs.jobs import configure as configure_job_types
from aijobs.logs import setup_logging

app = typer.Typer(help="aijobs: a PostgreSQL-backed job system for AI work.", no_args_is_help=True)
jobs_app = typer.Typer(help="Inspect and act on jobs.", no_args_is_help=True)
accounts_app = typer.Typer(help="Accounts and credits.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(accounts_app, name="accounts")

T = TypeVar("T")


def settings_or_exit(**overrides: Any) -> Settings:
    """Settings, or exit 2 with each bad variable named and why."""
    try:
        settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        typer.echo(f"aijobs: {exc}", err=True)
        raise typer.Exit(2) from None
    setup_logging(settings.log_format, settings.log_level)
    load_job_types_or_exit(settings)
    return settings


def load_job_types_or_exit(settings: Settings) -> None:
    """This process's job types, or exit 2 naming the type (or import path) and the reason:
    a worker or an API missing a type would only fail its jobs later."""
    try:
        configure_job_types(settings.aijobs_job_types)
    except JobTypeError as exc:
        typer.echo(f"aijobs: {ENV_VAR}: {exc}", err=True)
        raise typer.Exit(2) from None


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """DATABASE_URL, or the embedded server (started or joined) while the command runs."""
    if settings.database_url:
        yield settings.database_url
        return
    with exit_on_terminate(), database_url(None, settings.embedded_data_dir) as url:
        yield url


class Terminated(SystemExit):
    """SystemExit for a terminating signal (exit status 128 + its number)."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


def _raise_exit(signum: int, _frame: object) -> None:
    raise Terminated(signum)


@contextmanager
def exit_on_terminate() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into SystemExit while the embedded server is in use.

    Their default action ends the process on the spot, skipping the `finally` that lets go
    of the embedded server, which then runs on for nobody. A handler that raises unwinds
    instead. It also catches uvicorn's re-raise of SIGTERM after a graceful shutdown, and
    the worker's own handlers (installed on its event loop) take precedence while it runs.

    A handler that runs inside a callback Python calls itself (a weakref's, say, which
    imports use) raises where nothing can catch it: Python reports the exception and drops
    it. The signal is then sent again, from another thread a moment later (sent from here,
    it would be handled here again), to be raised where it unwinds.
    """
    previous_hook = sys.unraisablehook

    def send_again(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, Terminated):
            again = threading.Timer(0.05, os.kill, (os.getpid(), unraisable.exc_value.signum))
            again.daemon = True
            again.start()
            return
        previous_hook(unraisable)

    previous = {sig: signal.signal(sig, _raise_exit) for sig in (signal.SIGTERM, signal.SIGHUP)}
    sys.unraisablehook = send_again
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@asynccontextmanager
async def open_store(url: str, settings: Settings, *, name: str = "aijobs-cli") -> AsyncIterator[Store]:
    store = await Store.open(
        url, min_size=1, max_size=settings.db_pool_size, name=name, prepare=settings.prepared_statements
    )
    try:
        yield store
    finally:
        await store.close()


def require_migrated(url: str) -> None:
    """Exit 2 asking for `aijobs migrate` when the schema is behind: the commands would only
    crash on a missing table or column."""
    missing = pending(url)
    if missing:
        names = ", ".join(missing)
        typer.echo(f"error: the database lacks migrations {names}; run `aijobs migrate`", err=True)
        raise typer.Exit(2)


@asynccontextmanager
async def owner_session(settings: Settings, *, transaction: bool = False) -> AsyncIterator[Session]:
    """What most commands need: the database, a store, one session as the owner role."""
    with database(settings) as url:
        require_migrated(url)
        async with open_store(url, settings) as store:
            scope = store.transaction() if transaction else store.session()
            async with scope as session:
                yield session


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine; a domain refusal becomes a clear message and exit code 1."""
    try:
        return asyncio.run(factory())  # type: ignore[arg-type]
    except AijobsError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    """The `aijobs` command: errors an operator fixes outside aijobs (a database that does not
    answer, a port in use, a file that cannot be read, an extra not installed) are one line
    on stderr and exit 1, not a traceback. Anything else is a bug and keeps its traceback."""
    try:
        app()
    except psycopg.Error as exc:
        typer.echo(f"error: database: {_first_line(exc)}", err=True)
        sys.exit(1)
    except MissingExtra as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        typer.echo(f"error: {_first_line(exc)}", err=True)
        sys.exit(1)


def listen_or_exit(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port for uvicorn, or exit 1 with one line saying why
    (a port in use was uvicorn's error log and, under `aijobs dev`, two tracebacks)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it a keep-alive response waited on Nagle and the client's delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        typer.echo(
            f"error: cannot listen on {host}:{port}: {exc.strerror or exc}"
            " (choose another with --port or API_PORT)",
            err=True,
        )
        raise typer.Exit(1) from None
    return sock


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def echo_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def parse_json_option(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        typer.echo(f"error: {option} is not valid JSON: {exc.msg} at position {exc.pos}", err=True)
        sys.exit(2)
